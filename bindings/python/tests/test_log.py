"""gfnlm.set_log_handler (gfn_log_set): the library's warnings reach a Python handler. The kernel self-check's test
hook (GFNLM_TEST_BF16_SELFCHECK=mismatch, read when the bf16 kernel is first chosen, once per process) makes the one
warning the library has today happen on any CPU, so each case runs in a fresh interpreter."""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FIXTURE = os.path.join(ROOT, "Tests", "Fixtures", "gpt2-tiny", "legacy17")

SCRIPT = r"""
import sys, gfnlm
seen = []
if sys.argv[1] == "handler":
    gfnlm.set_log_handler(lambda level, message: seen.append((level, message)))
m = gfnlm.Model.load(sys.argv[2], weights="bf16")
m2 = gfnlm.Model.load(sys.argv[2], weights="bf16")
assert m.logits([1, 2, 3]).shape[0] == 3
for level, message in seen:
    print("LOG", level, message)
"""


def run(mode: str, hook: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("GFNLM_TEST_BF16_SELFCHECK", None)
    if hook:
        env["GFNLM_TEST_BF16_SELFCHECK"] = hook
    return subprocess.run([sys.executable, "-c", SCRIPT, mode, FIXTURE], env=env, capture_output=True, text=True,
                          timeout=120)


def test_failed_self_check_warns_once_through_the_handler():
    r = run("handler", "mismatch")
    assert r.returncode == 0, r.stderr
    logs = [line for line in r.stdout.splitlines() if line.startswith("LOG")]
    assert len(logs) == 1, r.stdout
    assert logs[0].startswith(f"LOG {gfnlm_warn()} ") and "self-check" in logs[0], logs[0]
    assert "gfnlm: warning" not in r.stderr   # the handler replaced the default sink


def test_default_sink_writes_the_warning_to_stderr():
    r = run("none", "mismatch")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("gfnlm: warning:") == 1 and "self-check" in r.stderr, r.stderr


def test_passed_self_check_is_silent():
    r = run("handler", "pass")
    assert r.returncode == 0, r.stderr
    assert "LOG" not in r.stdout and "gfnlm:" not in r.stderr, (r.stdout, r.stderr)


def gfnlm_warn() -> int:
    import gfnlm
    return gfnlm.LOG_WARN
