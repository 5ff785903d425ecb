"""Short configuration (--quick) of the random-integer example (paper §2) on the demo model, and its evaluation
rule. GFNLM_DEMO_MODEL points elsewhere."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import ROOT

MODEL = os.environ.get("GFNLM_DEMO_MODEL", os.path.join(ROOT, "models", "demo-gpt2"))
needs_demo = pytest.mark.skipif(not os.path.exists(os.path.join(MODEL, "model.onnx")),
                                reason=f"the demo model ({MODEL}/model.onnx) is absent")
KEYS = ["base_valid", "base_kl", "gfn_valid", "gfn_kl", "baseline_valid", "baseline_kl"]


def load_example():
    path = os.path.join(ROOT, "examples", "python", "random_numbers.py")
    spec = importlib.util.spec_from_file_location("random_numbers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parse_number_is_the_references_rule():
    parse = load_example().parse_number
    assert parse("42") == 42 and parse("0") == 0 and parse("99") == 99
    assert parse("7 \n") == 7                      # rstrip, as the reference
    assert parse("100") is None and parse("-1") is None
    assert parse(" 42x") is None and parse("seven") is None and parse("") is None


@needs_demo
def test_quick_run(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python") + os.pathsep + env.get("PYTHONPATH", "")
    plot = tmp_path / "rng.png"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", "random_numbers.py"), "--quick",
                        "--model", MODEL, "--plot", str(plot)], capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    last = p.stdout.strip().splitlines()[-1]
    m = {k: float(v) for k, v in (part.split("=", 1) for part in last.split())}
    assert list(m) == KEYS
    for k in KEYS:
        assert math.isfinite(m[k]), k
        assert (0 <= m[k] <= 1) if k.endswith("valid") else m[k] >= 0, (k, m[k])
    # the base fraction agrees with the exact value on the model card (2,000 samples: s.d. ≈ 0.01)
    info = json.load(open(os.path.join(MODEL, "build_info.json")))
    assert abs(m["base_valid"] - info["rng_exact"]["valid"]) < 0.05, (m["base_valid"], info["rng_exact"]["valid"])
    # twenty GFlowNet steps already move mass onto the integers
    assert m["gfn_valid"] > m["base_valid"], m
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
