#!/usr/bin/env python3
"""gfnlm benchmark suite: gfnlm side by side with onnxruntime and PyTorch on this machine. `make bench` runs it.

    python3 benchmarks/run.py [--rounds N] [--reps K] [--threads 2,1] [--only infer,decode,lora,gfn]
                              [--engines gfnlm,onnxruntime,torch] [--quick] [--python PY] [--no-build]

What it does:
 1. Makes benchmarks/.venv from benchmarks/requirements.txt if it is missing or the file changed (or uses
    --python / $BENCH_PYTHON).
 2. Makes the models with tools/make_bench_models.py if they are missing (benchmarks/models/, gitignored).
 3. Builds the library with `make lib` if build/libgfnlm.so is missing (or uses $GFNLM_LIBRARY). If gfnlm cannot
    be built or loaded, its cells say why and the peers are measured anyway.
 4. Runs one subprocess per (engine, phase, thread count) — OPENBLAS_NUM_THREADS / OMP_NUM_THREADS /
    MKL_NUM_THREADS, torch.set_num_threads, ORT intra_op_num_threads and gfnlm n_threads all set to the count —
    alternating engines and thread counts round by round in one time window, and takes medians.
 5. Prints the table, the ratios (gfnlm speed ÷ peer speed), writes benchmarks/results/latest.json, and prints as
    its LAST line the 2-thread ratios as key=value pairs.
Only the standard library is needed to run this file; the workers run in the benchmark environment.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import common as C  # noqa: E402  (standard library only at import)

VENV = HERE / ".venv"
REQ = HERE / "requirements.txt"
RESULTS = HERE / "results"
ENGINES = ["gfnlm", "gfnlm-bf16", "gfnlm-int8", "gfnlm-q4", "onnxruntime", "torch"]
PHASES = ["infer", "decode", "lora", "gfn"]
# gfnlm-bf16: the same library with weights="bf16" (inference only); gfnlm-int8 / gfnlm-q4: block-quantized frozen
# weights (every phase: the training steps train LoRA on the quantized base)
QUANT = ["gfnlm-int8", "gfnlm-q4"]
PHASE_ENGINES = {"infer": ENGINES, "decode": ENGINES, "lora": ["gfnlm", *QUANT, "torch"],
                 "gfn": ["gfnlm", *QUANT, "torch"]}
NI = "n/a (not implemented yet)"

# targets from the issues (gfnlm ÷ peer, speed), printed beside the ratios
TARGETS = {
    "prefill_vs_ort": "≥0.8 (#2), ≥0.9 (#7)",
    "decode_b1_vs_ort": "≥1 (#3, #7); bf16 ≥1.5",
    "decode_b8_vs_ort": "≥1 (#3, #7); bf16 ≥1.5",
    "decode_b32_vs_ort": "≥1 (#3, #7)",
    "prefill_bf16_vs_ort": "—",
    "decode_b1_bf16_vs_ort": "≥1.5 (#7)",
    "decode_b8_bf16_vs_ort": "≥1.5 (#7)",
    "decode_b32_bf16_vs_ort": "—",
    "score_vs_torch": "—",
    "load_vs_ort": "gfnlm ≤0.5 s (#7)",
    "lora_step_vs_torch": "≥1.5 fp32 (#4), ≥3 (#7)",
    "gfn_step_vs_torch": "≥6 fp32 (#5), ≥10 (#7)",
    "prefill_int8_vs_f32": "≥1.5 (#21)",
    "decode_b1_int8_vs_f32": "≥1.8 (#21)",
    "decode_b1_int8_vs_bf16": "≥1.15 (#21)",
    "decode_b8_int8_vs_f32": "—",
    "prefill_int8_vs_ort": "≥1.2 (#21)",
    "decode_b1_int8_vs_ort": "—",
    "lora_step_int8_vs_torch": "≥2.5 (#21)",
    "gfn_step_int8_vs_torch": "≥12 (#21)",
    "prefill_q4_vs_f32": "—",
    "decode_b1_q4_vs_f32": "≥2.5 (#21)",
    "decode_b8_q4_vs_f32": "—",
    "lora_step_q4_vs_torch": "—",
    "gfn_step_q4_vs_torch": "—",
}


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


# --- set-up ----------------------------------------------------------------------------------------------------

def ensure_venv(python_arg: str | None) -> str:
    py = python_arg or os.environ.get("BENCH_PYTHON")
    if py:
        return py
    stamp = VENV / ".ok"
    want = hashlib.sha256(REQ.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want:
        return str(VENV / "bin" / "python")
    log(f"setting up {VENV} from {REQ.name} (torch, transformers, onnxruntime, peft, …; several GB, once)")
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQ)], check=True)
    stamp.write_text(want + "\n")
    return str(VENV / "bin" / "python")


def ensure_models(py: str):
    tool = REPO / "tools" / "make_bench_models.py"
    if subprocess.run([py, str(tool), "--check"]).returncode == 0:
        return
    log("making the benchmark models (tools/make_bench_models.py, a few minutes)")
    subprocess.run([py, str(tool)], check=True, stdout=sys.stderr)


def ensure_library(no_build: bool) -> tuple[str | None, str | None]:
    """(path, None) or (None, reason)."""
    env = os.environ.get("GFNLM_LIBRARY")
    if env:
        return (env, None) if Path(env).exists() else (None, f"GFNLM_LIBRARY={env} does not exist")
    lib = REPO / "build" / "libgfnlm.so"
    if lib.exists() or no_build:
        return (str(lib), None) if lib.exists() else (None, "build/libgfnlm.so missing (--no-build)")
    log("build/libgfnlm.so is missing: running `make lib`")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logf = RESULTS / "runs" / "make-lib.log"
    logf.parent.mkdir(parents=True, exist_ok=True)
    with open(logf, "w") as f:
        r = subprocess.run(["make", "-C", str(REPO), "lib"], stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0 or not lib.exists():
        tail = [ln for ln in logf.read_text().splitlines() if "error:" in ln][:1]
        why = tail[0].strip() if tail else f"exit {r.returncode}"
        return None, f"libgfnlm.so does not build ({why[:160]}; log: {logf.relative_to(REPO)})"
    return str(lib), None


def machine() -> dict:
    d = {"hostname": platform.node(), "kernel": platform.release(), "python": platform.python_version(),
         "os_cpu_count": os.cpu_count()}
    try:
        d["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                if k in ("model name", "cpu family", "model", "stepping", "flags", "cache size") and k not in info:
                    info[k] = v
    except OSError:
        pass
    flags = set(info.pop("flags", "").split())
    d["cpu"] = info
    d["simd"] = {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                d["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        d["lscpu_model_name"] = next(ln.split(":", 1)[1].strip() for ln in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return d


def warm_page_cache():
    """Loads are measured from a warm page cache: read every model file once."""
    for p in sorted(C.GPT2.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass


def cpu_jiffies():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


# --- running -----------------------------------------------------------------------------------------------------

def run_worker(py, lib, engine, phase, threads, reps, warmup, seed, runs_dir: Path) -> dict:
    out = runs_dir / f"{phase}-{engine}-t{threads}-s{seed}.json"
    env = C.thread_env(threads)
    if lib:
        env["GFNLM_LIBRARY"] = lib
    cmd = [py, str(HERE / "worker.py"), "--engine", engine, "--phase", phase, "--threads", str(threads),
           "--reps", str(reps), "--warmup", str(warmup), "--seed", str(seed), "--out", str(out)]
    la0 = loadavg()
    j0, ru0 = cpu_jiffies(), os.times()
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    j1, ru1 = cpu_jiffies(), os.times()
    if out.exists():
        res = json.loads(out.read_text())
    else:
        lines = (p.stderr or p.stdout or "").strip().splitlines()
        res = {"engine": engine, "phase": phase, "threads": threads,
               "error": f"worker exited {p.returncode}: {lines[-1] if lines else ''}", "stderr": p.stderr[-4000:]}
    res["loadavg_before"], res["loadavg_after"] = la0, loadavg()
    if j0 and j1 and j1[1] > j0[1]:
        hz = os.sysconf("SC_CLK_TCK")
        own = (ru1.children_user + ru1.children_system) - (ru0.children_user + ru0.children_system)
        busy = (j1[0] - j0[0]) / hz
        ncpu = os.cpu_count() or 1
        wall = (j1[1] - j0[1]) / hz / ncpu
        # CPU taken by everything else on the machine while this worker ran, in cores
        res["others_cores"] = max(0.0, (busy - own) / wall) if wall > 0 else None
    out.write_text(json.dumps(res, indent=1))
    status = res.get("na") or res.get("error") or "ok"
    oc = res.get("others_cores")
    log(f"{phase:6s} {engine:11s} {threads}T  {time.time() - t0:6.1f} s  others used "
        f"{'?' if oc is None else f'{oc:.2f}'} cores  {status[:100]}")
    return res


def schedule(args, engines):
    """[(round, phase, engine, threads)], alternating engine order and thread order from round to round."""
    jobs = []
    for phase in args.only:
        rounds = args.rounds
        for r in range(rounds):
            tlist = args.threads if r % 2 == 0 else list(reversed(args.threads))
            eng = [e for e in PHASE_ENGINES[phase] if e in engines]
            k = r % len(eng) if eng else 0
            eng = eng[k:] + eng[:k]
            for t in tlist:
                for e in eng:
                    jobs.append((r, phase, e, t))
    return jobs


# --- aggregation -------------------------------------------------------------------------------------------------

def aggregate(results: list, threads: list, engines: list, skip: dict) -> dict:
    """{engine: {threads: {metric: value or reason string}}}."""
    out = {}
    for e in engines:
        for t in threads:
            m = {}
            rs = [r for r in results if r["engine"] == e and r["threads"] == t]
            for phase in PHASES:
                prs = [r for r in rs if r["phase"] == phase]
                if not prs:
                    continue
                ok = [r for r in prs if "na" not in r and "error" not in r]
                reason = None
                if not ok:
                    r0 = prs[0]
                    reason = skip.get(e) or (NI if r0.get("na", "").startswith("not implemented yet")
                                             else f"n/a ({r0.get('na') or r0.get('error')})")
                if phase == "infer":
                    keys = {"load_s": None, "prefill_tok_s": ("prefill_s", "prefill_tokens"),
                            "score_tok_s": ("score_s", "score_tokens"), "peak_rss_infer_mb": None}
                elif phase == "decode":
                    keys = {f"decode_b{b}_tok_s": (f"decode_b{b}_s", f"decode_b{b}_tokens")
                            for b in C.DECODE_BATCHES}
                    keys["peak_rss_decode_mb"] = None
                else:
                    keys = {f"{phase}_step_s": None, f"peak_rss_{phase}_mb": None}
                for k, spec in keys.items():
                    if reason:
                        m[k] = reason
                        continue
                    if k == "load_s":
                        m[k] = C.median([r["load_s"] for r in ok])
                    elif k.startswith("peak_rss"):
                        m[k] = C.median([r["peak_rss_mb"] for r in ok])
                    elif k.endswith("_step_s"):
                        secs = [x for r in ok for x in r["step_s"]]
                        m[k] = C.median(secs)
                        m[k + "_all"] = secs
                        cpus = [x for r in ok for x in r.get("step_cpu_s", [])]
                        if cpus:
                            m[k + "_cpu_util"] = C.median([c / w for c, w in zip(cpus, secs)])
                    else:
                        tk, nk = spec
                        secs = [x for r in ok for x in r[tk]]
                        m[k] = ok[0][nk] / C.median(secs)
                        m[k + "_all"] = [ok[0][nk] / s for s in secs]
                        cpus = [x for r in ok for x in r.get(tk.replace("_s", "_cpu_s"), [])]
                        if cpus:
                            m[k + "_cpu_util"] = C.median([c / w for c, w in zip(cpus, secs)])
            out.setdefault(e, {})[t] = m
    return out


def ratio(a, b, invert=False):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not a or not b:
        return None
    return b / a if invert else a / b


def ratios(agg: dict, t: int) -> dict:
    g = agg.get("gfnlm", {}).get(t, {})
    o = agg.get("onnxruntime", {}).get(t, {})
    p = agg.get("torch", {}).get(t, {})
    b = agg.get("gfnlm-bf16", {}).get(t, {})
    return {
        "prefill_vs_ort": ratio(g.get("prefill_tok_s"), o.get("prefill_tok_s")),
        "decode_b1_vs_ort": ratio(g.get("decode_b1_tok_s"), o.get("decode_b1_tok_s")),
        "decode_b8_vs_ort": ratio(g.get("decode_b8_tok_s"), o.get("decode_b8_tok_s")),
        "decode_b32_vs_ort": ratio(g.get("decode_b32_tok_s"), o.get("decode_b32_tok_s")),
        "score_vs_torch": ratio(g.get("score_tok_s"), p.get("score_tok_s")),
        "load_vs_ort": ratio(g.get("load_s"), o.get("load_s"), invert=True),
        "lora_step_vs_torch": ratio(g.get("lora_step_s"), p.get("lora_step_s"), invert=True),
        "gfn_step_vs_torch": ratio(g.get("gfn_step_s"), p.get("gfn_step_s"), invert=True),
        "prefill_bf16_vs_ort": ratio(b.get("prefill_tok_s"), o.get("prefill_tok_s")),
        "decode_b1_bf16_vs_ort": ratio(b.get("decode_b1_tok_s"), o.get("decode_b1_tok_s")),
        "decode_b8_bf16_vs_ort": ratio(b.get("decode_b8_tok_s"), o.get("decode_b8_tok_s")),
        "decode_b32_bf16_vs_ort": ratio(b.get("decode_b32_tok_s"), o.get("decode_b32_tok_s")),
        **quant_ratios(agg, t),
    }


def quant_ratios(agg: dict, t: int) -> dict:
    """The quantized formats against gfnlm fp32 / bf16 (same library, same run) and against the peers."""
    g = agg.get("gfnlm", {}).get(t, {})
    o = agg.get("onnxruntime", {}).get(t, {})
    p = agg.get("torch", {}).get(t, {})
    b = agg.get("gfnlm-bf16", {}).get(t, {})
    i = agg.get("gfnlm-int8", {}).get(t, {})
    q = agg.get("gfnlm-q4", {}).get(t, {})
    return {
        "prefill_int8_vs_f32": ratio(i.get("prefill_tok_s"), g.get("prefill_tok_s")),
        "decode_b1_int8_vs_f32": ratio(i.get("decode_b1_tok_s"), g.get("decode_b1_tok_s")),
        "decode_b1_int8_vs_bf16": ratio(i.get("decode_b1_tok_s"), b.get("decode_b1_tok_s")),
        "decode_b8_int8_vs_f32": ratio(i.get("decode_b8_tok_s"), g.get("decode_b8_tok_s")),
        "prefill_int8_vs_ort": ratio(i.get("prefill_tok_s"), o.get("prefill_tok_s")),
        "decode_b1_int8_vs_ort": ratio(i.get("decode_b1_tok_s"), o.get("decode_b1_tok_s")),
        "lora_step_int8_vs_torch": ratio(i.get("lora_step_s"), p.get("lora_step_s"), invert=True),
        "gfn_step_int8_vs_torch": ratio(i.get("gfn_step_s"), p.get("gfn_step_s"), invert=True),
        "prefill_q4_vs_f32": ratio(q.get("prefill_tok_s"), g.get("prefill_tok_s")),
        "decode_b1_q4_vs_f32": ratio(q.get("decode_b1_tok_s"), g.get("decode_b1_tok_s")),
        "decode_b8_q4_vs_f32": ratio(q.get("decode_b8_tok_s"), g.get("decode_b8_tok_s")),
        "lora_step_q4_vs_torch": ratio(q.get("lora_step_s"), p.get("lora_step_s"), invert=True),
        "gfn_step_q4_vs_torch": ratio(q.get("gfn_step_s"), p.get("gfn_step_s"), invert=True),
    }


def peer_ratios(agg: dict, t: int) -> dict:
    o = agg.get("onnxruntime", {}).get(t, {})
    p = agg.get("torch", {}).get(t, {})
    keys = ["prefill_tok_s", "decode_b1_tok_s", "decode_b8_tok_s", "decode_b32_tok_s", "score_tok_s"]
    d = {f"ort_vs_torch_{k[:-6]}": ratio(o.get(k), p.get(k)) for k in keys}
    d["ort_vs_torch_load"] = ratio(o.get("load_s"), p.get("load_s"), invert=True)
    return d


def checks(results: list) -> dict:
    """Agreement between engines on the same inputs: scoring totals and the prefill's last-position logits."""
    def first(engine, key):
        for r in results:
            if r["engine"] == engine and key in r:
                return r[key]
        return None
    out = {}
    ref_s, ref_p = first("torch", "check_score"), first("torch", "check_prefill_last8")
    for e in ("gfnlm", "onnxruntime"):
        s, pf = first(e, "check_score"), first(e, "check_prefill_last8")
        if s and ref_s:
            out[f"{e}_vs_torch_score_max_abs"] = max(abs(a - b) for a, b in zip(s, ref_s))
        if pf and ref_p:
            out[f"{e}_vs_torch_prefill_logit_max_abs"] = max(abs(a - b) for ra, rb in zip(pf, ref_p)
                                                             for a, b in zip(ra, rb))
    return out


