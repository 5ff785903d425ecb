"""gfnlm.set_log_handler (gfn_log_set): the library's warnings reach a Python handler. The kernel self-check's test
hook (GFNLM_TEST_BF16_SELFCHECK=mismatch, read when the bf16 kernel is first chosen, once per process) makes that
warning happen on any CPU, and GFNLM_TEST_VNNI_SELFCHECK the VNNI integer kernels' one; the hooks are read once per
process, so each case runs in a fresh interpreter."""
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


# The VNNI integer kernels' dispatch, seen from Python in fresh interpreters: GFNLM_TEST_VNNI_SELFCHECK makes the
# exact emulation (pass) or a one-ulp-off copy (mismatch) the candidate on any CPU; GFNLM_NO_VNNI=1 forbids VNNI.
VNNI_SCRIPT = r"""
import sys, gfnlm
seen = []
gfnlm.set_log_handler(lambda level, message: seen.append((level, message)))
m = gfnlm.Model.load(sys.argv[1], weights="int8")
assert m.logits([[1, 2, 3, 4, 5]]).shape[:2] == (1, 5)
print("INFO", gfnlm.system_info())
for level, message in seen:
    print("LOG", level, message)
"""


def run_vnni(**env_vars: str) -> tuple[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("GFNLM_TEST_VNNI_SELFCHECK", "GFNLM_NO_VNNI")}
    env.update(env_vars)
    r = subprocess.run([sys.executable, "-c", VNNI_SCRIPT, FIXTURE], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    info = [line[5:] for line in r.stdout.splitlines() if line.startswith("INFO ")]
    assert len(info) == 1, r.stdout
    return info[0], [line for line in r.stdout.splitlines() if line.startswith("LOG")]


def test_vnni_kernel_choice_follows_the_self_check_and_the_switch():
    import gfnlm
    if "AVX2 = 1" not in gfnlm.system_info():
        import pytest
        pytest.skip("no AVX2: the VNNI kernels are never candidates")
    info, logs = run_vnni(GFNLM_TEST_VNNI_SELFCHECK="pass")
    assert "int8/4-bit products: VNNI (emulated, test hook) (many rows)" in info and not logs, (info, logs)
    info, logs = run_vnni(GFNLM_TEST_VNNI_SELFCHECK="pass", GFNLM_NO_VNNI="1")
    assert "int8/4-bit products: AVX2 (many rows)" in info and not logs, (info, logs)
    info, logs = run_vnni(GFNLM_TEST_VNNI_SELFCHECK="mismatch")
    assert "int8/4-bit products: AVX2 (many rows)" in info, info
    assert len(logs) == 1 and "self-check" in logs[0] and "AVX2 kernel instead" in logs[0], logs
