#!/usr/bin/env python3
"""gfnlm's batching scheduler next to llama.cpp's own server (`llama-server --parallel 16`, continuous batching),
16 concurrent clients each, on the benchmark GPT-2 small, side by side in one run. Not part of `make test`.

    python3 benchmarks/serve_llamacpp.py [--threads 2,1] [--clients 16] [--tokens 20] [--rounds 3]
                                         [--dtypes f32,bf16] [--prompts same|distinct] [--python PY]

Set up on first use (cached in benchmarks/.llamacpp/, gitignored):
  1. llama.cpp's source: the `llama-cpp-python` sdist from PyPI (its vendor/llama.cpp), fetched with pip;
     `llama-server` built from it with CMake (Release, GGML_NATIVE, CPU only, no TLS, no web UI download).
  2. The benchmark GPT-2 small (benchmarks/models/gpt2-small/hf, made by tools/make_bench_models.py, see
     benchmarks/README.md) converted to GGUF, f32 and bf16, by llama.cpp's own convert_hf_to_gguf.py (with the
     gguf-py package that ships beside it) under the benchmark environment's Python (torch, transformers), with the
     GPT-2 tokenizer of Tests/Fixtures/tokenizer.

Per thread count T and weight type (f32 / bf16), one round =
  llama.cpp  16 client threads, each one POST /completion to a llama-server on 127.0.0.1 started with
             --parallel 16 -t T -tb T; the prompt as token ids, n_predict = --tokens, ignore_eos, temperature 1 and
             every other sampler off (pure sampling from the softmax), its own seed, --cache-ram 0;
             --prompts same (default): every client the same 14-token prompt, cache_prompt true (a slot reuses
             its previous prompt's cache; gfnlm shares one prefill between identical prompts admitted together);
             --prompts distinct: client i an openwebtext sentence of its own, cache_prompt false;
  gfnlm      16 threads, each one Batcher.generate(the same ids, max_new_tokens=--tokens, stop=[], seed=i) on
             Model.load(model.onnx, n_threads=T, weights="fp32" / "bf16") — the same weights (ONNX export of the
             same checkpoint);
rounds alternate between the two, so both see the same machine load. Reported: aggregate tokens/s (tokens of all
16 requests ÷ wall time from the start barrier to the last answer; median over rounds), latency of single requests
(start barrier → answer; p50 and p99 over all rounds, nearest rank), and gfnlm ÷ llama.cpp. The last line is
key=value ratios. The servers listen on 127.0.0.1 only and are stopped at the end (also on errors or Ctrl-C).
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "bindings" / "python"))
os.environ.setdefault("GFNLM_LIBRARY", str(ROOT / "build" / "libgfnlm.so"))

import common as C  # noqa: E402

CACHE = HERE / ".llamacpp"
LLAMA_CPP_PYTHON = "0.3.36"           # the sdist whose vendor/llama.cpp is built; bump deliberately
SRC = CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
BUILD = CACHE / "build"
SERVER = BUILD / "bin" / "llama-server"
PROMPT = C.RNG_PROMPT                 # "The following is a random integer drawn uniformly between 0 and 100: "


def log(*a):
    print("[serve_llamacpp]", *a, file=sys.stderr, flush=True)


# --- set-up -------------------------------------------------------------------------------------------------------

def ensure_source() -> Path:
    if (SRC / "CMakeLists.txt").exists():
        return SRC
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.exists():
        log(f"fetching llama-cpp-python {LLAMA_CPP_PYTHON} (sdist, ~77 MB) for its vendored llama.cpp")
        # --no-binary only for this package: its build dependencies may come as wheels (pip prepares metadata)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--no-binary", "llama-cpp-python", f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
                        "-d", str(CACHE)], check=True)
    with tarfile.open(sdist) as tar:
        kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(CACHE, **kw)
    if not (SRC / "CMakeLists.txt").exists():
        raise SystemExit(f"no llama.cpp source at {SRC} after unpacking {sdist.name}")
    return SRC


def ensure_server(jobs: int) -> Path:
    if SERVER.exists():
        return SERVER
    src = ensure_source()
    if shutil.which("cmake") is None:
        raise SystemExit("cmake is needed to build llama-server (Debian: apt-get install -y cmake)")
    log(f"building llama-server in {BUILD} (CMake, -j{jobs}; several minutes on 2 cores, once)")
    subprocess.run(["cmake", "-S", str(src), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
                    "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_UI=OFF",
                    "-DLLAMA_USE_PREBUILT_UI=OFF", "-Wno-dev"], check=True, stdout=sys.stderr)
    subprocess.run(["nice", "-n", "10", "cmake", "--build", str(BUILD), "--target", "llama-server",
                    "-j", str(jobs)], check=True, stdout=sys.stderr)
    if not SERVER.exists():
        raise SystemExit(f"the build did not produce {SERVER}")
    return SERVER


def bench_python(arg: str | None) -> str:
    py = arg or os.environ.get("BENCH_PYTHON") or str(HERE / ".venv" / "bin" / "python")
    if not Path(py).exists():
        raise SystemExit(f"{py} is missing: run `python3 benchmarks/run.py` once (it makes benchmarks/.venv and "
                         "the models), or pass --python with torch + transformers installed")
    return py


def ensure_gguf(py: str, dtype: str) -> Path:
    """benchmarks/models/gpt2-small/hf → GGUF (llama.cpp's converter), cached beside the manifest it came from."""
    out = CACHE / "models" / f"gpt2-small-{dtype}.gguf"
    stamp = out.with_suffix(".source")
    manifest = C.GPT2 / "manifest.json"
    if not (C.HF_DIR / "model.safetensors").exists() or not C.ONNX_PATH.exists():
        raise SystemExit(f"{C.GPT2} is incomplete: run `python3 benchmarks/run.py` once, or "
                         "`benchmarks/.venv/bin/python tools/make_bench_models.py`")
    want = manifest.read_text() if manifest.exists() else str(os.stat(C.HF_DIR / "model.safetensors").st_mtime)
    if out.exists() and stamp.exists() and stamp.read_text() == want:
        return out
    src = ensure_source()
    hf = CACHE / "models" / "gpt2-small-hf"          # the checkpoint plus the GPT-2 tokenizer the converter reads
    shutil.rmtree(hf, ignore_errors=True)
    hf.mkdir(parents=True)
    for f in C.HF_DIR.iterdir():
        (hf / f.name).symlink_to(f.resolve())
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        if not (hf / name).exists() and (C.TOKENIZER_DIR / name).exists():
            (hf / name).symlink_to((C.TOKENIZER_DIR / name).resolve())
    log(f"converting {C.HF_DIR} to GGUF ({dtype}) with llama.cpp's convert_hf_to_gguf.py")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    subprocess.run([py, str(src / "convert_hf_to_gguf.py"), str(hf), "--outtype", dtype, "--outfile", str(out)],
                   check=True, stdout=sys.stderr, env=env)
    stamp.write_text(want)
    return out


# --- llama.cpp's server --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One llama-server process on 127.0.0.1; stopped by close()."""

    def __init__(self, binary: Path, gguf: Path, threads: int, parallel: int, ctx: int, log_path: Path):
        self.port = free_port()
        self.log = open(log_path, "w")
        cmd = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port),
               "--parallel", str(parallel), "-c", str(ctx), "-t", str(threads), "-tb", str(threads),
               "-ngl", "0", "--cont-batching", "--no-webui", "--cache-ram", "0"]   # slot prompt cache only
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"llama-server exited with {self.proc.returncode}; see {log_path}")
            with contextlib.suppress(OSError):
                status, _ = self.request("GET", "/health", None, timeout=2)
                if status == 200:
                    break
            if time.monotonic() > deadline:
                self.close()
                raise SystemExit(f"llama-server did not become healthy in 120 s; see {log_path}")
            time.sleep(0.2)

    def request(self, method: str, path: str, body, timeout: float = 300):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def complete(self, seed: int, tokens: int, prompt: list[int], cache_prompt: bool) -> int:
        body = {"prompt": list(prompt), "n_predict": tokens, "ignore_eos": True, "seed": seed,
                "cache_prompt": cache_prompt,
                "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0,
                "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "stream": False,
                "samplers": ["temperature"]}     # only temperature 1, then the draw: the full softmax
        status, raw = self.request("POST", "/completion", body)
        if status != 200:
            raise RuntimeError(f"llama-server answered {status}: {raw[:300]!r}")
        reply = json.loads(raw)
        n = int(reply.get("tokens_predicted", 0))
        if n != tokens:
            raise RuntimeError(f"llama-server predicted {n} tokens, asked for {tokens}")
        return n

    def greedy(self, tokens: int) -> list[int]:
        body = {"prompt": list(PROMPT), "n_predict": tokens, "ignore_eos": True, "temperature": 0.0,
                "cache_prompt": False, "return_tokens": True, "stream": False}
        status, raw = self.request("POST", "/completion", body)
        if status != 200:
            raise RuntimeError(f"llama-server answered {status}: {raw[:300]!r}")
        return [int(t) for t in json.loads(raw).get("tokens", [])]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- measuring ------------------------------------------------------------------------------------------------------

