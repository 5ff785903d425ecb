from __future__ import annotations

import ctypes
import os
from ctypes import c_float, c_int32, c_void_p
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import _lib
from ._handle import Closeable
from .inference import _Arrays, adjustment, context_for, read_samples
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from ._types import Bias, PathLike, StopTokens, TextOrIds
    from .inference import Sample
    from .training import LoRA


class Model(Closeable):
    """A GPT-2 or GPT-J model loaded from an ONNX export (Model.load). Immutable and shareable by threads; a
    context manager (close() frees it)."""

    _kind = "model"

    def __init__(self, handle: c_void_p, path: PathLike | None = None):
        self._h = handle
        self.path = path
        tok = c_void_p()
        _lib.check(_lib.gfn_model_tokenizer(self._h, ctypes.byref(tok)))
        self.tokenizer = Tokenizer(tok, owner=self) if tok.value else None
        self._config = None

    @classmethod
    def load(cls, path: PathLike, tokenizer: PathLike | None = None, n_threads: int = 0,
             weights: str = "fp32", batch_invariant: bool = True, weight_cache: str = "off",
             weight_cache_dir: PathLike | None = None, quantize_activations: bool = True) -> "Model":
        """Loads an .onnx file (or a directory holding one). `tokenizer`: a path to tokenizer files; by default
        tokenizer files beside the model are used when present. `weights`: "fp32" (default), "bf16" (the large
        matrices converted to bf16 at load: half the memory), "int8" or "q4" (block-quantized at load, 32 values
        per block with an fp16 scale: 0.27 / 0.14 of fp32's bytes per matrix; see docs/quantization.md). With any
        but fp32, full-parameter training, merging adapters and ONNX export are refused. Anything else raises
        ValueError. `n_threads` (0: every CPU the process may run on) bounds every thread the library computes with
        for this model, however many Python threads call it. `batch_invariant` (default): a sample
        depends only on (model, adapter, prompt, parameters, seed), not on what shares its batch (Batcher);
        False picks the fastest product per batch size (results then differ at rounding level). `weight_cache`:
        "off" (default), "readwrite" (load from a converted weight cache beside the model — `weight_cache_dir`
        instead when given — when it is valid, else from the ONNX file, then write the cache) or "readonly" (never
        write); a stale or damaged cache is never used, the reason goes to the log handler (docs/formats.md).
        `quantize_activations` ("int8" / "q4" only; default True): the products quantize their activations to int8
        and multiply integers, as llama.cpp does; False keeps them fp32 (only the weights are rounded; slower)."""
        kinds = {"fp32": _lib.GFN_WEIGHTS_F32, "bf16": _lib.GFN_WEIGHTS_BF16, "int8": _lib.GFN_WEIGHTS_INT8,
                 "q4": _lib.GFN_WEIGHTS_Q4}
        if not isinstance(weights, str) or weights not in kinds:
            raise ValueError(f"weights must be one of 'fp32', 'bf16', 'int8', 'q4', got {weights!r}")
        params = _lib.gfn_model_default_params()
        params.n_threads = n_threads
        params.weight_type = kinds[weights]
        params.batch_invariant = 1 if batch_invariant else 0
        params.quantize_activations = 1 if quantize_activations else 0
        modes = {"off": _lib.GFN_WEIGHT_CACHE_OFF, "readwrite": _lib.GFN_WEIGHT_CACHE_READ_WRITE,
                 "readonly": _lib.GFN_WEIGHT_CACHE_READ_ONLY}
        if not isinstance(weight_cache, str) or weight_cache not in modes:
            raise ValueError(f"weight_cache must be one of 'off', 'readwrite', 'readonly', got {weight_cache!r}")
        params.weight_cache = modes[weight_cache]
        if weight_cache_dir is not None:
            params.weight_cache_dir = _lib.encode_path(weight_cache_dir)
        if tokenizer is not None:
            params.tokenizer_path = _lib.encode_path(tokenizer)
        h = c_void_p()
        missing = next((p for p in (path, tokenizer) if p is not None and not os.path.exists(p)), path)
        _lib.check(_lib.gfn_model_load(_lib.encode_path(path), ctypes.byref(params), ctypes.byref(h)), missing)
        return cls(h, path)

    def __repr__(self) -> str:
        if self.closed:
            return "<gfnlm.Model (closed)>"
        c = self.config
        where = f" from {os.fspath(self.path)!r}" if self.path is not None else ""
        return (f"<gfnlm.Model {c['arch']} n_layer={c['n_layer']} n_embd={c['n_embd']} vocab_size={c['vocab_size']}"
                f"{where}>")

    def close(self) -> None:
        """Frees the model (its tokenizer too). Idempotent."""
        if self._h:
            if self.tokenizer is not None:
                self.tokenizer._h = None
            _lib.gfn_model_free(self._h)
        self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass


    @property
    def config(self) -> dict:
        """The architecture: arch, activation, n_layer, n_head, head_dim, n_embd, n_inner, vocab_size, n_positions,
        rotary_dim, layer_norm_eps, rotary_base, tied_head, head_bias."""
        if self._config is None:
            c = _lib.ModelConfig()
            c.size = ctypes.sizeof(_lib.ModelConfig)
            _lib.check(_lib.gfn_model_config_get(self._handle(), ctypes.byref(c)))
            self._config = {
                "arch": c.arch.decode(), "activation": c.activation.decode(), "n_layer": c.n_layer,
                "n_head": c.n_head, "head_dim": c.head_dim, "n_embd": c.n_embd, "n_inner": c.n_inner,
                "vocab_size": c.vocab_size, "n_positions": c.n_positions, "rotary_dim": c.rotary_dim,
                "layer_norm_eps": c.layer_norm_eps, "rotary_base": c.rotary_base,
                "tied_head": bool(c.tied_head), "head_bias": bool(c.head_bias),
            }
        return dict(self._config)

    def _ids(self, x):
        if isinstance(x, str):
            if self.tokenizer is None:
                raise _lib.GfnError(-1, "this model has no tokenizer: pass token ids")
            return self.tokenizer.encode(x)
        return [_lib.checked_int(i, what="token id") for i in x]

    def logits(self, ids: TextOrIds | Sequence[TextOrIds], attention_mask: Sequence | None = None,
               adapter: LoRA | None = None) -> np.ndarray:
        """Logits as float32: [T, V] for one sequence (a list of ids), [B, T, V] for a list of equal-length lists.
        `attention_mask` (same shape) may mark left padding only."""
        single = len(ids) == 0 or not hasattr(ids[0], "__len__")
        rows = [self._ids(ids)] if single else [self._ids(r) for r in ids]
        if not rows or not rows[0]:
            raise _lib.GfnError(-1, "empty input")
        T = len(rows[0])
        if any(len(r) != T for r in rows):
            raise _lib.GfnError(-1, "rows of a batch must have equal length (left-pad them and pass attention_mask)")
        B = len(rows)
        arr = np.ascontiguousarray(np.array(rows, dtype=np.int32))
        mask_ptr = None
        if attention_mask is not None:
            m = np.ascontiguousarray(np.array([attention_mask] if single else attention_mask, dtype=np.int32))
            if m.shape != arr.shape:
                raise _lib.GfnError(-1, f"attention_mask shape {m.shape} differs from ids shape {arr.shape}")
            mask_ptr = m.ctypes.data_as(ctypes.POINTER(c_int32))
        V = self.config["vocab_size"]
        out = np.empty((B, T, V), dtype=np.float32)
        _lib.check(_lib.gfn_model_logits(self._handle(), adapter._handle() if adapter is not None else None,
                                         arr.ctypes.data_as(ctypes.POINTER(c_int32)), B, T, mask_ptr,
                                         out.ctypes.data_as(ctypes.POINTER(c_float)), out.size))
        return out[0] if single else out

    def export_onnx(self, path: PathLike, adapter: LoRA | None = None) -> PathLike:
        """Writes the model as an .onnx file onnxruntime runs, with the adapter's delta merged (None: as loaded)."""
        _lib.check(_lib.gfn_model_export_onnx(self._handle(), adapter._handle() if adapter is not None else None,
                                              _lib.encode_path(path)))
        return path

    # --- generation and scoring ---------------------------------------------------------------------------

    def _stop_ids(self, stop):
        if stop is None:
            return []
        if isinstance(stop, (str, int)):
            stop = [stop]
        out = []
        for s in stop:
            if isinstance(s, str):
                ids = self._ids(s)
                if len(ids) != 1:
                    raise _lib.GfnError(-1, f"stop string {s!r} is not a single token ({ids})")
                out.append(ids[0])
            else:
                out.append(_lib.checked_int(s, what="stop token"))
        return out

    def _decode(self):
        """Sample text. A model may have more rows than its tokenizer has ids (GPT-J: 50400 vs 50257, padding
        rows); such ids, if sampled, show as U+FFFD in the text (the ids themselves are in `tokens`)."""
        tok = self.tokenizer
        if tok is None:
            return None
        V = tok.vocab_size

        def decode(toks):
            toks = list(toks)
            if all(0 <= t < V for t in toks):
                return tok.decode(toks)
            out, run = [], []
            for t in toks:
                if 0 <= t < V:
                    run.append(t)
                    continue
                if run:
                    out.append(tok.decode(run))
                    run = []
                out.append("\ufffd")
            if run:
                out.append(tok.decode(run))
            return "".join(out)
        return decode

    def _sampling_params(self, keep: _Arrays, max_new_tokens: int = 32, temperature: float = 1.0, top_k: int = 0,
                         top_p: float = 1.0, stop: StopTokens | None = None, seed: int = 0, min_new_tokens: int = 0,
                         include_stop: bool = True, allowed: Sequence[int] | None = None,
                         disallowed_penalty: float | None = None, bias: Bias | None = None,
                         adapter: LoRA | None = None) -> _lib.SamplingParams:
        """gfn_sampling_params for generate()'s keyword arguments (arrays kept alive by `keep`)."""
        if stop is None and self.tokenizer is not None and self.tokenizer.eos_id is not None:
            stop = [self.tokenizer.eos_id]
        params = _lib.gfn_sampling_default_params()
        params.max_new_tokens = max_new_tokens
        params.min_new_tokens = min_new_tokens
        params.temperature = temperature
        params.top_k = top_k
        params.top_p = top_p
        params.seed = seed & 0xFFFFFFFFFFFFFFFF
        stops = self._stop_ids(stop)
        if stops:
            arr, k = keep.ids(stops)
            params.stop_tokens = ctypes.cast(arr, ctypes.POINTER(c_int32))
            params.n_stop_tokens = k
        params.include_stop_token = 1 if include_stop else 0
        params.adjust = adjustment(keep, allowed, disallowed_penalty, bias)
        if adapter is not None:
            params.adapter = adapter._handle()
        return params

    def generate(self, prompt: TextOrIds | Sequence[TextOrIds], max_new_tokens: int = 32, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, stop: StopTokens | None = None, seed: int = 0, n: int = 1,
                 min_new_tokens: int = 0, include_stop: bool = True, allowed: Sequence[int] | None = None,
                 disallowed_penalty: float | None = None, bias: Bias | None = None,
                 adapter: LoRA | None = None) -> list[Sample] | list[list[Sample]]:
        """Samples n continuations of a prompt (str or ids), or of each prompt of a list of prompts.
        Returns a list of Sample (one prompt) or a list of such lists (several prompts). temperature 0 = greedy.
        `stop`: stop token(s) as ids or single-token strings (default: the end-of-text token if known).
        `allowed` + `disallowed_penalty` (−inf hard mask, e.g. −99 soft) and `bias` {id: value} change the policy."""
        many = isinstance(prompt, (list, tuple)) and len(prompt) > 0 and not isinstance(prompt[0], int)
        prompts = [self._ids(p) for p in prompt] if many else [self._ids(prompt)]
        n = _lib.checked_int(n, what="n")
        keep = _Arrays()
        params = self._sampling_params(keep, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                                       top_p=top_p, stop=stop, seed=seed, min_new_tokens=min_new_tokens,
                                       include_stop=include_stop, allowed=allowed,
                                       disallowed_penalty=disallowed_penalty, bias=bias, adapter=adapter)
        ptrs = (ctypes.POINTER(c_int32) * len(prompts))()
        lens = (c_int32 * len(prompts))()
        for i, p in enumerate(prompts):
            arr, k = keep.ids(p)
            ptrs[i] = ctypes.cast(arr, ctypes.POINTER(c_int32))
            lens[i] = k
        out = c_void_p()
        ctx = context_for(self)
        _lib.check(_lib.gfn_context_sample(ctx._h, ptrs, lens, len(prompts), n, ctypes.byref(params), ctypes.byref(out)))
        samples = read_samples(out, self._decode())
        if not many:
            return samples
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]

    def score(self, context: TextOrIds | Sequence[TextOrIds], continuation: TextOrIds | Sequence[TextOrIds],
              per_token: bool = False, stop: StopTokens | None = None, allowed: Sequence[int] | None = None,
              disallowed_penalty: float | None = None, bias: Bias | None = None,
              adapter: LoRA | None = None) -> float | tuple | list:
        """log p(continuation | context). With per_token=True returns (total, per-token log-probs, stop log-probs
        after every prefix 0…n), the last two as float32 numpy arrays. Lists of contexts and continuations (same
        length) give lists."""
        call = ScoreCall(self, context, continuation, stop=stop, allowed=allowed,
                         disallowed_penalty=disallowed_penalty, bias=bias, adapter=adapter)
        ctx = context_for(self)
        _lib.check(_lib.gfn_context_score(ctx._h, call.cp, call.cl, call.np_, call.nl, call.n,
                                          ctypes.byref(call.params), call.totals, call.toks, call.stopl))
        return call.results(per_token)

    def beam_search(self, prompt: TextOrIds, num_beams: int = 4, num_return: int = 1, max_new_tokens: int = 32,
                    min_new_tokens: int = 0, length_penalty: float = 1.0, num_groups: int = 1,
                    diversity_penalty: float = 0.0, stop: StopTokens | None = None, include_stop: bool = True,
                    allowed: Sequence[int] | None = None, disallowed_penalty: float | None = None,
                    bias: Bias | None = None, adapter: LoRA | None = None) -> list[Sample]:
        """(Diverse) beam search; returns Samples best first (`score` = ranking score, `logprob` = Σ log p)."""
        ids = self._ids(prompt)
        if stop is None and self.tokenizer is not None and self.tokenizer.eos_id is not None:
            stop = [self.tokenizer.eos_id]
        keep = _Arrays()
        params = _lib.gfn_beam_default_params()
        params.num_beams = num_beams
        params.num_return = num_return
        params.num_groups = num_groups
        params.diversity_penalty = diversity_penalty
        params.length_penalty = length_penalty
        params.max_new_tokens = max_new_tokens
        params.min_new_tokens = min_new_tokens
        stops = self._stop_ids(stop)
        if stops:
            arr, k = keep.ids(stops)
            params.stop_tokens = ctypes.cast(arr, ctypes.POINTER(c_int32))
            params.n_stop_tokens = k
        params.include_stop_token = 1 if include_stop else 0
        params.adjust = adjustment(keep, allowed, disallowed_penalty, bias)
        if adapter is not None:
            params.adapter = adapter._handle()
        arr, k = keep.ids(ids)
        out = c_void_p()
        ctx = context_for(self)
        _lib.check(_lib.gfn_context_beam_search(ctx._h, arr, k, ctypes.byref(params), ctypes.byref(out)))
        return read_samples(out, self._decode())


