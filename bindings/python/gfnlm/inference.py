"""Sampling, scoring and beam search through a per-thread inference context."""
from __future__ import annotations

import ctypes
import numbers
import threading
from ctypes import POINTER, c_double, c_float, c_int32, c_void_p
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from . import _lib
from ._handle import Closeable

if TYPE_CHECKING:
    from .model import Model


@dataclass(eq=False)
class Sample:
    """One generated continuation. `token_logprobs` (float32 array, one per token) are log q(token | prefix) under
    the untempered policy with its soft penalties; `stop_logprobs[t, j]` (float32 array [steps, stop tokens]) is
    log q(stop_j | prefix before step t)."""
    tokens: list
    token_logprobs: np.ndarray
    stop_logprobs: np.ndarray
    logprob: float
    finish_reason: str
    prompt_index: int = 0
    score: float = 0.0
    text: str | None = None


class _Arrays:
    """Keeps ctypes arrays alive for the duration of a call."""

    def __init__(self):
        self.keep = []

    def ids(self, xs, what: str = "token id"):
        """Token ids (ints or numpy integers; a float, a string or an int outside int32 is refused)."""
        xs = [_lib.checked_int(x, c_int32, what) for x in xs]
        arr = (c_int32 * max(1, len(xs)))(*xs)
        self.keep.append(arr)
        return arr, len(xs)

    def floats(self, xs):
        arr = (c_float * max(1, len(xs)))(*[_real(x, "value") for x in xs])
        self.keep.append(arr)
        return arr


def _real(v, what: str) -> float:
    """A real number as float; strings (even "1.5") and other non-numbers are a TypeError."""
    if isinstance(v, (str, bytes)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(v).__name__} {v!r}")
    return float(v)


def adjustment(keep: _Arrays, allowed: Sequence[int] | None = None, disallowed_penalty: float | None = None,
               bias: Mapping[int, float] | None = None) -> ctypes._Pointer | None:
    """A pointer to a gfn_logit_adjustment (kept alive in `keep`) with the allowed vocabulary, the penalty of the
    others and per-token logit bias, for a parameter struct's `adjust`; None (NULL: no adjustment) when none is
    given."""
    if allowed is None and disallowed_penalty is None and not bias:
        return None
    adj = _lib.gfn_logit_default_adjustment()
    keep.keep.append(adj)
    if allowed is not None:
        arr, n = keep.ids(sorted(set(int(a) for a in allowed)))
        adj.allowed_tokens = ctypes.cast(arr, POINTER(c_int32))
        adj.n_allowed_tokens = n
    if disallowed_penalty is not None:
        adj.disallowed_penalty = float(disallowed_penalty)
    if bias:
        ids, n = keep.ids(list(bias.keys()))
        adj.bias_tokens = ctypes.cast(ids, POINTER(c_int32))
        adj.bias_values = ctypes.cast(keep.floats(list(bias.values())), POINTER(c_float))
        adj.n_bias = n
    return ctypes.pointer(adj)


def read_samples(handle: c_void_p, decode: Callable[[list], str] | None = None) -> list[Sample]:
    """The samples of a gfn_samples handle as Sample objects (text decoded with `decode`); frees the handle."""
    n = c_int32()
    try:
        _lib.check(_lib.gfn_samples_count(handle, ctypes.byref(n)))
        out = []
        for i in range(n.value):
            info = _lib.SampleInfo()
            info.size = ctypes.sizeof(_lib.SampleInfo)
            _lib.check(_lib.gfn_samples_get(handle, i, ctypes.byref(info)))
            toks = list(info.tokens[:info.n_tokens])
            lps = np.array(info.token_logprobs[:info.n_tokens], dtype=np.float32)
            ns = info.n_stop_tokens
            if ns:
                stops = np.array(info.stop_logprobs[:info.n_steps * ns], dtype=np.float32).reshape(info.n_steps, ns)
            else:
                stops = np.empty((0, 0), dtype=np.float32)
            s = Sample(tokens=toks, token_logprobs=lps, stop_logprobs=stops, logprob=info.logprob,
                       finish_reason="stop" if info.finish_reason == 0 else "length",
                       prompt_index=info.prompt_index, score=info.score)
            if decode is not None:
                s.text = decode(toks)
            out.append(s)
        return out
    finally:
        _lib.gfn_samples_free(handle)


class Context(Closeable):
    """Per-thread inference state over a shared model (scratch memory, caches)."""

    def __init__(self, model: Model):
        self.model = model
        h = c_void_p()
        _lib.check(_lib.gfn_context_new(model._handle(), ctypes.byref(h)))
        self._h = h

    def __repr__(self) -> str:
        return f"<gfnlm.inference.Context{' (closed)' if self.closed else ''}>"

    def close(self) -> None:
        """Frees the context. Idempotent."""
        if self._h:
            _lib.gfn_context_free(self._h)
        self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass


_local = threading.local()


def context_for(model: Model) -> Context:
    """One context per (thread, model)."""
    cache = getattr(_local, "contexts", None)
    if cache is None:
        cache = _local.contexts = {}
    ctx = cache.get(id(model))
    if ctx is None or ctx.model is not model:
        ctx = cache[id(model)] = Context(model)
    return ctx
