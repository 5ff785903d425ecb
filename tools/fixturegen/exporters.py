"""Export helpers: the legacy, dynamo and optimum ONNX exporters, external-data layouts, fp16/bf16
conversions, onnxruntime graph optimisation and the fused-attention rewrite.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, TensorProto

from hfexport import logits_only, optimum_mask_patches, with_past

from .common import n_heads_dims

# --------------------------------------------------------------------------------------------
# Export helpers
# --------------------------------------------------------------------------------------------

def dummy_inputs(vocab, batch=2, seq=8, past=0, pad=2, seed=123):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, past + seq, dtype=torch.int64)
    mask[1, :pad] = 0
    return ids, mask


def legacy_export(model, path: Path, opset: int, past: bool):
    cfg = model.config
    n_head, hd = n_heads_dims(cfg)
    if past:
        m = with_past(model)
        ids, mask = dummy_inputs(cfg.vocab_size, seq=2, past=3)
        pasts = []
        g = torch.Generator().manual_seed(7)
        for _ in range(cfg.n_layer * 2):
            pasts.append(torch.randn(2, n_head, 3, hd, generator=g, dtype=next(model.parameters()).dtype))
        args = (ids, mask, *pasts)
        in_names = ["input_ids", "attention_mask"]
        out_names = ["logits"]
        dyn = {"input_ids": {0: "batch", 1: "sequence"},
               "attention_mask": {0: "batch", 1: "past_sequence + sequence"},
               "logits": {0: "batch", 1: "sequence"}}
        for i in range(cfg.n_layer):
            for kv in ("key", "value"):
                n = f"past_key_values.{i}.{kv}"
                in_names.append(n)
                dyn[n] = {0: "batch", 2: "past_sequence"}
                o = f"present.{i}.{kv}"
                out_names.append(o)
                dyn[o] = {0: "batch", 2: "past_sequence + sequence"}
    else:
        m = logits_only(model)
        ids, mask = dummy_inputs(cfg.vocab_size)
        args = (ids, mask)
        in_names = ["input_ids", "attention_mask"]
        out_names = ["logits"]
        dyn = {"input_ids": {0: "batch", 1: "sequence"},
               "attention_mask": {0: "batch", 1: "sequence"},
               "logits": {0: "batch", 1: "sequence"}}
    with optimum_mask_patches(), torch.no_grad():
        torch.onnx.export(m, args, str(path), dynamo=False, opset_version=opset,
                          input_names=in_names, output_names=out_names, dynamic_axes=dyn,
                          do_constant_folding=True)


def dynamo_export(model, path: Path):
    m = logits_only(model)
    ids, mask = dummy_inputs(model.config.vocab_size)
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("sequence", min=1, max=model.config.n_positions)
    with torch.no_grad():
        prog = torch.onnx.export(m, (ids, mask), dynamo=True, opset_version=20,
                                 input_names=["input_ids", "attention_mask"], output_names=["logits"],
                                 dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                                 "attention_mask": {0: batch, 1: seq}},
                                 optimize=True, verbose=False, report=False)
    prog.save(str(path), external_data=False)


def optimum_export(hf_dir: Path, out_dir: Path, task: str):
    from optimum.exporters.onnx import main_export
    tmp = Path(tempfile.mkdtemp(prefix="optimum-"))
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main_export(model_name_or_path=str(hf_dir), output=tmp, task=task, device="cpu",
                        do_validation=False, local_files_only=True)
        for f in sorted(tmp.iterdir()):
            shutil.copy(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp)


def save_external_onefile(src: Path, dst: Path):
    m = onnx.load(str(src))
    onnx.save_model(m, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=1024, convert_attribute=False)


def _safe_file_name(name: str) -> str:
    s = name.replace("::", "__").replace("/", "_").replace(":", "_")
    return s.lstrip("_.") or "tensor"


def save_external_pertensor(src: Path, dst: Path):
    """The legacy exporter's layout past 2 GiB: every initializer in its own file next to
    model.onnx (named after the tensor, `::` -> `__`), external_data = [location] only;
    large Constant-node tensors (the GPT-J rotary table) external too."""
    m = onnx.load(str(src))
    out_dir = dst.parent
    used = set()

    def externalize(t: TensorProto, fname: str):
        assert fname not in used, fname
        used.add(fname)
        arr = numpy_helper.to_array(t)
        data = t.raw_data if t.HasField("raw_data") and len(t.raw_data) else arr.tobytes()
        (out_dir / fname).write_bytes(data)
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.ClearField("int64_data")
        t.ClearField("int32_data")
        del t.external_data[:]
        e = t.external_data.add()
        e.key = "location"
        e.value = fname
        t.data_location = TensorProto.EXTERNAL

    for t in m.graph.initializer:
        externalize(t, _safe_file_name(t.name))
    n_const = 0
    for node in m.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    nbytes = int(np.prod(a.t.dims) if len(a.t.dims) else 1) * \
                        np.dtype(helper.tensor_dtype_to_np_dtype(a.t.data_type)).itemsize
                    if nbytes >= 1024:
                        externalize(a.t, _safe_file_name(f"{node.name or node.output[0]}_attr__value"))
                        n_const += 1
    onnx.save_model(m, str(dst))
    return len(m.graph.initializer), n_const


def bf16_from_fp32(src: Path, dst: Path):
    """Every float initializer becomes BFLOAT16 (same name), followed by a Cast to FLOAT."""
    m = onnx.load(str(src))
    g = m.graph
    casts = []
    rename = {}
    for t in g.initializer:
        if t.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(t)
        bits = torch.from_numpy(arr.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        t.ClearField("float_data")
        t.raw_data = bits.astype("<u2").tobytes()
        t.data_type = TensorProto.BFLOAT16
        out = f"{t.name}_fp32"
        rename[t.name] = out
        casts.append(helper.make_node("Cast", [t.name], [out], name=f"{t.name}_cast",
                                      to=TensorProto.FLOAT))
    for node in g.node:
        for i, x in enumerate(node.input):
            if x in rename:
                node.input[i] = rename[x]
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save_model(m, str(dst))


def fp16_converter(src: Path, dst: Path):
    from onnxruntime.transformers.float16 import convert_float_to_float16
    m = onnx.load(str(src))
    m16 = convert_float_to_float16(m, keep_io_types=True)
    onnx.save_model(m16, str(dst))


def fuse_gpt2_attention(src: Path, dst: Path, config):
    """Replace each GPT-2 attention block of an ORT-optimized graph by com.microsoft::Attention.

    onnxruntime's FusionGptAttention no longer matches the attention subgraph that
    transformers 4.57 emits (neither sdpa nor eager, with or without past), so optimize_model
    leaves it unfused. This reproduces what that fusion emits (fusion_gpt_attention.py
    create_attention_node): Attention(input, c_attn.weight, c_attn.bias, mask_index) with
    num_heads and unidirectional=1, then MatMul(c_proj.weight) + Add(c_proj.bias)."""
    m = onnx.load(str(src))
    g = m.graph
    nodes = list(g.node)
    prod = {o: n for n in nodes for o in n.output}
    cons: dict[str, list] = {}
    for n in nodes:
        for x in n.input:
            cons.setdefault(x, []).append(n)
    mask_cast = helper.make_node("Cast", ["attention_mask"], ["attention_mask_int32"],
                                 name="GptAttention_mask_cast", to=TensorProto.INT32)
    replace = {}   # id(node that produced the block output) -> new nodes
    for i in range(config.n_layer):
        w_qkv, b_qkv = f"transformer.h.{i}.attn.c_attn.weight", f"transformer.h.{i}.attn.c_attn.bias"
        w_o, b_o = f"transformer.h.{i}.attn.c_proj.weight", f"transformer.h.{i}.attn.c_proj.bias"
        mm_qkv = next(n for n in nodes if n.op_type == "MatMul" and n.input[1] == w_qkv)
        x = mm_qkv.input[0]
        proj = next(n for n in nodes if n.op_type in ("Gemm", "MatMul") and len(n.input) > 1 and n.input[1] == w_o)
        if proj.op_type == "Gemm":
            (last,) = cons[proj.output[0]]          # Reshape back to [batch, seq, E]
        else:
            (last,) = cons[proj.output[0]]          # Add(c_proj.bias)
        name = f"GptAttention_{i}"
        replace[id(last)] = [
            helper.make_node("Attention", [x, w_qkv, b_qkv, "attention_mask_int32"], [f"{name}_output"],
                             name=name, domain="com.microsoft", num_heads=config.n_head, unidirectional=1),
            helper.make_node("MatMul", [f"{name}_output", w_o], [f"{name}_matmul_output"], name=f"{name}_matmul"),
            helper.make_node("Add", [f"{name}_matmul_output", b_o], [last.output[0]], name=f"{name}_add"),
        ]
    new_nodes = [mask_cast]
    for n in nodes:
        new_nodes.extend(replace.get(id(n), [n]))
    # drop nodes whose outputs are no longer used
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(new_nodes):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(x for x in n.input if x)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    used = {x for n in keep for x in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save_model(m, str(dst))


def ort_optimize(src: Path, dst: Path, config, attention: bool):
    from onnxruntime.transformers.optimizer import optimize_model
    from onnxruntime.transformers.fusion_options import FusionOptions
    opts = FusionOptions("gpt2")
    opts.enable_attention = attention
    with contextlib.redirect_stdout(io.StringIO()):
        om = optimize_model(str(src), model_type="gpt2", num_heads=config.n_head,
                            hidden_size=config.n_embd, optimization_options=opts, opt_level=0,
                            use_gpu=False)
    om.save_model_to_file(str(dst), use_external_data_format=False)
