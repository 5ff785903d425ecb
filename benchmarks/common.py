"""Workloads, inputs, timing and memory helpers shared by the benchmark workers. Standard library + numpy only."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = HERE / "models"
GPT2 = MODELS / "gpt2-small"
ONNX_PATH = GPT2 / "model.onnx"            # legacy opset 17, (input_ids, attention_mask) -> logits
ONNX_PAST_PATH = GPT2 / "past" / "model.onnx"
HF_DIR = GPT2 / "hf"
TOKENIZER_DIR = REPO / "Tests" / "Fixtures" / "tokenizer"   # GPT-2 vocab.json + merges.txt (the rng reward)
VOCAB_JSON = TOKENIZER_DIR / "vocab.json"

VOCAB = 50257
EOS = 50256
N_LAYER, N_HEAD, HEAD_DIM = 12, 12, 64

# --- workloads (issues 2, 3, 4, 5, 7) -------------------------------------------------------------------------
PREFILL_B, PREFILL_T = 16, 64                 # full logits [16, 64, V]
DECODE_BATCHES = (1, 8, 32)                   # n samples of one 16-token prompt
DECODE_PROMPT, DECODE_NEW = 16, 32            # 32 new tokens each, never stopping early
SCORE_PAIRS, SCORE_CTX, SCORE_CONT = 32, 32, 32
LORA_B, LORA_T = 8, 32                        # one LoRA step: 8 x 32 tokens, forward + backward + AdamW
LORA_R, LORA_ALPHA, LORA_DROPOUT = 512, 32, 0.1
LORA_TARGETS = ["c_attn"]
LORA_LR = 5e-4
# GFlowNet random-number configuration: 8 rows x grad_acc 8, <= 5 tokens, min_len 1, τ = 1
RNG_PROMPT = [464, 1708, 318, 257, 4738, 18253, 7428, 42096, 1022, 657, 290, 1802, 25, 220]
RNG_BSZ, RNG_GRAD_ACC, RNG_MAX_LEN, RNG_MIN_LEN = 8, 8, 5, 1


def ids(seed: int, shape) -> "np.ndarray":
    """Deterministic token ids in [0, EOS) (never the end-of-text token), int64."""
    import numpy as np
    return np.random.default_rng(seed).integers(0, EOS, size=shape, dtype=np.int64)


def prefill_ids():
    return ids(1001, (PREFILL_B, PREFILL_T))


def decode_prompt():
    return ids(1002, (DECODE_PROMPT,))


def score_pairs():
    return ids(1003, (SCORE_PAIRS, SCORE_CTX)), ids(1004, (SCORE_PAIRS, SCORE_CONT))


def lora_batch():
    return ids(1005, (LORA_B, LORA_T))


def number_token_ids():
    """Ids of the single-token strings "0".."99" (the rng reward's permitted first tokens), from the committed
    GPT-2 vocabulary; digits are their own byte-level symbols."""
    import json
    vocab = json.loads(VOCAB_JSON.read_text())
    return sorted(vocab[str(i)] for i in range(100) if str(i) in vocab)


# --- timing / memory ---------------------------------------------------------------------------------------------

CPU_LOG: list = []   # process CPU seconds of every timed() call, in order (cpu ÷ wall shows contention)


def timed(fn, *a, **k):
    """(wall seconds, result); the process CPU time of the call is appended to CPU_LOG."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = fn(*a, **k)
    t = time.perf_counter() - t0
    CPU_LOG.append(time.process_time() - c0)
    return t, out


def repeat(fn, reps: int, warmup: int = 1):
    """Runs fn() `warmup` times untimed, then `reps` times; returns (wall seconds, CPU seconds) lists."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(reps):
        t, _ = timed(fn)
        walls.append(t)
        cpus.append(CPU_LOG[-1])
    return walls, cpus


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def proc_status_mb(field: str) -> float | None:
    """VmHWM (peak RSS) or VmRSS of this process in MiB, from /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 if field == "VmHWM" else None


def thread_env(n: int) -> dict:
    """Environment for a worker process limited to n threads (OpenBLAS reads its variable at load)."""
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(n)
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def loaded_openblas():
    """(path, corename, config, num_threads) of the libopenblas mapped into this process (not numpy's bundled copy),
    or None."""
    import ctypes
    path = None
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "libopenblas" in os.path.basename(p) and p.startswith("/"):
                    path = p
                    break
    except OSError:
        return None
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        return {"path": path, "core": lib.openblas_get_corename().decode(),
                "config": lib.openblas_get_config().decode(), "num_threads": lib.openblas_get_num_threads()}
    except (OSError, AttributeError):
        return {"path": path}


def loaded_openblas_system():
    """The system libopenblas (the one gfnlm links), queried from this process when gfnlm did not run."""
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("openblas")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        return {"path": name, "core": lib.openblas_get_corename().decode(),
                "config": lib.openblas_get_config().decode()}
    except (OSError, AttributeError):
        return None
