"""Raw ctypes layer: finds libgfnlm.so, mirrors include/gfnlm.h (structs, function signatures), turns status codes
into GfnError. The Pythonic classes live in the other modules of this package."""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import operator
import os
import subprocess
from ctypes import (CFUNCTYPE, POINTER, c_char, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t,
                    c_uint32, c_uint64, c_void_p)

ABI_VERSION = 2


class GfnError(RuntimeError):
    """The base of every error gfnlm raises; carries the status code (`status`, a GFN_ERR_* value), its name
    (`name`, e.g. "GFN_ERR_IO") and the library's message (`message`).

    Constructing GfnError(status, message) gives the subclass for that status, each also the standard exception
    Python code expects: InvalidArgumentError and OutOfRangeError are ValueErrors, GfnIOError an OSError
    (GfnFileNotFoundError a FileNotFoundError), GfnMemoryError a MemoryError, UnsupportedError a
    NotImplementedError, NumericalError an ArithmeticError. GfnError itself stays a RuntimeError."""

    def __new__(cls, status: int = -10, message: str = "", filename=None):
        if cls is GfnError:
            cls = _ERRORS.get(status, GfnError)
        base = OSError if issubclass(cls, OSError) else RuntimeError
        return base.__new__(cls, status, message)

    def __init__(self, status: int = -10, message: str = "", filename=None):
        self.status = status
        self.name = _status_name(status)
        self.message = message
        text = f"{message} [{self.name}]" if message else self.name
        RuntimeError.__init__(self, text)
        if isinstance(self, OSError):
            self.errno = errno.ENOENT if isinstance(self, FileNotFoundError) else errno.EIO
            self.strerror = text
            self.filename = None if filename is None else os.fspath(filename)

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        return type(self), (self.status, self.message, getattr(self, "filename", None))


class InvalidArgumentError(GfnError, ValueError):
    """GFN_ERR_INVALID_ARGUMENT: a bad argument (also raised by the bindings' own checks)."""


class GfnIOError(GfnError, OSError):
    """GFN_ERR_IO: a file or directory could not be opened, read or written."""


class GfnFileNotFoundError(GfnIOError, FileNotFoundError):
    """GFN_ERR_IO for a path that does not exist."""


class FormatError(GfnError, ValueError):
    """GFN_ERR_FORMAT: a file is truncated, corrupt or not of the expected format."""


class UnsupportedError(GfnError, NotImplementedError):
    """GFN_ERR_UNSUPPORTED: a well-formed input gfnlm does not support."""


class OutOfRangeError(GfnError, ValueError):
    """GFN_ERR_OUT_OF_RANGE: a token id, length or index outside its valid range."""


class GfnMemoryError(GfnError, MemoryError):
    """GFN_ERR_OUT_OF_MEMORY: an allocation failed or a declared size exceeds a sane bound."""


class NumericalError(GfnError, ArithmeticError):
    """GFN_ERR_NUMERICAL: NaN or infinity where a finite number is required."""


class CallbackError(GfnError):
    """GFN_ERR_CALLBACK: a host callback reported an error (a Python callback's own exception is re-raised
    instead, with this as its context)."""


class StateError(GfnError):
    """GFN_ERR_STATE: an object used in a state that does not allow the call."""


class InternalError(GfnError):
    """GFN_ERR_INTERNAL: a bug in gfnlm."""


class CancelledError(GfnError):
    """GFN_ERR_CANCELLED: a callback asked to stop."""


class BufferTooSmallError(GfnError):
    """GFN_ERR_BUFFER_TOO_SMALL (handled inside the bindings)."""


class BusyError(GfnError):
    """GFN_ERR_BUSY: a bounded queue is full (Batcher.submit with block=False); retry later."""


class GfnOverflowError(OutOfRangeError, OverflowError):
    """A Python int that does not fit the C integer type it is passed as (raised by the bindings instead of letting
    ctypes truncate it: token id 2**40 would silently become 0)."""


