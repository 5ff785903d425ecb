"""Sampling, scoring and beam search through a per-thread inference context."""
from __future__ import annotations

import ctypes
import math
import threading
from ctypes import POINTER, c_double, c_float, c_int32, c_void_p
from dataclasses import dataclass, field

from . import _lib


@dataclass
class Sample:
    """One generated continuation. `token_logprobs` are log q(token | prefix) under the untempered policy with its
    soft penalties; `stop_logprobs[t][j]` is log q(stop_j | prefix before step t)."""
    tokens: list
    token_logprobs: list
    stop_logprobs: list
    logprob: float
    finish_reason: str
    prompt_index: int = 0
    score: float = 0.0
    text: str | None = None


class _Arrays:
    """Keeps ctypes arrays alive for the duration of a call."""

    def __init__(self):
        self.keep = []

    def ids(self, xs):
        xs = [int(x) for x in xs]
        arr = (c_int32 * max(1, len(xs)))(*xs)
        self.keep.append(arr)
        return arr, len(xs)

    def floats(self, xs):
        arr = (c_float * max(1, len(xs)))(*[float(x) for x in xs])
        self.keep.append(arr)
        return arr


def fill_adjustment(adj, keep: _Arrays, allowed=None, disallowed_penalty=None, bias=None):
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


def read_samples(handle, decode=None) -> list:
    n = c_int32()
    try:
        _lib.check(_lib.gfn_samples_count(handle, ctypes.byref(n)))
        out = []
        for i in range(n.value):
            info = _lib.SampleInfo()
            info.size = ctypes.sizeof(_lib.SampleInfo)
            _lib.check(_lib.gfn_samples_get(handle, i, ctypes.byref(info)))
            toks = list(info.tokens[:info.n_tokens])
            lps = list(info.token_logprobs[:info.n_tokens])
            ns = info.n_stop_tokens
            flat = list(info.stop_logprobs[:info.n_steps * ns]) if ns else []
            stops = [flat[t * ns:(t + 1) * ns] for t in range(info.n_steps)] if ns else []
            s = Sample(tokens=toks, token_logprobs=lps, stop_logprobs=stops, logprob=info.logprob,
                       finish_reason="stop" if info.finish_reason == 0 else "length",
                       prompt_index=info.prompt_index, score=info.score)
            if decode is not None:
                s.text = decode(toks)
            out.append(s)
        return out
    finally:
        _lib.gfn_samples_free(handle)


class Context:
    """Per-thread inference state over a shared model (scratch memory, caches)."""

    def __init__(self, model):
        self.model = model
        h = c_void_p()
        _lib.check(_lib.gfn_context_new(model._handle(), ctypes.byref(h)))
        self._h = h

    def close(self):
        if self._h:
            _lib.gfn_context_free(self._h)
        self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass


_local = threading.local()


def context_for(model) -> Context:
    """One context per (thread, model)."""
    cache = getattr(_local, "contexts", None)
    if cache is None:
        cache = _local.contexts = {}
    ctx = cache.get(id(model))
    if ctx is None or ctx.model is not model:
        ctx = cache[id(model)] = Context(model)
    return ctx
