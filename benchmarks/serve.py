#!/usr/bin/env python3
"""Serving benchmark ("serve" phase): throughput of concurrent callers with and without the batching scheduler,
side by side in one run, as ratios; and the cost of batch-invariant decoding.

    python3 benchmarks/serve.py [--model models/demo-gpt2] [--tokenizer DIR] [--threads 2,1] [--callers 16] [--tokens 20] [--rounds 3]

Per thread count (the model's n_threads = the library's whole compute budget), medians over rounds of:
  sequential   16 requests Model.generate(n=1) one after another
  concurrent   16 threads each calling Model.generate(n=1) at once (no scheduler)
  one_call     one Model.generate(n=16)
  batcher      16 threads each calling Batcher.generate(n=1) at once
  prefill      16 different prompts prefilled one call each, or together in one call (prompt tokens/s)
  decode bN    Model.generate(n=N) tokens/s with batch_invariant on vs off (N = 1, 8, 32)
Prints a table and, as its last line, key=value ratios. Only needs the built library and numpy.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
os.environ.setdefault("GFNLM_LIBRARY", os.path.join(ROOT, "build", "libgfnlm.so"))
import gfnlm  # noqa: E402

PROMPTS = os.path.join(ROOT, "data", "openwebtext", "prompts.txt")
PROMPT = "The following is a random integer drawn uniformly between 0 and 100: "


def tokens_per_second(fn) -> float:
    t0 = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t0)


def run_threads(k: int, body) -> int:
    counts = [0] * k
    barrier = threading.Barrier(k)

    def worker(i):
        barrier.wait()
        counts[i] = body(i)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def measure(model_path: str, threads: int, callers: int, tokens: int, rounds: int, tokenizer: str | None) -> dict:
    model = gfnlm.Model.load(model_path, tokenizer=tokenizer, n_threads=threads)
    kw = dict(max_new_tokens=tokens, stop=[])
    model.generate(PROMPT, seed=0, **kw)  # warm-up
    cases = {
        "sequential": lambda: sum(len(model.generate(PROMPT, seed=i, **kw)[0].tokens) for i in range(callers)),
        "concurrent": lambda: run_threads(callers, lambda i: len(model.generate(PROMPT, seed=i, **kw)[0].tokens)),
        "one_call": lambda: sum(len(s.tokens) for s in model.generate(PROMPT, n=callers, seed=0, **kw)),
    }
    batcher = gfnlm.Batcher(model, max_batch=max(32, callers))
    batcher.generate(PROMPT, seed=0, **kw)
    cases["batcher"] = lambda: run_threads(callers, lambda i: len(batcher.generate(PROMPT, seed=i, **kw)[0].tokens))
    out = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():  # alternating, so every case sees the same machine load
            out[name].append(tokens_per_second(fn))
    batcher.close()
    result = {name: statistics.median(v) for name, v in out.items()}
    # Prefill alone: `callers` different prompts (openwebtext sentences, 8-60 tokens), each prefilled by its own call,
    # against one call that prefills them together; prompt tokens/s (one sampled token each).
    prompts = [model.tokenizer.encode(line.strip()) for line in open(PROMPTS, encoding="utf-8")][:callers]
    ptoks = sum(len(p) for p in prompts)
    pkw = dict(max_new_tokens=1, stop=[])
    pairs = {"prefill_alone": [], "prefill_together": []}
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i, p in enumerate(prompts):
            model.generate(p, seed=i, **pkw)
        pairs["prefill_alone"].append(ptoks / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        model.generate(prompts, seed=0, **pkw)
        pairs["prefill_together"].append(ptoks / (time.perf_counter() - t0))
    result.update({k: statistics.median(v) for k, v in pairs.items()})
    variant = gfnlm.Model.load(model_path, tokenizer=tokenizer, n_threads=threads, batch_invariant=False)
    for n in (1, 8, 32):
        pair = {"on": [], "off": []}
        for _ in range(rounds):
            for key, m in (("on", model), ("off", variant)):
                pair[key].append(tokens_per_second(
                    lambda: sum(len(s.tokens) for s in m.generate(PROMPT, n=n, seed=1, max_new_tokens=32, stop=[]))))
        result[f"decode_b{n}_invariant"] = statistics.median(pair["on"])
        result[f"decode_b{n}_fastest"] = statistics.median(pair["off"])
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-gpt2"))
    ap.add_argument("--tokenizer", default=None,
                    help="tokenizer files (default: beside the model; GPT-2 small: Tests/Fixtures/tokenizer)")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--callers", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ratios = {}
    for t in [int(x) for x in args.threads.split(",")]:
        r = measure(args.model, t, args.callers, args.tokens, args.rounds, args.tokenizer)
        print(f"\n== {os.path.basename(args.model.rstrip('/'))}, n_threads={t}, {args.callers} callers x "
              f"{args.tokens} tokens (tokens/s, median of {args.rounds})")
        for k, v in r.items():
            print(f"  {k:24s} {v:10.1f}")
        ratios[f"concurrent_vs_sequential_t{t}"] = r["concurrent"] / r["sequential"]
        ratios[f"batcher_vs_one_call_t{t}"] = r["batcher"] / r["one_call"]
        ratios[f"batcher_vs_sequential_t{t}"] = r["batcher"] / r["sequential"]
        ratios[f"prefill_together_vs_alone_t{t}"] = r["prefill_together"] / r["prefill_alone"]
        for n in (1, 8, 32):
            ratios[f"invariant_cost_b{n}_t{t}"] = r[f"decode_b{n}_invariant"] / r[f"decode_b{n}_fastest"]
    print("\n" + " ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
