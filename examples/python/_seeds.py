"""--seeds N for the paper-task examples: rerun the example once per seed (seed, seed+1, …, each a fresh process
with --seeds 1) and report every number of its machine-readable last line as mean ± sample standard deviation.

The last line of the aggregate keeps the example's keys (the means), adds KEY_sd for each, and seeds=N, so the
same parser reads a one-seed and an N-seed run.
"""
import math
import subprocess
import sys

# The evaluation draws of a run with --seed S use seeds offset by S·EVAL_SEED_STRIDE, so that the runs of --seeds N
# measure the spread of every sampling method (baselines included), not only of training; seed 0 keeps the draws of
# a default run.
EVAL_SEED_STRIDE = 100_000


def strip_option(argv, name):
    """argv without `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out


def last_line_metrics(stdout):
    line = stdout.strip().splitlines()[-1]
    return dict(part.split("=", 1) for part in line.split())


def mean_sd(values):
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def rerun(script, argv, first_seed, n):
    """Runs `script` with argv for seeds first_seed … first_seed+n−1, prints each run's tail and the aggregate;
    returns the exit status."""
    base = strip_option(strip_option(argv, "--seeds"), "--seed")
    runs = []
    for s in range(first_seed, first_seed + n):
        cmd = [sys.executable, script, *base, "--seed", str(s), "--seeds", "1"]
        print(f"--- seed {s}: {' '.join(cmd[1:])}", flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True)
        tail = p.stdout.strip().splitlines()[-12:]
        print("\n".join("    " + t for t in tail), flush=True)
        if p.returncode != 0:
            print(p.stderr[-3000:], file=sys.stderr)
            return p.returncode
        runs.append(last_line_metrics(p.stdout))
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    stats = {}
    for k in keys:
        try:
            stats[k] = mean_sd([float(r[k]) for r in runs])
        except ValueError:
            continue
    seeds = list(range(first_seed, first_seed + n))
    print(f"\nmean ± sd over {n} seeds ({', '.join(map(str, seeds))}):")
    for k, (m, sd) in stats.items():
        print(f"  {k:28s} {m:12.4f} ± {sd:.4f}")
    print(" ".join([f"{k}={m:.4f}" for k, (m, _) in stats.items()]
                   + [f"{k}_sd={sd:.4f}" for k, (_, sd) in stats.items()] + [f"seeds={n}"]))
    return 0
