#!/usr/bin/env python3
"""Large-model benchmark: a GPT-J-6B-shaped ONNX export with random fp16 weights, loaded by gfnlm
(bf16 weights by default), sampled, and trained for one GFlowNet step.

    python3 benchmarks/large_model.py [--model DIR] [--weights bf16|int8|q4|fp32] [--threads N]
                                      [--weight-cache off|readwrite|readonly] [--reload N]
                                      [--gen-arg=--layers=4 ...] [--rss-limit-gib 16] [--out FILE]

Steps (one process; it imports gfnlm + numpy only, so its RSS is gfnlm's):
1. If DIR/model.onnx is missing, run tools/make_gptj_shaped.py (needs numpy + onnx; --gen-python picks the
   interpreter, default this one) to write it: model.onnx + one 12.1 GB model.onnx.data + config.json + the GPT-2
   tokenizer files. --gen-arg passes options through (e.g. --gen-arg=--layers=4 for a smaller model to try things).
2. Load it with `gfnlm.Model.load(DIR, weights=…, weight_cache=…)` and report the load time and memory: VmHWM
   (peak RSS) and the RssAnon / RssFile split, both right after loading and at their highest during the whole run
   (sampled every 50 ms by a watchdog thread). With --reload N the model is then freed and loaded N more times
   (`reload_s`: a list; with --weight-cache readwrite the first load writes the weight cache and the reloads read
   it from a warm page cache); the peak RSS is reset (/proc/self/clear_refs) before the first reload, so
   `peak_rss_gib` covers the reloaded model's whole run and `peak_rss_first_load_gib` the first load alone.
3. Sampling: a 16-token prompt, 16 new tokens, temperature 1, no stop token, ids limited to the tokenizer's 50257
   (generate() decodes, and GPT-J's 143 extra rows have no BPE token), batch (n) 1 and 4 →
   new tokens per second (prompt processing included, as benchmarks/README.md "decode" rows), plus the time of one
   forward over the prompt alone (`model.logits`).
4. One GFlowNet step: the random-number configuration of engines/gfnlm_engine.py gfn_setup (prompt
   common.RNG_PROMPT, ≤ 5 tokens, min 1, forced stop, built-in random-integer reward, modified SubTB λ = 1,
   on-policy, AdamW lr 5e-4) but with a small batch: --gfn-batch trajectories (default 4) in one micro-batch, and
   LoRA r = --lora-r (default 8), alpha 2r, dropout 0.1 on the attention projections q_proj, k_proj, v_proj, out_proj.

The watchdog ends the process (exit 3) when RssAnon passes --rss-limit-gib or MemAvailable drops under
--min-available-gib, so a model that does not fit cannot push the machine into swap or the OOM killer.
(RLIMIT_AS cannot serve here: the mmapped 12 GB data file counts towards the address space.)

The last line is `key=value` pairs: model, weights, threads, file_gb, load_s, peak_rss_gib, peak_anon_gib,
peak_file_gib, rss_after_load_gib, anon_after_load_gib, file_after_load_gib, prefill16_s, tok_s_b1, tok_s_b4,
gfn_step_s, gfn_trajectories. `n/a` where a step did not run.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO / "bindings" / "python"))
if "GFNLM_LIBRARY" not in os.environ and (REPO / "build" / "libgfnlm.so").exists():
    os.environ["GFNLM_LIBRARY"] = str(REPO / "build" / "libgfnlm.so")

import common as C  # noqa: E402

DEFAULT_MODEL = Path(os.environ.get("GFNLM_BIG_MODELS", str(HERE / "models"))) / "gptj-6b-shaped"
GIB = 1 << 30


def log(*a):
    print("[large_model]", *a, flush=True)


def status_kib() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    return out


def mem_available_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


class Watchdog(threading.Thread):
    """Samples /proc/self/status; records the highest RssAnon / RssFile / VmRSS; ends the process over a limit.
    (ctypes releases the GIL during gfnlm calls, so this thread runs while a call is in progress.)"""

    def __init__(self, anon_limit_kib: int, min_available_kib: int, period: float = 0.05):
        super().__init__(daemon=True)
        self.anon_limit, self.min_available, self.period = anon_limit_kib, min_available_kib, period
        self.peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
        self.at_peak_rss = {}
        self.phase = "start"

    def reset(self):
        self.peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
        self.at_peak_rss = {}

    def sample(self):
        s = status_kib()
        for k in self.peak:
            self.peak[k] = max(self.peak[k], s.get(k, 0))
        if s.get("VmRSS", 0) >= self.peak["VmRSS"]:
            self.at_peak_rss = dict(s, phase=self.phase)
        return s

    def run(self):
        while True:
            s = self.sample()
            avail = mem_available_kib()
            if s.get("RssAnon", 0) > self.anon_limit or avail < self.min_available:
                sys.stderr.write(f"[large_model] WATCHDOG during {self.phase}: RssAnon {s.get('RssAnon', 0) / 2**20:.2f} "
                                 f"GiB (limit {self.anon_limit / 2**20:.2f}), MemAvailable {avail / 2**20:.2f} GiB "
                                 f"(minimum {self.min_available / 2**20:.2f}); stopping the process\n")
                sys.stderr.flush()
                os._exit(3)
            time.sleep(self.period)


def resident_fraction(path: Path) -> float | None:
    """Fraction of a file's pages in the page cache (util-linux fincore), None when unknown."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)],
                             capture_output=True, text=True, timeout=30).stdout.split()
        return int(out[0]) / max(1, int(out[1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def gib(kib) -> float:
    return kib / 2**20


def fmt(x, nd=2):
    return "n/a" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def ensure_model(model: Path, gen_python: str, gen_args: list) -> float | None:
    if (model / "model.onnx").exists() and (model / "model.onnx.data").exists():
        return None
    free = os.statvfs(model.parent if model.parent.exists() else REPO)
    log(f"{model}/model.onnx is missing: generating it (free disk {free.f_bavail * free.f_frsize / 1e9:.0f} GB)")
    cmd = [gen_python, str(REPO / "tools" / "make_gptj_shaped.py"), "--out", str(model), "--force", *gen_args]
    t0 = time.perf_counter()
    subprocess.run(["nice", "-n", "10", *cmd], check=True)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                    help="model folder (default $GFNLM_BIG_MODELS/gptj-6b-shaped, else benchmarks/models/…)")
    ap.add_argument("--weights", choices=["bf16", "int8", "q4", "fp32"], default="bf16")
    ap.add_argument("--weight-cache", choices=["off", "readwrite", "readonly"], default="off",
                    help="Model.load(weight_cache=...): the converted weight cache beside the model")
    ap.add_argument("--reload", type=int, default=0, help="free the model and load it this many more times")
    ap.add_argument("--threads", type=int, default=0, help="gfnlm threads (0 = all cores)")
    ap.add_argument("--gen-python", default=sys.executable, help="interpreter with numpy + onnx for the generator")
    ap.add_argument("--gen-arg", action="append", default=[], help="option for tools/make_gptj_shaped.py (repeat)")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--gfn-batch", type=int, default=4)
    ap.add_argument("--gfn-steps", type=int, default=1)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--skip-sampling", action="store_true")
    ap.add_argument("--skip-gfn", action="store_true")
    ap.add_argument("--rss-limit-gib", type=float, default=16.0, help="watchdog: largest RssAnon allowed")
    ap.add_argument("--min-available-gib", type=float, default=1.0, help="watchdog: smallest MemAvailable allowed")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    a = ap.parse_args(argv)

    res = {"model": str(a.model), "weights": a.weights, "threads": a.threads, "weight_cache": a.weight_cache,
           "loadavg_start": os.getloadavg()}
    try:
        res["git"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        res["git"] = None
    res["generate_s"] = ensure_model(a.model, a.gen_python, a.gen_arg)
    data = a.model / "model.onnx.data"
    res["file_gb"] = (data.stat().st_size + (a.model / "model.onnx").stat().st_size) / 1e9
    hf = json.loads((a.model / "config.json").read_text())
    log(f"model {a.model}: {res['file_gb']:.2f} GB; config n_layer {hf['n_layer']} n_embd {hf['n_embd']} "
        f"vocab {hf['vocab_size']} ({hf.get('torch_dtype')})")

    import numpy as np
    import gfnlm

    load_kw = {"n_threads": a.threads}
    if a.weights != "fp32":
        if "weights" not in inspect.signature(gfnlm.Model.load).parameters:
            log("these bindings have no Model.load(weights=...) option (bf16 weights not available): "
                "run with --weights fp32 for a model whose fp32 weights fit")
            print(f"model={a.model.name} weights={a.weights} load_s=n/a (no bf16 load option)")
            return 2
        load_kw["weights"] = a.weights
    if a.weight_cache != "off":
        load_kw["weight_cache"] = a.weight_cache
        gfnlm.set_log_handler(lambda level, message: log(f"gfnlm log {level}: {message}"))
    dog = Watchdog(int(a.rss_limit_gib * 2**20), int(a.min_available_gib * 2**20))
    dog.start()
    log(f"before load: {status_kib()}, MemAvailable {gib(mem_available_kib()):.1f} GiB")

    def busy(key, c0, t0):
        """CPU seconds of this process ÷ wall seconds: below the thread count when other jobs took the cores."""
        res.setdefault("cores_busy", {})[key] = round((time.process_time() - c0) / max(1e-9, time.perf_counter() - t0), 2)

    cache_file = a.model / f"model.onnx.gfnlm-{a.weights}.cache"
    if a.weight_cache != "off":
        res["cache_resident_before_load"] = resident_fraction(cache_file) if cache_file.exists() else None
        log(f"weight cache {cache_file}: {'absent' if not cache_file.exists() else ''} page-cache resident fraction "
            f"{res['cache_resident_before_load']}")
    dog.phase = "load"
    c0, t0 = time.process_time(), time.perf_counter()
    model = gfnlm.Model.load(str(a.model), **load_kw)
    res["load_s"] = time.perf_counter() - t0
    busy("load", c0, t0)
    s = dog.sample()
    res["rss_after_load_gib"], res["anon_after_load_gib"], res["file_after_load_gib"] = (
        gib(s["VmRSS"]), gib(s["RssAnon"]), gib(s["RssFile"]))
    res["peak_rss_load_gib"] = gib(s["VmHWM"])
    cfg = model.config
    log(f"loaded in {res['load_s']:.1f} s: {cfg}")
    if a.reload:
        res["peak_rss_first_load_gib"] = gib(s["VmHWM"])
        res["peak_anon_first_load_gib"] = gib(dog.peak["RssAnon"])
        res["reload_s"] = []
        for i in range(a.reload):
            model.close()
            del model
            with open("/proc/self/clear_refs", "w") as f:   # "5": reset VmHWM to the current RSS
                f.write("5")
            dog.reset()
            if a.weight_cache != "off" and cache_file.exists():
                res.setdefault("cache_resident_before_reload", []).append(resident_fraction(cache_file))
                log(f"weight cache page-cache resident fraction before reload {i + 1}: "
                    f"{res['cache_resident_before_reload'][-1]}")
            dog.phase = f"reload {i + 1}"
            c0, t0 = time.process_time(), time.perf_counter()
            model = gfnlm.Model.load(str(a.model), **load_kw)
            res["reload_s"].append(time.perf_counter() - t0)
            busy(f"reload{i + 1}", c0, t0)
            s = dog.sample()
            log(f"reload {i + 1}: {res['reload_s'][-1]:.2f} s; VmRSS {gib(s['VmRSS']):.2f} GiB (anon "
                f"{gib(s['RssAnon']):.2f}, file {gib(s['RssFile']):.2f}), VmHWM {gib(s['VmHWM']):.2f} GiB")
        res["rss_after_reload_gib"], res["anon_after_reload_gib"] = gib(s["VmRSS"]), gib(s["RssAnon"])
    log(f"after load: VmRSS {gib(s['VmRSS']):.2f} GiB (anon {gib(s['RssAnon']):.2f}, file {gib(s['RssFile']):.2f}), "
        f"VmHWM {gib(s['VmHWM']):.2f} GiB")
    if (cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["n_head"]) != (
            hf["n_layer"], hf["n_embd"], hf["vocab_size"], hf["n_head"]):
        raise SystemExit(f"gfnlm read a different config than config.json: {cfg}")

    V = cfg["vocab_size"]
    prompt = C.ids(1002, (a.prompt_len,)).tolist()           # ids < 50256 (never the end token)
    if not a.skip_sampling:
        dog.phase = "prefill"
        c0, t0 = time.process_time(), time.perf_counter()
        lg = model.logits(prompt)
        res["prefill16_s" if a.prompt_len == 16 else f"prefill{a.prompt_len}_s"] = time.perf_counter() - t0
        busy("prefill", c0, t0)
        if not np.isfinite(lg).all():
            raise SystemExit("non-finite logits")
        log(f"prefill of {a.prompt_len} tokens: {time.perf_counter() - t0:.2f} s; last-position logits "
            f"mean {lg[-1].mean():.3f} std {lg[-1].std():.3f}")
        # GPT-J has 50400 embedding rows but GPT-2's BPE only 50257 ids: generate() decodes the samples, and an id
        # the tokenizer does not define cannot be decoded, so sampling is limited to the tokenizer's ids.
        limit = {}
        if model.tokenizer is not None and model.tokenizer.vocab_size < V:
            limit = dict(allowed=range(model.tokenizer.vocab_size), disallowed_penalty=float("-inf"))
            log(f"sampling only ids < {model.tokenizer.vocab_size} (the tokenizer's), of {V} rows")
        res["sampling_vocab"] = model.tokenizer.vocab_size if limit else V
        for b in [int(x) for x in a.batches.split(",") if x]:
            dog.phase = f"sample b{b}"
            c0, t0 = time.process_time(), time.perf_counter()
            samples = model.generate(prompt, n=b, max_new_tokens=a.new_tokens, temperature=1.0, stop=[], seed=b,
                                     **limit)
            dt = time.perf_counter() - t0
            busy(f"sample_b{b}", c0, t0)
            n = sum(len(x.tokens) for x in samples)
            res[f"tok_s_b{b}"] = n / dt
            res[f"sample_b{b}_s"] = dt
            text = samples[0].text if samples[0].text is not None else samples[0].tokens
            log(f"batch {b}: {n} new tokens in {dt:.2f} s = {n / dt:.3f} tokens/s; first sample: {text!r}")
            assert all(0 <= t < V for x in samples for t in x.tokens)

    if not a.skip_gfn:
        dog.phase = "gfn setup"
        if model.tokenizer is None:
            raise SystemExit("the GFlowNet step needs the tokenizer files beside the model (vocab.json, merges.txt)")
        targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
        adapter = gfnlm.LoRA(model, r=a.lora_r, alpha=float(2 * a.lora_r), dropout=0.1, targets=targets, seed=0)
        reward = gfnlm.rewards.RandomInteger(model, termination=C.EOS)
        trainer = gfnlm.GFlowNetTrainer(
            model, adapter, reward, [C.RNG_PROMPT], objective="subtb", subtb_lambda=1.0, strict_mask=False,
            termination=C.EOS, min_length=C.RNG_MIN_LEN, max_length=C.RNG_MAX_LEN, layout="forced_stop",
            batch_size=a.gfn_batch, grad_accumulation=1, average_accumulation=False, lr=5e-4, warmup_steps=10,
            total_steps=2560, betas=(0.9, 0.999), p_on_policy=1.0, p_replay=0.0, lora_dropout=True, seed=42)
        res["lora_params"] = adapter.parameter_count
        res["gfn_config"] = (f"{a.gfn_batch} trajectories x <= {C.RNG_MAX_LEN} tokens after a {len(C.RNG_PROMPT)}-token "
                             f"prompt, SubTB lambda 1, LoRA r={a.lora_r} alpha={2 * a.lora_r} on {','.join(targets)} "
                             f"({adapter.parameter_count} params)")
        times = []
        for i in range(a.gfn_steps):
            dog.phase = f"gfn step {i + 1}"
            c0, t0 = time.process_time(), time.perf_counter()
            st = trainer.step()
            times.append(time.perf_counter() - t0)
            busy(f"gfn_step{i + 1}", c0, t0)
            log(f"GFlowNet step {i + 1}: {times[-1]:.2f} s; {st}")
            if not np.isfinite(st["loss"]):
                raise SystemExit("non-finite GFlowNet loss")
        res["gfn_step_s"] = times[0]
        res["gfn_step_times_s"] = times
        res["gfn_trajectories"] = st.get("trajectories")
        res["gfn_loss"] = st.get("loss")

    dog.phase = "end"
    s = dog.sample()
    res["peak_rss_gib"] = gib(s["VmHWM"])
    res["peak_anon_gib"], res["peak_file_gib"] = gib(dog.peak["RssAnon"]), gib(dog.peak["RssFile"])
    res["at_peak_rss"] = {k: (gib(v) if isinstance(v, int) else v) for k, v in dog.at_peak_rss.items()}
    log(f"peak: VmHWM {res['peak_rss_gib']:.2f} GiB; highest sampled RssAnon {res['peak_anon_gib']:.2f} GiB, "
        f"RssFile {res['peak_file_gib']:.2f} GiB; at the highest sampled VmRSS: {res['at_peak_rss']}")
    res["cpu_count"] = os.cpu_count()
    res["loadavg_end"] = os.getloadavg()
    log(f"cores busy (process CPU s / wall s) per phase: {res.get('cores_busy')}; load average at start "
        f"{res['loadavg_start'][0]:.2f}, at the end {res['loadavg_end'][0]:.2f} (on {res['cpu_count']} cores)")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
    keys = ["weights", "threads", "file_gb", "load_s", "reload_s", "peak_rss_first_load_gib", "peak_rss_gib", "peak_anon_gib", "peak_file_gib",
            "rss_after_load_gib", "anon_after_load_gib", "file_after_load_gib", "prefill16_s", "tok_s_b1", "tok_s_b4",
            "gfn_step_s", "gfn_trajectories"]
    print(f"model={a.model.name} " + " ".join(f"{k}={fmt(res.get(k), 3)}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
