"""GFlowNet fine-tuning (the paper's method) and amortized sampling."""
from __future__ import annotations

import ctypes
from ctypes import POINTER, c_int32, c_void_p
from typing import TYPE_CHECKING, Callable, Sequence

from . import _lib
from ._handle import Closeable
from .inference import Sample, _Arrays, adjustment, read_samples
from .rewards import Callback, Reward

if TYPE_CHECKING:
    from ._types import PathLike, StopTokens, TextOrIds, TokenIds
    from .model import Model
    from .training import LoRA

_OBJECTIVES = {"subtb": 0, "tb": 1, "db": 2, "reinforce": 3, "ppo": 4}
_LAYOUTS = {"forced_stop": 0, "next_sentence": 1}
_CALCULATOR = {None: 0, False: 0, "reference": 1, True: 1, "fixed": 2}


def _choice(option: str, value, table: dict) -> int:
    """table[value] (strings case-insensitively); anything else is an InvalidArgumentError (a ValueError) that
    lists the valid values."""
    key = value.lower() if isinstance(value, str) else value
    try:
        return table[key]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in table)
        raise _lib.InvalidArgumentError(-1, f"unknown {option} {value!r}: expected one of {valid}") from None


def _as_reward(reward):
    """A Reward as is; a plain function becomes a Callback reward; anything else is a TypeError."""
    if isinstance(reward, Reward):
        return reward, False
    if callable(reward):
        return Callback(reward), True
    raise TypeError(f"reward must be a gfnlm.rewards.Reward (e.g. rewards.LMLikelihood(model)) or a function "
                    f"fn(prompt_index, states) -> one log R per state; got {type(reward).__name__}")


def sample_rollouts(model, prompt, n: int = 1, adapter=None, termination=None, min_length: int = 0,
                    max_length: int = 16, layout: str = "forced_stop", allowed=None, penalty=None, calculator=None,
                    temperature: float = 1.0, seed: int = 0) -> list:
    """Samples with the GFlowNet rollout's rules but without a trainer: `adapter` (None: the base model) after
    `prompt`, ⊤ = termination (default end-of-text) not before min_length actions, at most max_length, the mask
    (allowed + penalty) and the calculator (None | "reference" | "fixed"). Returns Samples as
    GFlowNetTrainer.sample does (tokens with the calculator's output, the sampler's log q; 0 for tool output)."""
    keep = _Arrays()
    p = _lib.gfn_rollout_default_params()
    if termination is None:
        if model.tokenizer is None or model.tokenizer.eos_id is None:
            raise _lib.GfnError(-1, "give termination= (the model has no end-of-text token)")
        termination = model.tokenizer.eos_id
    p.termination = model._stop_ids(termination)[0]
    p.min_length, p.max_length, p.layout = min_length, max_length, _LAYOUTS[layout]
    p.adjust = adjustment(keep, allowed, penalty, None)
    p.calculator = _CALCULATOR[calculator]
    a, k = keep.ids(model._ids(prompt))
    out = c_void_p()
    _lib.check(_lib.gfn_rollout_sample(model._handle(), adapter._handle() if adapter is not None else None,
                                       ctypes.byref(p), a, k, n, temperature, seed & 0xFFFFFFFFFFFFFFFF,
                                       ctypes.byref(out)))
    return read_samples(out, model._decode())


def _stats(s) -> dict:
    return {k: getattr(s, k) for k, _ in _lib.StepStats._fields_ if k != "size"}


