"""gfnlm: GFlowNet fine-tuning and amortized posterior sampling for GPT-2 / GPT-J ONNX exports (ctypes bindings
to libgfnlm.so). The library is found through GFNLM_LIBRARY, next to this package, or in the repository's build/."""
from . import distributed, metrics, rewards
from ._lib import GfnError, check as _check, gfn_abi_version, gfn_version
from .gflownet import GFlowNetTrainer
from .inference import Sample
from .model import Model
from .tokenizer import Tokenizer
from .training import LoRA, SFTTrainer

__all__ = ["GfnError", "Model", "Tokenizer", "LoRA", "SFTTrainer", "GFlowNetTrainer", "Sample", "rewards", "metrics", "distributed",
           "version", "abi_version"]


def version() -> str:
    return gfn_version().decode()


def abi_version() -> int:
    return gfn_abi_version()
