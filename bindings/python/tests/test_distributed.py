"""Data-parallel training (gfnlm.distributed). The in-process tests run everywhere; the mpirun tests need OpenMPI
(mpirun) and a Python with mpi4py (GFNLM_MPI_PYTHON, default .venv-mpi/bin/python: `make mpi-test` sets both up)
and skip with the reason otherwise."""
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import gfnlm
import gfnlm.distributed
from conftest import FIXTURES, ROOT, read_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")
TINY = os.path.join(FIXTURES, "gpt2-tiny", "legacy17")
MPI_PYTHON = os.environ.get("GFNLM_MPI_PYTHON", os.path.join(ROOT, ".venv-mpi", "bin", "python"))


def _mpi_missing():
    if shutil.which("mpirun") is None:
        return "mpirun not found (OpenMPI: apt-get install openmpi-bin libopenmpi-dev, or `make mpi-test`)"
    if not os.path.exists(MPI_PYTHON):
        return f"no Python with mpi4py at {MPI_PYTHON} (set GFNLM_MPI_PYTHON, or `make mpi-test`)"
    r = subprocess.run([MPI_PYTHON, "-c", "import mpi4py, numpy"], capture_output=True)
    if r.returncode != 0:
        return f"{MPI_PYTHON} cannot import mpi4py and numpy"
    return None


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python") + os.pathsep + HERE
    env.setdefault("GFNLM_LIBRARY", os.path.join(ROOT, "build", "libgfnlm.so"))
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "self,tcp",
                "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_tcp_if_include": "lo",
                "OMPI_MCA_oob_tcp_if_include": "lo", "OMPI_MCA_plm_rsh_agent": "false", "OMP_NUM_THREADS": "1"})
    return env


