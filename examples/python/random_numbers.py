"""Paper §2: make a language model sample uniform random integers.

The prompt asks for "a random integer drawn uniformly between 0 and 100"; a language model answers with a skewed
distribution and often with something that is not a number. GFlowNet fine-tuning with the reward R(Z) of the
paper (high for a single number token 0–99 followed by the end of text) teaches the model to sample Z ∝ R(Z):
every valid answer equally often. The default objective is the paper's SubTB as the reference has it (the flow of
the prompt state is R(X⊤)/q(⊤|X)); --root-flow learned makes that flow a learned log Z instead, and --objective tb
is trajectory balance (docs/examples.md compares them). The last tenths of a percent of invalid answers need LoRA on
lm_head too. Reward-maximising baselines trained on the same reward — REINFORCE and PPO (the paper's baseline:
clipped surrogate, leave-one-out baseline, KL penalty to the base model with trl's adaptive coefficient) — instead
lean toward a few numbers.

Usage: PYTHONPATH=bindings/python python examples/python/random_numbers.py [--quick] [--model DIR] [--plot FILE]
       [--seeds N] [--baselines reinforce,ppo]
The last line is machine-readable: base_valid=… base_kl=… gfn_valid=… gfn_kl=… baseline_valid=… baseline_kl=…
ppo_valid=… ppo_kl=… (baseline_* is REINFORCE); with --seeds N > 1 the values are means over the N seeds and each
has a …_sd companion (sample standard deviation).
"""
import argparse
import math
import os
import sys
import time
from collections import Counter

import gfnlm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROMPT = "The following is a random integer drawn uniformly between 0 and 100: "


def parse_number(text):
    """The reference's evaluation: strip the end-of-text, rstrip, int(); valid when 0 ≤ n ≤ 99."""
    try:
        v = int(text.rstrip())
    except ValueError:
        return None
    return v if 0 <= v <= 99 else None