def concurrent_round(clients: int, body) -> tuple[float, list[float], int]:
    """(wall seconds, per-request latencies, tokens): `clients` threads released together, each running body(i)."""
    counts, lat, errors = [0] * clients, [0.0] * clients, []
    barrier = threading.Barrier(clients + 1)
    start = [0.0]

    def worker(i):
        barrier.wait()
        try:
            counts[i] = body(i)
        except BaseException as e:  # noqa: BLE001 (re-raised below, on the main thread)
            errors.append(e)
        lat[i] = time.perf_counter() - start[0]
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start[0] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start[0]
    if errors:
        raise errors[0]
    return wall, lat, sum(counts)


def nearest_rank(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def summarize(rounds: list[tuple[float, list[float], int]]) -> dict:
    lat = [x for _, l, _ in rounds for x in l]
    return {"tokens_per_s": statistics.median(n / w for w, _, n in rounds),
            "p50_s": nearest_rank(lat, 0.50), "p99_s": nearest_rank(lat, 0.99),
            "samples": [round(n / w, 2) for w, _, n in rounds]}


def client_prompts(model, clients: int, mode: str) -> list[list[int]]:
    """`same`: every client sends PROMPT; `distinct`: client i sends openwebtext sentence i (8-60 tokens)."""
    if mode == "same":
        return [list(PROMPT)] * clients
    lines = (ROOT / "data" / "openwebtext" / "prompts.txt").read_text(encoding="utf-8").splitlines()
    return [model.tokenizer.encode(line.strip()) for line in lines[:clients]]


def measure(binary: Path, gguf: Path, dtype: str, threads: int, clients: int, tokens: int, rounds: int,
            mode: str) -> dict:
    import gfnlm
    weights = {"f32": "fp32", "bf16": "bf16"}[dtype]
    model = gfnlm.Model.load(str(C.ONNX_PATH), tokenizer=str(C.TOKENIZER_DIR), n_threads=threads, weights=weights)
    batcher = gfnlm.Batcher(model, max_batch=max(32, clients))
    prompts = client_prompts(model, clients, mode)
    # Reuse of a prompt's prefill: gfnlm shares one prefill between identical prompts admitted together; llama.cpp
    # keeps each slot's last prompt (cache_prompt). Both on for `same`, neither possible for `distinct`.
    reuse = mode == "same"
    per_slot = 1 << (max(map(len, prompts)) + tokens + 8).bit_length()        # prompt + new tokens, with room
    server = None
    try:
        server = Server(binary, gguf, threads, clients, per_slot * clients,
                        CACHE / f"server-{dtype}-t{threads}.log")

        def llama(i):
            return server.complete(seed=1000 + i, tokens=tokens, prompt=prompts[i], cache_prompt=reuse)

        def ours(i):
            return len(batcher.generate(prompts[i], seed=1000 + i, max_new_tokens=tokens, stop=[])[0].tokens)
        # the same weights on both sides: greedy continuations should agree (a check on the conversion; near-ties
        # of a random-weight model may still split them late, so it is reported, not enforced)
        theirs = server.greedy(tokens)
        mine = list(model.generate(PROMPT, max_new_tokens=tokens, temperature=0.0, stop=[])[0].tokens)
        agree = next((k for k, (a, b) in enumerate(zip(theirs, mine)) if a != b), min(len(theirs), len(mine)))
        log(f"{dtype} t{threads}: greedy continuations agree on {agree}/{tokens} tokens "
            f"(llama.cpp {theirs[:6]}…, gfnlm {mine[:6]}…)")
        concurrent_round(clients, llama)        # warm-up, both sides
        concurrent_round(clients, ours)
        out = {"llama.cpp": [], "gfnlm": []}
        for r in range(rounds):
            order = (("llama.cpp", llama), ("gfnlm", ours)) if r % 2 == 0 else (("gfnlm", ours), ("llama.cpp", llama))
            for name, fn in order:
                out[name].append(concurrent_round(clients, fn))
    finally:
        if server is not None:
            server.close()
        batcher.close()
        model.close()
    result = {name: summarize(v) for name, v in out.items()}
    result["greedy_agree"] = agree
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--prompts", default="same", choices=("same", "distinct"),
                    help="same: every client the 14-token RNG prompt (prompt reuse on both sides); distinct: "
                         "client i an openwebtext sentence of its own (every prompt prefilled)")
    ap.add_argument("--python", help="Python with torch + transformers for the GGUF conversion "
                                     "(default: $BENCH_PYTHON or benchmarks/.venv)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel compile jobs for the one-time llama.cpp build")
    ap.add_argument("--setup-only", action="store_true", help="build llama-server and convert the model; measure nothing")
    args = ap.parse_args()
    dtypes = [d for d in args.dtypes.split(",") if d]
    if any(d not in ("f32", "bf16") for d in dtypes):
        raise SystemExit("--dtypes takes f32 and/or bf16")
    binary = ensure_server(args.jobs)
    py = bench_python(args.python)
    ggufs = {d: ensure_gguf(py, d) for d in dtypes}
    if args.setup_only:
        print(binary, *ggufs.values())
        return 0
    ratios = {}
    for t in [int(x) for x in args.threads.split(",")]:
        for d in dtypes:
            t0 = time.perf_counter()
            r = measure(binary, ggufs[d], d, t, args.clients, args.tokens, args.rounds, args.prompts)
            print(f"\n== gpt2-small {d}, {t} thread(s), {args.clients} concurrent clients x {args.tokens} tokens, "
                  f"{args.prompts} prompts "
                  f"(median of {args.rounds} alternating rounds; {time.perf_counter() - t0:.0f} s)")
            print(f"  {'':10s} {'tokens/s':>10s} {'p50 s':>8s} {'p99 s':>8s}   per round")
            for name in ("llama.cpp", "gfnlm"):
                s = r[name]
                print(f"  {name:10s} {s['tokens_per_s']:10.1f} {s['p50_s']:8.2f} {s['p99_s']:8.2f}   {s['samples']}")
            print(f"  greedy continuations agree on {r['greedy_agree']}/{args.tokens} tokens")
            ratios[f"gfnlm_vs_llamacpp_{d}_t{t}"] = r["gfnlm"]["tokens_per_s"] / r["llama.cpp"]["tokens_per_s"]
            ratios[f"p99_gfnlm_vs_llamacpp_{d}_t{t}"] = r["gfnlm"]["p99_s"] / r["llama.cpp"]["p99_s"]
            sys.stdout.flush()
    print("\n" + " ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