_ERRORS = {-1: InvalidArgumentError, -2: GfnIOError, -3: FormatError, -4: UnsupportedError, -5: OutOfRangeError,
           -6: GfnMemoryError, -7: NumericalError, -8: CallbackError, -9: StateError, -10: InternalError,
           -11: CancelledError, -12: BufferTooSmallError, -13: BusyError}
for _cls in set(_ERRORS.values()) | {GfnError, GfnFileNotFoundError, GfnOverflowError}:
    _cls.__module__ = "gfnlm"  # tracebacks show gfnlm.InvalidArgumentError, where users import it from


def _installed_candidates():
    """The installed library: by soname through the dynamic loader (LD_LIBRARY_PATH, ld.so.cache, the default
    directories), what ctypes.util.find_library reports, then pkg-config's libdir for gfnlm. Yields (path, where);
    a None path is a note for the error message (a place that had nothing to offer)."""
    yield f"libgfnlm.so.{ABI_VERSION}", "installed, through the dynamic loader"
    try:
        found = ctypes.util.find_library("gfnlm")
    except Exception:  # pragma: no cover - find_library shells out to ldconfig/gcc/ld
        found = None
    if found:
        yield found, "installed, ctypes.util.find_library"
    else:
        yield None, "ctypes.util.find_library('gfnlm'): nothing found"
    try:
        r = subprocess.run(["pkg-config", "--variable=libdir", "gfnlm"], capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and r.stdout.strip():
            yield os.path.join(r.stdout.strip(), f"libgfnlm.so.{ABI_VERSION}"), "installed, pkg-config's libdir"
        else:
            yield None, "pkg-config --variable=libdir gfnlm: no gfnlm.pc on PKG_CONFIG_PATH"
    except (OSError, subprocess.SubprocessError) as e:
        yield None, f"pkg-config: {e}"


def _candidates():
    """Where the library is looked for, in order: GFNLM_LIBRARY (when set, only there), the copy inside this
    package (wheels), the installed one, and the build/ of a source checkout (developers)."""
    env = os.environ.get("GFNLM_LIBRARY")
    if env:
        yield env, "GFNLM_LIBRARY"
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libgfnlm.so"), "inside the package"
    yield from _installed_candidates()
    root = os.path.abspath(os.path.join(here, "..", "..", ".."))
    dev = os.path.join(root, "build", "libgfnlm.so")
    if os.path.exists(os.path.join(root, "include", "gfnlm.h")):  # a source checkout
        yield dev, "the source checkout's build/"


def _load():
    errors, seen = [], set()
    for path, where in _candidates():
        if path is None:
            errors.append(where)
            continue
        if path in seen:
            continue
        seen.add(path)
        if os.sep in path and not os.path.exists(path):
            errors.append(f"{path} ({where}): not found")
            continue
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path} ({where}): {e}")
            continue
        abi = handle.gfn_abi_version
        abi.restype = c_int32
        if abi() != ABI_VERSION:
            errors.append(f"{path} ({where}): ABI {abi()}, these bindings need ABI {ABI_VERSION}")
            continue
        return handle, path
    hint = ""
    if any("libopenblas" in e for e in errors):
        hint = "\nlibgfnlm needs OpenBLAS from the system: apt-get install libopenblas0"
    raise ImportError("cannot load libgfnlm (set GFNLM_LIBRARY to its path, install it with `make install`, or "
                      "install the wheel from `make wheel`); tried:\n  " + "\n  ".join(errors) + hint)


lib, library_path = _load()

# --- integers: checked, never truncated ---------------------------------------------------------------------

_INT_RANGES = {c_int32: (-2**31, 2**31 - 1), c_uint32: (0, 2**32 - 1), c_int64: (-2**63, 2**63 - 1),
               c_uint64: (0, 2**64 - 1)}


