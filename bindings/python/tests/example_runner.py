"""Shared by the example tests: where the demo model and data are, and how to load or run an example."""
import importlib.util
import math
import os
import subprocess
import sys

from conftest import ROOT

MODEL = os.environ.get("GFNLM_DEMO_MODEL", os.path.join(ROOT, "models", "demo-gpt2"))
DATA = os.environ.get("GFNLM_DEMO_DATA", os.path.join(ROOT, "data"))


def load_example(name):
    """The example's module, imported without running main()."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", "python", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def metrics(stdout):
    """The example's last line: key=value pairs, every value a finite number."""
    last = stdout.strip().splitlines()[-1]
    out = {}
    for part in last.split():
        k, v = part.split("=", 1)
        out[k] = float(v)
        assert math.isfinite(out[k]), (k, v)
    return out


def run_example(name, tmp_path, *extra, data=True, timeout=900):
    """Runs `examples/python/<name>.py --quick` on the demo model; checks the exit status and the PNG (when
    matplotlib is installed) and returns (metrics, stdout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python") + os.pathsep + env.get("PYTHONPATH", "")
    plot = tmp_path / f"{name}.png"
    args = ["--quick", "--model", MODEL] + (["--data", DATA] if data else []) + ["--plot", str(plot), *extra]
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", name + ".py"), *args],
                       capture_output=True, text=True, env=env, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return metrics(p.stdout), p.stdout
