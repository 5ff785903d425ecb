"""gfnlm: GFlowNet fine-tuning and amortized posterior sampling for GPT-2 / GPT-J ONNX exports (ctypes bindings
to libgfnlm). The library is found through GFNLM_LIBRARY, a copy inside this package (wheels), the installed one
(the dynamic loader's paths, pkg-config), or a source checkout's build/; `library_path` says which was loaded."""
from . import distributed, metrics, rewards
from ._lib import (BufferTooSmallError, BusyError, CallbackError, CancelledError, FormatError, GfnError, GfnFileNotFoundError,
                   GfnIOError, GfnMemoryError, GfnOverflowError, InternalError, InvalidArgumentError, NumericalError,
                   OutOfRangeError, StateError, UnsupportedError, check as _check, gfn_abi_version, gfn_version,
                   library_path)
from .batcher import Batcher, StreamEvent
from .gflownet import GFlowNetTrainer
from .inference import Sample
from .model import Model
from .tokenizer import Tokenizer
from .training import LoRA, SFTTrainer

__all__ = ["GfnError", "Model", "Batcher", "StreamEvent", "BusyError", "Tokenizer", "LoRA", "SFTTrainer", "GFlowNetTrainer", "Sample", "rewards", "metrics", "distributed",
           "version", "abi_version", "__version__", "library_path",
           "InvalidArgumentError", "GfnIOError", "GfnFileNotFoundError", "FormatError", "UnsupportedError",
           "OutOfRangeError", "GfnOverflowError", "GfnMemoryError", "NumericalError", "CallbackError", "StateError",
           "InternalError", "CancelledError", "BufferTooSmallError"]


def version() -> str:
    """The loaded library's version (GFN_VERSION_STRING)."""
    return gfn_version().decode()


def abi_version() -> int:
    """The loaded library's C ABI version (GFN_ABI_VERSION)."""
    return gfn_abi_version()


#: The loaded library's version, which is also this package's (both come from include/gfnlm.h).
__version__: str = version()
