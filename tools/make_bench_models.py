#!/usr/bin/env python3
"""Write the models the benchmark suite (benchmarks/run.py) measures. Nothing here is committed.

    benchmarks/.venv/bin/python tools/make_bench_models.py [--out benchmarks/models] [--force]

Output (default benchmarks/models/, gitignored):

    gpt2-small/hf/            Hugging Face folder (config.json + model.safetensors) for the PyTorch peer
    gpt2-small/model.onnx     legacy exporter (dynamo=False), opset 17, (input_ids, attention_mask) -> logits;
                              what gfnlm loads, and the graph onnxruntime runs for prefill and scoring
    gpt2-small/past/model.onnx  the same weights with past key values: inputs input_ids, attention_mask
                              [batch, past+seq], past_key_values.{i}.key/value [batch, 12, past, 64]; outputs logits,
                              present.{i}.key/value. onnxruntime's decoding loop uses it (a zero-length past for
                              the prompt)
    gpt2-small/manifest.json  config, seeds, file sizes, and the onnxruntime-vs-PyTorch check below

The model is a full-size GPT-2 small (12 layers, n_embd 768, 12 heads, vocab 50257, n_positions 1024) with random
weights (seeded, deterministic): Hugging Face's own initialisation (N(0, 0.02) weights), and then every bias and
LayerNorm weight randomised as well, so that no two initializers are equal and the legacy exporter cannot merge
them. Positions are computed from the attention mask inside the graph, as generate() does.

Both exports are run in onnxruntime and compared with PyTorch (full forward, and prompt + one cached step for the
past graph); the script fails if they differ by more than 1e-3 on the logits.

The GPT-J-6B-shaped model is made by tools/make_gptj_shaped.py (numpy + onnx, no torch) and
measured by benchmarks/large_model.py; --gptj6b here only says so.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from hfexport import logits_only, optimum_mask_patches, with_past

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "models"
FORMAT_VERSION = 1          # bump when the files change; run.py remakes models whose manifest differs
SEED = 1234
TOL = 1e-3

GPT2_SMALL = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024, n_ctx=1024)


def log(*a):
    print("[make_bench_models]", *a, flush=True)


def build_gpt2_small(seed: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    cfg = GPT2Config(**GPT2_SMALL)
    cfg.architectures = ["GPT2LMHeadModel"]
    model = GPT2LMHeadModel(cfg)          # HF init: N(0, 0.02) weights, zero biases, unit LayerNorm
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    model.eval()
    return model


def export(model, path: Path, past: bool):
    import torch
    cfg = model.config
    hd = cfg.n_embd // cfg.n_head
    g = torch.Generator().manual_seed(7)
    if past:
        m = with_past(model)
        ids = torch.randint(0, cfg.vocab_size, (2, 2), generator=g)
        mask = torch.ones(2, 5, dtype=torch.int64)
        pasts = [torch.randn(2, cfg.n_head, 3, hd, generator=g) for _ in range(2 * cfg.n_layer)]
        args = (ids, mask, *pasts)
        in_names, out_names = ["input_ids", "attention_mask"], ["logits"]
        dyn = {"input_ids": {0: "batch", 1: "sequence"},
               "attention_mask": {0: "batch", 1: "past_sequence + sequence"},
               "logits": {0: "batch", 1: "sequence"}}
        for i in range(cfg.n_layer):
            for kv in ("key", "value"):
                n, o = f"past_key_values.{i}.{kv}", f"present.{i}.{kv}"
                in_names.append(n)
                out_names.append(o)
                dyn[n] = {0: "batch", 2: "past_sequence"}
                dyn[o] = {0: "batch", 2: "past_sequence + sequence"}
    else:
        m = logits_only(model)
        ids = torch.randint(0, cfg.vocab_size, (2, 8), generator=g)
        mask = torch.ones(2, 8, dtype=torch.int64)
        args = (ids, mask)
        in_names, out_names = ["input_ids", "attention_mask"], ["logits"]
        dyn = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
               "logits": {0: "batch", 1: "sequence"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with optimum_mask_patches(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, args, str(path), dynamo=False, opset_version=17, input_names=in_names,
                          output_names=out_names, dynamic_axes=dyn, do_constant_folding=True)


def check(model, onnx_path: Path, past_path: Path) -> dict:
    """onnxruntime against PyTorch: full forward on the no-past graph; prompt (zero-length past) + one cached
    step on the past graph."""
    import numpy as np
    import onnxruntime as ort
    import torch
    cfg = model.config
    hd = cfg.n_embd // cfg.n_head
    rng = np.random.default_rng(99)
    ids = rng.integers(0, cfg.vocab_size, size=(2, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    out = s.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    d_full = float(np.abs(out - ref).max())
    del s
    sp = ort.InferenceSession(str(past_path), so, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids[:, :11], "attention_mask": mask[:, :11]}
    for i in range(cfg.n_layer):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = np.zeros((2, cfg.n_head, 0, hd), dtype=np.float32)
    names = [o.name for o in sp.get_outputs()]
    outs = dict(zip(names, sp.run(None, feeds)))
    d_prompt = float(np.abs(outs["logits"] - ref[:, :11]).max())
    feeds = {"input_ids": ids[:, 11:], "attention_mask": mask}
    for i in range(cfg.n_layer):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = outs[f"present.{i}.{kv}"]
    step = sp.run(["logits"], feeds)[0]
    d_step = float(np.abs(step - ref[:, 11:]).max())
    res = {"max_abs_logits_full": d_full, "max_abs_logits_past_prompt": d_prompt,
           "max_abs_logits_past_step": d_step, "logit_scale_max_abs": float(np.abs(ref).max())}
    log("onnxruntime vs PyTorch:", res)
    if max(d_full, d_prompt, d_step) > TOL:
        raise SystemExit(f"onnxruntime differs from PyTorch by more than {TOL}: {res}")
    return res


def manifest_ok(out: Path) -> bool:
    mf = out / "gpt2-small" / "manifest.json"
    if not mf.exists():
        return False
    try:
        m = json.loads(mf.read_text())
    except ValueError:
        return False
    if m.get("format_version") != FORMAT_VERSION:
        return False
    return all((out / "gpt2-small" / f).exists() for f in m.get("files", {}))


def make_gpt2_small(out: Path):
    import torch
    import transformers
    import onnx
    import onnxruntime
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    root = out / "gpt2-small"
    tmp = out / "gpt2-small.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.time()
    model = build_gpt2_small(SEED)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"GPT-2 small built: {n_params / 1e6:.1f}M parameters (seed {SEED})")
    model.save_pretrained(tmp / "hf", safe_serialization=True)
    log("HF folder written")
    export(model, tmp / "model.onnx", past=False)
    log("legacy opset-17 export written")
    export(model, tmp / "past" / "model.onnx", past=True)
    log("legacy opset-17 export with past written")
    checks = check(model, tmp / "model.onnx", tmp / "past" / "model.onnx")
    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            files[str(p.relative_to(tmp))] = p.stat().st_size
    manifest = {
        "format_version": FORMAT_VERSION, "seed": SEED, "config": GPT2_SMALL, "n_params": n_params,
        "init": "HF GPT2 init (weights N(0,0.02)); biases N(0,0.02^2); LayerNorm weights 1+N(0,0.1^2)",
        "onnx": {"exporter": "torch.onnx.export(dynamo=False)", "opset": 17,
                 "inputs": "input_ids, attention_mask -> logits (model.onnx); "
                           "+ past_key_values.{i}.key/value -> + present.{i}.key/value (past/model.onnx)"},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "ort_vs_torch": checks, "files": files, "seconds": round(time.time() - t0, 1),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    log(f"done in {time.time() - t0:.0f} s -> {root}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true", help="remake even if the models exist")
    ap.add_argument("--check", action="store_true", help="only tell whether the models exist (exit 0/1)")
    ap.add_argument("--gptj6b", action="store_true", help="GPT-J-6B-shaped model: see tools/make_gptj_shaped.py")
    a = ap.parse_args(argv)
    if a.gptj6b:
        raise SystemExit("the GPT-J-6B-shaped model is written by tools/make_gptj_shaped.py (numpy + onnx, no torch) "
                         "and measured by benchmarks/large_model.py")
    if a.check:
        sys.exit(0 if manifest_ok(a.out) else 1)
    if manifest_ok(a.out) and not a.force:
        log(f"models present in {a.out} (use --force to remake)")
        return
    make_gpt2_small(a.out)


if __name__ == "__main__":
    main()
