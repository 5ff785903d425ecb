"""examples/python/serve.py under load (loopback only, bounded in time): 32 concurrent clients for
GFNLM_SERVE_SECONDS (default 20) seconds against the demo model with two adapters; no 5xx besides deliberate
overload (503), bad requests answered 400 with the library's message, SIGTERM shuts down gracefully. Prints p50/p99
latency and throughput."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import gfnlm
from conftest import ROOT

DEMO = os.path.join(ROOT, "models", "demo-gpt2")
SERVE = os.path.join(ROOT, "examples", "python", "serve.py")
pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(DEMO, "model.onnx")), reason="demo model absent")


def post(url, body, timeout=60):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    model = gfnlm.Model.load(DEMO)
    paths = {}
    for name, seed in (("a", 1), ("b", 2)):
        lora = gfnlm.LoRA(model, r=4, alpha=8, targets=["c_attn"], seed=seed)
        gfnlm.SFTTrainer(model, lora, lr=1e-2).step([("The movie was", " great")])
        paths[name] = str(tmp_path_factory.mktemp(name))
        lora.save(paths[name])
    return paths


def start(adapters, max_queue=64):
    env = dict(os.environ)
    cmd = [sys.executable, SERVE, DEMO, "--port", "0", "--threads", "2", "--max-batch", "32",
           "--max-queue", str(max_queue)] + [f"--adapter={k}={v}" for k, v in adapters.items()]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    assert "serving" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    return proc, f"http://127.0.0.1:{port}"


def test_http_service_under_32_concurrent_clients(adapters):
    proc, base = start(adapters)
    try:
        assert get(base + "/healthz")[0] == 200
        # bad input: 400 with the library's message
        st, body = post(base + "/v1/sample", b"{not json")
        assert st == 400 and "invalid JSON" in body["error"]
        st, body = post(base + "/v1/sample", {"prompt": "Hi", "top_p": 0})
        assert st == 400 and "top_p" in body["error"]
        st, body = post(base + "/v1/sample", {"prompt": "Hi", "adapter": "nope"})
        assert st == 400 and "no adapter named" in body["error"]
        st, body = post(base + "/v1/sample", {"prompt": "Hi", "bogus": 1})
        assert st == 400 and "unknown fields" in body["error"]
        st, body = post(base + "/v1/score", {"context": "The movie was", "continuation": " great", "adapter": "a"})
        assert st == 200 and body["logprob"] < 0 and len(body["token_logprobs"]) >= 1

        seconds = float(os.environ.get("GFNLM_SERVE_SECONDS", "20"))
        deadline = time.monotonic() + seconds
        latencies, statuses, tokens, lock = [], {}, [0], threading.Lock()
        prompts = ["The movie was", "Once upon a time", "The following is a random integer", "Hello"]

        def client(i):
            rng = random.Random(i)
            while time.monotonic() < deadline:
                body = {"prompt": rng.choice(prompts), "max_new_tokens": rng.randint(4, 24), "seed": rng.randrange(1 << 30),
                        "adapter": rng.choice([None, "a", "b"]), "temperature": rng.choice([0.7, 1.0])}
                t0 = time.monotonic()
                try:
                    st, out = post(base + "/v1/sample", body)
                except OSError as e:
                    st, out = f"{type(e).__name__}: {e}", None
                dt = time.monotonic() - t0
                with lock:
                    statuses[st] = statuses.get(st, 0) + 1
                    if st == 200:
                        latencies.append(dt)
                        tokens[0] += sum(len(s["tokens"]) for s in out["samples"])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 120)
        elapsed = time.monotonic() - t0
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(f"\nserve load: 32 clients, {elapsed:.1f} s: {len(latencies)} requests, {tokens[0] / elapsed:.0f} tokens/s, "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, statuses {statuses}")
        assert len(latencies) > 0
        assert all(s in (200, 503) for s in statuses), statuses
        st, metrics = get(base + "/metrics")
        assert st == 200 and "gfnlm_tokens_total" in metrics and 'quantile="0.99"' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_overload_answers_503(adapters):
    proc, base = start(adapters, max_queue=1)
    try:
        statuses, lock = {}, threading.Lock()

        def client():
            try:
                st, _ = post(base + "/v1/sample", {"prompt": "Hello", "max_new_tokens": 32})
            except OSError as e:  # a reset connection is a failure of the service, not an answer
                st = f"{type(e).__name__}: {e}"
            with lock:
                statuses[st] = statuses.get(st, 0) + 1

        threads = [threading.Thread(target=client) for _ in range(48)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert set(statuses) <= {200, 503} and statuses.get(503, 0) > 0, statuses
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
