#!/usr/bin/env python3
"""gfnlm's quantized weights next to llama.cpp's (`llama-bench`), on the benchmark GPT-2 small, side by side in one
run: prompt processing of 64 tokens and generation of 32 tokens, one sequence, at each thread count. Not part of
`make test`.

    python3 benchmarks/llamacpp_quant.py [--threads 2,1] [--formats q8_0,q4_0,f32] [--reps 5] [--rounds 2]
                                         [--python PY]

Set up on first use (cached in benchmarks/.llamacpp/, gitignored), with serve_llamacpp.py's helpers:
  1. llama.cpp's source (the `llama-cpp-python` sdist's vendor/llama.cpp); `llama-bench` and `llama-quantize` built
     from it with CMake (Release, GGML_NATIVE, CPU only).
  2. The benchmark GPT-2 small converted to GGUF by llama.cpp's convert_hf_to_gguf.py: f32 and Q8_0 directly
     (`--outtype`), Q4_0 by `llama-quantize` from the f32 file (its default recipe for Q4_0 keeps the output /
     tied embedding matrix at a higher precision, as gfnlm's 4-bit format keeps its head int8).

Formats compared (gfnlm `weights=` beside the GGUF file type):
  f32   ↔ "fp32"   Q8_0 ↔ "int8" (32 values per block, one scale each; llama.cpp stores the scale as fp16, gfnlm
  as fp32)   Q4_0 ↔ "q4" (32 values per block, llama.cpp's Q4_0 rounding).

Per thread count T, format F, and round (rounds alternate the two engines so both see the same machine load):
  llama.cpp  `llama-bench -m gpt2-small-F.gguf -p 64 -n 32 -t T -r REPS -o json` (CPU only): pp64 = 64 prompt
             tokens in one batch (logits of the last token), tg32 = 32 tokens generated one at a time from an empty
             context; tokens/s averaged over its REPS repetitions (after its own warm-up run).
  gfnlm      Model.load(model.onnx, n_threads=T, weights=…) once per T and format; pp64 = `generate` of one new
             token after a 64-token prompt (the prompt's prefill, last-token logits, one draw), tg32 =
             `generate` of 32 tokens after a 1-token prompt (temperature 1, no stop): tokens ÷ wall time, median of
             REPS after one warm-up.
Reported: tokens/s of both per round, the median over rounds, and gfnlm ÷ llama.cpp. The last line is key=value
ratios (`pp64_gfnlm_int8_vs_llamacpp_q8_0_t2=…`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import serve_llamacpp as S  # noqa: E402  (sets sys.path and GFNLM_LIBRARY like the other benchmarks)
import common as C  # noqa: E402

import gfnlm  # noqa: E402

BENCH = S.BUILD / "bin" / "llama-bench"
QUANTIZE = S.BUILD / "bin" / "llama-quantize"
GFNLM_WEIGHTS = {"f32": "fp32", "q8_0": "int8", "q4_0": "q4"}
PROMPT_TOKENS, GEN_TOKENS = 64, 32


def log(*a):
    print("[llamacpp_quant]", *a, file=sys.stderr, flush=True)


def ensure_tools(jobs: int) -> None:
    if BENCH.exists() and QUANTIZE.exists():
        return
    S.ensure_server(jobs)                 # configures the CMake build directory (and builds the server) once
    log("building llama-bench and llama-quantize")
    subprocess.run(["nice", "-n", "10", "cmake", "--build", str(S.BUILD), "--target", "llama-bench",
                    "llama-quantize", "-j", str(jobs)], check=True, stdout=sys.stderr)


def ensure_gguf(py: str, fmt: str) -> Path:
    if fmt in ("f32", "q8_0"):
        return S.ensure_gguf(py, fmt)
    f32 = S.ensure_gguf(py, "f32")
    out = f32.with_name(f"gpt2-small-{fmt}.gguf")
    stamp = out.with_suffix(".source")
    want = f"{f32.name} {f32.stat().st_mtime_ns} {f32.stat().st_size}"
    if not (out.exists() and stamp.exists() and stamp.read_text() == want):
        log(f"quantizing {f32.name} to {fmt.upper()} with llama-quantize")
        subprocess.run([str(QUANTIZE), str(f32), str(out), fmt.upper()], check=True, stdout=sys.stderr,
                       stderr=sys.stderr)
        stamp.write_text(want)
    return out


def llama_round(gguf: Path, threads: int, reps: int) -> dict:
    cmd = [str(BENCH), "-m", str(gguf), "-p", str(PROMPT_TOKENS), "-n", str(GEN_TOKENS), "-t", str(threads),
           "-r", str(reps), "-ngl", "0", "-o", "json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = {}
    for test in json.loads(out):
        key = "pp64" if test["n_prompt"] == PROMPT_TOKENS and test["n_gen"] == 0 else "tg32"
        res[key] = float(test["avg_ts"])
    return res


def gfnlm_round(model, reps: int) -> dict:
    prompt64 = [int(t) for t in C.ids(7, (PROMPT_TOKENS,))]
    prompt1 = [C.RNG_PROMPT[0]]

    def pp():
        model.generate(prompt64, n=1, max_new_tokens=1, temperature=1.0, stop=[], seed=0)

    def tg():
        s = model.generate(prompt1, n=1, max_new_tokens=GEN_TOKENS, temperature=1.0, stop=[], seed=0)
        if len(s[0].tokens) != GEN_TOKENS:
            raise RuntimeError(f"gfnlm generated {len(s[0].tokens)} tokens, asked for {GEN_TOKENS}")

    def rate(fn, tokens):
        fn()                                           # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return tokens / statistics.median(times)

    return {"pp64": rate(pp, PROMPT_TOKENS), "tg32": rate(tg, GEN_TOKENS)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--formats", default="q8_0,q4_0,f32")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--python", help="Python with torch + transformers for the GGUF conversion "
                                     "(default: $BENCH_PYTHON or benchmarks/.venv)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", help="write every round's figures here")
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    if any(f not in GFNLM_WEIGHTS for f in formats):
        raise SystemExit(f"--formats takes {', '.join(GFNLM_WEIGHTS)}")
    ensure_tools(args.jobs)
    py = S.bench_python(args.python)
    ggufs = {f: ensure_gguf(py, f) for f in formats}
    with open("/proc/loadavg") as fh:
        load_start = fh.read().split()[:3]
    results, ratios = [], {}
    for t in [int(x) for x in args.threads.split(",")]:
        for f in formats:
            model = gfnlm.Model.load(str(C.ONNX_PATH), n_threads=t, weights=GFNLM_WEIGHTS[f])
            rounds = {"llama.cpp": [], "gfnlm": []}
            try:
                for _ in range(args.rounds):
                    rounds["llama.cpp"].append(llama_round(ggufs[f], t, args.reps))
                    rounds["gfnlm"].append(gfnlm_round(model, args.reps))
            finally:
                model.close()
            med = {e: {k: statistics.median(r[k] for r in rs) for k in ("pp64", "tg32")} for e, rs in rounds.items()}
            w = GFNLM_WEIGHTS[f]
            print(f"\n== gpt2-small, llama.cpp {f.upper()} vs gfnlm {w}, {t} thread(s) "
                  f"(tokens/s, median of {args.rounds} alternating rounds)")
            print(f"  {'':22s} {'pp64':>9s} {'tg32':>9s}   per round")
            for e, name in (("llama.cpp", f"llama.cpp {f.upper()}"), ("gfnlm", f"gfnlm {w}")):
                per = " ".join(f"{r['pp64']:.0f}/{r['tg32']:.1f}" for r in rounds[e])
                print(f"  {name:22s} {med[e]['pp64']:9.1f} {med[e]['tg32']:9.2f}   {per}")
            for k in ("pp64", "tg32"):
                ratios[f"{k}_gfnlm_{w}_vs_llamacpp_{f}_t{t}"] = med["gfnlm"][k] / med["llama.cpp"][k]
            results.append({"threads": t, "format": f, "gfnlm_weights": w, "rounds": rounds, "median": med})
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"loadavg_start": load_start, "gfnlm": gfnlm.version(), "results": results,
                       "ratios": ratios}, fh, indent=1)
    print("\n" + " ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
