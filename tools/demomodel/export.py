"""The ONNX export (legacy exporter, tied head deduplicated, fp16 weights), checked in onnxruntime.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from hfexport import logits_only, optimum_mask_patches

from .common import EOS, RNG_PROMPT_IDS

# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

def padded_batch(tok):
    texts = ["The city council approved the new budget on", "Question: 7 + 2 - 5 = ? Answer:"]
    ids = [tok(t)["input_ids"] for t in texts] + [RNG_PROMPT_IDS]
    L = max(len(i) for i in ids)
    inp = torch.full((len(ids), L), EOS, dtype=torch.int64)
    mask = torch.zeros((len(ids), L), dtype=torch.int64)
    for r, i in enumerate(ids):            # left padding
        inp[r, L - len(i):] = torch.tensor(i)
        mask[r, L - len(i):] = 1
    return inp, mask


def export_onnx(model, tok, path: Path):
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from accelerate.utils import find_tied_parameters
    from optimum.onnx import remove_duplicate_weights_from_tied_info
    tmp = path.with_suffix(".fp32.onnx")
    inp, mask = padded_batch(tok)
    with optimum_mask_patches(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(logits_only(model), (inp, mask), str(tmp), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "logits": {0: "batch", 1: "sequence"}},
                          do_constant_folding=True)
    n_before = len(onnx.load(str(tmp)).graph.initializer)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        remove_duplicate_weights_from_tied_info(onnx.load(str(tmp)), model, find_tied_parameters(model), str(tmp))
    m32 = onnx.load(str(tmp))
    assert len(m32.graph.initializer) == n_before - 1, "tied-head dedup should remove exactly one initializer"
    m16 = convert_float_to_float16(m32, keep_io_types=True)
    onnx.checker.check_model(m16)
    onnx.save_model(m16, str(path))
    tmp.unlink()

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input_ids": inp.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.no_grad():
        want = logits_only(model)(inp, mask).float().numpy()
    m = mask.numpy().astype(bool)
    diff = np.abs(got - want)[m]
    lsm = lambda a: a - np.log(np.exp(a - a.max(-1, keepdims=True)).sum(-1, keepdims=True)) - a.max(-1, keepdims=True)
    ldiff = np.abs(lsm(got.astype(np.float64)) - lsm(want.astype(np.float64)))[m]
    same_argmax = float((got.argmax(-1) == want.argmax(-1))[m].mean())
    inits = m16.graph.initializer
    dtypes = Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in inits)
    return dict(bytes=path.stat().st_size, max_abs_logit_diff=float(diff.max()),
                mean_abs_logit_diff=float(diff.mean()), max_abs_logprob_diff=float(ldiff.max()),
                same_argmax=same_argmax, logit_range=[float(want[m].min()), float(want[m].max())],
                n_initializers=len(inits), initializer_dtypes=dict(dtypes), n_nodes=len(m16.graph.node),
                inputs=[i.name for i in m16.graph.input], outputs=[o.name for o in m16.graph.output])