def checked_int(value, ctype=c_int32, what: str = "value") -> int:
    """`value` as a Python int that fits `ctype`: ints and integer-like objects (numpy integers, bool) only; a float
    or a string is a TypeError, an int out of range a GfnOverflowError (also OverflowError and ValueError)."""
    if isinstance(value, (float, str, bytes)):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__} {value!r}") from None
    lo, hi = _INT_RANGES[ctype]
    if not lo <= v <= hi:
        bits = 8 * ctypes.sizeof(ctype)
        kind = "unsigned" if lo == 0 else "signed"
        raise GfnOverflowError(-5, f"{what} {v} does not fit in a {bits}-bit {kind} integer")
    return v


_INT_FIELDS: dict = {}  # struct class -> {integer field: ctype}


class Structure(ctypes.Structure):
    """ctypes.Structure whose integer fields refuse values they cannot hold (ctypes would truncate them)."""

    def __setattr__(self, name, value):
        cls = type(self)
        types = _INT_FIELDS.get(cls)
        if types is None:
            types = _INT_FIELDS[cls] = {n: t for n, t, *_ in cls._fields_ if t in _INT_RANGES}
        t = types.get(name)
        if t is not None:
            value = checked_int(value, t, name)
        super().__setattr__(name, value)


# --- structs -------------------------------------------------------------------------------------------------


class ModelParams(Structure):
    _fields_ = [("size", c_uint32), ("n_threads", c_int32), ("tokenizer_path", c_char_p), ("weight_type", c_int32),
                ("batch_invariant", c_int32), ("reserved", c_int32), ("weight_cache", c_int32),
                ("weight_cache_dir", c_char_p), ("quantize_activations", c_int32)]


GFN_WEIGHT_CACHE_OFF = 0
GFN_WEIGHT_CACHE_READ_WRITE = 1
GFN_WEIGHT_CACHE_READ_ONLY = 2


GFN_WEIGHTS_F32 = 0
GFN_WEIGHTS_BF16 = 1
GFN_WEIGHTS_INT8 = 2
GFN_WEIGHTS_Q4 = 3


class ModelConfig(Structure):
    _fields_ = [("size", c_uint32), ("arch", c_char * 16), ("activation", c_char * 16),
                ("n_layer", c_int32), ("n_head", c_int32), ("head_dim", c_int32), ("n_embd", c_int32),
                ("n_inner", c_int32), ("vocab_size", c_int32), ("n_positions", c_int32), ("rotary_dim", c_int32),
                ("layer_norm_eps", c_float), ("rotary_base", c_float), ("tied_head", c_int32),
                ("head_bias", c_int32)]


class LogitAdjustment(Structure):
    _fields_ = [("size", c_uint32), ("allowed_tokens", POINTER(c_int32)), ("n_allowed_tokens", c_int32), ("disallowed_penalty", c_float),
                ("bias_tokens", POINTER(c_int32)), ("bias_values", POINTER(c_float)), ("n_bias", c_int32)]


class SamplingParams(Structure):
    _fields_ = [("size", c_uint32), ("max_new_tokens", c_int32), ("min_new_tokens", c_int32),
                ("temperature", c_float), ("top_k", c_int32), ("top_p", c_float), ("seed", c_uint64),
                ("stop_tokens", POINTER(c_int32)), ("n_stop_tokens", c_int32), ("include_stop_token", c_int32),
                ("adjust", POINTER(LogitAdjustment)), ("adapter", c_void_p)]


class SampleInfo(Structure):
    _fields_ = [("size", c_uint32), ("prompt_index", c_int32), ("n_tokens", c_int32), ("tokens", POINTER(c_int32)),
                ("token_logprobs", POINTER(c_float)), ("n_steps", c_int32), ("n_stop_tokens", c_int32),
                ("stop_logprobs", POINTER(c_float)), ("logprob", c_double), ("score", c_double),
                ("finish_reason", c_int32)]


class ScoreParams(Structure):
    _fields_ = [("size", c_uint32), ("stop_tokens", POINTER(c_int32)), ("n_stop_tokens", c_int32),
                ("adjust", POINTER(LogitAdjustment)), ("adapter", c_void_p)]