def mpirun(n, out, *args, timeout=240):
    cmd = ["mpirun", "-np", str(n), MPI_PYTHON, WORKER, "--mpi", "--out", str(out), *map(str, args)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    return r, time.monotonic() - t0


def single(out, *args, timeout=240):
    cmd = [sys.executable, WORKER, "--out", str(out), *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    return r


def result(out, rank=0):
    with open(os.path.join(out, f"rank{rank}.json")) as f:
        return json.load(f)


def adapter(out, rank=0):
    return read_safetensors(os.path.join(out, f"adapter{rank}", "adapter_model.safetensors"))


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# --- in process: a world of one, argument checks, failing exchanges -----------------------------------------------

def _table_reward():
    table = {(): 0.5, (1,): 1.0, (2,): -0.5, (3,): 0.2}
    return gfnlm.rewards.Callback(lambda i, states: [table.get(tuple(s[:1]), 0.0) - 0.3 * len(s) for s in states])


def _trainer(model, distributed=None, seed=2, **kw):
    lora = gfnlm.LoRA(model, r=2, targets=["c_attn"], seed=seed)
    args = dict(objective="subtb", termination=0, max_length=3, allowed=[1, 2, 3], penalty=-math.inf, batch_size=4,
                lr=1e-2, warmup_steps=0, p_replay=0.0, seed=5)
    args.update(kw)
    return lora, gfnlm.GFlowNetTrainer(model, lora, _table_reward(), prompts=[[5, 6]], distributed=distributed, **args)


def test_world_of_one_matches_single_process_and_counts_bytes(tmp_path):
    """world_size 1 with a callback takes the distributed path (exchange of gradients, stats and replica digest):
    same trajectories and steps as no exchange at all, bit for bit; the buffer holds every adapter gradient."""
    model = gfnlm.Model.load(TINY, n_threads=1)
    la, a = _trainer(model)
    ex = gfnlm.distributed.LocalExchange()
    lb, b = _trainer(model, distributed=ex)
    for _ in range(3):
        sa, sb = a.step(), b.step()
        # statistics travel as float pairs (hi + lo): equal to ~1e-14
        assert sa.keys() == sb.keys() and all(math.isclose(sa[k], sb[k], rel_tol=1e-12, abs_tol=1e-12) for k in sa)
    la.save(tmp_path / "a")
    lb.save(tmp_path / "b")
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "b" / "adapter_model.safetensors").read_bytes()
    # one exchange per step (SubTB's normaliser exchange is skipped in a world of one): gradients + 7 stats as
    # hi/lo pairs + 32 floats of replica digest
    assert ex.calls == 3
    assert ex.bytes == 3 * 4 * (lb.parameter_count + 2 * 7 + 32)


def test_set_distributed_arguments_and_failing_exchange(tmp_path):
    model = gfnlm.Model.load(TINY, n_threads=1)
    lora, tr = _trainer(model)
    p = gfnlm._lib.gfn_distributed_default_params()
    assert (p.rank, p.world_size) == (0, 1)
    p.world_size = 2  # no callback
    with pytest.raises(gfnlm.GfnError) as e:
        gfnlm._lib.check(gfnlm._lib.gfn_gflownet_set_distributed(tr._h, p))
    assert e.value.name == "GFN_ERR_INVALID_ARGUMENT"

    class Failing(gfnlm.distributed.Exchange):
        def allreduce_mean(self, buffer):
            raise ConnectionError("peer gone")

    class Halving(gfnlm.distributed.Exchange):
        """Pretends to be rank 0 of 2 whose peer contributes zeros (so the digests differ)."""
        def allreduce_mean(self, buffer):
            buffer *= 0.5

    lora.save(tmp_path / "before")
    ex = Failing(1, 2)
    ex.attach(tr._h, gfnlm._lib.gfn_gflownet_set_distributed)
    with pytest.raises(gfnlm.GfnError) as e:
        tr.step()
    assert e.value.name == "GFN_ERR_CALLBACK" and "all-reduce" in str(e.value)
    assert isinstance(ex.error, ConnectionError)
    Halving(0, 2).attach(tr._h, gfnlm._lib.gfn_gflownet_set_distributed)
    with pytest.raises(gfnlm.GfnError) as e:
        tr.step()
    assert e.value.name == "GFN_ERR_STATE" and "batch_size (this rank: 4)" in str(e.value)
    lora.save(tmp_path / "after")
    assert (tmp_path / "before" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "after" / "adapter_model.safetensors").read_bytes()
    # rank ≠ 0 does not write checkpoints (and says OK)
    Failing(1, 2).attach(tr._h, gfnlm._lib.gfn_gflownet_set_distributed)
    tr.save(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


# --- mpirun -np 2 on localhost ------------------------------------------------------------------------------------

@needs_mpi
def test_two_ranks_bit_identical_after_20_steps(tmp_path):
    """TB (learned log Z) with replay on, buffers per rank and then with each step's best trajectories shared
    (exchange_replay: (12 + 5·max_length) more floats per rank per step, and other replays): after 20 steps both
    ranks hold the same adapter bytes and log Z, and saw the same losses."""
    runs = {}
    for share in (False, True):
        out = tmp_path / f"mpi-{share}"
        r, secs = mpirun(2, out, "--steps", 20, "--batch", 8, "--objective", "tb", "--p-replay", 0.25,
                         *(["--exchange-replay"] if share else []))
        assert r.returncode == 0, r.stdout + r.stderr
        r0, r1 = result(out, 0), result(out, 1)
        assert r0["adapter_sha256"] == r1["adapter_sha256"]
        assert [s["log_z"] for s in r0["stats"]] == [s["log_z"] for s in r1["stats"]]
        assert [s["loss"] for s in r0["stats"]] == [s["loss"] for s in r1["stats"]]
        assert r0["stats"][-1]["trajectories"] == 16 and sum(s["replay_batches"] for s in r0["stats"]) > 0
        assert r0["exact"] == r1["exact"]
        runs[share] = r0
    assert runs[True]["exchange"]["bytes"] - runs[False]["exchange"]["bytes"] == 20 * 4 * 2 * (12 + 5 * 2)
    assert [s["loss"] for s in runs[True]["stats"]] != [s["loss"] for s in runs[False]["stats"]]


@needs_mpi
@pytest.mark.parametrize("objective", ["subtb", "tb"])
def test_two_ranks_batch_8_reach_the_kl_of_one_process_batch_16(tmp_path, objective):
    """K ranks × b draw the trajectories of one process × K·b (rank-sliced row seeds), and the averaged gradient
    is that process's (SubTB's pooled normaliser re-weighted): the exact KL to the target after training agrees."""
    steps = 30
    r, _ = mpirun(2, tmp_path / "mpi", "--steps", steps, "--batch", 8, "--objective", objective)
    assert r.returncode == 0, r.stdout + r.stderr
    s = single(tmp_path / "one", "--steps", steps, "--batch", 16, "--objective", objective)
    assert s.returncode == 0, s.stdout + s.stderr
    start = single(tmp_path / "start", "--steps", 0, "--batch", 16, "--objective", objective)
    kl0 = result(tmp_path / "start")["exact"]["kl_target_q"]
    kl2, kl1 = result(tmp_path / "mpi")["exact"]["kl_target_q"], result(tmp_path / "one")["exact"]["kl_target_q"]
    assert kl1 < 0.25 * kl0, (kl0, kl1)
    assert kl2 < 0.25 * kl0, (kl0, kl2)
    assert abs(kl2 - kl1) < 0.02 * kl0 + 1e-4, (kl1, kl2)
    assert max_diff(adapter(tmp_path / "mpi"), adapter(tmp_path / "one")) < 1e-3


@needs_mpi
def test_two_rank_checkpoint_resumes_in_one_process_with_the_same_step(tmp_path):
    """A checkpoint written by rank 0 of a 2-rank run, loaded in one process with batch 16, takes the same next
    step as the 2-rank run took (same merged batch of trajectories): adapters agree to rounding."""
    ck = tmp_path / "ckpt"
    r, _ = mpirun(2, tmp_path / "mpi", "--steps", 6, "--save-at", 5, "--save", ck, "--objective", "subtb")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (ck / "adapter_model.safetensors").exists()
    s = single(tmp_path / "one", "--steps", 1, "--batch", 16, "--load", ck, "--objective", "subtb")
    assert s.returncode == 0, s.stdout + s.stderr
    a2, a1 = adapter(tmp_path / "mpi"), adapter(tmp_path / "one")
    before = read_safetensors(str(ck / "adapter_model.safetensors"))
    moved = max_diff(a2, before)
    assert moved > 1e-4
    assert max_diff(a2, a1) < 1e-3 * moved, (max_diff(a2, a1), moved)
    m, o = result(tmp_path / "mpi")["stats"][-1], result(tmp_path / "one")["stats"][-1]
    assert m["step"] == o["step"] == 5 and m["trajectories"] == o["trajectories"] == 16
    assert abs(m["loss"] - o["loss"]) < 1e-4 * max(1.0, abs(o["loss"]))


@needs_mpi
@pytest.mark.parametrize("what,named", [("batch", "batch_size (this rank: "), ("lr", "optimizer group lora")])
def test_mismatched_configurations_are_refused_at_the_first_step(tmp_path, what, named):
    r, secs = mpirun(2, tmp_path / "mpi", "--steps", 3, "--mismatch", what, "--timeout", 30)
    assert r.returncode != 0
    for rank in (0, 1):
        res = result(tmp_path / "mpi", rank)
        assert res["stats"] == [] and named in res["error"] and "ranks differ" in res["error"], res["error"]


@needs_mpi
def test_killed_rank_stops_the_other_and_the_checkpoint_resumes(tmp_path):
    """kill -9 of rank 1 mid-run: mpirun stops rank 0 and exits non-zero within 30 s, saying which rank died; the
    checkpoint written before loads and training resumes in one process."""
    ck = tmp_path / "ckpt"
    r, secs = mpirun(2, tmp_path / "mpi", "--steps", 40, "--save-at", 3, "--save", ck, "--die-at", 6,
                     "--timeout", 20, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert secs < 30 + 15, secs  # start-up of two Pythons included
    assert "signal 9" in out or "Killed" in out or "killed" in out, out
    assert not (tmp_path / "mpi" / "rank0.json").exists()  # rank 0 did not finish
    s = single(tmp_path / "one", "--steps", 2, "--batch", 16, "--load", ck)
    assert s.returncode == 0, s.stdout + s.stderr
    assert result(tmp_path / "one")["stats"][0]["step"] == 3


@needs_mpi
def test_stopped_rank_makes_the_other_abort_after_the_exchange_timeout(tmp_path):
    """A rank that hangs (SIGSTOP) is not noticed by MPI: the Python glue's deadline (Iallreduce polled for 5 s)
    prints a message and MPI_Abort stops every rank."""
    r, secs = mpirun(2, tmp_path / "mpi", "--steps", 40, "--stop-at", 4, "--timeout", 5, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "did not complete within 5 s" in out, out
    assert secs < 30 + 15, secs


@needs_mpi
def test_sft_two_ranks_identical_and_equal_to_the_merged_batch(tmp_path):
    """SFT: rank r steps on every 2nd example (different token counts per rank); both ranks end bit-identical, and
    equal to one process stepping on the whole batch (token-mean over all tokens) up to rounding."""
    r, _ = mpirun(2, tmp_path / "mpi", "--mode", "sft", "--steps", 5, "--sft-rows", 7)
    assert r.returncode == 0, r.stdout + r.stderr
    assert result(tmp_path / "mpi", 0)["adapter_sha256"] == result(tmp_path / "mpi", 1)["adapter_sha256"]
    s = single(tmp_path / "one", "--mode", "sft", "--steps", 5, "--sft-rows", 7)
    assert s.returncode == 0, s.stdout + s.stderr
    l2, l1 = result(tmp_path / "mpi")["losses"], result(tmp_path / "one")["losses"]
    assert np.allclose(l2, l1, rtol=1e-5, atol=1e-6), (l2, l1)
    moved = max_diff(adapter(tmp_path / "one"), read_safetensors(str(tmp_path / "mpi" / "adapter0" / "adapter_model.safetensors")))
    assert moved < 1e-4


def _build_c_example(tmp_path):
    if shutil.which("mpicc") is None:
        pytest.skip("mpicc not found (libopenmpi-dev)")
    exe = tmp_path / "train_mpi"
    lib = os.path.dirname(_env()["GFNLM_LIBRARY"])
    r = subprocess.run(["mpicc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(ROOT, "include"),
                        os.path.join(ROOT, "examples", "c", "train_mpi.c"), "-L" + lib, "-lgfnlm", "-Wl,-rpath," + lib,
                        "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def _c_lines(out):
    return {int(d["rank"]): d for d in (dict(kv.split("=", 1) for kv in line.split())
                                         for line in out.splitlines() if line.startswith("rank="))}


@needs_mpi
def test_c_example_two_ranks_identical_and_same_kl_as_one_process(tmp_path):
    """examples/c/train_mpi.c (OpenMPI, MPI_Iallreduce with a deadline): 2 ranks × 8 for 20 steps end with the same
    adapter bytes and log Z, and the exact KL of one process × 16."""
    exe = _build_c_example(tmp_path)
    r = subprocess.run(["mpirun", "-np", "2", str(exe), TINY, "20", "8", str(tmp_path / "two")], capture_output=True,
                       text=True, timeout=180, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    two = _c_lines(r.stdout)
    assert two.keys() == {0, 1}
    assert two[0]["adapter_fnv"] == two[1]["adapter_fnv"] and two[0]["log_z"] == two[1]["log_z"]
    assert two[0]["trajectories_per_step"] == "16"
    assert (tmp_path / "two" / "checkpoint" / "adapter_model.safetensors").exists()
    r1 = subprocess.run(["mpirun", "-np", "1", str(exe), TINY, "20", "16", str(tmp_path / "one")], capture_output=True,
                        text=True, timeout=180, env=_env())
    assert r1.returncode == 0, r1.stdout + r1.stderr
    one = _c_lines(r1.stdout)[0]
    assert abs(float(one["kl"]) - float(two[0]["kl"])) < 1e-3 * float(one["kl"]) + 1e-5, (one["kl"], two[0]["kl"])


def _netns_missing():
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    return _mpi_missing()


@pytest.mark.skipif(_netns_missing() is not None, reason=str(_netns_missing()))
def test_two_hosts_over_network_namespaces(tmp_path):
    """Two 'hosts': network namespaces joined by a veth pair (10.99.0.1 and .2, nothing else), OpenMPI's TCP
    transport between them, mpirun's remote launch through `ip netns exec` instead of ssh. Same result as on one
    host: both ranks bit-identical after 20 steps."""
    tag = f"gfn{os.getpid() % 100000}"
    ns = [tag + "a", tag + "b"]
    veth = [tag + "v0", tag + "v1"]

    def ip(*args, check=True):
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
        return r

    r = ip("netns", "add", ns[0], check=False)
    if r.returncode != 0:
        pytest.skip(f"ip netns add not permitted here: {r.stderr.strip()}")
    try:
        ip("netns", "add", ns[1])
        ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for i in (0, 1):
            ip("link", "set", veth[i], "netns", ns[i])
            ip("-n", ns[i], "addr", "add", f"10.99.0.{i + 1}/24", "dev", veth[i])
            ip("-n", ns[i], "link", "set", veth[i], "up")
            ip("-n", ns[i], "link", "set", "lo", "up")
        agent = tmp_path / "netns_rsh"
        agent.write_text("#!/bin/sh\n# mpirun's remote launch: run the command in the 'host' namespace (as ssh would)\n"
                         f"host=$1; shift\ncase $host in\n  10.99.0.1) ns={ns[0]};;\n  10.99.0.2) ns={ns[1]};;\n"
                         "  *) echo \"unknown host $host\" >&2; exit 1;;\nesac\nexec ip netns exec $ns sh -c \"$*\"\n")
        agent.chmod(0o755)
        env = _env()
        env.update({"OMPI_MCA_btl_tcp_if_include": "10.99.0.0/24", "OMPI_MCA_oob_tcp_if_include": "10.99.0.0/24",
                    "OMPI_MCA_plm_rsh_agent": str(agent)})
        out = tmp_path / "mpi"
        cmd = ["ip", "netns", "exec", ns[0], "mpirun", "-np", "2", "--host", "10.99.0.1:1,10.99.0.2:1",
               MPI_PYTHON, WORKER, "--mpi", "--out", str(out), "--steps", "20", "--p-replay", "0.25"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        r0, r1 = result(out, 0), result(out, 1)
        assert r0["netns"] != r1["netns"]  # the ranks really ran on the two 'hosts'
        assert r0["adapter_sha256"] == r1["adapter_sha256"]
        assert [s["log_z"] for s in r0["stats"]] == [s["log_z"] for s in r1["stats"]]
    finally:
        for n in ns:
            ip("netns", "del", n, check=False)
