"""tools/make_gptj_shaped.py (the GPT-J-6B-shaped generator) at tiny sizes: gfnlm loads what it writes, recovers
the configuration from the graph, and gives onnxruntime's logits.

The generator needs numpy + onnx; the comparison needs onnxruntime. Skipped when either is missing.
"""
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gfnlm
from conftest import ROOT

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SCRIPT = os.path.join(ROOT, "tools", "make_gptj_shaped.py")

# (flags, file dtype, gfnlm weights, tolerance): the tiny preset, and shapes that move every hyper-parameter away
# from the preset (head_dim 32 with rotary_dim 16; rotary over the whole head; n_inner not 4 n_embd); the fp16 file
# also loaded with bf16 weights (the large-model path: rounding to bf16 costs ~1e-2 on these logits).
CASES = [
    (["--preset", "tiny"], "float32", "fp32", 1e-4),
    (["--preset", "tiny"], "float16", "fp32", 5e-3),
    (["--preset", "tiny"], "float16", "bf16", 5e-2),
    (["--preset", "tiny", "--layers", "3", "--embd", "96", "--heads", "3", "--rotary-dim", "16", "--inner", "200",
      "--vocab", "300", "--positions", "40"], "float32", "fp32", 1e-4),
    (["--preset", "tiny", "--embd", "32", "--heads", "4", "--rotary-dim", "8"], "float32", "fp32", 1e-4),
]
HAS_BF16 = "weights" in inspect.signature(gfnlm.Model.load).parameters


def _make(tmp_path, flags, dtype, extra=()):
    out = tmp_path / "model"
    cmd = [sys.executable, SCRIPT, "--out", str(out), "--dtype", dtype, "--std", "0.1", "--align", "4096",
           *flags, *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


@pytest.mark.parametrize("flags,dtype,weights,tol", CASES,
                         ids=["tiny-fp32", "tiny-fp16", "tiny-fp16-as-bf16", "odd-shape", "full-rotary"])
def test_generated_model_loads_and_matches_onnxruntime(tmp_path, flags, dtype, weights, tol):
    if weights != "fp32" and not HAS_BF16:
        pytest.skip("these bindings have no Model.load(weights=...)")
    out, _ = _make(tmp_path, flags, dtype)
    hf = json.loads((out / "config.json").read_text())

    # One external data file; every big tensor points into it at a 4 KiB-aligned offset, in range.
    proto = onnx.load(str(out / "model.onnx"), load_external_data=False)
    data_size = (out / "model.onnx.data").stat().st_size
    n_external = 0
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            kv = {e.key: e.value for e in t.external_data}
            assert kv["location"] == "model.onnx.data"
            off, length = int(kv["offset"]), int(kv["length"])
            assert off % 4096 == 0 and off + length <= data_size
            n_external += 1
            assert t.data_type == (onnx.TensorProto.FLOAT16 if dtype == "float16" else onnx.TensorProto.FLOAT)
    assert n_external >= 6 * hf["n_layer"] + 2          # every matrix, the embedding, the head

    model = gfnlm.Model.load(str(out), **({} if weights == "fp32" else {"weights": weights}))
    c = model.config
    E, H = hf["n_embd"], hf["n_head"]
    assert (c["arch"], c["activation"], c["tied_head"], c["head_bias"]) == ("gptj", "gelu_new", False, True)
    assert (c["n_layer"], c["n_embd"], c["n_head"], c["head_dim"]) == (hf["n_layer"], E, H, E // H)
    assert (c["vocab_size"], c["n_positions"], c["rotary_dim"]) == (hf["vocab_size"], hf["n_positions"], hf["rotary_dim"])
    assert c["n_inner"] == (hf["n_inner"] or 4 * E)
    assert c["rotary_base"] == 10000.0

    rng = np.random.default_rng(3)
    T = 10
    ids = rng.integers(0, hf["vocab_size"], size=(2, T), dtype=np.int64)
    mask = np.ones((2, T), np.int64)
    mask[1, :4] = 0                                    # left padding: positions come from the mask in both
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    got = model.logits(ids.tolist(), attention_mask=mask.tolist())
    valid = mask.astype(bool)
    assert np.isfinite(got[valid]).all()
    diff = np.abs(got - want)[valid].max()
    # The tolerance must be far below what a wrong model gives: logits spread over a few units here.
    assert np.abs(want[valid]).max() > 50 * tol
    assert diff <= tol, f"gfnlm vs onnxruntime: max abs diff {diff} > {tol}"

    # Greedy decoding with the KV cache picks what full forwards pick (gfnlm's own, so near-ties cannot differ).
    step = model.generate(ids[0, :6].tolist(), max_new_tokens=3, temperature=0, stop=[])[0].tokens
    seq = ids[0, :6].tolist()
    for _ in range(3):
        seq.append(int(np.argmax(model.logits(seq)[-1])))
    assert step == seq[6:]


def test_verify_option_and_deterministic_output(tmp_path):
    """--verify checks onnxruntime against the script's own numpy GPT-J; a second run with the same seed writes
    identical files."""
    a, log = _make(tmp_path / "a", ["--preset", "tiny"], "float16", ["--verify"])
    assert "verify: onnxruntime vs numpy GPT-J forward" in log
    b, _ = _make(tmp_path / "b", ["--preset", "tiny"], "float16")
    assert (a / "model.onnx.data").read_bytes() == (b / "model.onnx.data").read_bytes()
    assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()
