"""Data-parallel GFlowNet training: 2 ranks × 1 thread (mpirun, gfnlm.distributed.mpi()) next to one process ×
2 threads with the same total batch, on the random-number task of examples/python/random_numbers.py (demo model,
LoRA r 64 on c_attn/c_proj/c_fc/lm_head, 4 micro-batches of 16 trajectories per step in one process = 4 × 8 per
rank); the bytes each step hands to the all-reduce and the time it takes; the all-reduce of a GPT-2 small LoRA r 64
gradient (12.7 M floats) measured between 2 local ranks; and the exchange computed for the GPT-J-6B shape (LoRA r 8
on q/k/v/out_proj) over 10 Gb/s Ethernet.

    python3 benchmarks/distributed.py [--steps 4] [--rounds 2]     # needs mpirun and .venv-mpi (make mpi-venv)

Not part of `make test`; nothing asserts a time. The last line is key=value pairs."""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DEMO = os.path.join(ROOT, "models", "demo-gpt2")
MPI_PYTHON = os.environ.get("GFNLM_MPI_PYTHON", os.path.join(ROOT, ".venv-mpi", "bin", "python"))


def lora_params(layers, blocks, r):
    """LoRA parameters: r·(in + out) per adapted matrix."""
    return layers * sum(r * (i + o) for i, o in blocks)


# GPT-2 small (n_embd 768, 12 layers, vocab 50257): c_attn 768→2304, attn.c_proj and mlp.c_proj, c_fc, lm_head
GPT2_SMALL_R64 = lora_params(12, [(768, 2304), (768, 768), (768, 3072), (3072, 768)], 64) + 64 * (768 + 50257)
# GPT-J-6B shape (n_embd 4096, 28 layers): q/k/v/out_proj 4096→4096 (the large-model benchmark's adapter)
GPTJ_R8 = lora_params(28, [(4096, 4096)] * 4, 8)
EXTRA_FLOATS = 2 * 7 + 32  # the step's statistics (hi/lo pairs) and the replica digest