class ScoreCall:
    """The C arguments of one scoring call (Model.score, Batcher.submit_score) and the reading of its results."""

    def __init__(self, model: Model, context, continuation, stop=None, allowed=None, disallowed_penalty=None,
                 bias=None, adapter=None):
        self.many = isinstance(context, (list, tuple)) and len(context) > 0 and not isinstance(context[0], int)
        ctxs = [model._ids(c) for c in context] if self.many else [model._ids(context)]
        self.conts = [model._ids(c) for c in continuation] if self.many else [model._ids(continuation)]
        if len(ctxs) != len(self.conts):
            raise _lib.GfnError(-1, "contexts and continuations differ in number")
        keep = self.keep = _Arrays()
        params = self.params = _lib.gfn_score_default_params()
        stops = model._stop_ids(stop)
        if stops:
            arr, k = keep.ids(stops)
            params.stop_tokens = ctypes.cast(arr, ctypes.POINTER(c_int32))
            params.n_stop_tokens = k
        params.adjust = adjustment(keep, allowed, disallowed_penalty, bias)
        if adapter is not None:
            params.adapter = adapter._handle()
        n = self.n = len(ctxs)
        self.cp = (ctypes.POINTER(c_int32) * n)()
        self.cl = (c_int32 * n)()
        self.np_ = (ctypes.POINTER(c_int32) * n)()
        self.nl = (c_int32 * n)()
        for i in range(n):
            a, k = keep.ids(ctxs[i]); self.cp[i] = ctypes.cast(a, ctypes.POINTER(c_int32)); self.cl[i] = k
            b, k2 = keep.ids(self.conts[i]); self.np_[i] = ctypes.cast(b, ctypes.POINTER(c_int32)); self.nl[i] = k2
        self.totals = (ctypes.c_double * n)()
        ntok = sum(len(c) for c in self.conts)
        self.toks = (c_float * max(1, ntok))()
        self.stopl = (c_float * (ntok + n))()

    def results(self, per_token: bool):
        """What Model.score returns, from the filled arrays."""
        results = []
        t = s = 0
        for i in range(self.n):
            L = len(self.conts[i])
            if per_token:
                results.append((self.totals[i], np.array(self.toks[t:t + L], dtype=np.float32),
                                np.array(self.stopl[s:s + L + 1], dtype=np.float32)))
            else:
                results.append(self.totals[i])
            t += L
            s += L + 1
        return results if self.many else results[0]
