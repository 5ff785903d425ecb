#!/usr/bin/env python3
"""One benchmark process: one engine, one phase, one thread count. run.py starts it with OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MKL_NUM_THREADS set to the thread count (libraries read them when they load) and reads the JSON
it writes to --out.

    worker.py --engine {gfnlm,gfnlm-bf16,gfnlm-int8,gfnlm-q4,onnxruntime,torch} --phase {infer,decode,lora,gfn} --threads N --out FILE
              [--reps K] [--warmup W] [--seed S]

Phases:
  infer   load the model (timed), prefill 16x64 (full logits), scoring 32 pairs of 32+32 tokens
  decode  load the decoding model, then n = 1, 8, 32 samples of 32 new tokens after one 16-token prompt
  lora    one LoRA step (8x32 tokens, r=512 on c_attn, forward + backward + AdamW)
  gfn     one GFlowNet step of the random-number configuration
Every phase also reports RSS before loading, after loading, and the process's peak (VmHWM).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "bindings" / "python"))

import common as C  # noqa: E402
from engines import NotAvailable  # noqa: E402


def engine_class(name: str):
    if name == "gfnlm":
        from engines.gfnlm_engine import Engine
    elif name == "gfnlm-bf16":
        from engines.gfnlm_engine import BF16Engine as Engine
    elif name == "gfnlm-int8":
        from engines.gfnlm_engine import Int8Engine as Engine
    elif name == "gfnlm-q4":
        from engines.gfnlm_engine import Q4Engine as Engine
    elif name == "onnxruntime":
        from engines.ort_engine import Engine
    elif name == "torch":
        from engines.torch_engine import Engine
    else:
        raise SystemExit(f"unknown engine {name}")
    return Engine


def run_infer(eng, reps, warmup, res):
    res["load_s"] = eng.load()
    res["rss_after_load_mb"] = C.proc_status_mb("VmRSS")
    x = C.prefill_ids()
    res["prefill_tokens"] = int(x.size)
    res["check_prefill_last8"] = eng.prefill(x).tolist()       # also the warm-up
    res["prefill_s"], res["prefill_cpu_s"] = C.repeat(lambda: eng.prefill(x), reps, max(0, warmup - 1))
    ctx, cont = C.score_pairs()
    res["score_tokens"] = int(ctx.size + cont.size)
    res["check_score"] = eng.score(ctx, cont)
    res["score_s"], res["score_cpu_s"] = C.repeat(lambda: eng.score(ctx, cont), reps, max(0, warmup - 1))


def run_decode(eng, reps, warmup, seed, res):
    res["load_decoder_s"] = eng.load_decoder()
    res["rss_after_load_mb"] = C.proc_status_mb("VmRSS")
    prompt = C.decode_prompt()
    for b in C.DECODE_BATCHES:
        for w in range(warmup):
            eng.decode(prompt, b, 4, seed + 100 + w)
        times, cpus = [], []
        for r in range(reps):
            t, n = C.timed(eng.decode, prompt, b, C.DECODE_NEW, seed + r)
            if n != b * C.DECODE_NEW:
                raise RuntimeError(f"decode at batch {b} produced {n} tokens, expected {b * C.DECODE_NEW}")
            times.append(t)
            cpus.append(C.CPU_LOG[-1])
        res[f"decode_b{b}_s"] = times
        res[f"decode_b{b}_cpu_s"] = cpus
        res[f"decode_b{b}_tokens"] = b * C.DECODE_NEW
        res[f"peak_rss_after_b{b}_mb"] = C.proc_status_mb("VmHWM")


def run_step(eng, setup, reps, warmup, res):
    t, step = C.timed(setup)
    res["setup_s"] = t
    res["rss_after_load_mb"] = C.proc_status_mb("VmRSS")
    # a step function may offer a cheaper warm-up (the GFlowNet step: one micro-batch instead of eight)
    losses = [getattr(step, "warmup", step)() for _ in range(warmup)]
    times, cpus = [], []
    for _ in range(reps):
        t, loss = C.timed(step)
        times.append(t)
        cpus.append(C.CPU_LOG[-1])
        losses.append(loss)
    res["step_s"] = times
    res["step_cpu_s"] = cpus
    if getattr(eng, "last_stats", None) is not None:
        res["last_step_stats"] = eng.last_stats
    res["losses"] = losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True)
    ap.add_argument("--phase", required=True, choices=["infer", "decode", "lora", "gfn"])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    res = {"engine": a.engine, "phase": a.phase, "threads": a.threads, "reps": a.reps, "pid": os.getpid(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "env_threads": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}}
    t0 = time.perf_counter()
    try:
        Engine = engine_class(a.engine)
        eng = Engine(a.threads)
        res["rss_before_load_mb"] = C.proc_status_mb("VmRSS")
        if a.phase == "infer":
            run_infer(eng, a.reps, a.warmup, res)
        elif a.phase == "decode":
            run_decode(eng, a.reps, a.warmup, a.seed, res)
        elif a.phase == "lora":
            run_step(eng, eng.lora_setup, a.reps, a.warmup, res)
        else:
            run_step(eng, eng.gfn_setup, a.reps, a.warmup, res)
        res["info"] = eng.info()
    except NotAvailable as e:
        res["na"] = str(e)
    except Exception as e:  # reported in the table, with the traceback in the JSON
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc()
    res["peak_rss_mb"] = C.proc_status_mb("VmHWM")
    res["wall_s"] = time.perf_counter() - t0
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