def worker(a):
    """One process: `steps` timed GFlowNet steps after one warm-up step; prints a JSON line."""
    import gfnlm
    import gfnlm.distributed
    dist = gfnlm.distributed.mpi(timeout=600) if a.mpi else None
    model = gfnlm.Model.load(DEMO, n_threads=a.threads)
    x = model.tokenizer.encode("The following is a random integer drawn uniformly between 0 and 100: ")
    lora = gfnlm.LoRA(model, r=64, alpha=64, targets=a.targets.split(","), seed=42)
    tr = gfnlm.GFlowNetTrainer(model, lora, gfnlm.rewards.RandomInteger(model), prompts=[x], objective="tb",
                               termination=model.tokenizer.eos_id, min_length=1, max_length=5, batch_size=a.batch,
                               grad_accumulation=4, lr=2e-3, warmup_steps=10, p_on_policy=1.0, p_replay=0.0, seed=42,
                               distributed=dist)
    tr.step()
    if dist:
        dist.comm.Barrier()
        c0, b0, s0 = dist.calls, dist.bytes, dist.seconds
    t0 = time.perf_counter()
    for _ in range(a.steps):
        s = tr.step()
    secs = time.perf_counter() - t0
    out = {"seconds_per_step": secs / a.steps, "trajectories": s["trajectories"], "threads": a.threads,
           "parameters": lora.parameter_count}
    if dist:
        out.update(rank=dist.rank, exchanges_per_step=(dist.calls - c0) / a.steps,
                   bytes_per_step=(dist.bytes - b0) / a.steps, exchange_seconds_per_step=(dist.seconds - s0) / a.steps)
    if not dist or dist.rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def allreduce_worker(a):
    """The glue's all-reduce (Iallreduce polled, then the division) of a GPT-2 small LoRA r 64 gradient."""
    import numpy as np
    import gfnlm.distributed
    dist = gfnlm.distributed.mpi(timeout=600)
    buf = np.random.default_rng(dist.rank).standard_normal(GPT2_SMALL_R64 + EXTRA_FLOATS).astype(np.float32)
    dist.allreduce_mean(buf)
    times = []
    for _ in range(a.reps):
        dist.comm.Barrier()
        t0 = time.perf_counter()
        dist.allreduce_mean(buf)
        times.append(time.perf_counter() - t0)
    if dist.rank == 0:
        print("RESULT " + json.dumps({"bytes": buf.nbytes, "seconds": sorted(times)[len(times) // 2]}), flush=True)


def run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    return json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])


def ring_seconds(nbytes, k, gbit=10.0, latency=50e-6):
    """Ring all-reduce over k machines: each sends and receives 2(k−1)/k of the buffer, in 2(k−1) latency steps."""
    return 2 * (k - 1) / k * nbytes / (gbit * 1e9 / 8) + 2 * (k - 1) * latency


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--worker", choices=["step", "allreduce"])
    ap.add_argument("--mpi", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--targets", default="c_attn,c_proj,c_fc,lm_head",
                    help="LoRA targets (the example's; c_attn,c_proj,c_fc leaves out the 3.2 M-parameter lm_head)")
    a = ap.parse_args()
    if a.worker == "step":
        return worker(a)
    if a.worker == "allreduce":
        return allreduce_worker(a)

    env = dict(os.environ)
    env.setdefault("GFNLM_LIBRARY", os.path.join(ROOT, "build", "libgfnlm.so"))
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python")
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "self,vader,tcp",
                "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMP_NUM_THREADS": "1"})
    me = os.path.abspath(__file__)
    singles, ranks = [], []
    for _ in range(a.rounds):  # alternate, so that other jobs on the machine hit both alike
        singles.append(run([MPI_PYTHON, me, "--worker", "step", "--threads", "2", "--batch", "16",
                            "--steps", str(a.steps), "--targets", a.targets], env))
        ranks.append(run(["mpirun", "-np", "2", "--bind-to", "none", MPI_PYTHON, me, "--worker", "step", "--mpi",
                          "--threads", "1", "--batch", "8", "--steps", str(a.steps), "--targets", a.targets], env))
    ar = run(["mpirun", "-np", "2", "--bind-to", "none", MPI_PYTHON, me, "--worker", "allreduce",
              "--reps", str(a.reps)], env)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    one = med([s["seconds_per_step"] for s in singles])
    two = med([r["seconds_per_step"] for r in ranks])
    best = min(s["seconds_per_step"] for s in singles) / min(r["seconds_per_step"] for r in ranks)
    r0 = ranks[-1]
    print(f"rng GFlowNet step, demo model, LoRA r 64 on {a.targets} ({r0['parameters']:,} parameters), "
          "64 trajectories per step:")
    print(f"  1 process × 2 threads, 4 × 16: {[round(s['seconds_per_step'], 3) for s in singles]} s/step")
    print(f"  2 ranks × 1 thread,    4 × 8:  {[round(r['seconds_per_step'], 3) for r in ranks]} s/step "
          f"(last round: exchange {r0['exchange_seconds_per_step'] * 1e3:.1f} ms/step in {r0['exchanges_per_step']:.0f} calls, "
          f"{r0['bytes_per_step'] / 1e6:.3f} MB/step)")
    print(f"  throughput 2 ranks / 1 process: {one / two:.3f} (medians of {a.rounds} rounds; best vs best {best:.3f})")
    gpt2 = 4 * (GPT2_SMALL_R64 + EXTRA_FLOATS)
    gptj = 4 * (GPTJ_R8 + EXTRA_FLOATS)
    print(f"GPT-2 small LoRA r 64: {GPT2_SMALL_R64:,} parameters → {gpt2 / 1e6:.2f} MB per step; all-reduce between "
          f"2 local ranks {ar['seconds'] * 1e3:.1f} ms (measured); over 10 Gb/s: "
          + ", ".join(f"K={k} {ring_seconds(gpt2, k) * 1e3:.0f} ms" for k in (2, 8, 64, 512)))
    print(f"GPT-J-6B LoRA r 8 (q/k/v/out_proj): {GPTJ_R8:,} parameters → {gptj / 1e6:.2f} MB per step; over 10 Gb/s: "
          + ", ".join(f"K={k} {ring_seconds(gptj, k) * 1e3:.0f} ms" for k in (2, 8, 64, 512)))
    print(f"ratio_2ranks_vs_1proc={one / two:.3f} bytes_per_step_demo={r0['bytes_per_step']:.0f} "
          f"exchange_ms_per_step_demo={r0['exchange_seconds_per_step'] * 1e3:.2f} gpt2_r64_bytes={gpt2} "
          f"gpt2_r64_allreduce_ms_local={ar['seconds'] * 1e3:.2f} gptj_r8_bytes={gptj} "
          f"gptj_r8_10gbe_ms_k64={ring_seconds(gptj, 64) * 1e3:.1f}")


if __name__ == "__main__":
    sys.exit(main())
