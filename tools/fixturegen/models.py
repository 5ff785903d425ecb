"""The model fixtures: gpt2-tiny / gptj-tiny (every export variant), gpt2-realvocab, not-a-gpt.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, TensorProto
from safetensors.torch import save_file

from .common import (
    FAILURES,
    FIX,
    RESULTS,
    TOL_FP16,
    TOL_FP32,
    TOL_NATIVE_FP16,
    TOL_NATIVE_FP32,
    build_model,
    clone_with,
    compute_reference,
    fresh_dir,
    gpt2_realvocab_config,
    gpt2_tiny_config,
    gptj_tiny_config,
    hf_state_dict,
    log,
    make_inputs,
    write_json,
)
from .exporters import (
    bf16_from_fp32,
    dynamo_export,
    fp16_converter,
    fuse_gpt2_attention,
    legacy_export,
    optimum_export,
    ort_optimize,
    save_external_onefile,
    save_external_pertensor,
)
from .checks import check_named_initializers, ort_check, ort_session, write_variant_json

# --------------------------------------------------------------------------------------------
# gpt2-tiny / gptj-tiny
# --------------------------------------------------------------------------------------------

POS_NOTE_GRAPH = ("position ids are computed inside the graph from attention_mask as "
                  "clamp(cumsum(mask)-1, 0) (exported through a forward(input_ids, attention_mask) "
                  "that passes them to the HF model)")
POS_NOTE_INPUT = "position_ids is a graph input; feed reference position_ids"


def build_tiny(arch: str, seed: int):
    name = f"{arch}-tiny"
    root = fresh_dir(FIX / name)
    log(f"== {name}")
    t0 = time.time()
    cfg = gpt2_tiny_config() if arch == "gpt2" else gptj_tiny_config()
    model = build_model(arch, cfg, seed)
    inp = make_inputs(cfg.vocab_size, seed + 100)

    # --- hf/ ---
    hf = fresh_dir(root / "hf")
    model.config.save_pretrained(hf)            # config.json
    sd = hf_state_dict(model)
    save_file(sd, str(hf / "weights.safetensors"), metadata={"format": "pt"})
    ref = compute_reference(model, inp, with_grads=True)
    save_file(ref, str(hf / "reference.safetensors"))
    # torch present K/V of the first forward (checked against ORT, not stored)
    with torch.no_grad():
        r = model(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"],
                  position_ids=inp["position_ids"], use_cache=True)
        present_ref = [(k.clone(), v.clone()) for k, v in r.past_key_values.to_legacy_cache()]
    # a full HF folder for optimum (temporary)
    hf_full = Path(tempfile.mkdtemp(prefix=f"{name}-hf-"))
    model.save_pretrained(hf_full, safe_serialization=True)
    ref_rel = "../hf/reference.safetensors"

    # --- legacy14 / legacy17 ---
    for opset in (14, 17):
        v = f"legacy{opset}"
        vd = fresh_dir(root / v)
        legacy_export(model, vd / "model.onnx", opset, past=False)
        write_variant_json(vd, "torch.onnx.export(dynamo=False)", opset, "float32", ref_rel, TOL_NATIVE_FP32,
                           notes=POS_NOTE_GRAPH)
        ort_check(name, v, vd, ref, TOL_FP32, cfg)

    # --- legacy17-past ---
    vd = fresh_dir(root / "legacy17-past")
    legacy_export(model, vd / "model.onnx", 17, past=True)
    write_variant_json(vd, "torch.onnx.export(dynamo=False)", 17, "float32", ref_rel, TOL_NATIVE_FP32,
                       notes=POS_NOTE_GRAPH + "; first call with zero-length past "
                       "[batch, n_head, 0, head_dim], then feed present.* back as past_key_values.* "
                       "with step_input_ids and attention_mask extended by a 1")
    ort_check(name, "legacy17-past", vd, ref, TOL_FP32, cfg, present_ref=present_ref)

    # --- optimum ---
    for v, task in (("optimum", "text-generation"), ("optimum-past", "text-generation-with-past")):
        vd = fresh_dir(root / v)
        optimum_export(hf_full, vd, task)
        write_variant_json(vd, f"optimum main_export task={task}", None, "float32", ref_rel, TOL_NATIVE_FP32,
                           notes=POS_NOTE_INPUT + ("; zero-length past for the first call" if "past" in v else ""))
        ort_check(name, v, vd, ref, TOL_FP32, cfg, present_ref=present_ref if "past" in v else None)

    # --- dynamo ---
    vd = fresh_dir(root / "dynamo")
    dynamo_export(model, vd / "model.onnx")
    write_variant_json(vd, "torch.onnx.export(dynamo=True)", 20, "float32", ref_rel, TOL_NATIVE_FP32,
                       notes=POS_NOTE_GRAPH)
    ort_check(name, "dynamo", vd, ref, TOL_FP32, cfg)

    # --- fp16 (model.half() + legacy exporter; GPT-2 with eager attention) ---
    vd = fresh_dir(root / "fp16")
    attn16 = "eager" if arch == "gpt2" else model.config._attn_implementation
    m16 = clone_with(model, attn=attn16).half()
    legacy_export(m16, vd / "model.onnx", 17, past=False)
    ref16_model = clone_with(model, attn=attn16, round_to=torch.float16)
    ref16 = compute_reference(ref16_model, inp, with_grads=False)
    save_file(ref16, str(vd / "reference.safetensors"))
    write_variant_json(vd, "model.half() + torch.onnx.export(dynamo=False)", 17, "float16",
                       "reference.safetensors", TOL_NATIVE_FP16,
                       notes=POS_NOTE_GRAPH + f"; attn_implementation={attn16}; reference = fp32 torch "
                       "model with weights rounded to fp16 (no grads)")
    ort_check(name, "fp16", vd, ref16, TOL_FP16, cfg)

    # --- fp16-converter ---
    vd = fresh_dir(root / "fp16-converter")
    fp16_converter(root / "legacy17" / "model.onnx", vd / "model.onnx")
    write_variant_json(vd, "legacy17 + onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)",
                       17, "float16", "../fp16/reference.safetensors", TOL_NATIVE_FP16,
                       notes=POS_NOTE_GRAPH + "; fp16 weights, fp32 graph inputs/outputs; reference = fp32 "
                       "torch model with weights rounded to fp16 (shared with ../fp16)")
    ort_check(name, "fp16-converter", vd, ref16, TOL_FP16, cfg)

    # --- bf16 ---
    vd = fresh_dir(root / "bf16")
    bf16_from_fp32(root / "legacy17" / "model.onnx", vd / "model.onnx")
    refbf = compute_reference(clone_with(model, round_to=torch.bfloat16), inp, with_grads=False)
    save_file(refbf, str(vd / "reference.safetensors"))
    write_variant_json(vd, "legacy17 with every float initializer converted to BFLOAT16 + Cast(to=FLOAT)",
                       17, "bfloat16", "reference.safetensors", TOL_NATIVE_FP32,
                       notes=POS_NOTE_GRAPH + "; reference = fp32 torch model with weights rounded to "
                       "bf16 (no grads); compute is fp32 after the Casts")
    ort_check(name, "bf16", vd, refbf, TOL_FP32, cfg)

    # --- external data ---
    vd = fresh_dir(root / "external-onefile")
    save_external_onefile(root / "legacy17" / "model.onnx", vd / "model.onnx")
    write_variant_json(vd, "legacy17 + onnx.save_model(save_as_external_data, all_tensors_to_one_file, "
                       "location=model.onnx.data, size_threshold=1024)", 17, "float32", ref_rel, TOL_NATIVE_FP32,
                       notes=POS_NOTE_GRAPH)
    ort_check(name, "external-onefile", vd, ref, TOL_FP32, cfg)

    vd = fresh_dir(root / "external-pertensor")
    n_init, n_const = save_external_pertensor(root / "legacy17" / "model.onnx", vd / "model.onnx")
    write_variant_json(vd, "legacy17, every initializer in its own file with external_data = [location] only "
                       "(the legacy exporter's >2 GiB layout)", 17, "float32", ref_rel, TOL_NATIVE_FP32,
                       notes=POS_NOTE_GRAPH + f"; {n_init} initializers external, {n_const} Constant-node "
                       "tensors external (the GPT-J rotary table)" if arch == "gptj" else
                       POS_NOTE_GRAPH + f"; {n_init} initializers external, {n_const} Constant-node tensors external")
    ort_check(name, "external-pertensor", vd, ref, TOL_FP32, cfg)

    # --- onnxruntime optimizer (GPT-2 only) ---
    if arch == "gpt2":
        vd = fresh_dir(root / "ort-optimized")
        ort_optimize(root / "legacy17" / "model.onnx", vd / "model.onnx", cfg, attention=False)
        ops = op_counts(vd / "model.onnx")
        write_variant_json(vd, "legacy17 + onnxruntime.transformers.optimizer.optimize_model(model_type=gpt2, "
                           "enable_attention=False, opt_level=0)", 17, "float32", ref_rel, TOL_NATIVE_FP32,
                           notes=POS_NOTE_GRAPH, extra={"op_counts": ops})
        ort_check(name, "ort-optimized", vd, ref, TOL_FP32, cfg)
        vd = fresh_dir(root / "ort-attention-fused")
        ort_optimize(root / "legacy17" / "model.onnx", vd / "model.onnx", cfg, attention=True)
        if "com.microsoft::Attention" not in op_counts(vd / "model.onnx"):
            fuse_gpt2_attention(vd / "model.onnx", vd / "model.onnx", cfg)
            how = ("optimize_model(enable_attention=True) did not fuse attention on this transformers-4.57 "
                   "graph, so tools/make_fixtures.py replaced each attention block by what ORT's "
                   "FusionGptAttention emits: com.microsoft::Attention(ln_1 out, c_attn.weight, c_attn.bias, "
                   "Cast(attention_mask, int32); num_heads, unidirectional=1) + MatMul(c_proj.weight) + "
                   "Add(c_proj.bias)")
        else:
            how = "fused by optimize_model"
        ops = op_counts(vd / "model.onnx")
        write_variant_json(vd, "ort-optimized (legacy17 + onnxruntime optimize_model model_type=gpt2) with "
                           "com.microsoft::Attention", 17, "float32", ref_rel, TOL_NATIVE_FP32,
                           expect="error", error_contains="Attention",
                           notes=POS_NOTE_GRAPH + "; contains com.microsoft::Attention: the loader must refuse it. "
                           + how,
                           extra={"op_counts": ops})
        if "com.microsoft::Attention" not in ops:
            FAILURES.append(f"{name}/ort-attention-fused: no com.microsoft::Attention node (ops: {ops})")
        ort_check(name, "ort-attention-fused", vd, ref, TOL_FP32, cfg, expect="error")
        ops_plain = op_counts(root / "ort-optimized" / "model.onnx")
        if "com.microsoft::Attention" in ops_plain or "com.microsoft::FastGelu" not in ops_plain:
            FAILURES.append(f"{name}/ort-optimized: unexpected ops {ops_plain}")

    # initializers with HF names hold the HF tensors (GPT-2: all but the folded head copy;
    # GPT-J: biases/LN/wte, its Linear weights are anonymous transposed copies)
    for vd in sorted(p for p in root.iterdir() if (p / "variant.json").exists()):
        k = check_named_initializers(name, vd.name, vd, sd)
        if k < 10:
            FAILURES.append(f"{name}/{vd.name}: only {k} HF-named initializers")
    shutil.rmtree(hf_full)
    log(f"   {name} done in {time.time() - t0:.0f} s")


def op_counts(path: Path) -> dict:
    m = onnx.load(str(path), load_external_data=False)
    c: dict[str, int] = {}
    for n in m.graph.node:
        k = (n.domain + "::" if n.domain and n.domain != "ai.onnx" else "") + n.op_type
        c[k] = c.get(k, 0) + 1
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


# --------------------------------------------------------------------------------------------
# gpt2-realvocab
# --------------------------------------------------------------------------------------------

def build_realvocab(seed: int, tok_dir: Path):
    from transformers import GPT2TokenizerFast
    name = "gpt2-realvocab"
    root = fresh_dir(FIX / name)
    log(f"== {name}")
    cfg = gpt2_realvocab_config()
    model = build_model("gpt2", cfg, seed)
    tok = GPT2TokenizerFast(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"))
    text = "Hello world, this is"
    ids = torch.tensor([tok(text)["input_ids"]], dtype=torch.int64)
    hf = fresh_dir(root / "hf")
    model.config.save_pretrained(hf)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.float()
    save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()}, str(hf / "reference.safetensors"))
    vd = fresh_dir(root / "legacy17")
    legacy_export(model, vd / "model.onnx", 17, past=False)
    # The legacy exporter stores the tied head as a second, transposed, constant-folded copy of wte
    # (6.4 MB here). To keep the fixtures small, remove it the way optimum's exporter does for tied
    # weights (optimum.onnx.remove_duplicate_weights_from_tied_info): the head becomes
    # Transpose(transformer.wte.weight) -> MatMul. gpt2-tiny's legacy files keep the copy.
    from accelerate.utils import find_tied_parameters
    from optimum.onnx import remove_duplicate_weights_from_tied_info
    before = len(onnx.load(str(vd / "model.onnx")).graph.initializer)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        remove_duplicate_weights_from_tied_info(onnx.load(str(vd / "model.onnx")), model,
                                                find_tied_parameters(model), str(vd / "model.onnx"))
    after = len(onnx.load(str(vd / "model.onnx")).graph.initializer)
    if after != before - 1:
        FAILURES.append(f"{name}/legacy17: tied-head dedup removed {before - after} initializers, expected 1")
    write_variant_json(vd, "torch.onnx.export(dynamo=False) + optimum's tied-weight dedup "
                       "(remove_duplicate_weights_from_tied_info)", 17, "float32", "../hf/reference.safetensors",
                       TOL_NATIVE_FP32, notes=POS_NOTE_GRAPH + f"; reference input is the text {text!r} "
                       "encoded with ../../tokenizer (no padding, attention_mask all ones); the head is "
                       "Transpose(transformer.wte.weight) -> MatMul (the folded transposed copy the legacy "
                       "exporter writes was removed with optimum's tied-weight dedup to save 6.4 MB)",
                       extra={"text": text, "ids": ids[0].tolist()})
    sess = ort_session(vd / "model.onnx")
    out = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy())})[0]
    d = float(np.abs(out - logits.numpy()).max())
    ok = d <= TOL_FP32
    RESULTS.append(dict(model=name, variant="legacy17", tol=TOL_FP32, logits=d, step=None,
                        status="ok" if ok else "DIFFERS"))
    if not ok:
        FAILURES.append(f"{name}/legacy17: {d}")
    return ids[0].tolist()


# --------------------------------------------------------------------------------------------
# not-a-gpt
# --------------------------------------------------------------------------------------------

def build_not_a_gpt(seed: int):
    root = fresh_dir(FIX / "not-a-gpt")
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (16, 8)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
         helper.make_node("LeakyRelu", ["h"], ["a"], name="leaky", alpha=0.1),
         helper.make_node("Softmax", ["a"], ["y"], name="softmax", axis=-1)],
        "not_a_gpt",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="gfnlm-fixtures")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save_model(m, str(root / "model.onnx"))
    write_json(root / "variant.json", {
        "exporter": "onnx.helper (hand-made)", "opset": 17, "dtype": "float32",
        "inputs": ["x"], "outputs": ["y"], "expect": "error", "error_contains": "",
        "reference": None, "tolerance": None,
        "notes": "valid ONNX (MatMul -> LeakyRelu -> Softmax, ir_version 8) that is neither GPT-2 nor GPT-J; "
                 "the loader must refuse it with a clear error (error_contains empty = any message)"})
    sess = ort_session(root / "model.onnx")
    y = sess.run(None, {"x": np.ones((1, 16), np.float32)})[0]
    RESULTS.append(dict(model="not-a-gpt", variant="-", tol=None, logits=None, step=None,
                        status=f"runs in ORT, output {list(y.shape)}; loader must refuse"))
