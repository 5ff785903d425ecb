"""Raw ctypes layer: finds libgfnlm.so, mirrors include/gfnlm.h (structs, function signatures), turns status codes
into GfnError. The Pythonic classes live in the other modules of this package."""
from __future__ import annotations

import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int32, c_size_t,
                    c_uint32, c_uint64, c_void_p)

ABI_VERSION = 1


class GfnError(RuntimeError):
    """Raised for every failure reported by libgfnlm; carries the status code and the library's message."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.name = _status_name(status)
        super().__init__(f"{message} [{self.name}]" if message else self.name)


def _candidates():
    env = os.environ.get("GFNLM_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libgfnlm.so")
    root = os.path.abspath(os.path.join(here, "..", "..", ".."))
    yield os.path.join(root, "build", "libgfnlm.so")
    yield "libgfnlm.so"


def _load():
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append(f"{path}: not found")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:  # pragma: no cover - depends on the machine
            errors.append(f"{path}: {e}")
    raise ImportError("cannot load libgfnlm.so (set GFNLM_LIBRARY to its path, or run `make`):\n  "
                      + "\n  ".join(errors))


lib = _load()

# --- structs -------------------------------------------------------------------------------------------------


class ModelParams(Structure):
    _fields_ = [("size", c_uint32), ("n_threads", c_int32), ("tokenizer_path", c_char_p), ("weight_type", c_int32)]


GFN_WEIGHTS_F32 = 0
GFN_WEIGHTS_BF16 = 1


class ModelConfig(Structure):
    _fields_ = [("size", c_uint32), ("arch", c_char * 16), ("activation", c_char * 16),
                ("n_layer", c_int32), ("n_head", c_int32), ("head_dim", c_int32), ("n_embd", c_int32),
                ("n_inner", c_int32), ("vocab_size", c_int32), ("n_positions", c_int32), ("rotary_dim", c_int32),
                ("layer_norm_eps", c_float), ("rotary_base", c_float), ("tied_head", c_int32),
                ("head_bias", c_int32)]


class LogitAdjustment(Structure):
    _fields_ = [("allowed_tokens", POINTER(c_int32)), ("n_allowed_tokens", c_int32), ("disallowed_penalty", c_float),
                ("bias_tokens", POINTER(c_int32)), ("bias_values", POINTER(c_float)), ("n_bias", c_int32)]


class SamplingParams(Structure):
    _fields_ = [("size", c_uint32), ("max_new_tokens", c_int32), ("min_new_tokens", c_int32),
                ("temperature", c_float), ("top_k", c_int32), ("top_p", c_float), ("seed", c_uint64),
                ("stop_tokens", POINTER(c_int32)), ("n_stop_tokens", c_int32), ("include_stop_token", c_int32),
                ("adjust", LogitAdjustment), ("adapter", c_void_p)]


class SampleInfo(Structure):
    _fields_ = [("size", c_uint32), ("prompt_index", c_int32), ("n_tokens", c_int32), ("tokens", POINTER(c_int32)),
                ("token_logprobs", POINTER(c_float)), ("n_steps", c_int32), ("n_stop_tokens", c_int32),
                ("stop_logprobs", POINTER(c_float)), ("logprob", c_double), ("score", c_double),
                ("finish_reason", c_int32)]


class ScoreParams(Structure):
    _fields_ = [("size", c_uint32), ("stop_tokens", POINTER(c_int32)), ("n_stop_tokens", c_int32),
                ("adjust", LogitAdjustment), ("adapter", c_void_p)]


class BeamParams(Structure):
    _fields_ = [("size", c_uint32), ("num_beams", c_int32), ("num_return", c_int32), ("num_groups", c_int32),
                ("diversity_penalty", c_float), ("length_penalty", c_float), ("max_new_tokens", c_int32),
                ("min_new_tokens", c_int32), ("stop_tokens", POINTER(c_int32)), ("n_stop_tokens", c_int32),
                ("include_stop_token", c_int32), ("adjust", LogitAdjustment), ("adapter", c_void_p)]


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
    _fields_ = [("x", POINTER(c_int32)), ("n_x", c_int32), ("y", POINTER(c_int32)), ("n_y", c_int32),
                ("reward_context", POINTER(c_int32)), ("n_reward_context", c_int32), ("weight", c_double)]


class GFlowNetParams(Structure):
    _fields_ = [("size", c_uint32), ("objective", c_int32), ("subtb_lambda", c_double), ("strict_mask", c_int32),
                ("layout", c_int32), ("termination", c_int32), ("min_length", c_int32), ("max_length", c_int32),
                ("adjust", LogitAdjustment), ("calculator", c_int32), ("batch_size", c_int32),
                ("grad_accumulation", c_int32), ("average_accumulation", c_int32), ("train", TrainParams),
                ("logz_lr", c_double), ("logz_init", c_double), ("reward_temp_start", c_double),
                ("reward_temp_end", c_double), ("reward_temp_horizon", c_int32), ("p_on_policy", c_double),
                ("p_replay", c_double), ("temp_low", c_double), ("temp_high", c_double),
                ("buffer_capacity", c_int32), ("buffer_tolerance", c_double), ("buffer_prioritized", c_int32),
                ("lora_dropout", c_int32), ("seed", c_uint64), ("pack_weights", c_int32),
                ("temp_low_end", c_double), ("temp_high_end", c_double), ("temp_horizon", c_int32),
                ("root_flow", c_int32)]


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
                ("layout", c_int32), ("adjust", LogitAdjustment), ("calculator", c_int32)]


REWARD_TEMPERATURE_FN = CFUNCTYPE(c_int32, c_void_p, c_int32, c_double, POINTER(POINTER(c_int32)), POINTER(c_int32),
                                  c_int32, POINTER(c_double))
PROGRESS_FN = CFUNCTYPE(c_int32, c_void_p, POINTER(StepStats))


# --- functions -----------------------------------------------------------------------------------------------

def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


gfn_version = _fn("gfn_version", c_char_p)
gfn_abi_version = _fn("gfn_abi_version", c_int32)
gfn_last_error = _fn("gfn_last_error", c_char_p)
gfn_status_name = _fn("gfn_status_name", c_char_p, c_int32)

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
gfn_model_logits = _fn("gfn_model_logits", c_int32, c_void_p, POINTER(c_int32), c_int32, c_int32, POINTER(c_int32),
                       POINTER(c_float), c_size_t)

gfn_context_new = _fn("gfn_context_new", c_int32, c_void_p, POINTER(c_void_p))
gfn_context_free = _fn("gfn_context_free", None, c_void_p)
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
gfn_adapter_parameter_count = _fn("gfn_adapter_parameter_count", c_int32, c_void_p, POINTER(ctypes.c_int64))
gfn_adapter_free = _fn("gfn_adapter_free", None, c_void_p)
gfn_model_logits_adapter = _fn("gfn_model_logits_adapter", c_int32, c_void_p, c_void_p, POINTER(c_int32), c_int32,
                               c_int32, POINTER(c_int32), POINTER(c_float), c_size_t)

gfn_model_export_onnx = _fn("gfn_model_export_onnx", c_int32, c_void_p, c_void_p, c_char_p)
gfn_sft_export_onnx = _fn("gfn_sft_export_onnx", c_int32, c_void_p, c_char_p)
gfn_train_default_params = _fn("gfn_train_default_params", TrainParams)
gfn_sft_new = _fn("gfn_sft_new", c_int32, c_void_p, c_void_p, POINTER(TrainParams), POINTER(c_void_p))
_PAIRS = (POINTER(POINTER(c_int32)), POINTER(c_int32), POINTER(POINTER(c_int32)), POINTER(c_int32), c_int32)
gfn_sft_step = _fn("gfn_sft_step", c_int32, c_void_p, *_PAIRS, POINTER(SFTStats))
gfn_sft_evaluate = _fn("gfn_sft_evaluate", c_int32, c_void_p, *_PAIRS, POINTER(SFTStats))
gfn_sft_snapshot_model = _fn("gfn_sft_snapshot_model", c_int32, c_void_p, POINTER(c_void_p))
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


def _status_name(status: int) -> str:
    return gfn_status_name(status).decode()


def check(status: int) -> None:
    """Raises GfnError with the thread's last error message when status is not GFN_OK."""
    if status != 0:
        raise GfnError(status, gfn_last_error().decode("utf-8", "replace"))


def encode_path(path) -> bytes:
    return os.fsencode(os.fspath(path))


if gfn_abi_version() != ABI_VERSION:  # pragma: no cover
    raise ImportError(f"libgfnlm ABI {gfn_abi_version()} does not match these bindings (ABI {ABI_VERSION})")