class BeamParams(Structure):
    _fields_ = [("size", c_uint32), ("num_beams", c_int32), ("num_return", c_int32), ("num_groups", c_int32),
                ("diversity_penalty", c_float), ("length_penalty", c_float), ("max_new_tokens", c_int32),
                ("min_new_tokens", c_int32), ("stop_tokens", POINTER(c_int32)), ("n_stop_tokens", c_int32),
                ("include_stop_token", c_int32), ("adjust", POINTER(LogitAdjustment)), ("adapter", c_void_p)]


class LoRAParams(Structure):
    _fields_ = [("size", c_uint32), ("r", c_int32), ("alpha", c_float), ("dropout", c_float), ("targets", c_char_p),
                ("use_rslora", c_int32), ("seed", c_uint64)]


class TrainParams(Structure):
    _fields_ = [("size", c_uint32), ("lr", c_double), ("beta1", c_double), ("beta2", c_double), ("eps", c_double),
                ("weight_decay", c_double), ("warmup_steps", c_int32), ("total_steps", c_int32), ("cosine", c_int32),
                ("max_grad_norm", c_double)]


class SFTStats(Structure):
    _fields_ = [("size", c_uint32), ("loss", c_double), ("perplexity", c_double), ("tokens", c_int32),
                ("step", c_int32), ("grad_norm", c_double), ("learning_rate", c_double), ("applied", c_int32)]


class Prompt(Structure):
    _fields_ = [("size", c_uint32), ("x", POINTER(c_int32)), ("n_x", c_int32), ("y", POINTER(c_int32)), ("n_y", c_int32),
                ("reward_context", POINTER(c_int32)), ("n_reward_context", c_int32), ("weight", c_double)]


class GFlowNetParams(Structure):
    _fields_ = [("size", c_uint32), ("objective", c_int32), ("subtb_lambda", c_double), ("strict_mask", c_int32),
                ("layout", c_int32), ("termination", c_int32), ("min_length", c_int32), ("max_length", c_int32),
                ("adjust", POINTER(LogitAdjustment)), ("calculator", c_int32), ("batch_size", c_int32),
                ("grad_accumulation", c_int32), ("average_accumulation", c_int32), ("train", POINTER(TrainParams)),
                ("logz_lr", c_double), ("logz_init", c_double), ("reward_temp_start", c_double),
                ("reward_temp_end", c_double), ("reward_temp_horizon", c_int32), ("p_on_policy", c_double),
                ("p_replay", c_double), ("temp_low", c_double), ("temp_high", c_double),
                ("buffer_capacity", c_int32), ("buffer_tolerance", c_double), ("buffer_prioritized", c_int32),
                ("lora_dropout", c_int32), ("seed", c_uint64), ("pack_weights", c_int32),
                ("temp_low_end", c_double), ("temp_high_end", c_double), ("temp_horizon", c_int32),
                ("root_flow", c_int32), ("ppo_clip", c_double), ("ppo_epochs", c_int32), ("kl_coef", c_double),
                ("kl_target", c_double), ("kl_horizon", c_double)]


class StepStats(Structure):
    _fields_ = [("size", c_uint32), ("step", c_int32), ("applied", c_int32), ("loss", c_double),
                ("mean_log_r", c_double), ("max_log_r", c_double), ("mean_log_q", c_double),
                ("mean_length", c_double), ("fraction_unique", c_double), ("var_log_r_minus_log_q", c_double),
                ("reward_temperature", c_double), ("learning_rate", c_double), ("grad_norm", c_double),
                ("log_z", c_double), ("on_policy_batches", c_int32), ("tempered_batches", c_int32),
                ("replay_batches", c_int32), ("trajectories", c_int32)]


class ExactResult(Structure):
    _fields_ = [("size", c_uint32), ("n_sequences", c_int32), ("kl_target_q", c_double), ("kl_q_target", c_double),
                ("total_variation", c_double), ("log_z", c_double), ("mass_q", c_double)]