# --- printing ----------------------------------------------------------------------------------------------------

ROWS = [
    ("load_s", "load time (s)", "{:.2f}"),
    ("prefill_tok_s", "prefill 16×64, full logits (tok/s)", "{:.0f}"),
    ("decode_b1_tok_s", "decode batch 1, 16+32 (new tok/s)", "{:.1f}"),
    ("decode_b8_tok_s", "decode batch 8 (new tok/s)", "{:.1f}"),
    ("decode_b32_tok_s", "decode batch 32 (new tok/s)", "{:.1f}"),
    ("score_tok_s", "scoring 32×(32+32) (tok/s)", "{:.0f}"),
    ("lora_step_s", "LoRA step 8×32, r=512 c_attn (s)", "{:.2f}"),
    ("gfn_step_s", "GFlowNet rng step, 64 traj. (s)", "{:.2f}"),
    ("prefill_tok_s_cpu_util", "cores busy during prefill (CPU s ÷ wall s)", "{:.2f}"),
    ("decode_b1_tok_s_cpu_util", "cores busy during decode b1", "{:.2f}"),
    ("peak_rss_infer_mb", "peak RSS load+prefill+score (MiB)", "{:.0f}"),
    ("peak_rss_decode_mb", "peak RSS decode (MiB)", "{:.0f}"),
    ("peak_rss_lora_mb", "peak RSS LoRA step (MiB)", "{:.0f}"),
    ("peak_rss_gfn_mb", "peak RSS GFlowNet step (MiB)", "{:.0f}"),
]


