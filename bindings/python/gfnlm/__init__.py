"""gfnlm: GFlowNet fine-tuning and amortized posterior sampling for GPT-2 / GPT-J ONNX exports (ctypes bindings
to libgfnlm). The library is found through GFNLM_LIBRARY, a copy inside this package (wheels), the installed one
(the dynamic loader's paths, pkg-config), or a source checkout's build/; `library_path` says which was loaded."""
import ctypes
from typing import Callable

from . import distributed, metrics, rewards
from ._lib import (BufferTooSmallError, BusyError, CallbackError, CancelledError, FormatError, GfnError, GfnFileNotFoundError,
                   GfnIOError, GfnMemoryError, GfnOverflowError, InternalError, InvalidArgumentError, NumericalError,
                   OutOfRangeError, StateError, UnsupportedError, check as _check, gfn_abi_version, gfn_system_info,
                   gfn_version, library_path)
from .batcher import Batcher, StreamEvent
from .gflownet import GFlowNetTrainer
from .inference import Sample
from .model import Model
from .tokenizer import Tokenizer
from .training import LoRA, SFTTrainer

__all__ = ["GfnError", "Model", "Batcher", "StreamEvent", "BusyError", "Tokenizer", "LoRA", "SFTTrainer", "GFlowNetTrainer", "Sample", "rewards", "metrics", "distributed",
           "version", "abi_version", "system_info", "set_log_handler", "LOG_DEBUG", "LOG_INFO", "LOG_WARN", "LOG_ERROR", "__version__", "library_path",
           "InvalidArgumentError", "GfnIOError", "GfnFileNotFoundError", "FormatError", "UnsupportedError",
           "OutOfRangeError", "GfnOverflowError", "GfnMemoryError", "NumericalError", "CallbackError", "StateError",
           "InternalError", "CancelledError", "BufferTooSmallError"]


def version() -> str:
    """The loaded library's version (GFN_VERSION_STRING)."""
    return gfn_version().decode()


def abi_version() -> int:
    """The loaded library's C ABI version (GFN_ABI_VERSION)."""
    return gfn_abi_version()


def system_info() -> str:
    """One line on what the library runs on (gfn_system_info): the CPU features its kernels dispatch on, the kernel
    each kind of product uses now (after GFNLM_NO_* variables and start-up self-checks), the default thread count
    and the BLAS build. For logs and bug reports; the format may change."""
    n = ctypes.c_size_t()
    cap = 512
    while True:
        buf = ctypes.create_string_buffer(cap)
        st = gfn_system_info(buf, cap, ctypes.byref(n))
        if st == -12 and n.value >= cap:   # GFN_ERR_BUFFER_TOO_SMALL: n holds the length needed
            cap = n.value + 1
            continue
        _check(st)
        return buf.raw[:n.value].decode("utf-8")


#: The loaded library's version, which is also this package's (both come from include/gfnlm.h).
__version__: str = version()


LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR = 0, 1, 2, 3
_log_callback = None   # the ctypes thunk the library calls; must outlive its registration


def set_log_handler(handler: Callable[[int, str], object] | None) -> None:
    """Routes the library's diagnostics (gfn_log_set) to handler(level, message): level is LOG_DEBUG … LOG_ERROR,
    message a str. None restores the library's default (warnings and errors to stderr). Process-wide; the handler
    may be called from any thread and must not call into gfnlm. Example: forward to the logging module with
    set_log_handler(lambda lvl, msg: logging.getLogger("gfnlm").log(10 * (lvl + 1), msg))."""
    global _log_callback
    from . import _lib
    if handler is None:
        _lib.gfn_log_set(ctypes.cast(None, _lib.LOG_FN), None)
        _log_callback = None
        return

    def thunk(level, message, _user_data):
        try:
            handler(int(level), message.decode("utf-8", "replace"))
        except Exception:   # an exception cannot cross the C boundary
            pass

    cb = _lib.LOG_FN(thunk)
    _lib.gfn_log_set(cb, None)
    _log_callback = cb
