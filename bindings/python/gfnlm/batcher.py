"""A batching scheduler for services: many threads (or asyncio tasks) submit requests, the library merges them into
shared decoding batches (continuous batching, several adapters in one batch) on its own thread."""
from __future__ import annotations

import asyncio
import ctypes
import itertools
import queue
import threading
from concurrent.futures import Future
from ctypes import c_void_p
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Optional, Union

from . import _lib
from ._handle import Closeable
from .inference import Sample, _Arrays, read_samples
from .model import Model, ScoreCall
from ._types import TextOrIds
from .training import LoRA

if TYPE_CHECKING:  # pragma: no cover
    from .gflownet import GFlowNetTrainer

AdapterRef = Union[LoRA, str, None]
TokenCallback = Optional[Callable[["StreamEvent"], Optional[bool]]]


class StreamEvent(NamedTuple):
    """One token of a streamed request: which sample (0…n−1), the token id, its log q."""
    index: int
    token: int
    logprob: float


class _RequestFuture(Future):
    """A Future whose cancel() also stops the request inside the library."""

    def __init__(self, batcher: "Batcher"):
        super().__init__()
        self._batcher = batcher
        self._request = None

    def cancel(self) -> bool:
        request = self._request
        if request is not None:
            _lib.gfn_request_cancel(request)
        return super().cancel()


class _Pending:
    __slots__ = ("future", "read", "on_token", "handle")

    def __init__(self, future, read, on_token):
        self.future, self.read, self.on_token, self.handle = future, read, on_token, None