REWARD_FN = CFUNCTYPE(c_int32, c_void_p, c_int32, POINTER(POINTER(c_int32)), POINTER(c_int32), c_int32,
                      POINTER(c_double))
class RolloutParams(Structure):
    _fields_ = [("size", c_uint32), ("termination", c_int32), ("min_length", c_int32), ("max_length", c_int32),
                ("layout", c_int32), ("adjust", POINTER(LogitAdjustment)), ("calculator", c_int32)]


REWARD_TEMPERATURE_FN = CFUNCTYPE(c_int32, c_void_p, c_int32, c_double, POINTER(POINTER(c_int32)), POINTER(c_int32),
                                  c_int32, POINTER(c_double))
PROGRESS_FN = CFUNCTYPE(c_int32, c_void_p, POINTER(StepStats))
LOG_FN = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)
GFN_LOG_DEBUG, GFN_LOG_INFO, GFN_LOG_WARN, GFN_LOG_ERROR = 0, 1, 2, 3


# --- functions -----------------------------------------------------------------------------------------------

def _fn(name, restype, *argtypes):
    """The library function `name` with its C signature. Integer arguments are checked first (ctypes would
    truncate an out-of-range Python int silently)."""
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    ints = [(i, t) for i, t in enumerate(argtypes) if t in _INT_RANGES]
    if not ints:
        return f

    def call(*args):
        for i, t in ints:
            checked_int(args[i], t, f"{name}() argument {i + 1}:")
        return f(*args)
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{name}: the C function (argtypes {f.argtypes}) with integer arguments checked."
    call.argtypes, call.restype, call.c_function = f.argtypes, restype, f
    return call


gfn_version = _fn("gfn_version", c_char_p)
gfn_abi_version = _fn("gfn_abi_version", c_int32)
gfn_system_info = _fn("gfn_system_info", c_int32, c_char_p, c_size_t, POINTER(c_size_t))
gfn_last_error = _fn("gfn_last_error", c_char_p)
gfn_status_name = _fn("gfn_status_name", c_char_p, c_int32)
gfn_log_set = _fn("gfn_log_set", None, LOG_FN, c_void_p)

gfn_tokenizer_load = _fn("gfn_tokenizer_load", c_int32, c_char_p, POINTER(c_void_p))
gfn_tokenizer_free = _fn("gfn_tokenizer_free", None, c_void_p)
gfn_tokenizer_encode = _fn("gfn_tokenizer_encode", c_int32, c_void_p, c_char_p, c_int32, POINTER(c_int32), c_int32,
                           POINTER(c_int32))
gfn_tokenizer_decode = _fn("gfn_tokenizer_decode", c_int32, c_void_p, POINTER(c_int32), c_int32, c_char_p, c_size_t,
                           POINTER(c_size_t))
gfn_tokenizer_vocab_size = _fn("gfn_tokenizer_vocab_size", c_int32, c_void_p, POINTER(c_int32))
gfn_tokenizer_eos = _fn("gfn_tokenizer_eos", c_int32, c_void_p, POINTER(c_int32))

gfn_model_default_params = _fn("gfn_model_default_params", ModelParams)
gfn_model_load = _fn("gfn_model_load", c_int32, c_char_p, POINTER(ModelParams), POINTER(c_void_p))
gfn_model_free = _fn("gfn_model_free", None, c_void_p)
gfn_model_config_get = _fn("gfn_model_config_get", c_int32, c_void_p, POINTER(ModelConfig))
gfn_model_tokenizer = _fn("gfn_model_tokenizer", c_int32, c_void_p, POINTER(c_void_p))
gfn_model_logits = _fn("gfn_model_logits", c_int32, c_void_p, c_void_p, POINTER(c_int32), c_int32, c_int32,
                       POINTER(c_int32), POINTER(c_float), c_size_t)

