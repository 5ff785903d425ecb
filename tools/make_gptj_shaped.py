#!/usr/bin/env python3
"""Write a GPT-J-shaped ONNX model with random weights: numpy + onnx only (no torch, no transformers).

    python3 tools/make_gptj_shaped.py --out big-models/gptj-6b-shaped                 # GPT-J-6B shape, fp16
    python3 tools/make_gptj_shaped.py --preset tiny --out /tmp/gptj-tiny --verify      # seconds; checked in ORT

Output folder:

    model.onnx        the graph (opset 17, ir_version 8), inputs input_ids, attention_mask INT64 [batch, sequence],
                      output logits FLOAT [batch, sequence, vocab]; small (the rotary table is inline)
    model.onnx.data   every initializer of >= 1024 bytes, in ONE file: external_data location/offset/length,
                      offsets aligned to --align bytes (default 4096; the gaps are zero bytes)
    config.json       Hugging Face GPTJConfig keys (+ "_generator": how this file was made)
    vocab.json, merges.txt   GPT-2 BPE files copied from --tokenizer (default Tests/Fixtures/tokenizer), when the
                      model has at least as many vocabulary rows as the tokenizer has ids (not for --preset tiny)

GPT-J-6B shape (the default preset, EleutherAI/gpt-j-6b config.json): vocab_size 50400, n_embd 4096, n_layer 28,
n_head 16 (head_dim 256), rotary_dim 64 (interleaved "rotate_every_two", base 10000), n_inner null (4 x 4096 =
16384), n_positions 2048, activation gelu_new, layer_norm_epsilon 1e-5, parallel attention + MLP residual with one
LayerNorm per block, q/k/v/out_proj without bias, fc_in/fc_out with bias, untied lm_head with a bias. 6.05e9
parameters: 12.1 GB as fp16.

The graph follows what torch's legacy exporter writes for GPTJForCausalLM (the gptj-tiny
fixtures made by tools/make_fixtures.py), built op by op with onnx.helper:
  * position_ids = clip(cumsum(attention_mask) - 1, 0) inside the graph (left padding works as in generate());
  * token embedding = Gather(transformer.wte.weight [V, E], input_ids);
  * rotary sin|cos table: ONE fp32 `Constant` node [n_positions, rotary_dim] = [sin(p f) | cos(p f)],
    f_j = 10000^(-2j/R), gathered by position_ids (legacy exports keep it as a Constant node too);
  * per block: LayerNormalization (ln_1) feeding q, k, v (three MatMuls with anonymous transposed weights
    `onnx::MatMul_N` [in, out], no bias) AND fc_in (parallel residual); Reshape [0, 0, n_head, head_dim];
    rotary on the first rotary_dim features (Slice/step-2 Slice/Neg/Concat, interleaved), scores in fp32 divided
    by sqrt(head_dim), + causal/padding mask (Trilu/And/Where), Softmax, probs x v, out_proj;
    fc_in + bias -> gelu_new (Mul 0.5, Pow 3, Mul 0.044715, Mul sqrt(2/pi), Tanh, Add 1) -> fc_out + bias;
    x + attn + mlp;
  * ln_f, lm_head MatMul [E, V] + Add(lm_head.bias).
With --dtype float16 (default) every weight is FLOAT16 and the graph computes in fp16 like a `model.half()`
export, except the rotary/attention-score part, which runs in fp32 (as GPT-J itself does), and logits are cast to
FLOAT at the end. --dtype float32 gives an all-fp32 model.

Weights (seeded, deterministic): matrices and embeddings N(0, --std), biases N(0, --std), LayerNorm weights
1 + N(0, 0.05), LayerNorm biases N(0, 0.02). Tensors of up to 1M elements are drawn i.i.d. per tensor; bigger ones
are written in 1M-element chunks, each a window at a random offset of one 32M-value N(0, std) pool (so the 12 GB
of a 6B model are written at disk speed; values are random-looking but not independent between chunks). Nothing
is ever held whole in memory: tensors are appended to model.onnx.data as they are made (6B: peak RSS 0.38 GB,
62 s on a shared 2-core machine).

--verify (needs onnxruntime) runs the written model in onnxruntime on a fixed input and compares it with a
plain-numpy GPT-J forward that reads the weights back from model.onnx.data (for small models only).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TOKENIZER = REPO / "Tests" / "Fixtures" / "tokenizer"
FORMAT_VERSION = 1

PRESETS = {
    # EleutherAI/gpt-j-6b
    "6b": dict(vocab=50400, embd=4096, layers=28, heads=16, rotary_dim=64, inner=None, positions=2048),
    # a fast test model with the same structure (head_dim 16, rotary_dim 8 < head_dim, untied head with bias)
    "tiny": dict(vocab=512, embd=64, layers=2, heads=4, rotary_dim=8, inner=None, positions=64),
}

POOL = 1 << 25          # values in the shared N(0, 1) pool for big tensors
CHUNK = 1 << 20         # elements per window / per i.i.d. draw
INLINE_BELOW = 1024     # bytes: smaller tensors stay inline (onnx's size_threshold default)
NEG_INF32 = float(np.finfo(np.float32).min)


def log(*a):
    print("[make_gptj_shaped]", *a, flush=True)


# --- weights, streamed to one external data file ---------------------------------------------------------------

class DataWriter:
    """Appends tensors to one external-data file and returns initializers that point into it."""

    def __init__(self, path: Path, location: str, align: int, seed: int, np_dtype):
        self.f = open(path, "wb")
        self.location = location
        self.align = max(1, align)
        self.rng = np.random.default_rng(seed)
        self.np_dtype = np.dtype(np_dtype).newbyteorder("<")
        self.onnx_dtype = helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
        self.pos = 0
        self._pool = None
        self._pools = {}
        self.written = 0

    def close(self):
        self.f.close()

    def _pool_for(self, std: float) -> np.ndarray:
        if std not in self._pools:
            if self._pool is None:
                self._pool = np.random.default_rng(self.rng.integers(1 << 62)).standard_normal(POOL, dtype=np.float32)
            self._pools[std] = (self._pool * np.float32(std)).astype(self.np_dtype)
        return self._pools[std]

    def _chunks(self, n: int, mean: float, std: float):
        """Yields arrays of the target dtype, CHUNK elements at most, n elements in total."""
        if n <= CHUNK or std == 0:
            done = 0
            while done < n:
                m = min(CHUNK, n - done)
                x = self.rng.standard_normal(m, dtype=np.float32) * np.float32(std) + np.float32(mean)
                yield x.astype(self.np_dtype)
                done += m
            return
        pool = self._pool_for(std)
        assert mean == 0
        done = 0
        while done < n:
            m = min(CHUNK, n - done)
            off = int(self.rng.integers(0, POOL - m))
            yield pool[off:off + m]
            done += m

    def tensor(self, name: str, shape, mean: float = 0.0, std: float = 0.02) -> TensorProto:
        n = int(np.prod(shape))
        nbytes = n * self.np_dtype.itemsize
        t = TensorProto()
        t.name = name
        t.dims.extend(int(d) for d in shape)
        t.data_type = self.onnx_dtype
        if nbytes < INLINE_BELOW:
            t.raw_data = np.concatenate(list(self._chunks(n, mean, std))).tobytes()
            return t
        pad = (-self.pos) % self.align
        if pad:
            self.f.write(b"\0" * pad)
            self.pos += pad
        offset = self.pos
        for c in self._chunks(n, mean, std):
            self.f.write(memoryview(np.ascontiguousarray(c)).cast("B"))
        self.pos += nbytes
        self.written += nbytes
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(offset)), ("length", str(nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t


# --- the graph ---------------------------------------------------------------------------------------------------

class Graph:
    def __init__(self):
        self.nodes = []
        self.inits = []
        self._consts = {}
        self._n = 0
        self._matmul_id = 700

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"/{prefix}_{self._n}"

    def op(self, op_type: str, inputs, prefix: str = None, **attrs) -> str:
        out = self.name(prefix or op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out.lstrip("/") + "_node", **attrs))
        return out

    def const(self, value, dtype) -> str:
        """A Constant node (shared by value): ints as INT64, floats in `dtype`."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            out = self.name("Constant")
            self.nodes.append(helper.make_node("Constant", [], [out], name=out.lstrip("/") + "_node",
                                               value=onnx.numpy_helper.from_array(arr, out.lstrip("/"))))
            self._consts[key] = out
        return self._consts[key]

    def ints(self, *v) -> str:
        return self.const(list(v), np.int64)

    def matmul_name(self) -> str:
        self._matmul_id += 1
        return f"onnx::MatMul_{self._matmul_id}"


