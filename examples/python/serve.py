#!/usr/bin/env python3
"""A posterior sampler behind an HTTP JSON API: one model, any number of LoRA adapters (trained samplers), and the
library's batching scheduler (gfnlm.Batcher) merging concurrent requests into shared decoding batches.

    python examples/python/serve.py models/demo-gpt2 --adapter rng=path/to/adapter --port 8080

Endpoints
  POST /v1/sample   {"prompt": "text" | [ids], "n": 1, "max_new_tokens": 32, "temperature": 1.0, "top_k": 0,
                     "top_p": 1.0, "seed": 0, "stop": [ids or single-token strings], "min_new_tokens": 0,
                     "adapter": "name" | null, "allowed": [ids], "disallowed_penalty": -99}
                    → {"samples": [{"text", "tokens", "token_logprobs", "logprob", "finish_reason"}], "latency_s"}
                    token_logprobs are log q(token | prefix) of the policy (adapter) — for importance weights.
  POST /v1/score    {"context": …, "continuation": …, "adapter": …} → {"logprob", "token_logprobs", "latency_s"}
  GET  /healthz     {"status": "ok"} (503 "draining" during shutdown)
  GET  /metrics     Prometheus text: queue depth, active rows, requests by outcome, tokens/s, latency quantiles

Errors: 400 with the library's message for bad JSON or parameters, 404 for unknown paths or adapters, 503 when the
queue is full (retry later). SIGTERM / SIGINT: stop accepting, finish what is queued, exit. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))
import gfnlm  # noqa: E402

SAMPLE_KEYS = {"prompt", "n", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop", "min_new_tokens",
               "include_stop", "adapter", "allowed", "disallowed_penalty"}
SCORE_KEYS = {"context", "continuation", "adapter", "stop"}


class Metrics:
    """Counters and a window of recent latencies (thread-safe)."""

    def __init__(self, window: int = 4096):
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.latencies: deque[float] = deque(maxlen=window)
        self.responses: dict[int, int] = {}

    def record(self, status: int, latency: float | None) -> None:
        with self.lock:
            self.responses[status] = self.responses.get(status, 0) + 1
            if latency is not None and status == 200:
                self.latencies.append(latency)

    def quantiles(self) -> dict[str, float]:
        with self.lock:
            xs = sorted(self.latencies)
        if not xs:
            return {}
        return {q: xs[min(len(xs) - 1, int(float(q) * len(xs)))] for q in ("0.5", "0.9", "0.99")}


class Service:
    def __init__(self, model_path: str, adapters: dict[str, str], n_threads: int, max_batch: int, max_queue: int):
        self.model = gfnlm.Model.load(model_path, n_threads=n_threads)
        self.batcher = gfnlm.Batcher(self.model, max_batch=max_batch, max_queue=max_queue)
        for name, path in adapters.items():
            self.batcher.add_adapter(name, gfnlm.LoRA.load(self.model, path))
        self.metrics = Metrics()
        self.draining = False

    def sample(self, body: dict) -> dict:
        unknown = set(body) - SAMPLE_KEYS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} (allowed: {sorted(SAMPLE_KEYS)})")
        if "prompt" not in body:
            raise ValueError("'prompt' is required")
        kw = dict(body)
        prompt = kw.pop("prompt")
        samples = self.batcher.submit(prompt, **kw).result()
        return {"samples": [{"text": s.text, "tokens": [int(t) for t in s.tokens],
                             "token_logprobs": [float(x) for x in s.token_logprobs], "logprob": float(s.logprob),
                             "finish_reason": s.finish_reason} for s in samples]}

    def score(self, body: dict) -> dict:
        unknown = set(body) - SCORE_KEYS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} (allowed: {sorted(SCORE_KEYS)})")
        if "context" not in body or "continuation" not in body:
            raise ValueError("'context' and 'continuation' are required")
        kw = dict(body)
        total, per_token, _ = self.batcher.submit_score(kw.pop("context"), kw.pop("continuation"), per_token=True,
                                                         **kw).result()
        return {"logprob": float(total), "token_logprobs": [float(x) for x in per_token]}

    def prometheus(self) -> str:
        s = self.batcher.stats() if not self.batcher.closed else {}
        uptime = time.monotonic() - self.metrics.started
        lines = [
            "# TYPE gfnlm_queue_depth gauge", f"gfnlm_queue_depth {s.get('queued', 0)}",
            "# TYPE gfnlm_active_rows gauge", f"gfnlm_active_rows {s.get('active_rows', 0)}",
            "# TYPE gfnlm_tokens_total counter", f"gfnlm_tokens_total {s.get('tokens', 0)}",
            "# TYPE gfnlm_tokens_per_second gauge",
            f"gfnlm_tokens_per_second {s.get('tokens', 0) / max(uptime, 1e-9):.3f}",
            "# TYPE gfnlm_requests_total counter",
        ]
        for outcome in ("submitted", "completed", "failed", "cancelled", "rejected"):
            lines.append(f'gfnlm_requests_total{{outcome="{outcome}"}} {s.get(outcome, 0)}')
        lines.append("# TYPE gfnlm_http_responses_total counter")
        with self.metrics.lock:
            for code, n in sorted(self.metrics.responses.items()):
                lines.append(f'gfnlm_http_responses_total{{code="{code}"}} {n}')
        lines.append("# TYPE gfnlm_request_latency_seconds summary")
        for q, v in self.metrics.quantiles().items():
            lines.append(f'gfnlm_request_latency_seconds{{quantile="{q}"}} {v:.6f}')
        return "\n".join(lines) + "\n"


class Server(ThreadingHTTPServer):
    # A burst of clients must meet 503s from the service, not connection resets from a full accept backlog.
    request_queue_size = 512
    daemon_threads = True


def make_handler(service: Service):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "gfnlm-serve"

        def log_message(self, fmt, *args):  # quiet by default; errors are counted in /metrics
            pass

        def reply(self, status: int, payload, content_type: str = "application/json", latency=None):
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if status == 503:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)
            service.metrics.record(status, latency)

        def do_GET(self):
            if self.path == "/healthz":
                if service.draining:
                    self.reply(503, {"status": "draining"})
                else:
                    self.reply(200, {"status": "ok", "adapters": service.batcher.adapters})
            elif self.path == "/metrics":
                self.reply(200, service.prometheus(), "text/plain; version=0.0.4")
            else:
                self.reply(404, {"error": f"no such endpoint: GET {self.path}"})

        def do_POST(self):
            routes = {"/v1/sample": service.sample, "/v1/score": service.score}
            route = routes.get(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            if route is None:
                return self.reply(404, {"error": f"no such endpoint: POST {self.path}"})
            if service.draining:
                return self.reply(503, {"error": "the service is shutting down"})
            start = time.monotonic()
            try:
                body = json.loads(raw or b"null")
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
                result = route(body)
            except json.JSONDecodeError as e:
                return self.reply(400, {"error": f"invalid JSON: {e}"})
            except gfnlm.BusyError as e:
                return self.reply(503, {"error": str(e)})
            except gfnlm.CancelledError as e:
                return self.reply(503, {"error": str(e)})
            except (ValueError, TypeError, KeyError, gfnlm.InvalidArgumentError) as e:
                return self.reply(400, {"error": str(e)})
            except gfnlm.GfnError as e:
                return self.reply(500, {"error": str(e)})
            latency = time.monotonic() - start
            result["latency_s"] = latency
            self.reply(200, result, latency=latency)

    return Handler


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help=".onnx file or its directory (tokenizer files beside it)")
    ap.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR",
                    help="a PEFT adapter directory served under NAME (repeatable)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed on stdout)")
    ap.add_argument("--threads", type=int, default=0, help="the model's compute budget (0: all CPUs)")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-queue", type=int, default=256)
    args = ap.parse_args(argv)
    adapters = {}
    for spec in args.adapter:
        name, sep, path = spec.partition("=")
        if not sep or not name:
            ap.error(f"--adapter expects NAME=DIR, got {spec!r}")
        adapters[name] = path
    service = Service(args.model, adapters, args.threads, args.max_batch, args.max_queue)
    server = Server((args.host, args.port), make_handler(service))

    def stop(signum, _frame):
        # Graceful: refuse new work, let the batcher finish what it has, then stop serving.
        service.draining = True
        threading.Thread(target=lambda: (service.batcher.shutdown(drain=True), server.shutdown()),
                         daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serving {args.model} on http://{args.host}:{server.server_address[1]} "
          f"(adapters: {sorted(adapters) or 'none'})", flush=True)
    server.serve_forever()
    server.server_close()
    service.batcher.close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