gfn_context_new = _fn("gfn_context_new", c_int32, c_void_p, POINTER(c_void_p))
gfn_context_free = _fn("gfn_context_free", None, c_void_p)
gfn_logit_default_adjustment = _fn("gfn_logit_default_adjustment", LogitAdjustment)
gfn_sampling_default_params = _fn("gfn_sampling_default_params", SamplingParams)
gfn_context_sample = _fn("gfn_context_sample", c_int32, c_void_p, POINTER(POINTER(c_int32)), POINTER(c_int32),
                         c_int32, c_int32, POINTER(SamplingParams), POINTER(c_void_p))
gfn_samples_count = _fn("gfn_samples_count", c_int32, c_void_p, POINTER(c_int32))
gfn_samples_get = _fn("gfn_samples_get", c_int32, c_void_p, c_int32, POINTER(SampleInfo))
gfn_samples_free = _fn("gfn_samples_free", None, c_void_p)
gfn_score_default_params = _fn("gfn_score_default_params", ScoreParams)
gfn_context_score = _fn("gfn_context_score", c_int32, c_void_p, POINTER(POINTER(c_int32)), POINTER(c_int32),
                        POINTER(POINTER(c_int32)), POINTER(c_int32), c_int32, POINTER(ScoreParams),
                        POINTER(c_double), POINTER(c_float), POINTER(c_float))
gfn_beam_default_params = _fn("gfn_beam_default_params", BeamParams)
gfn_context_beam_search = _fn("gfn_context_beam_search", c_int32, c_void_p, POINTER(c_int32), c_int32,
                              POINTER(BeamParams), POINTER(c_void_p))

gfn_lora_default_params = _fn("gfn_lora_default_params", LoRAParams)
gfn_adapter_new = _fn("gfn_adapter_new", c_int32, c_void_p, POINTER(LoRAParams), POINTER(c_void_p))
gfn_adapter_load = _fn("gfn_adapter_load", c_int32, c_void_p, c_char_p, POINTER(c_void_p))
gfn_adapter_save = _fn("gfn_adapter_save", c_int32, c_void_p, c_char_p)
gfn_adapter_parameter_count = _fn("gfn_adapter_parameter_count", c_int32, c_void_p, POINTER(c_int64))
gfn_adapter_free = _fn("gfn_adapter_free", None, c_void_p)

gfn_model_export_onnx = _fn("gfn_model_export_onnx", c_int32, c_void_p, c_void_p, c_char_p)
gfn_sft_export_onnx = _fn("gfn_sft_export_onnx", c_int32, c_void_p, c_char_p)
gfn_train_default_params = _fn("gfn_train_default_params", TrainParams)
gfn_sft_new = _fn("gfn_sft_new", c_int32, c_void_p, c_void_p, POINTER(TrainParams), POINTER(c_void_p))
_PAIRS = (POINTER(POINTER(c_int32)), POINTER(c_int32), POINTER(POINTER(c_int32)), POINTER(c_int32), c_int32)
gfn_sft_step = _fn("gfn_sft_step", c_int32, c_void_p, *_PAIRS, POINTER(SFTStats))
gfn_sft_evaluate = _fn("gfn_sft_evaluate", c_int32, c_void_p, *_PAIRS, POINTER(SFTStats))
gfn_sft_snapshot_model = _fn("gfn_sft_snapshot_model", c_int32, c_void_p, POINTER(c_void_p))
gfn_sft_set_label_candidates = _fn("gfn_sft_set_label_candidates", c_int32, c_void_p, POINTER(c_int32), c_int32)
gfn_sft_save = _fn("gfn_sft_save", c_int32, c_void_p, c_char_p)
gfn_sft_load = _fn("gfn_sft_load", c_int32, c_void_p, c_char_p)
gfn_sft_free = _fn("gfn_sft_free", None, c_void_p)