def rotary_table(P: int, R: int, base: float = 10000.0) -> np.ndarray:
    """GPT-J's create_sinusoidal_positions: [P, R] = [sin(p f) | cos(p f)], f_j = base^(-2j/R), fp32."""
    inv_freq = 1.0 / (base ** (np.arange(0, R, 2, dtype=np.int64).astype(np.float32) / R))
    ang = np.einsum("i,j->ij", np.arange(P, dtype=np.int64).astype(np.float32), inv_freq).astype(np.float32)
    return np.concatenate([np.sin(ang), np.cos(ang)], axis=1).astype(np.float32)


def build(cfg: dict, out_dir: Path, dtype: str, std: float, seed: int, align: int, opset: int):
    V, E, L, H, R, P = cfg["vocab"], cfg["embd"], cfg["layers"], cfg["heads"], cfg["rotary_dim"], cfg["positions"]
    D = E // H
    I = cfg["inner"] or 4 * E
    assert E % H == 0 and R % 2 == 0 and 0 < R <= D, "need n_embd % n_head == 0 and an even rotary_dim <= head_dim"
    assert R != E, "rotary_dim must differ from n_embd"
    half = dtype == "float16"
    np_dtype = np.float16 if half else np.float32
    wdt = TensorProto.FLOAT16 if half else TensorProto.FLOAT

    data_name = "model.onnx.data"
    w = DataWriter(out_dir / data_name, data_name, align, seed, np_dtype)
    g = Graph()

    def init(t: TensorProto) -> str:
        g.inits.append(t)
        return t.name

    def linear_w(shape_in_out):
        return init(w.tensor(g.matmul_name(), shape_in_out, std=std))

    def wconst(x):                      # a scalar in the weight dtype
        return g.const(x, np_dtype)

    def f32(x):
        return g.const(x, np.float32)

    # inputs, positions, mask
    ids, mask = "input_ids", "attention_mask"
    csum = g.op("CumSum", [mask, g.const(1, np.int64)], "CumSum")
    pos = g.op("Clip", [g.op("Sub", [csum, g.const(1, np.int64)]), g.const(0, np.int64)])        # [b, s]
    seq = g.op("Gather", [g.op("Shape", [ids]), g.const(1, np.int64)], axis=0)                     # scalar s
    s1 = g.op("Unsqueeze", [seq, g.ints(0)])
    ones = g.op("ConstantOfShape", [g.op("Concat", [s1, s1], axis=0)],
                value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))
    causal = g.op("Unsqueeze", [g.op("Cast", [g.op("Trilu", [ones], upper=0)], to=TensorProto.BOOL), g.ints(0, 1)])
    keep = g.op("Cast", [g.op("Unsqueeze", [mask, g.ints(1, 2)])], to=TensorProto.BOOL)           # [b, 1, 1, s]
    allowed = g.op("And", [causal, keep])                                                          # [b, 1, s, s]
    attn_bias = g.op("Where", [allowed, f32(0.0), f32(NEG_INF32)], "mask")                         # fp32

    # rotary sin/cos, gathered by position: [b, s, 1, R] each, fp32, repeat_interleave(2) on the last axis
    table = g.op("Constant", [], "rotary_table", value=onnx.numpy_helper.from_array(rotary_table(P, R), "rotary_table"))
    sincos = g.op("Gather", [table, pos], axis=0)                                                  # [b, s, R]

    def interleave(x):
        x5 = g.op("Unsqueeze", [x, g.ints(2, 4)])                                                  # [b, s, 1, R/2, 1]
        x5 = g.op("Expand", [x5, g.ints(1, 1, 1, 1, 2)])
        return g.op("Reshape", [x5, g.ints(0, 0, 1, R)])
    sin = interleave(g.op("Slice", [sincos, g.ints(0), g.ints(R // 2), g.ints(2)]))
    cos = interleave(g.op("Slice", [sincos, g.ints(R // 2), g.ints(R), g.ints(2)]))

    wte = init(w.tensor("transformer.wte.weight", [V, E], std=std))
    x = g.op("Gather", [wte, ids], "embedding", axis=0)                                            # [b, s, E]

    def layer_norm(x, prefix):
        gamma = init(w.tensor(prefix + ".weight", [E], mean=1.0, std=0.05))
        beta = init(w.tensor(prefix + ".bias", [E], std=0.02))
        return g.op("LayerNormalization", [x, gamma, beta], "LayerNormalization", axis=-1, epsilon=1e-5)

    def rotate(x4):
        """GPT-J apply_rotary_pos_emb on the first R features of [b, s, H, D] (fp32)."""
        rot = g.op("Slice", [x4, g.ints(0), g.ints(R), g.ints(3)]) if R < D else x4
        x1 = g.op("Slice", [rot, g.ints(0), g.ints(R), g.ints(3), g.ints(2)])                    # x[..., ::2]
        x2 = g.op("Slice", [rot, g.ints(1), g.ints(R), g.ints(3), g.ints(2)])                    # x[..., 1::2]
        st = g.op("Concat", [g.op("Unsqueeze", [g.op("Neg", [x2]), g.ints(4)]),
                             g.op("Unsqueeze", [x1, g.ints(4)])], axis=4)                         # stack(-x2, x1)
        rot_every_two = g.op("Reshape", [st, g.ints(0, 0, H, R)])
        y = g.op("Add", [g.op("Mul", [rot, cos]), g.op("Mul", [rot_every_two, sin])])
        if R < D:
            y = g.op("Concat", [y, g.op("Slice", [x4, g.ints(R), g.ints(D), g.ints(3)])], axis=3)
        return y

    def to_f32(x):
        return g.op("Cast", [x], to=TensorProto.FLOAT) if half else x

    for i in range(L):
        p = f"transformer.h.{i}"
        h = layer_norm(x, f"{p}.ln_1")
        q = g.op("MatMul", [h, linear_w([E, E])], "q_proj")
        k = g.op("MatMul", [h, linear_w([E, E])], "k_proj")
        v = g.op("MatMul", [h, linear_w([E, E])], "v_proj")
        heads = g.ints(0, 0, H, D)
        q4 = rotate(to_f32(g.op("Reshape", [q, heads])))
        k4 = rotate(to_f32(g.op("Reshape", [k, heads])))
        v4 = g.op("Transpose", [g.op("Reshape", [v, heads])], perm=[0, 2, 1, 3])                  # [b, H, s, D]
        scores = g.op("MatMul", [g.op("Transpose", [q4], perm=[0, 2, 1, 3]),
                                 g.op("Transpose", [k4], perm=[0, 2, 3, 1])], "scores")          # [b, H, s, s]
        scores = g.op("Add", [g.op("Div", [scores, f32(math.sqrt(D))]), attn_bias])
        probs = g.op("Softmax", [scores], "Softmax", axis=-1)
        if half:
            probs = g.op("Cast", [probs], to=TensorProto.FLOAT16)
        ctx = g.op("MatMul", [probs, v4], "context")
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), g.ints(0, 0, E)])
        attn = g.op("MatMul", [ctx, linear_w([E, E])], "out_proj")
        # MLP on the same ln_1 output (parallel residual)
        fc_in_w = linear_w([E, I])
        a = g.op("Add", [g.op("MatMul", [h, fc_in_w], "fc_in"), init(w.tensor(f"{p}.mlp.fc_in.bias", [I], std=std))])
        inner = g.op("Mul", [g.op("Add", [a, g.op("Mul", [g.op("Pow", [a, wconst(3.0)]), wconst(0.044715)])]),
                             wconst(math.sqrt(2.0 / math.pi))])
        act = g.op("Mul", [g.op("Mul", [a, wconst(0.5)]), g.op("Add", [g.op("Tanh", [inner]), wconst(1.0)])], "gelu")
        mlp = g.op("Add", [g.op("MatMul", [act, linear_w([I, E])], "fc_out"),
                           init(w.tensor(f"{p}.mlp.fc_out.bias", [E], std=std))])
        x = g.op("Add", [g.op("Add", [attn, mlp]), x], "residual")
        if (i + 1) % 4 == 0 or i + 1 == L:
            log(f"  layer {i + 1}/{L}: {w.written / 1e9:.2f} GB written")

    h = layer_norm(x, "transformer.ln_f")
    logits = g.op("Add", [g.op("MatMul", [h, linear_w([E, V])], "lm_head"), init(w.tensor("lm_head.bias", [V], std=std))])
    if half:
        logits = g.op("Cast", [logits], to=TensorProto.FLOAT)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits_identity"))
    w.f.flush()
    os.fsync(w.f.fileno())
    w.close()

    graph = helper.make_graph(
        g.nodes, "gptj_shaped",
        [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", V])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="gfnlm tools/make_gptj_shaped.py", producer_version=str(FORMAT_VERSION))
    model.ir_version = 8
    onnx.save_model(model, str(out_dir / "model.onnx"))
    onnx.checker.check_model(str(out_dir / "model.onnx"))     # the graph + that the data file exists (not read)
    n_params = V * E * 2 + V + E * 2 + L * (4 * E * E + 2 * E * I + I + E + 2 * E)
    return dict(V=V, E=E, L=L, H=H, D=D, R=R, P=P, I=I, params=n_params, nodes=len(g.nodes), initializers=len(g.inits))


def hf_config(cfg: dict, dtype: str, gen: dict) -> dict:
    return {
        "activation_function": "gelu_new", "architectures": ["GPTJForCausalLM"], "attn_pdrop": 0.0,
        "bos_token_id": 50256, "embd_pdrop": 0.0, "eos_token_id": 50256, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gptj", "n_embd": cfg["embd"], "n_head": cfg["heads"],
        "n_inner": cfg["inner"], "n_layer": cfg["layers"], "n_positions": cfg["positions"], "resid_pdrop": 0.0,
        "rotary": True, "rotary_dim": cfg["rotary_dim"], "tie_word_embeddings": False, "torch_dtype": dtype,
        "use_cache": True, "vocab_size": cfg["vocab"], "_generator": gen,
    }


# --- verification (small models): onnxruntime vs a numpy GPT-J forward --------------------------------------------

def load_weights(out_dir: Path) -> dict:
    m = onnx.load(str(out_dir / "model.onnx"), load_external_data=True)
    return {t.name: onnx.numpy_helper.to_array(t).astype(np.float32) for t in m.graph.initializer}, m


def numpy_forward(out_dir: Path, cfg: dict, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """GPT-J (HF modeling_gptj semantics) in fp32 numpy, weights read by graph order (q, k, v, out, fc_in, fc_out
    per layer, then the head), independent of the graph's ops."""
    W, m = load_weights(out_dir)
    V, E, L, H, R = cfg["vocab"], cfg["embd"], cfg["layers"], cfg["heads"], cfg["rotary_dim"]
    D = E // H
    mats = [t.name for t in m.graph.initializer if t.name.startswith("onnx::MatMul_")]
    assert len(mats) == 6 * L + 1
    table = rotary_table(cfg["positions"], R)
    B, T = ids.shape
    pos = np.clip(np.cumsum(mask, 1) - 1, 0, None)
    sin, cos = np.repeat(table[pos][..., :R // 2], 2, -1)[:, :, None], np.repeat(table[pos][..., R // 2:], 2, -1)[:, :, None]

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * W[p + ".weight"] + W[p + ".bias"]

    def rope(x):                                    # [B, T, H, D]
        r = x[..., :R]
        rot = np.stack([-r[..., 1::2], r[..., ::2]], -1).reshape(r.shape)
        return np.concatenate([r * cos + rot * sin, x[..., R:]], -1)

    allowed = np.tril(np.ones((T, T), bool))[None, None] & (mask[:, None, None, :] != 0)
    x = W["transformer.wte.weight"][ids]
    for i in range(L):
        wq, wk, wv, wo, wi, wf = (W[n] for n in mats[6 * i:6 * i + 6])
        h = ln(x, f"transformer.h.{i}.ln_1")
        q = rope((h @ wq).reshape(B, T, H, D)).transpose(0, 2, 1, 3)
        k = rope((h @ wk).reshape(B, T, H, D)).transpose(0, 2, 1, 3)
        v = (h @ wv).reshape(B, T, H, D).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(np.float32(D))
        s = np.where(allowed, s, np.finfo(np.float32).min)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        attn = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, E) @ wo
        a = h @ wi + W[f"transformer.h.{i}.mlp.fc_in.bias"]
        a = 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))
        x = x + attn + a @ wf + W[f"transformer.h.{i}.mlp.fc_out.bias"]
    return ln(x, "transformer.ln_f") @ W[mats[-1]] + W["lm_head.bias"]


def verify(out_dir: Path, cfg: dict, dtype: str) -> float:
    import onnxruntime as ort
    onnx.checker.check_model(str(out_dir / "model.onnx"), full_check=True)
    rng = np.random.default_rng(7)
    T = min(12, cfg["positions"])
    ids = rng.integers(0, cfg["vocab"], size=(2, T), dtype=np.int64)
    mask = np.ones((2, T), np.int64)
    mask[1, :3] = 0                                  # left padding in row 1
    sess = ort.InferenceSession(str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    want = numpy_forward(out_dir, cfg, ids, mask)
    valid = mask.astype(bool)
    diff = float(np.abs(got - want)[valid].max())
    tol = 5e-2 if dtype == "float16" else 1e-4
    scale = float(np.abs(want[valid]).max())
    log(f"verify: onnxruntime vs numpy GPT-J forward, max abs diff {diff:.3g} (logits up to {scale:.3g}, tol {tol})")
    if not np.isfinite(got).all() or diff > tol:
        raise SystemExit("verification FAILED")
    return diff


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="6b")
    for k, help_ in (("vocab", "vocab_size"), ("embd", "n_embd"), ("layers", "n_layer"), ("heads", "n_head"),
                     ("rotary-dim", "rotary_dim"), ("inner", "n_inner (default 4 n_embd)"),
                     ("positions", "n_positions")):
        ap.add_argument("--" + k, type=int, default=None, help=f"override the preset's {help_}")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--std", type=float, default=0.02, help="std of the weight matrices, embeddings and biases")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--align", type=int, default=4096, help="alignment of tensor offsets in model.onnx.data")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER,
                    help="folder with GPT-2 vocab.json + merges.txt to copy beside the model ('' = none)")
    ap.add_argument("--force", action="store_true", help="overwrite an existing model in --out")
    ap.add_argument("--verify", action="store_true", help="check the model in onnxruntime against numpy (small models)")
    a = ap.parse_args(argv)

    cfg = dict(PRESETS[a.preset])
    for k in ("vocab", "embd", "layers", "heads", "rotary_dim", "inner", "positions"):
        v = getattr(a, k)
        if v is not None:
            cfg[k] = v
    out = a.out
    if (out / "model.onnx").exists() and not a.force:
        raise SystemExit(f"{out}/model.onnx exists (use --force to overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    for f in ("model.onnx", "model.onnx.data"):
        (out / f).unlink(missing_ok=True)
    gen = dict(format=FORMAT_VERSION, preset=a.preset, dtype=a.dtype, std=a.std, seed=a.seed, align=a.align,
               opset=a.opset, **{k: cfg[k] for k in cfg})
    t0 = time.perf_counter()
    log(f"writing {out}: {cfg}, {a.dtype}")
    info = build(cfg, out, a.dtype, a.std, a.seed, a.align, a.opset)
    dt = time.perf_counter() - t0
    (out / "config.json").write_text(json.dumps(hf_config(cfg, a.dtype, gen), indent=2) + "\n")
    if str(a.tokenizer) and a.tokenizer.name:
        n_tok = len(json.loads((a.tokenizer / "vocab.json").read_text()))
        if n_tok <= cfg["vocab"]:
            for f in ("vocab.json", "merges.txt"):
                shutil.copyfile(a.tokenizer / f, out / f)
        else:
            log(f"no tokenizer copied: it defines {n_tok} ids, more than the model's {cfg['vocab']} rows")
    size = (out / "model.onnx").stat().st_size, (out / "model.onnx.data").stat().st_size
    log(f"done in {dt:.1f} s: {info['params'] / 1e9:.3f}e9 parameters, {info['nodes']} nodes, "
        f"{info['initializers']} initializers; model.onnx {size[0]:,} B, model.onnx.data {size[1]:,} B")
    if a.verify:
        verify(out, cfg, a.dtype)
    print(f"seconds={dt:.1f} params={info['params']} onnx_bytes={size[0]} data_bytes={size[1]}")


if __name__ == "__main__":
    sys.exit(main())