def evaluate(model, draw, n_samples, batch=2000):
    """Valid fraction and KL(p̂ ‖ U{0..99}) with one bin per integer over the valid samples."""
    values, valid = [], 0
    done = 0
    seed = 1
    while done < n_samples:
        k = min(batch, n_samples - done)
        for s in draw(k, seed):
            v = parse_number(s.text or "")
            if v is not None:
                valid += 1
                values.append(v)
        done += k
        seed += 1
    kl = gfnlm.metrics.kl_to_uniform(values, range(100))
    return valid / n_samples, kl, Counter(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-gpt2"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer files, when not beside the model")
    ap.add_argument("--quick", action="store_true", help="a short run for tests")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--objective", default="subtb", choices=["tb", "subtb", "db"],
                    help="the GFlowNet objective (the paper's subtb; docs/examples.md compares both on the demo model)")
    ap.add_argument("--root-flow", default="reward", choices=["reward", "learned"],
                    help="SubTB / DB: the flow of the prompt state, R(X⊤)/q(⊤|X) (the reference) or a learned log Z")
    ap.add_argument("--lr", type=float, default=2e-3, help="learning rate of the GFlowNet")
    ap.add_argument("--baseline-lr", type=float, default=2e-4, help="learning rate of the REINFORCE baseline")
    ap.add_argument("--ppo-lr", type=float, default=2e-4, help="learning rate of the PPO baseline")
    ap.add_argument("--ppo-epochs", type=int, default=2, help="PPO's optimiser updates per sampled batch")
    ap.add_argument("--seed", type=int, default=42, help="seed of the LoRA initialisation and of training")
    ap.add_argument("--seeds", type=int, default=1,
                    help="train every method with seeds seed, seed+1, …: the table reports mean ± sd")
    ap.add_argument("--baselines", default="reinforce,ppo",
                    help="comma-separated reward-maximising baselines to train next to the GFlowNet (reinforce, ppo)")
    ap.add_argument("--no-baseline", action="store_true", help="train the GFlowNet only")
    ap.add_argument("--plot", default=os.path.join(ROOT, "build", "random_numbers.png"))
    ap.add_argument("--weights", default="fp32", choices=["fp32", "bf16", "int8", "q4"],
                    help="how the frozen base model is held in memory (default fp32; int8 / q4: block-quantized, "
                         "see docs/quantization.md)")
    args = ap.parse_args()
    steps = args.steps or (20 if args.quick else 600)
    n_samples = args.samples or (2_000 if args.quick else 100_000)
    t0 = time.time()

    model = gfnlm.Model.load(args.model, tokenizer=args.tokenizer, weights=args.weights)
    tok = model.tokenizer
    x = tok.encode(PROMPT)
    eos = tok.eos_id
    print(f"model {args.model}: {model.config['n_layer']} layers, n_embd {model.config['n_embd']}, "
          f"{args.weights} weights; prompt ids {x}")

    def draw_base(k, seed):
        return model.generate(x, max_new_tokens=5, n=k, seed=seed, stop=[eos], include_stop=False)

    base_valid, base_kl, base_counts = evaluate(model, draw_base, n_samples)
    print(f"base model: {base_valid:.1%} valid, KL(p̂‖U) = {base_kl:.3f} over {n_samples} samples")

    reward = gfnlm.rewards.RandomInteger(model)
    baselines = [] if args.no_baseline else [b for b in args.baselines.split(",") if b]
    for b in baselines:
        if b not in ("reinforce", "ppo"):
            ap.error(f"unknown baseline {b!r}")
    # name in the metrics line, objective, learning rate
    methods = [("gfn", args.objective, args.lr)]
    methods += [("baseline" if b == "reinforce" else "ppo", b, args.baseline_lr if b == "reinforce" else args.ppo_lr)
                for b in baselines]
    seeds = [args.seed + i for i in range(max(1, args.seeds))]
    results = {name: [] for name, _, _ in methods}   # per seed: (valid, kl, counts)
    for seed in seeds:
        for name, objective, lr in methods:
            # lm_head too: with the blocks alone the final LayerNorm and the tied embedding cap the mass this model
            # can put on the 100 integers at 98.97 % (docs/examples.md)
            lora = gfnlm.LoRA(model, r=64, alpha=64, dropout=0.0, targets=["c_attn", "c_proj", "c_fc", "lm_head"],
                              seed=seed)
            extra = {"ppo_epochs": args.ppo_epochs} if objective == "ppo" else {}
            tr = gfnlm.GFlowNetTrainer(model, lora, reward, prompts=[x], objective=objective, termination=eos,
                                       min_length=1, max_length=5, batch_size=16, grad_accumulation=4,
                                       lr=lr, warmup_steps=10, total_steps=steps * (args.ppo_epochs if objective == "ppo" else 1),
                                       p_on_policy=1.0, p_replay=0.0, seed=seed,
                                       root_flow=args.root_flow if objective in ("subtb", "db") else "reward", **extra)
            last = {}
            for i in range(steps):
                last = tr.step()
                if i % max(1, steps // 6) == 0 or i == steps - 1:
                    print(f"  {name} seed {seed} step {i:4d}: loss {last['loss']:.4f}  mean log R {last['mean_log_r']:6.2f}  "
                          f"unique {last['fraction_unique']:.2f}  Var(logR − log q) {last['var_log_r_minus_log_q']:.3f}")

            def draw(k, s, tr=tr):
                return tr.sample(x, n=k, seed=s)

            results[name].append(evaluate(model, draw, n_samples))
            v, kl, _ = results[name][-1]
            print(f"{name} ({objective}, seed {seed}): {v:.1%} valid, KL(p̂‖U) = {kl:.4f} "
                  f"[{name}_valid={v:.4f} {name}_kl={kl:.4f}]")
            tr.close()
            lora.close()

    def mean_sd(vals):
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        return m, sd

    labels = {"gfn": f"GFlowNet ({args.objective})", "baseline": "REINFORCE", "ppo": f"PPO ({args.ppo_epochs} epochs)"}
    print(f"\n{'method':22s} {'valid':>17s} {'KL(p̂‖U)':>17s}   ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}: "
          f"{', '.join(map(str, seeds))}; mean ± sd)")
    print(f"{'base model':22s} {base_valid:17.4f} {base_kl:17.4f}")
    for name, _, _ in methods:
        v, vs = mean_sd([r[0] for r in results[name]])
        k, ks = mean_sd([r[1] for r in results[name]])
        print(f"{labels[name]:22s} {v:8.4f} ± {vs:6.4f} {k:8.4f} ± {ks:6.4f}")
    trained = {name: results[name][0] for name, _, _ in methods}

    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            panels = [("base model", base_counts), ("GFlowNet fine-tuned", trained["gfn"][2])]
            if "baseline" in trained:
                panels.append(("REINFORCE (reward-maximising)", trained["baseline"][2]))
            if "ppo" in trained:
                panels.append(("PPO with a KL penalty to the base model (reward-maximising)", trained["ppo"][2]))
            fig, axes = plt.subplots(len(panels), 1, figsize=(10, 7 * len(panels) / 3), sharex=True)
            for ax, (title, counts) in zip(axes, panels):
                total = max(1, sum(counts.values()))
                ax.bar(range(100), [counts.get(i, 0) / total for i in range(100)], width=0.9)
                ax.axhline(0.01, color="k", lw=0.8, ls="--")
                ax.set_title(title)
                ax.set_ylabel("frequency")
            axes[-1].set_xlabel("sampled integer")
            fig.tight_layout()
            os.makedirs(os.path.dirname(args.plot), exist_ok=True)
            fig.savefig(args.plot, dpi=90)
            print(f"plot written to {args.plot}")
        except ImportError:
            print("(matplotlib not installed: no plot)")
    print(f"time {time.time() - t0:.0f} s")
    line = f"base_valid={base_valid:.4f} base_kl={base_kl:.4f}"
    for name, _, _ in methods:
        v, vs = mean_sd([r[0] for r in results[name]])
        k, ks = mean_sd([r[1] for r in results[name]])
        line += f" {name}_valid={v:.4f} {name}_kl={k:.4f}"
        if len(seeds) > 1:
            line += f" {name}_valid_sd={vs:.4f} {name}_kl_sd={ks:.4f}"
    if len(seeds) > 1:
        line += f" seeds={len(seeds)}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
