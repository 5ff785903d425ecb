"""One rank of the data-parallel tests (test_distributed.py runs it under mpirun -np K, or alone without --mpi as
the single-process reference). Writes what it ended with to OUT/rank<r>.json and the adapter to OUT/adapter<r>/."""
import argparse
import hashlib
import itertools
import json
import math
import os
import signal
import sys

import numpy as np

import gfnlm
import gfnlm.distributed

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "..", "..", "Tests", "Fixtures", "gpt2-tiny", "legacy17")
VOCAB = [1, 2, 3]
MAX_LENGTH = 2


def log_reward_table():
    """A fixed log R for every state over VOCAB (the same on every rank: built in a fixed order from a seed)."""
    rng = np.random.default_rng(7)
    states = [()] + [s for n in range(1, MAX_LENGTH + 1) for s in itertools.product(VOCAB, repeat=n)]
    return {s: float(1.5 * rng.normal()) for s in states}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["gflownet", "sft"], default="gflownet")
    ap.add_argument("--mpi", action="store_true")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--exchange-replay", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--objective", default="tb")
    ap.add_argument("--p-replay", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--load", default=None)
    ap.add_argument("--save-at", type=int, default=-1)
    ap.add_argument("--save", default=None)
    ap.add_argument("--die-at", type=int, default=-1, help="rank 1 kills itself (SIGKILL) before this step")
    ap.add_argument("--stop-at", type=int, default=-1, help="rank 1 stops itself (SIGSTOP) before this step")
    ap.add_argument("--mismatch", default=None, help="rank 1 uses another batch_size (batch) or lr (lr)")
    ap.add_argument("--sft-rows", type=int, default=8, help="SFT: examples in the whole (merged) batch")
    a = ap.parse_args()

    dist = gfnlm.distributed.mpi(timeout=a.timeout, exchange_replay=a.exchange_replay) if a.mpi else None
    rank = dist.rank if dist else 0
    os.makedirs(a.out, exist_ok=True)
    model = gfnlm.Model.load(TINY, n_threads=1)
    lora = gfnlm.LoRA(model, r=4, alpha=8, targets=["c_attn", "c_proj"], seed=2)
    batch, lr = a.batch, a.lr
    if rank == 1 and a.mismatch == "batch":
        batch += 1
    if rank == 1 and a.mismatch == "lr":
        lr *= 2
    result = {"rank": rank, "world_size": dist.world_size if dist else 1,
              "netns": os.readlink("/proc/self/ns/net") if os.path.exists("/proc/self/ns/net") else None}

    if a.mode == "sft":
        tr = gfnlm.SFTTrainer(model, lora, lr=lr, distributed=dist)
        rng = np.random.default_rng(11)
        # a fixed merged batch of varied lengths; rank r of K takes every K-th example
        data = [([int(t) for t in rng.integers(1, 60, size=int(rng.integers(1, 5)))],
                 [int(t) for t in rng.integers(1, 60, size=int(rng.integers(1, 6)))]) for _ in range(a.sft_rows)]
        k = dist.world_size if dist else 1
        mine = data[rank::k]
        losses = []
        try:
            for _ in range(a.steps):
                losses.append(tr.step(mine)["loss"])
        except gfnlm.GfnError as e:
            result["error"] = str(e)
        result["losses"] = losses
    else:
        table = log_reward_table()
        reward = gfnlm.rewards.Callback(lambda i, states: [table.get(tuple(s), -30.0) for s in states])
        tr = gfnlm.GFlowNetTrainer(model, lora, reward, prompts=[[5, 6, 7]], objective=a.objective, termination=0,
                                   max_length=MAX_LENGTH, allowed=VOCAB, penalty=-math.inf, batch_size=batch, lr=lr,
                                   warmup_steps=0, logz_lr=0.1, p_replay=a.p_replay, seed=a.seed, distributed=dist)
        if a.load:
            tr.load(a.load)
        stats = []
        try:
            for i in range(a.steps):
                if rank == 1 and i == a.die_at:
                    print("rank 1: killing itself (SIGKILL)", flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)
                if rank == 1 and i == a.stop_at:
                    print("rank 1: stopping itself (SIGSTOP)", flush=True)
                    os.kill(os.getpid(), signal.SIGSTOP)
                stats.append(tr.step())
                if i + 1 == a.save_at:
                    tr.save(a.save)
        except gfnlm.GfnError as e:
            result["error"] = str(e)
        result["stats"] = stats
        result["exact"] = tr.exact(VOCAB)
        if dist:
            result["exchange"] = {"calls": dist.calls, "bytes": dist.bytes, "seconds": dist.seconds}
    lora.save(os.path.join(a.out, f"adapter{rank}"))
    with open(os.path.join(a.out, f"adapter{rank}", "adapter_model.safetensors"), "rb") as f:
        result["adapter_sha256"] = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(a.out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    sys.exit(3 if "error" in result else 0)


if __name__ == "__main__":
    main()