gfn_reward_new_callback = _fn("gfn_reward_new_callback", c_int32, REWARD_FN, c_void_p, c_int32, POINTER(c_void_p))
gfn_rollout_default_params = _fn("gfn_rollout_default_params", RolloutParams)
gfn_rollout_sample = _fn("gfn_rollout_sample", c_int32, c_void_p, c_void_p, POINTER(RolloutParams), POINTER(c_int32),
                         c_int32, c_int32, c_float, c_uint64, POINTER(c_void_p))
gfn_reward_new_callback_temperature = _fn("gfn_reward_new_callback_temperature", c_int32, REWARD_TEMPERATURE_FN,
                                          c_void_p, c_int32, POINTER(c_void_p))
gfn_reward_new_lm_likelihood = _fn("gfn_reward_new_lm_likelihood", c_int32, c_void_p, POINTER(c_int32), c_int32,
                                   POINTER(LogitAdjustment), c_int32, POINTER(c_void_p))
gfn_reward_new_next_sentence = _fn("gfn_reward_new_next_sentence", c_int32, c_void_p, c_int32,
                                   POINTER(LogitAdjustment), c_int32, POINTER(c_void_p))
gfn_reward_new_random_integer = _fn("gfn_reward_new_random_integer", c_int32, POINTER(c_int32), c_int32, c_int32,
                                    POINTER(c_void_p))
gfn_reward_evaluate = _fn("gfn_reward_evaluate", c_int32, c_void_p, POINTER(c_int32), c_int32, POINTER(c_int32),
                          c_int32, POINTER(c_int32), c_int32, POINTER(c_double))
gfn_reward_free = _fn("gfn_reward_free", None, c_void_p)

gfn_gflownet_default_params = _fn("gfn_gflownet_default_params", GFlowNetParams)
gfn_gflownet_new = _fn("gfn_gflownet_new", c_int32, c_void_p, c_void_p, c_void_p, POINTER(Prompt), c_int32,
                       POINTER(GFlowNetParams), POINTER(c_void_p))
gfn_gflownet_set_progress = _fn("gfn_gflownet_set_progress", c_int32, c_void_p, PROGRESS_FN, c_void_p)
gfn_gflownet_step = _fn("gfn_gflownet_step", c_int32, c_void_p, POINTER(StepStats))
gfn_gflownet_train = _fn("gfn_gflownet_train", c_int32, c_void_p, c_int32, POINTER(StepStats))
gfn_gflownet_sample = _fn("gfn_gflownet_sample", c_int32, c_void_p, POINTER(c_int32), c_int32, c_int32, c_float,
                          c_uint64, POINTER(c_void_p))
gfn_gflownet_seed_buffer = _fn("gfn_gflownet_seed_buffer", c_int32, c_void_p, c_int32, POINTER(POINTER(c_int32)),
                               POINTER(c_int32), c_int32)
gfn_gflownet_exact = _fn("gfn_gflownet_exact", c_int32, c_void_p, c_int32, POINTER(c_int32), c_int32,
                         POINTER(ExactResult))
gfn_gflownet_save = _fn("gfn_gflownet_save", c_int32, c_void_p, c_char_p)
gfn_gflownet_load = _fn("gfn_gflownet_load", c_int32, c_void_p, c_char_p)
gfn_gflownet_free = _fn("gfn_gflownet_free", None, c_void_p)


# data-parallel training (gfnlm.distributed)
class DistributedParams(Structure):
    _fields_ = [("size", c_uint32), ("rank", c_int32), ("world_size", c_int32), ("allreduce", c_void_p),
                ("user_data", c_void_p), ("exchange_replay", c_int32)]


ALLREDUCE_FN = CFUNCTYPE(c_int32, c_void_p, POINTER(c_float), ctypes.c_int64)
gfn_distributed_default_params = _fn("gfn_distributed_default_params", DistributedParams)
gfn_gflownet_set_distributed = _fn("gfn_gflownet_set_distributed", c_int32, c_void_p, POINTER(DistributedParams))
gfn_sft_set_distributed = _fn("gfn_sft_set_distributed", c_int32, c_void_p, POINTER(DistributedParams))


