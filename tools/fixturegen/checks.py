"""The onnxruntime check of every exported file against PyTorch, and each variant's variant.json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper, TensorProto

from .common import FAILURES, RESULTS, n_heads_dims, write_json

# --------------------------------------------------------------------------------------------
# onnxruntime check
# --------------------------------------------------------------------------------------------

ORT_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


def ort_session(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def masked_maxdiff(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """max |a-b| over the positions where mask == 1 (padded positions are undefined)."""
    sel = mask.astype(bool)
    return float(np.abs(a.astype(np.float64)[sel] - b.astype(np.float64)[sel]).max())


def ort_check(model_name: str, variant: str, vdir: Path, ref: dict, tol: float, config,
              expect: str = "ok", present_ref=None):
    path = vdir / "model.onnx"
    row = dict(model=model_name, variant=variant, tol=tol, logits=None, step=None, status="")
    try:
        sess = ort_session(path)
    except Exception as e:  # noqa: BLE001
        row["status"] = f"ORT refused: {str(e).splitlines()[0][:80]}"
        RESULTS.append(row)
        if expect == "ok":
            FAILURES.append(f"{model_name}/{variant}: {e}")
        return row
    names = {i.name: i for i in sess.get_inputs()}
    out_names = [o.name for o in sess.get_outputs()]
    n_head, hd = n_heads_dims(config)
    ids = ref["input_ids"].numpy()
    mask = ref["attention_mask"].numpy()
    pos = ref["position_ids"].numpy()
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "position_ids" in names:
        feeds["position_ids"] = pos
    has_past = any(n.startswith("past_key_values") for n in names)
    for n, i in names.items():
        if n.startswith("past_key_values"):
            feeds[n] = np.zeros((2, n_head, 0, hd), dtype=ORT_NP[i.type])
    outs = dict(zip(out_names, sess.run(None, feeds)))
    logits = outs["logits"].astype(np.float32)
    row["logits"] = masked_maxdiff(logits, ref["logits"].numpy(), np.broadcast_to(mask[..., None], logits.shape))
    row["logits_all"] = float(np.abs(logits - ref["logits"].numpy()).max())
    if has_past:
        step_mask = np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1)
        feeds2 = {"input_ids": ref["step_input_ids"].numpy(), "attention_mask": step_mask}
        if "position_ids" in names:
            feeds2["position_ids"] = pos[:, -1:] + 1
        for n in names:
            if n.startswith("past_key_values"):
                feeds2[n] = outs[n.replace("past_key_values", "present")]
        outs2 = dict(zip(out_names, sess.run(None, feeds2)))
        row["step"] = float(np.abs(outs2["logits"][:, -1, :].astype(np.float32) - ref["step_logits"].numpy()).max())
        if present_ref is not None:
            # present K/V of the first call against torch (valid key positions only)
            d = 0.0
            for i, (k, v) in enumerate(present_ref):
                for name, t in ((f"present.{i}.key", k), (f"present.{i}.value", v)):
                    d = max(d, masked_maxdiff(outs[name], t.numpy(), np.broadcast_to(mask[:, None, :, None], t.shape)))
            row["present"] = d
    worst = max(x for x in (row["logits"], row["step"], row.get("present")) if x is not None)
    ok = worst <= tol
    if expect == "ok":
        row["status"] = "ok" if ok else "DIFFERS"
        if not ok:
            FAILURES.append(f"{model_name}/{variant}: max diff {worst:.3g} > {tol}")
    else:
        row["status"] = ("runs in ORT (" + ("matches" if ok else "DIFFERS") + "); loader must refuse")
        if not ok:
            FAILURES.append(f"{model_name}/{variant}: max diff {worst:.3g} > {tol}")
    RESULTS.append(row)
    return row


def check_named_initializers(model_name: str, variant: str, vdir: Path, sd: dict, dtype=None):
    """Every initializer that carries an HF name must hold exactly that HF tensor (values, layout)."""
    m = onnx.load(str(vdir / "model.onnx"), load_external_data=True)
    n = 0
    for t in m.graph.initializer:
        if t.name in sd:
            a = numpy_helper.to_array(t) if t.data_type != TensorProto.BFLOAT16 else None
            want = sd[t.name]
            if t.data_type == TensorProto.BFLOAT16:
                bits = np.frombuffer(t.raw_data, dtype="<u2").astype(np.uint32) << 16
                a = bits.view(np.float32).reshape(tuple(t.dims))
                want = want.to(torch.bfloat16).float()
            elif t.data_type == TensorProto.FLOAT16:
                want = want.half()
            if tuple(a.shape) != tuple(want.shape) or not np.array_equal(a, want.numpy()):
                FAILURES.append(f"{model_name}/{variant}: initializer {t.name} differs from the HF tensor")
            n += 1
    return n


def graph_io(path: Path):
    m = onnx.load(str(path), load_external_data=False)
    return [i.name for i in m.graph.input], [o.name for o in m.graph.output], m


def write_variant_json(vdir: Path, exporter: str, opset: int, dtype: str, reference: str, tol: float,
                       expect: str = "ok", error_contains: str = "", notes: str = "", extra=None):
    ins, outs, m = graph_io(vdir / "model.onnx")
    opsets = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    obj = {
        "exporter": exporter,
        "opset": opset if opset is not None else opsets.get("ai.onnx"),
        "dtype": dtype,
        "inputs": ins,
        "outputs": outs,
        "expect": expect,
        "error_contains": error_contains,
        "reference": reference,
        "tolerance": tol,
        "ir_version": m.ir_version,
        "opset_import": opsets,
        "files": sorted(p.name for p in vdir.iterdir() if p.name != "variant.json"),
    }
    if notes:
        obj["notes"] = notes
    if extra:
        obj.update(extra)
    write_json(vdir / "variant.json", obj)
