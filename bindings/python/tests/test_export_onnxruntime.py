"""Merged-weights ONNX export (`model.export_onnx(path, adapter=...)`) run in onnxruntime.

The exported file must run in onnxruntime and give gfnlm's logits with the adapter: within 1e-4 for fp32 sources;
within 5e-3 for fp16 sources, whose merged weights are rounded to fp16 because the graph stays fp16.
Skipped until the bindings expose `Model.export_onnx` and `LoRA`, or when onnxruntime is not installed.
"""
import json
import os
import struct

import numpy as np
import pytest

import gfnlm
from conftest import FIXTURES

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.skipif(
    not (hasattr(gfnlm.Model, "export_onnx") and hasattr(gfnlm, "LoRA")),
    reason="gfnlm.Model.export_onnx / gfnlm.LoRA are not exposed by these bindings yet",
)

TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gptj": ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"],
}
CASES = [
    ("gpt2-tiny", "legacy17", 1e-4),  # tied head stored as a second, transposed initializer
    ("gpt2-tiny", "dynamo", 1e-4),  # one initializer serves the embedding and the head
    ("gpt2-tiny", "optimum", 1e-4),
    ("gpt2-tiny", "external-onefile", 1e-4),
    ("gpt2-tiny", "ort-optimized", 1e-4),
    ("gpt2-tiny", "fp16", 5e-3),
    ("gptj-tiny", "legacy17", 1e-4),  # transposed anonymous copies of every Linear weight
    ("gptj-tiny", "dynamo", 1e-4),
    ("gptj-tiny", "fp16", 5e-3),
]
IDS = [[5, 17, 300, 2, 44, 511, 9, 128], [77, 1, 250, 33, 400, 8, 64, 199]]


def _read_safetensors_raw(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _write_safetensors(path, header, tensors):
    """Writes `tensors` (name -> float32 array) with the metadata of `header` (independent minimal writer)."""
    out_header = {}
    if "__metadata__" in header:
        out_header["__metadata__"] = header["__metadata__"]
    blobs, offset = [], 0
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        out_header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(out_header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def random_lora(model, tmp_path, seed=0):
    """A PEFT-initialised LoRA (r 4, alpha 8) whose B factors are then set to random non-zero values."""
    lora = gfnlm.LoRA(model, r=4, alpha=8, targets=TARGETS[model.config["arch"]], seed=seed)
    d = tmp_path / "adapter"
    lora.save(str(d))
    path = d / "adapter_model.safetensors"
    header, blob = _read_safetensors_raw(path)
    rng = np.random.default_rng(seed + 1)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32"
        b, e = info["data_offsets"]
        t = np.frombuffer(blob[b:e], dtype="<f4").reshape(info["shape"]).copy()
        if "lora_B" in name:
            t = rng.uniform(-0.2, 0.2, size=t.shape).astype(np.float32)
        tensors[name] = t
    _write_safetensors(path, header, tensors)
    return gfnlm.LoRA.load(model, str(d))


def ort_logits(path, ids):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ids = np.asarray(ids, dtype=np.int64)
    B, T = ids.shape
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = ids
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones_like(ids)
        elif i.name == "position_ids":
            feeds[i.name] = np.tile(np.arange(T, dtype=np.int64), (B, 1))
        elif i.name.startswith("past_key_values"):
            shape = [B if isinstance(s, str) or s is None else s for s in i.shape]
            shape[2] = 0  # empty past
            feeds[i.name] = np.zeros(shape, dtype=np.float16 if "float16" in i.type else np.float32)
        else:
            raise AssertionError(f"unexpected graph input {i.name}")
    return sess.run(None, feeds)[0].astype(np.float32)


@pytest.mark.parametrize("model_name,variant,tol", CASES)
def test_merged_export_runs_in_onnxruntime(model_name, variant, tol, tmp_path):
    model = gfnlm.Model.load(os.path.join(FIXTURES, model_name, variant))
    lora = random_lora(model, tmp_path)
    want = model.logits(IDS, adapter=lora)
    assert np.abs(want - model.logits(IDS)).max() > 0.05, "the adapter should change the logits"

    out = tmp_path / "export" / "model.onnx"
    out.parent.mkdir()
    model.export_onnx(str(out), adapter=lora)
    got = ort_logits(str(out), IDS)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= tol

    # gfnlm reads its own export back: the base model of the export is the adapted model.
    again = gfnlm.Model.load(str(out))
    assert np.abs(again.logits(IDS) - want).max() <= tol


def test_export_without_adapter_runs_in_onnxruntime(tmp_path):
    model = gfnlm.Model.load(os.path.join(FIXTURES, "gptj-tiny", "external-onefile"))
    out = tmp_path / "base.onnx"
    model.export_onnx(str(out))
    assert np.abs(ort_logits(str(out), IDS) - model.logits(IDS)).max() <= 1e-4


def test_failed_export_leaves_no_file(tmp_path):
    model = gfnlm.Model.load(os.path.join(FIXTURES, "gpt2-tiny", "legacy17"))
    with pytest.raises(gfnlm.GfnError):
        model.export_onnx(str(tmp_path / "missing" / "model.onnx"))
    with pytest.raises(gfnlm.GfnError):
        model.export_onnx(str(tmp_path))  # a directory is not a file name
    assert sorted(os.listdir(tmp_path)) == []