# serving (gfnlm.Batcher)
class BatcherParams(Structure):
    _fields_ = [("size", c_uint32), ("max_batch", c_int32), ("max_queue", c_int32), ("max_prefill_tokens", c_int32)]


TOKEN_FN = CFUNCTYPE(c_int32, c_void_p, c_int32, c_int32, c_float)
DONE_FN = CFUNCTYPE(None, c_void_p, c_void_p)


class RequestOptions(Structure):
    _fields_ = [("size", c_uint32), ("block", c_int32), ("on_token", TOKEN_FN), ("on_done", DONE_FN),
                ("user_data", c_void_p)]


class BatcherStats(Structure):
    _fields_ = [("size", c_uint32), ("queued", c_int32), ("active_requests", c_int32), ("active_rows", c_int32),
                ("submitted", ctypes.c_int64), ("completed", ctypes.c_int64), ("failed", ctypes.c_int64),
                ("cancelled", ctypes.c_int64), ("rejected", ctypes.c_int64), ("tokens", ctypes.c_int64),
                ("decode_steps", ctypes.c_int64)]


gfn_batcher_default_params = _fn("gfn_batcher_default_params", BatcherParams)
gfn_batcher_new = _fn("gfn_batcher_new", c_int32, c_void_p, POINTER(BatcherParams), POINTER(c_void_p))
gfn_batcher_shutdown = _fn("gfn_batcher_shutdown", c_int32, c_void_p, c_int32)
gfn_batcher_free = _fn("gfn_batcher_free", None, c_void_p)
gfn_request_default_options = _fn("gfn_request_default_options", RequestOptions)
gfn_batcher_submit_sample = _fn("gfn_batcher_submit_sample", c_int32, c_void_p, POINTER(c_int32), c_int32, c_int32,
                                POINTER(SamplingParams), POINTER(RequestOptions), POINTER(c_void_p))
gfn_batcher_submit_score = _fn("gfn_batcher_submit_score", c_int32, c_void_p, POINTER(POINTER(c_int32)),
                               POINTER(c_int32), POINTER(POINTER(c_int32)), POINTER(c_int32), c_int32,
                               POINTER(ScoreParams), POINTER(RequestOptions), POINTER(c_void_p))
gfn_batcher_submit_policy = _fn("gfn_batcher_submit_policy", c_int32, c_void_p, c_void_p, POINTER(c_int32), c_int32,
                                c_int32, c_float, c_uint64, POINTER(RequestOptions), POINTER(c_void_p))
gfn_request_wait = _fn("gfn_request_wait", c_int32, c_void_p, c_int32, POINTER(c_int32))
gfn_request_cancel = _fn("gfn_request_cancel", c_int32, c_void_p)
gfn_request_samples = _fn("gfn_request_samples", c_int32, c_void_p, POINTER(c_void_p))
gfn_request_scores = _fn("gfn_request_scores", c_int32, c_void_p, POINTER(c_double), POINTER(c_float),
                         POINTER(c_float))
gfn_request_free = _fn("gfn_request_free", None, c_void_p)
gfn_batcher_stats_get = _fn("gfn_batcher_stats_get", c_int32, c_void_p, POINTER(BatcherStats))


def _status_name(status: int) -> str:
    return gfn_status_name(status).decode()


def check(status: int, path=None) -> None:
    """Raises the GfnError subclass for `status` with the thread's last error message when status is not GFN_OK.
    `path`: the file or directory the call read; an I/O error on a path that does not exist is a
    FileNotFoundError."""
    if status != 0:
        message = gfn_last_error().decode("utf-8", "replace")
        if status == -2 and path is not None and not os.path.exists(path):
            raise GfnFileNotFoundError(status, message, filename=path)
        raise GfnError(status, message, filename=path)


def encode_path(path) -> bytes:
    return os.fsencode(os.fspath(path))