def fmt(v, f="{:.2f}"):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f.format(v)


def table(headers, rows) -> str:
    w = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i])
                                       for i, c in enumerate(r)) + " |"
    sep = "|" + "|".join("-" * (x + 2) for x in w) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def render(agg, threads, engines, rat, peer) -> str:
    cols = [(e, t) for t in threads for e in engines]
    headers = ["metric"] + [f"{e} {t}T" for e, t in cols]
    rows = []
    for key, label, f in ROWS:
        cells = [fmt(agg.get(e, {}).get(t, {}).get(key), f) for e, t in cols]
        if all(c == "—" for c in cells):
            continue
        rows.append([label] + cells)
    s = table(headers, rows)
    rh = ["ratio (gfnlm speed ÷ peer speed)"] + [f"{t} thread{'s' if t > 1 else ''}" for t in threads] + ["target"]
    rr = [[k] + [fmt(rat[t][k]) if rat[t][k] is not None else "n/a" for t in threads] + [TARGETS[k]]
          for k in rat[threads[0]]]
    s += "\n\n" + table(rh, rr)
    ph = ["peers (onnxruntime speed ÷ torch speed)"] + [f"{t}T" for t in threads]
    pr = [[k] + [fmt(peer[t][k]) for t in threads] for k in peer[threads[0]]]
    s += "\n\n" + table(ph, pr)
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per phase (default 2)")
    ap.add_argument("--reps", type=int, default=2, help="timed repetitions per worker for infer/decode (default 2)")
    ap.add_argument("--step-reps", type=int, default=2, help="timed LoRA/GFlowNet steps per worker (default 2)")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--only", default=",".join(PHASES), help="phases: infer,decode,lora,gfn")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--quick", action="store_true", help="1 round, 1 repetition (smoke test; noisy numbers)")
    ap.add_argument("--python", help="Python with the benchmark requirements (default: benchmarks/.venv)")
    ap.add_argument("--no-build", action="store_true", help="do not run `make lib` when the library is missing")
    ap.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    ap.add_argument("--from-runs", nargs="+", metavar="DIR",
                    help="measure nothing: aggregate the worker JSON files in these benchmarks/results/runs/ folders")
    args = ap.parse_args(argv)
    args.threads = [int(x) for x in args.threads.split(",")]
    args.only = [p for p in args.only.split(",") if p]
    engines = [e for e in args.engines.split(",") if e]
    if args.quick:
        args.rounds, args.reps, args.step_reps = 1, 1, 1

    if args.from_runs:
        # re-aggregate the worker files of earlier runs (e.g. phases measured in separate invocations)
        results = []
        for d in args.from_runs:
            for f in sorted(Path(d).glob("*.json")):
                if f.name != "report.json":
                    r = json.loads(f.read_text())
                    if r.get("engine") in engines and r.get("phase") in args.only:
                        results.append(r)
        lib = next((r["info"]["library"] for r in results if r.get("engine") == "gfnlm" and "info" in r), None)
        lib_reason = None if lib else "no gfnlm results in the given runs"
        skip = {}
        mach = machine()
        started = min((r.get("started", "") for r in results), default="?")
        runs_dir = Path(args.from_runs[0]).resolve()
    else:
        py = ensure_venv(args.python)
        ensure_models(py)
        wants_lib = any(e.startswith("gfnlm") for e in engines)
        lib, lib_reason = (None, "not requested") if not wants_lib else ensure_library(args.no_build)
        skip = {e: "n/a (library not built)" for e in engines if e.startswith("gfnlm")} if lib_reason else {}
        mach = machine()
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        runs_dir = RESULTS / "runs" / time.strftime("%Y%m%d-%H%M%S")
        runs_dir.mkdir(parents=True, exist_ok=True)
        log(f"python {py}; library {lib or lib_reason}; rounds {args.rounds}; threads {args.threads}")
        warm_page_cache()

        results = []
        for r, phase, e, t in schedule(args, engines):
            if e in skip:
                results.append({"engine": e, "phase": phase, "threads": t, "na": skip[e]})
                continue
            reps = args.step_reps if phase in ("lora", "gfn") else args.reps
            results.append(run_worker(py, lib, e, phase, t, reps, 1, 1000 * r, runs_dir))

    agg = aggregate(results, args.threads, engines, skip)
    rat = {t: ratios(agg, t) for t in args.threads}
    peer = {t: peer_ratios(agg, t) for t in args.threads}
    chk = checks(results)
    infos = {}
    for res in results:
        if "info" in res:
            infos.setdefault(res["engine"], res["info"])
    if "gfnlm" in infos and "openblas" in infos["gfnlm"]:
        mach["openblas"] = dict(infos["gfnlm"]["openblas"], source="mapped into the gfnlm worker")
    else:
        blas = C.loaded_openblas_system()
        if blas:
            mach["openblas"] = dict(blas, source="system libopenblas (gfnlm did not run)")

    report = {
        "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": mach,
        "settings": {"rounds": args.rounds, "reps": args.reps, "step_reps": args.step_reps,
                     "threads": args.threads, "phases": args.only, "engines": engines,
                     "workloads": {"prefill": [C.PREFILL_B, C.PREFILL_T],
                                   "decode": {"batches": C.DECODE_BATCHES, "prompt": C.DECODE_PROMPT,
                                              "new_tokens": C.DECODE_NEW},
                                   "score": [C.SCORE_PAIRS, C.SCORE_CTX, C.SCORE_CONT],
                                   "lora": {"batch": [C.LORA_B, C.LORA_T], "r": C.LORA_R, "alpha": C.LORA_ALPHA,
                                            "dropout": C.LORA_DROPOUT, "targets": C.LORA_TARGETS},
                                   "gfn_rng": {"bsz": C.RNG_BSZ, "grad_acc": C.RNG_GRAD_ACC,
                                               "max_len": C.RNG_MAX_LEN, "min_len": C.RNG_MIN_LEN}}},
        "library": lib, "library_problem": lib_reason, "engine_info": infos,
        "metrics": {e: {str(t): v for t, v in d.items()} for e, d in agg.items()},
        "ratios": {str(t): v for t, v in rat.items()}, "peer_ratios": {str(t): v for t, v in peer.items()},
        "checks": chk, "runs_dir": [str(Path(d).resolve().relative_to(REPO)) for d in args.from_runs] if args.from_runs
        else str(runs_dir.relative_to(REPO)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    if not args.from_runs:
        (runs_dir / "report.json").write_text(json.dumps(dict(report, raw=results), indent=1) + "\n")

    cpu = mach.get("cpu", {})
    print(f"gfnlm benchmarks — {started} — {cpu.get('model name', '?')} (family {cpu.get('cpu family')} model "
          f"{cpu.get('model')}), {mach.get('os_cpu_count')} cores, AVX-512 {'yes' if mach['simd']['avx512f'] else 'no'}"
          f", {mach.get('mem_total_gib')} GiB; OpenBLAS {mach.get('openblas', {}).get('core', '?')}")
    oc = [r["others_cores"] for r in results if r.get("others_cores") is not None]
    if oc:
        print(f"contention: other processes used {C.median(oc):.2f} cores (median over workers; max {max(oc):.2f})"
              f" of {mach.get('os_cpu_count')} while the workers ran")
    if args.from_runs:
        print(f"aggregated from {len(results)} worker runs in {', '.join(args.from_runs)}; medians over every "
              f"sample; GPT-2 small fp32, random weights; T = threads")
    else:
        print(f"medians over {args.rounds} alternating round(s) × {args.reps} repetition(s) "
              f"({args.step_reps} for steps); GPT-2 small fp32, random weights; T = threads")
    if lib_reason:
        print(f"gfnlm: {lib_reason}")
    print()
    print(render(agg, args.threads, engines, rat, peer))
    if chk:
        print("\nagreement on the same inputs: " + ", ".join(f"{k} {v:.2e}" for k, v in chk.items()))
    print(f"\nwritten: {args.out} (raw runs: {report['runs_dir']})")
    t = 2 if 2 in args.threads else args.threads[0]
    print(" ".join(f"{k}={'n/a' if v is None else f'{v:.3f}'}" for k, v in rat[t].items()))


if __name__ == "__main__":
    main()