class Batcher(Closeable):
    """Serves concurrent requests on one model through the library's scheduler.

    `submit(prompt, **kwargs)` takes Model.generate's keyword arguments (for one prompt) and returns a
    concurrent.futures.Future that resolves to exactly what `model.generate(prompt, **kwargs)` returns — the same
    tokens and log-probabilities, whatever else shares the batch (with the model's default batch_invariant=True).
    `adapter=` is a LoRA or the name given to add_adapter(). A full queue raises BusyError (a GfnError) at once,
    unless block=True. `generate`, `score`, `stream` are the blocking forms; `agenerate` / `ascore` the asyncio
    ones. Use as a context manager: leaving the block drains the queue (close(drain=False) cancels instead).
    Callbacks (on_token, futures' done-callbacks) run on the library's scheduler thread: keep them short."""

    _kind = "batcher"

    def __init__(self, model: Model, max_batch: int = 32, max_queue: int = 256, max_prefill_tokens: int = 512):
        self.model = model
        params = _lib.gfn_batcher_default_params()
        params.max_batch = max_batch
        params.max_queue = max_queue
        params.max_prefill_tokens = max_prefill_tokens
        h = c_void_p()
        _lib.check(_lib.gfn_batcher_new(model._handle(), ctypes.byref(params), ctypes.byref(h)))
        self._h = h
        self.max_batch, self.max_queue = max_batch, max_queue
        self._adapters: dict[str, LoRA] = {}
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._keys = itertools.count(1)
        # One pair of C callbacks for the batcher's life (user_data = the request's key): a ctypes callback must
        # outlive every call into it, which a per-request object could not guarantee.
        self._token_cb = _lib.TOKEN_FN(self._on_token)
        self._done_cb = _lib.DONE_FN(self._on_done)
        self._decode = model._decode()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"max_batch={self.max_batch}, max_queue={self.max_queue}"
        return f"<gfnlm.Batcher {state}, adapters={sorted(self._adapters)}>"

    # --- adapters -------------------------------------------------------------------------------------------

    def add_adapter(self, name: str, adapter: LoRA) -> None:
        """Registers an adapter under a name that requests can give as adapter=name (any time, also under load)."""
        if not isinstance(adapter, LoRA):
            raise TypeError(f"adapter must be a gfnlm.LoRA, got {type(adapter).__name__}")
        self._adapters[name] = adapter

    def remove_adapter(self, name: str) -> LoRA:
        """Unregisters an adapter; requests already submitted with it still complete."""
        try:
            return self._adapters.pop(name)
        except KeyError:
            raise KeyError(f"no adapter named {name!r} (registered: {sorted(self._adapters)})") from None

    @property
    def adapters(self) -> list[str]:
        """The registered adapter names."""
        return sorted(self._adapters)

    def _adapter(self, adapter):
        if adapter is None or isinstance(adapter, LoRA):
            return adapter
        if isinstance(adapter, str):
            try:
                return self._adapters[adapter]
            except KeyError:
                raise _lib.GfnError(-1, f"no adapter named {adapter!r} (registered: {sorted(self._adapters)})") \
                    from None
        raise TypeError(f"adapter must be a gfnlm.LoRA, a registered name or None, got {type(adapter).__name__}")

    # --- submission ------------------------------------------------------------------------------------------

    def _submit(self, call, read, on_token=None, block: bool = False) -> Future:
        """Runs `call(options, out)` (a gfn_batcher_submit_* call) for a new request; `read(request)` turns the
        finished request into the future's result."""
        h = self._handle()
        future = _RequestFuture(self)
        key = next(self._keys)
        pending = _Pending(future, read, on_token)
        with self._lock:
            self._pending[key] = pending
        options = _lib.gfn_request_default_options()
        options.block = 1 if block else 0
        options.on_done = self._done_cb
        if on_token is not None:
            options.on_token = self._token_cb
        options.user_data = key
        out = c_void_p()
        try:
            _lib.check(call(h, ctypes.byref(options), ctypes.byref(out)))
        except BaseException:
            with self._lock:
                self._pending.pop(key, None)
            raise
        with self._lock:
            # on_done may already have run (and freed the request) on the scheduler thread.
            if key in self._pending:
                pending.handle = out.value
                future._request = out.value
        return future

    def submit(self, prompt: TextOrIds, *, n: int = 1, block: bool = False, on_token: TokenCallback = None,
               adapter: AdapterRef = None, **generate_kwargs: Any) -> Future:
        """Queues `n` samples of one prompt (str or ids) with Model.generate's keyword arguments (max_new_tokens,
        temperature, top_k, top_p, stop, seed, min_new_tokens, include_stop, allowed, disallowed_penalty, bias).
        The Future resolves to the list of Sample that model.generate(prompt, n=n, ...) returns.
        `on_token(event: StreamEvent)` (optional) is called for each token as it is produced; returning False
        cancels. Raises BusyError when the queue is full (unless block=True), ValueError-type errors for bad
        arguments."""
        ids = self.model._ids(prompt)
        keep = _Arrays()
        params = self.model._sampling_params(keep, adapter=self._adapter(adapter), **generate_kwargs)
        arr, k = keep.ids(ids)
        n = _lib.checked_int(n, what="n")

        def call(h, options, out):
            return _lib.gfn_batcher_submit_sample(h, arr, k, n, ctypes.byref(params), options, out)
        return self._submit(call, self._read_samples, on_token, block)

    def submit_policy(self, trainer: "GFlowNetTrainer", x: TextOrIds, *, n: int = 1, temperature: float = 1.0,
                      seed: int = 0, block: bool = False, on_token: TokenCallback = None) -> Future:
        """Queues `n` samples Z ~ q(·|X) from a GFlowNetTrainer's policy (its adapter, ⊤, length limits and
        vocabulary rules). Each Sample's token_logprobs are log q per action and logprob = log q(Z | X)."""
        if not getattr(trainer, "_h", None):
            raise TypeError("trainer must be an open gfnlm.GFlowNetTrainer")
        ids = self.model._ids(x)
        keep = _Arrays()
        arr, k = keep.ids(ids)

        def call(h, options, out):
            return _lib.gfn_batcher_submit_policy(h, trainer._h, arr, k, n, temperature,
                                                  seed & 0xFFFFFFFFFFFFFFFF, options, out)
        return self._submit(call, self._read_samples, on_token, block)

    def submit_score(self, context: TextOrIds, continuation: TextOrIds, *, per_token: bool = False,
                     block: bool = False, adapter: AdapterRef = None, **score_kwargs: Any) -> Future:
        """Queues a scoring request; the Future resolves to what model.score(context, continuation, ...) returns."""
        sc = ScoreCall(self.model, context, continuation, adapter=self._adapter(adapter), **score_kwargs)

        def call(h, options, out):
            return _lib.gfn_batcher_submit_score(h, sc.cp, sc.cl, sc.np_, sc.nl, sc.n, ctypes.byref(sc.params),
                                                 options, out)

        def read(request):
            _lib.check(_lib.gfn_request_scores(request, sc.totals, sc.toks, sc.stopl))
            return sc.results(per_token)
        return self._submit(call, read, None, block)

    # --- blocking and asyncio forms ----------------------------------------------------------------------------

    @staticmethod
    def _wait(future: Future):
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def generate(self, prompt: TextOrIds, **kwargs: Any) -> list[Sample]:
        """submit(...).result(): blocks until the samples are ready (Ctrl-C cancels the request)."""
        return self._wait(self.submit(prompt, **kwargs))

    def score(self, context: TextOrIds, continuation: TextOrIds, **kwargs: Any) -> Any:
        """submit_score(...).result()."""
        return self._wait(self.submit_score(context, continuation, **kwargs))

    async def agenerate(self, prompt: TextOrIds, **kwargs: Any) -> list[Sample]:
        """await-able generate (the request runs on the library's thread; the event loop is not blocked)."""
        return await asyncio.wrap_future(self.submit(prompt, **kwargs))

    async def ascore(self, context: TextOrIds, continuation: TextOrIds, **kwargs: Any) -> Any:
        """await-able score."""
        return await asyncio.wrap_future(self.submit_score(context, continuation, **kwargs))

    def stream(self, prompt: TextOrIds, **kwargs: Any) -> Iterator[StreamEvent]:
        """Yields a StreamEvent per token as it is produced (for n > 1 the samples' tokens interleave), then ends;
        raises the request's error if it failed. Closing the iterator early cancels the request."""
        events: queue.Queue = queue.Queue()
        done = object()
        future = self.submit(prompt, on_token=events.put, **kwargs)
        future.add_done_callback(lambda _: events.put(done))
        try:
            while True:
                item = events.get()
                if item is done:
                    break
                yield item
            future.result()
        finally:
            if not future.done():
                future.cancel()

    # --- callbacks (scheduler thread) ----------------------------------------------------------------------------

    def _read_samples(self, request) -> list[Sample]:
        out = c_void_p()
        _lib.check(_lib.gfn_request_samples(request, ctypes.byref(out)))
        return read_samples(out, self._decode)

    def _on_token(self, user_data, index, token, logprob) -> int:
        with self._lock:
            pending = self._pending.get(user_data or 0)
        if pending is None or pending.on_token is None:
            return 0
        try:
            return 1 if pending.on_token(StreamEvent(index, token, logprob)) is False else 0
        except BaseException:  # an exception in the host's callback cancels its request, never the batch
            return 1

    def _on_done(self, user_data, request) -> None:
        with self._lock:
            pending = self._pending.pop(user_data or 0, None)
        if pending is None:
            return
        future = pending.future
        try:
            result = pending.read(request)
        except BaseException as e:  # the request's own error (cancelled, numerical, …)
            if not future.cancelled():
                try:
                    future.set_exception(e)
                except Exception:
                    pass
        else:
            if not future.cancelled():
                try:
                    future.set_result(result)
                except Exception:
                    pass
        finally:
            future._request = None
            _lib.gfn_request_free(request)

    # --- state ------------------------------------------------------------------------------------------------

    def stats(self) -> dict:
        """Queue depth, active requests and rows, and counters since the start."""
        s = _lib.BatcherStats()
        s.size = ctypes.sizeof(_lib.BatcherStats)
        _lib.check(_lib.gfn_batcher_stats_get(self._handle(), ctypes.byref(s)))
        return {name: getattr(s, name) for name, _ in _lib.BatcherStats._fields_ if name != "size"}

    def shutdown(self, drain: bool = True) -> None:
        """Stops accepting requests; drain=True completes everything queued, False cancels it. Idempotent."""
        if self._h:
            _lib.check(_lib.gfn_batcher_shutdown(self._h, 1 if drain else 0))

    def close(self, drain: bool = False) -> None:
        """Shuts down (cancelling what is queued unless drain=True) and frees the batcher."""
        if self._h:
            self.shutdown(drain)
            _lib.gfn_batcher_free(self._h)
            self._h = None

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(drain=exc_type is None)

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass

