"""Rewards for GFlowNet fine-tuning: each gives log R(s_t ⊤) for every prefix state of a trajectory."""
from __future__ import annotations

import ctypes
from ctypes import POINTER, c_double, c_int32, c_void_p
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import _lib
from ._handle import Closeable
from .inference import _Arrays, _real, adjustment

if TYPE_CHECKING:
    from ._types import StopTokens, TextOrIds, TokenIds
    from .model import Model


class Reward(Closeable):
    """A reward over the states of a trajectory: log R(s ⊤) for every prefix state s. Built by one of the
    subclasses (LMLikelihood, NextSentence, RandomInteger, Callback); a plain Python function passed to
    GFlowNetTrainer as reward is wrapped in a Callback."""

    _kind = "reward"

    def __init__(self, handle: c_void_p, keep: object = None):
        self._h = handle
        self._keep = keep

    def __repr__(self) -> str:
        return f"<gfnlm.rewards.{type(self).__name__}{' (closed)' if self.closed else ''}>"


    def __call__(self, x: TokenIds, actions: TokenIds, y: TokenIds | None = None) -> np.ndarray:
        """Untempered log R of every prefix state of one action sequence: a float64 array of len(actions) + 1."""
        keep = _Arrays()
        xa, nx = keep.ids(x)
        ya, ny = keep.ids([] if y is None else y)
        aa, na = keep.ids(actions)
        out = np.empty(na + 1, dtype=np.float64)
        _lib.check(_lib.gfn_reward_evaluate(self._handle(), xa, nx, ya, ny, aa, na,
                                            out.ctypes.data_as(POINTER(c_double))))
        return out

    def close(self) -> None:
        """Frees the reward (a trainer using it keeps its own reference)."""
        if self._h:
            _lib.gfn_reward_free(self._h)
        self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass


class LMLikelihood(Reward):
    """log p_LM(Z Y | [demos] C) with the adapter off (C: the prompt's reward context, or X). `allowed` +
    `penalty` add the vocabulary penalty at Z positions only (e.g. −99); states shorter than `min_length` get −99."""

    def __init__(self, model: Model, demos: TextOrIds | None = None, allowed: Sequence[int] | None = None,
                 penalty: float | None = None, min_length: int = 0):
        keep = _Arrays()
        d, nd = keep.ids(model._ids(demos) if demos else [])
        adj = adjustment(keep, allowed, penalty, None)
        h = c_void_p()
        _lib.check(_lib.gfn_reward_new_lm_likelihood(model._handle(), d, nd, adj, min_length,
                                                     ctypes.byref(h)))
        super().__init__(h, (keep, model))


class NextSentence(Reward):
    """log p_LM(z_1..t ⊤ | X) for every prefix (the next-sentence reward; ⊤ e.g. "."). `allowed` + `penalty`:
    the reward's own vocabulary penalty (the reference: −50)."""

    def __init__(self, model: Model, termination: StopTokens, allowed: Sequence[int] | None = None,
                 penalty: float | None = None, min_length: int = 0):
        keep = _Arrays()
        term = model._stop_ids(termination)[0]
        adj = adjustment(keep, allowed, penalty, None)
        h = c_void_p()
        _lib.check(_lib.gfn_reward_new_next_sentence(model._handle(), term, adj, min_length,
                                                     ctypes.byref(h)))
        super().__init__(h, (keep, model))


class RandomInteger(Reward):
    """The paper's random-integer reward (§2): the single-token numbers 0–99 written without a leading space."""

    def __init__(self, model: Model, termination: StopTokens | None = None, upto: int = 99):
        tok = model.tokenizer
        if tok is None:
            raise _lib.GfnError(-1, "RandomInteger needs the model's tokenizer")
        ids = []
        for v in range(upto + 1):
            e = tok.encode(str(v), allow_special=False)
            if len(e) == 1:
                ids.append(e[0])
        self.number_tokens = ids
        term = tok.eos_id if termination is None else model._stop_ids(termination)[0]
        keep = _Arrays()
        arr, n = keep.ids(ids)
        h = c_void_p()
        _lib.check(_lib.gfn_reward_new_random_integer(arr, n, term, ctypes.byref(h)))
        super().__init__(h, keep)


class Callback(Reward):
    """A Python reward: fn(prompt_index, states) → sequence (list, numpy array) of log R, one real number per state
    (a state is the list of token ids after X: every prefix of every trajectory, or only complete ones with
    terminal_only=True — TB only). Anything but real numbers (a string such as "1.5" included) is a TypeError.
    With temperature=True it is called fn(prompt_index, states, reward_temperature): the T_R the trainer divides
    the (still untempered) values by, 1 outside training — e.g. to add a penalty after tempering as penalty·T_R.
    An exception (KeyboardInterrupt included) or a NaN fails the training step, which then changes nothing, and the
    trainer re-raises the exception itself."""

    def __init__(self, fn: Callable[..., Sequence[float]], terminal_only: bool = False, temperature: bool = False):
        if not callable(fn):
            raise TypeError(f"Callback needs a function fn(prompt_index, states) -> log R per state, got "
                            f"{type(fn).__name__}")
        self.fn = fn
        self.error: BaseException | None = None

        def run(prompt_index, t_r, states, lengths, n, out):
            try:
                seqs = [list(states[i][:lengths[i]]) for i in range(n)]
                vals = self.fn(prompt_index, seqs, t_r) if temperature else self.fn(prompt_index, seqs)
                if isinstance(vals, (str, bytes)):
                    raise TypeError(f"the reward function returned {type(vals).__name__} {vals!r}; it must return "
                                    f"a sequence of {n} real numbers (log R, one per state)")
                vals = list(vals)
                if len(vals) != n:
                    raise ValueError(f"the reward function returned {len(vals)} values for {n} states")
                for i, v in enumerate(vals):
                    out[i] = _real(v, f"the reward function's value for state {i}")
                return 0
            except BaseException as e:  # never let an exception cross into C; the trainer re-raises it
                self.error = e
                return 1

        h = c_void_p()
        if temperature:
            self._cb = _lib.REWARD_TEMPERATURE_FN(lambda _ud, i, t_r, s, l, n, out: run(i, t_r, s, l, n, out))
            _lib.check(_lib.gfn_reward_new_callback_temperature(self._cb, None, 1 if terminal_only else 0,
                                                               ctypes.byref(h)))
        else:
            self._cb = _lib.REWARD_FN(lambda _ud, i, s, l, n, out: run(i, 1.0, s, l, n, out))
            _lib.check(_lib.gfn_reward_new_callback(self._cb, None, 1 if terminal_only else 0, ctypes.byref(h)))
        super().__init__(h)