class GFlowNetTrainer(Closeable):
    """Trains `adapter` so that the model samples Z ∝ R(Z) after each prompt.

    reward: a gfnlm.rewards.Reward, or a plain function fn(prompt_index, states) -> log R per state (wrapped in
    rewards.Callback). prompts: list of X (str or ids) or of dicts {"x": …, "y": …, "reward_context": …, "weight": …}.
    Main options (defaults from the reference's main.py): objective "subtb" | "tb" | "db" (GFlowNets) or
    "reinforce" / "ppo" (reward-maximising baselines; on-policy only: p_on_policy=1, p_replay=0; PPO as in trl:
    clipped surrogate with ppo_clip over ppo_epochs updates per sampled batch, leave-one-out baseline, KL penalty
    kl_coef to the frozen base model, adapted toward kl_target over kl_horizon, None = fixed), subtb_lambda,
    termination (token or single-token string, default end-of-text), min_length (the target is R restricted to
    sequences of at least that many actions, whatever the reward gives shorter ones), max_length, layout
    "forced_stop" | "next_sentence", allowed + penalty (the policy's vocabulary mask, e.g. −99), calculator
    (None | "reference" | "fixed"), batch_size, grad_accumulation, lr, warmup_steps, total_steps, logz_lr,
    reward_temperature (start, end, horizon), p_on_policy, p_replay, temperature_range (the tempered behaviour's
    τ ~ U[low, high]; with temperature_horizon > 0 it moves linearly to temperature_range_end over that many steps),
    buffer_capacity, seed, root_flow ("reward": the reference's R(X⊤)/q(⊤|X) as the flow of the root for
    SubTB / DB with min_length ≥ 1; "learned": a learned log Z per prompt, as TB's),
    pack_weights (pack the fp32 weights once more for OpenBLAS's kernel: faster steps, about the weights' size in
    memory again, kept with the model), distributed (a gfnlm.distributed exchange, e.g. gfnlm.distributed.mpi():
    this trainer is one of its world_size data-parallel replicas, batch_size trajectories per rank)."""

    def __init__(self, model: Model, adapter: LoRA, reward: Reward | Callable[[int, list], Sequence[float]],
                 prompts: Sequence[TextOrIds | dict], objective: str = "subtb", subtb_lambda: float = 1.0,
                 strict_mask: bool = False, termination: StopTokens | None = None, min_length: int = 0,
                 max_length: int = 16, layout: str = "forced_stop", allowed: Sequence[int] | None = None,
                 penalty: float | None = None, calculator: str | bool | None = None, batch_size: int = 8,
                 grad_accumulation: int = 1, average_accumulation: bool = False, lr: float = 1e-4,
                 warmup_steps: int = 20, total_steps: int = 0, cosine: bool = False, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), max_grad_norm: float | None = None,
                 logz_lr: float = 1.0, logz_init: float = 0.0,
                 reward_temperature: tuple[float, float, int] = (1.0, 1.0, 1), p_on_policy: float = 0.25,
                 p_replay: float = 0.25, temperature_range: tuple[float, float] = (0.5, 2.0),
                 buffer_capacity: int = 50, buffer_tolerance: float = 0.25,
                 buffer_prioritized: bool = True, lora_dropout: bool = False, seed: int = 0,
                 pack_weights: bool = True, temperature_range_end: tuple[float, float] = (1.0, 1.0),
                 temperature_horizon: int = 0, root_flow: str = "reward", distributed: object | None = None,
                 ppo_clip: float = 0.2, ppo_epochs: int = 4, kl_coef: float = 0.2, kl_target: float | None = 6.0,
                 kl_horizon: float = 10000.0):
        self._h = None
        reward, self._owns_reward = _as_reward(reward)
        self.model, self.adapter, self.reward = model, adapter, reward
        self.objective = objective
        keep = self._keep = _Arrays()
        p = _lib.gfn_gflownet_default_params()
        p.objective = _choice("objective", objective, _OBJECTIVES)
        p.subtb_lambda = subtb_lambda
        p.strict_mask = 1 if strict_mask else 0
        p.layout = _choice("layout", layout, _LAYOUTS)
        if termination is None:
            if model.tokenizer is None or model.tokenizer.eos_id is None:
                raise _lib.GfnError(-1, "give termination= (the model has no end-of-text token)")
            termination = model.tokenizer.eos_id
        p.termination = model._stop_ids(termination)[0]
        p.min_length, p.max_length = min_length, max_length
        p.adjust = adjustment(keep, allowed, penalty, None)   # read by gfn_gflownet_new
        p.calculator = _choice("calculator", calculator, _CALCULATOR)
        p.batch_size, p.grad_accumulation = batch_size, grad_accumulation
        p.average_accumulation = 1 if average_accumulation else 0
        t = self._train = _lib.gfn_train_default_params()   # p.train points at it: kept alive with the trainer
        p.train = ctypes.pointer(t)
        t.lr, t.weight_decay, t.beta1, t.beta2 = lr, weight_decay, betas[0], betas[1]
        t.warmup_steps, t.total_steps, t.cosine = warmup_steps, total_steps, 1 if cosine else 0
        t.max_grad_norm = 0.0 if max_grad_norm is None else max_grad_norm
        p.logz_lr, p.logz_init = logz_lr, logz_init
        p.reward_temp_start, p.reward_temp_end, p.reward_temp_horizon = reward_temperature
        p.p_on_policy, p.p_replay = p_on_policy, p_replay
        p.temp_low, p.temp_high = temperature_range
        p.temp_low_end, p.temp_high_end = temperature_range_end
        p.temp_horizon = temperature_horizon
        p.root_flow = {"reward": 0, "learned": 1}[root_flow]
        p.buffer_capacity, p.buffer_tolerance = buffer_capacity, buffer_tolerance
        p.buffer_prioritized = 1 if buffer_prioritized else 0
        p.lora_dropout = 1 if lora_dropout else 0
        p.seed = seed & 0xFFFFFFFFFFFFFFFF
        p.pack_weights = 1 if pack_weights else 0
        p.ppo_clip, p.ppo_epochs, p.kl_coef = ppo_clip, ppo_epochs, kl_coef
        p.kl_target = 0.0 if kl_target is None else kl_target
        p.kl_horizon = kl_horizon
        self.prompts = [self._prompt(x) for x in prompts]
        arr = (_lib.Prompt * len(self.prompts))()
        for i, pr in enumerate(self.prompts):
            a, n = keep.ids(pr["x"])
            arr[i].size = ctypes.sizeof(_lib.Prompt)
            arr[i].x, arr[i].n_x = ctypes.cast(a, POINTER(c_int32)), n
            if pr.get("y"):
                a, n = keep.ids(pr["y"])
                arr[i].y, arr[i].n_y = ctypes.cast(a, POINTER(c_int32)), n
            if pr.get("reward_context"):
                a, n = keep.ids(pr["reward_context"])
                arr[i].reward_context, arr[i].n_reward_context = ctypes.cast(a, POINTER(c_int32)), n
            arr[i].weight = pr.get("weight", 1.0)
        h = c_void_p()
        _lib.check(_lib.gfn_gflownet_new(model._handle(), adapter._handle(), reward._handle(), arr, len(self.prompts),
                                         ctypes.byref(p), ctypes.byref(h)))
        self._h = h
        self._progress = None
        self.distributed = distributed
        if distributed is not None:
            distributed.attach(h, _lib.gfn_gflownet_set_distributed)

    def _prompt(self, x) -> dict:
        if isinstance(x, dict):
            d = dict(x)
            d["x"] = self.model._ids(d["x"])
            for k in ("y", "reward_context"):
                if d.get(k) is not None:
                    d[k] = self.model._ids(d[k])
            return d
        return {"x": self.model._ids(x)}

    def __repr__(self) -> str:
        if self.closed:
            return "<gfnlm.GFlowNetTrainer (closed)>"
        return f"<gfnlm.GFlowNetTrainer objective={self.objective!r} prompts={len(self.prompts)}>"

    def _raise_callback(self, err):
        """A Python reward's own exception (KeyboardInterrupt included) is re-raised as itself; the library's
        GFN_ERR_CALLBACK error becomes its context. The failed step changed nothing."""
        if isinstance(self.reward, Callback) and self.reward.error is not None:
            e, self.reward.error = self.reward.error, None
            raise e
        raise err

    def _check(self, status):
        try:
            _lib.check(status)
        except _lib.GfnError as err:
            self._raise_callback(err)

    def step(self) -> dict:
        """One optimiser step; returns its statistics (loss, mean_log_r, mean_log_q, fraction_unique, ...)."""
        s = _lib.StepStats()
        s.size = ctypes.sizeof(_lib.StepStats)
        self._check(_lib.gfn_gflownet_step(self._h, ctypes.byref(s)))
        return _stats(s)

    def train(self, steps: int, progress: Callable[[dict], object] | bool | None = None) -> dict:
        """Runs `steps` steps and returns the last one's statistics. `progress`: a function progress(stats) called
        after each step (return False to stop), or True for a tqdm progress bar (when tqdm is installed;
        otherwise nothing is shown). An exception from the reward or from `progress` (Ctrl-C's KeyboardInterrupt
        included) propagates as itself; the steps completed before it stay, the interrupted one changes nothing."""
        steps = _lib.checked_int(steps, what="steps")
        bar = None
        if progress is True:
            progress = None
            try:
                from tqdm.auto import tqdm
                bar = tqdm(total=steps, unit="step")
            except ImportError:
                pass
        last = {}
        try:
            for _ in range(steps):
                last = self.step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last['loss']:.4g}", log_r=f"{last['mean_log_r']:.3g}", refresh=False)
                if progress is not None and progress(last) is False:
                    break
        finally:
            if bar is not None:
                bar.close()
        return last

    def sample(self, prompt: TextOrIds, n: int = 1, temperature: float = 1.0, seed: int = 0) -> list:
        """Amortized inference: n trajectories Z ~ q(·|X). Sample.tokens is the state after X (tool output
        included), Sample.text its decoding; finish_reason "stop" when ⊤ was sampled. Sample.token_logprobs and
        Sample.logprob are the sampler's log q at temperature 1 whatever `temperature` (untempered, with the mask,
        renormalised without ⊤ before min_length): one value per token, 0 for the calculator's output (not an
        action); logprob adds the stop's log q(⊤|s_n) (0 for a sequence cut at max_length under the forced-stop
        layout). At the optimum log R(Z)/T_R − logprob is log Z for every Z: use it for importance weights."""
        keep = _Arrays()
        a, k = keep.ids(self.model._ids(prompt))
        out = c_void_p()
        self._check(_lib.gfn_gflownet_sample(self._h, a, k, n, temperature, seed & 0xFFFFFFFFFFFFFFFF, ctypes.byref(out)))
        return read_samples(out, self.model._decode())

    def seed_buffer(self, prompt_index: int, demonstrations: Sequence[TextOrIds]) -> None:
        """Adds demonstrations (action sequences as ids or strings) for a prompt to the replay buffer. One longer
        than max_length or shorter than min_length is refused (GfnError; nothing is added)."""
        keep = _Arrays()
        seqs = [self.model._ids(d) for d in demonstrations]
        ptrs = (POINTER(c_int32) * max(1, len(seqs)))()
        lens = (c_int32 * max(1, len(seqs)))()
        for i, s in enumerate(seqs):
            a, k = keep.ids(s)
            ptrs[i], lens[i] = ctypes.cast(a, POINTER(c_int32)), k
        self._check(_lib.gfn_gflownet_seed_buffer(self._h, prompt_index, ptrs, lens, len(seqs)))

    def exact(self, vocabulary: TokenIds, prompt_index: int = 0) -> dict:
        """Exact comparison of q with the target over every sequence of ≤ max_length actions from `vocabulary`."""
        keep = _Arrays()
        a, k = keep.ids(vocabulary)
        r = _lib.ExactResult()
        r.size = ctypes.sizeof(_lib.ExactResult)
        self._check(_lib.gfn_gflownet_exact(self._h, prompt_index, a, k, ctypes.byref(r)))
        return {k: getattr(r, k) for k, _ in _lib.ExactResult._fields_ if k != "size"}

    def save(self, directory: PathLike) -> None:
        """Writes a checkpoint (adapter, optimiser, log Z, replay buffer, step) into `directory`."""
        _lib.check(_lib.gfn_gflownet_save(self._h, _lib.encode_path(directory)), directory)

    def load(self, directory: PathLike) -> None:
        """Restores a checkpoint written by save()."""
        _lib.check(_lib.gfn_gflownet_load(self._h, _lib.encode_path(directory)), directory)

    def close(self) -> None:
        """Frees the trainer (and a Callback reward it made from a plain function)."""
        if self._h:
            _lib.gfn_gflownet_free(self._h)
        self._h = None
        if getattr(self, "_owns_reward", False) and self.reward is not None:
            self.reward.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass
