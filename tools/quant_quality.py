#!/usr/bin/env python3
"""Quality of the weight formats (fp32, bf16, int8, q4) on a model: perplexity on held-out text and the logit error
against fp32. Used for docs/quantization.md; not part of `make test`.

    python3 tools/quant_quality.py [--model models/demo-gpt2] [--lines 9500:10000] [--threads 2]

Held-out text: data/openwebtext/prompts.txt lines 9500-9999 (never in the demo model's training text). Each line is
one document scored after <|endoftext|>: perplexity = exp(−Σ log p / Σ tokens) over every token of every line
(lines truncated to the model's context). The logit error: max |Δlogit| and mean |Δ log p(next token)| against
fp32 over the first 32 lines (full logits, one line per forward)."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
import gfnlm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-gpt2"))
    ap.add_argument("--text", default=os.path.join(ROOT, "data", "openwebtext", "prompts.txt"))
    ap.add_argument("--lines", default="9500:10000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--formats", default="fp32,bf16,int8,q4")
    a = ap.parse_args()
    lo, hi = (int(v) for v in a.lines.split(":"))
    with open(a.text, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f][lo:hi]
    models = {w: gfnlm.Model.load(a.model, n_threads=a.threads, weights=w) for w in a.formats.split(",")}
    ref = models["fp32"]
    tok = ref.tokenizer
    eos = tok.eos_id
    ctx_len = ref.config["n_positions"] - 1
    docs = [ids[:ctx_len] for ids in (tok.encode(l) for l in lines) if ids]
    n_tok = sum(len(d) for d in docs)
    print(f"model {a.model}; {len(docs)} held-out lines ({a.lines}) of {a.text}, {n_tok} tokens")
    ref_logits = [np.asarray(ref.logits([[eos] + d]))[0] for d in docs[:32]]
    base = None
    for w, m in models.items():
        t0 = time.time()
        totals = m.score([[eos]] * len(docs), docs)
        ll = float(np.sum(totals))
        ppl = math.exp(-ll / n_tok)
        base = base or ppl
        worst, drift, n = 0.0, 0.0, 0
        for d, r in zip(docs[:32], ref_logits):
            z = np.asarray(m.logits([[eos] + d]))[0]
            worst = max(worst, float(np.abs(z - r).max()))
            lz = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
            lr = r - np.logaddexp.reduce(r, axis=-1, keepdims=True)
            nxt = np.asarray(d)
            drift += float(np.abs(lz[np.arange(len(d)), nxt] - lr[np.arange(len(d)), nxt]).sum())
            n += len(d)
        print(f"{w:5s} perplexity {ppl:9.3f} ({100 * (ppl / base - 1):+.2f} % vs fp32)  max |Δlogit| {worst:.4f}  "
              f"mean |Δ log p| {drift / n:.5f}  ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
