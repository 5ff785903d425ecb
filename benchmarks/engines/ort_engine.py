"""onnxruntime peer: InferenceSession on the legacy export (prefill, scoring) and a decoding loop on the export with
past key values, sampling in numpy. LoRA and GFlowNet steps are not an onnxruntime workload."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

import common as C
from engines import NotAvailable


def log_softmax_gather(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits)[targets] along the last axis, in float32 numpy (what a host program does)."""
    m = logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)) + m
    return np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0] - lse[..., 0]


def sample_rows(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token per row from softmax(logits) (temperature 1, no truncation)."""
    m = logits.max(axis=-1, keepdims=True)
    p = np.exp(logits - m)
    c = np.cumsum(p, axis=-1)
    u = rng.random((logits.shape[0], 1), dtype=np.float32) * c[:, -1:]
    return np.minimum((c < u).sum(axis=-1), logits.shape[-1] - 1).astype(np.int64)


class Engine:
    name = "onnxruntime"

    def __init__(self, threads: int):
        self.threads = threads
        self.sess = None
        self.past = None

    def _options(self):
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return so

    def info(self) -> dict:
        return {"onnxruntime": ort.__version__, "providers": ["CPUExecutionProvider"]}

    # --- inference ---------------------------------------------------------------------------------------------
    def load(self) -> float:
        t, self.sess = C.timed(ort.InferenceSession, str(C.ONNX_PATH), self._options(),
                               providers=["CPUExecutionProvider"])
        return t

    def load_decoder(self) -> float:
        t, self.past = C.timed(ort.InferenceSession, str(C.ONNX_PAST_PATH), self._options(),
                               providers=["CPUExecutionProvider"])
        self.out_names = [o.name for o in self.past.get_outputs()]
        return t

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        out = self.sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        return out[:, -1, :8].copy()

    def decode(self, prompt: np.ndarray, batch: int, new_tokens: int, seed: int) -> int:
        rng = np.random.default_rng(seed)
        ids = np.repeat(prompt[None, :], batch, axis=0)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        empty = np.zeros((batch, C.N_HEAD, 0, C.HEAD_DIM), dtype=np.float32)
        for i in range(C.N_LAYER):
            feeds[f"past_key_values.{i}.key"] = empty
            feeds[f"past_key_values.{i}.value"] = empty
        total = ids.shape[1]
        generated = 0
        while True:
            outs = dict(zip(self.out_names, self.past.run(None, feeds)))
            tok = sample_rows(outs["logits"][:, -1, :], rng)
            generated += batch
            if generated >= batch * new_tokens:
                return generated
            total += 1
            feeds = {"input_ids": tok[:, None], "attention_mask": np.ones((batch, total), dtype=np.int64)}
            for i in range(C.N_LAYER):
                feeds[f"past_key_values.{i}.key"] = outs[f"present.{i}.key"]
                feeds[f"past_key_values.{i}.value"] = outs[f"present.{i}.value"]

    def score(self, ctx: np.ndarray, cont: np.ndarray) -> list:
        ids = np.concatenate([ctx, cont], axis=1)
        logits = self.sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        n = ctx.shape[1]
        lp = log_softmax_gather(logits[:, n - 1:-1, :], cont)
        return lp.astype(np.float64).sum(axis=1).tolist()

    # --- training ----------------------------------------------------------------------------------------------
    def lora_setup(self):
        raise NotAvailable("not an onnxruntime workload")

    def gfn_setup(self):
        raise NotAvailable("not an onnxruntime workload")
