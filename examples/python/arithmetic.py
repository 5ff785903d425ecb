"""Paper §4.4: integer arithmetic with a calculator tool, GFlowNet fine-tuning vs SFT and k-shot prompting.

A question X = "Question: 6 - 0 - 4 - 8 = ? Answer:" is answered by a rationale Z of tool calls: the policy writes
"6 - 0 =", the calculator appends " 6" (context, not an action of the policy), the policy continues ", 6 - 4 =" and
so on, and stops with <|endoftext|>. The GFlowNet learns to sample Z ∝ p_LM(Z Y | demos X), Y = ". The answer is
-6.", scored by the base model after the paper's three worked demonstrations (verbatim), with the policy and the
reward restricted to the arithmetic vocabulary (a −99 soft mask) and rationales shorter than 5 tokens penalised.
The replay buffer is seeded with the paper's 50 tool-style rationales; the other training questions (the
paper's 1000 "hw" questions) have only X and Y.

Evaluation on held-out problems with 3, 4 and 5 operands (data/arithmetic/heldout_{3,4,5}op.jsonl, never in the
demo model's training text): 10 samples at T = 0.1 with the calculator, the answer read from each rationale
(the reference's extract_answer), majority vote. Baselines with the same tool, vocabulary and decoding: SFT
(LoRA) on the same 50 demonstrations (rationales with results), and k-shot prompting of the base model.

Every method samples through gfnlm.gflownet.sample_rollouts: the rollout's rules (calculator, vocabulary mask,
length) for any adapter or the base model, without a trainer.

Usage: PYTHONPATH=bindings/python python examples/python/arithmetic.py [--quick] [--calculator reference|fixed]
       [--model DIR] [--data DIR] [--plot FILE]
The last line is machine-readable: gfn_acc3=… gfn_acc4=… gfn_acc5=… sft_acc3=… … kshot_acc5=… allowed_vocab=…
"""
import argparse
import json
import os
import random
import sys
import time
from collections import Counter

import gfnlm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The reward's few-shot prefix, verbatim from the reference: the first three worked problems of
# data/arithmetic/1digit_34_op+-_train_50.json, query + " " + rationale + solution, joined by "\n", trailing "\n".
DEMO_PREFIX = (
    "Question: 6 - 0 - 4 - 8 = ? Answer: 6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6. The answer is -6.\n"
    "Question: 9 + 4 - 8 = ? Answer: 9 + 4 = 13, 13 - 8 = 5. The answer is 5.\n"
    "Question: 5 + 9 - 3 + 8 = ? Answer: 5 + 9 = 14, 14 - 3 = 11, 11 + 8 = 19. The answer is 19.\n")
# Token strings made only of these characters are allowed (GPT-2's "Ġ" is the space).
ALLOWED_CHARS = set(" ,.0123456789=+-")
PENALTY = -99.0
N_VOTES = 10
EVAL_TEMPERATURE = 0.1
EVAL_MAX_LENGTH = 22        # the reference README's max_eval_len (training: 18 actions)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def allowed_vocabulary(tok):
    """Ids whose text is only digits, spaces, ",", ".", "=", "+", "-" (1804 GPT-2 ids), plus ⊤."""
    ids = []
    for i in range(tok.vocab_size):
        s = tok.decode([i])
        if s and all(c in ALLOWED_CHARS for c in s):
            ids.append(i)
    return ids


def extract_answer(text):
    """The reference's extract_answer: the number after the last "=", else the last whitespace-separated
    word, with "." stripped. The reference returns −1 when neither parses; here None, which never counts as
    correct (−1 is the true answer of some problems)."""
    try:
        return int(text.split("=")[-1].strip().strip("."))
    except ValueError:
        pass
    try:
        return int(text.split()[-1].strip("."))
    except (ValueError, IndexError):
        return None


def vote(answers):
    """Majority vote; ties go to the answer seen first (Counter.most_common, as the reference)."""
    return Counter(answers).most_common(1)[0][0]


def cpu_time():
    """CPU seconds of this process (user + system, all threads): on a shared machine the wall time says little."""
    t = os.times()
    return t.user + t.system


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-gpt2"))
    ap.add_argument("--data", default=os.path.join(ROOT, "data"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer files, when not beside the model")
    ap.add_argument("--quick", action="store_true", help="a short run for tests")
    ap.add_argument("--calculator", choices=("reference", "fixed"), default="reference",
                    help="reference-compatible (its bug for more than two operands included) or fixed calculator, for training and evaluation")
    ap.add_argument("--steps", type=int, default=None, help="GFlowNet optimiser steps")
    ap.add_argument("--batch-size", type=int, default=None, help="trajectories per micro-batch")
    ap.add_argument("--grad-accumulation", type=int, default=None, help="micro-batches per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hw", type=int, default=None, help="hw questions (X, Y only) among the training prompts "
                    "(default all 1000, --quick 100)")
    ap.add_argument("--eval-problems", type=int, default=None,
                    help="held-out problems per operand count (default 25, --quick 2; 0 = all 500)")
    ap.add_argument("--sft-steps", type=int, default=None)
    ap.add_argument("--kshot", default="3", help="comma-separated k for k-shot prompting (the model has 256 "
                    "positions: k ≤ 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1,
                    help="rerun for seeds seed … seed+N−1 and report mean ± sd of every number of the last line")
    ap.add_argument("--plot", default=os.path.join(ROOT, "build", "arithmetic.png"))
    args = ap.parse_args()
    if args.seeds > 1:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import _seeds
        return _seeds.rerun(os.path.abspath(__file__), sys.argv[1:], args.seed, args.seeds)
    q = args.quick
    steps = args.steps or (2 if q else 24)
    bsz = args.batch_size or (4 if q else 8)
    grad_acc = args.grad_accumulation or (1 if q else 2)
    n_hw = args.hw if args.hw is not None else (100 if q else 1000)
    n_eval = args.eval_problems if args.eval_problems is not None else (2 if q else 25)
    sft_steps = args.sft_steps or (2 if q else 30)
    n_seeded = 10 if q else 50
    kshots = [int(k) for k in args.kshot.split(",") if k.strip()]
    t0 = time.time()
    timings = {}

    def lap(name, since):
        timings[name] = time.time() - since
        print(f"  [{name}: {timings[name]:.0f} s; CPU so far {cpu_time():.0f} s]")
        return time.time()

    model = gfnlm.Model.load(args.model, tokenizer=args.tokenizer)
    tok = model.tokenizer
    eos = tok.eos_id
    print(f"model {args.model}: {model.config['n_layer']} layers, n_embd {model.config['n_embd']}, "
          f"{model.config['n_positions']} positions; calculator: {args.calculator}")

    # ---- data -------------------------------------------------------------------------------------------------
    tool_train = read_json(os.path.join(args.data, "arithmetic_with_tool", "1digit_34_op+-_train_50.json"))
    worked = read_json(os.path.join(args.data, "arithmetic", "1digit_34_op+-_train_50.json"))
    hw = read_json(os.path.join(args.data, "arithmetic_with_tool", "1digit_34_op+-_hw.json"))[:n_hw]
    built = "".join(w["str_query"] + " " + w["str_rationale"] + w["str_sol"] + "\n" for w in worked[:3])
    assert built == DEMO_PREFIX, "the demo prefix differs from data/arithmetic/1digit_34_op+-_train_50.json"
    heldout = {k: read_jsonl(os.path.join(args.data, "arithmetic", f"heldout_{k}op.jsonl")) for k in (3, 4, 5)}
    seen = {t["str_query"] for t in tool_train} | {t["str_query"] for t in hw}
    for k, items in heldout.items():
        leak = sum(1 for it in items if it["str_query"] in seen)
        assert leak == 0, f"{leak} held-out {k}-operand problems are training questions (the reference's test files overlap its training data)"
        if n_eval > 0:
            heldout[k] = items[:n_eval]
    allowed = allowed_vocabulary(tok)
    allowed_all = allowed + [eos]
    print(f"allowed vocabulary: {len(allowed)} ids + ⊤ = {len(allowed_all)} (1805 expected with GPT-2's "
          f"vocabulary); everything else gets {PENALTY:g} in the policy and at Z positions of the reward")
    print(f"training prompts: {len(tool_train)} with tool-style rationales ({n_seeded} seeded into the buffer) + "
          f"{len(hw)} hw questions (weight 0.2); held-out: {', '.join(f'{len(v)} × {k} operands' for k, v in heldout.items())}")

    class eval_sampler:
        """The adapter (None: the base model) with the calculator, the vocabulary mask and the evaluation length."""

        def __init__(self, adapter):
            self.adapter = adapter

        def sample(self, x, n, temperature, seed):
            return gfnlm.gflownet.sample_rollouts(model, x, n=n, adapter=self.adapter, termination=eos, min_length=0,
                                                  max_length=EVAL_MAX_LENGTH, allowed=allowed_all, penalty=PENALTY,
                                                  calculator=args.calculator, temperature=temperature, seed=seed)

    def evaluate(name, sampler, prefix_ids=()):
        """Accuracy per operand count: 10 samples at T = 0.1 with the calculator, answer extraction, vote."""
        out, shown = {}, []
        for k, items in heldout.items():
            correct = 0
            for j, it in enumerate(items):
                x = list(prefix_ids) + tok.encode(it["str_query"])
                samples = sampler.sample(x, n=N_VOTES, temperature=EVAL_TEMPERATURE, seed=args.seed * 7919 + j)
                texts = []
                for s in samples:
                    z = s.tokens[:s.tokens.index(eos)] if eos in s.tokens else s.tokens
                    texts.append(it["str_query"] + tok.decode(z))
                v = vote([extract_answer(t) for t in texts])
                correct += int(v is not None and v == it["num_sol"])
                if j == 0:
                    shown.append(f"{texts[0]!r} → {v} (true {it['num_sol']})")
            out[k] = correct / max(1, len(items))
        print(f"{name}: " + "  ".join(f"{k} operands {out[k]:.3f}" for k in out))
        for s in shown:
            print("   ", s)
        return out

    results = {}

    # ---- GFlowNet fine-tuning -----------------------------------------------------------------------------------
    t = time.time()
    reward = gfnlm.rewards.LMLikelihood(model, demos=DEMO_PREFIX, allowed=allowed_all, penalty=PENALTY, min_length=5)
    prompts = ([{"x": it["str_query"], "y": it["str_sol"], "weight": 1.0} for it in tool_train]
               + [{"x": it["str_query"], "y": it["str_sol"], "weight": 0.2} for it in hw])
    lora = gfnlm.LoRA(model, r=32, alpha=32, targets=["c_attn", "attn.c_proj"], seed=args.seed)
    horizon = max(1, round(steps * 0.15))      # the reference: 1.1 → 0.5 over 150 of 1000 steps
    tr = gfnlm.GFlowNetTrainer(
        model, lora, reward, prompts=prompts, objective="subtb", strict_mask=True, termination=eos, min_length=5,
        max_length=18, allowed=allowed_all, penalty=PENALTY, calculator=args.calculator, batch_size=bsz,
        grad_accumulation=grad_acc, lr=args.lr, warmup_steps=max(1, steps // 10), reward_temperature=(1.1, 0.5, horizon),
        p_on_policy=0.25, p_replay=0.25, temperature_range=(0.5, 2.0), buffer_capacity=50, buffer_tolerance=0.25,
        seed=args.seed)
    for i, it in enumerate(tool_train[:n_seeded]):
        tr.seed_buffer(i, [it["str_rationale"]])      # teacher-forced with the calculator: results are context
    s = tr.sample(tool_train[0]["str_query"], n=1, temperature=0.1, seed=1)[0]
    print(f"seeded {n_seeded} tool-style rationales, e.g. {tool_train[0]['str_rationale']!r}; the untrained policy "
          f"writes {s.text!r}")
    t = lap("setup and seeding", t)
    curve = []
    for i in range(steps):
        st = tr.step()
        curve.append(st["mean_log_r"])
        if i % max(1, steps // 6) == 0 or i == steps - 1:
            print(f"  GFlowNet step {i:4d}: loss {st['loss']:9.2f}  mean log R {st['mean_log_r']:8.2f}  T_R "
                  f"{st['reward_temperature']:.2f}  length {st['mean_length']:5.1f}  "
                  f"(on-policy/tempered/replay {st['on_policy_batches']}/{st['tempered_batches']}/"
                  f"{st['replay_batches']})")
    t = lap("GFlowNet training", t)
    results["gfn"] = evaluate("GFlowNet", eval_sampler(lora))
    t = lap("GFlowNet evaluation", t)

    # ---- SFT on the same 50 demonstrations (rationales with results) -------------------------------------------
    sft_lora = gfnlm.LoRA(model, r=32, alpha=32, targets=["c_attn", "attn.c_proj"], seed=args.seed + 1)
    sft = gfnlm.SFTTrainer(model, sft_lora, lr=args.lr, warmup_steps=max(1, sft_steps // 10), total_steps=sft_steps)
    pairs = [(tok.encode(w["str_query"]), tok.encode(w["str_rationale"]) + [eos]) for w in worked]
    rng = random.Random(args.seed + 1)
    for i in range(sft_steps):
        st = sft.step(rng.sample(pairs, min(10, len(pairs))))
        if i % max(1, sft_steps // 4) == 0 or i == sft_steps - 1:
            print(f"  SFT step {i:3d}: loss {st['loss']:.3f}")
    results["sft"] = evaluate("SFT", eval_sampler(sft_lora))
    t = lap("SFT", t)

    # ---- k-shot prompting of the base model -------------------------------------------------------------------
    base = eval_sampler(None)                                                           # the base model
    order = list(range(len(worked)))
    random.Random(args.seed + 2).shuffle(order)
    for k in kshots:
        prefix = tok.encode("".join(worked[i]["str_query"] + " " + worked[i]["str_rationale"] + worked[i]["str_sol"]
                                    + "\n" for i in order[:k])) if k else []
        results[f"kshot{k}"] = evaluate(f"{k}-shot prompting", base, prefix)
    t = lap("k-shot", t)

    methods = [("gfn", "GFlowNet")] + [("sft", "SFT")] + [(f"kshot{k}", f"{k}-shot") for k in kshots]
    print("\naccuracy (majority of 10 samples at T = 0.1, calculator "
          f"{args.calculator}) on {n_eval or 500} held-out problems per operand count:")
    print(f"  {'':12s} " + " ".join(f"{k} operands" for k in (3, 4, 5)))
    for key, label in methods:
        print(f"  {label:12s} " + " ".join(f"{results[key][k]:10.3f}" for k in (3, 4, 5)))
    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
            w = 0.8 / len(methods)
            for m, (key, label) in enumerate(methods):
                a1.bar([k + (m - (len(methods) - 1) / 2) * w for k in (3, 4, 5)],
                       [results[key][k] for k in (3, 4, 5)], width=w, label=label)
            a1.set_xticks([3, 4, 5])
            a1.set_xlabel("operands")
            a1.set_ylabel("accuracy (held-out)")
            a1.set_ylim(0, 1)
            a1.legend()
            a1.set_title(f"arithmetic with a calculator ({args.calculator})")
            a2.plot(curve)
            a2.set_xlabel("GFlowNet optimiser step")
            a2.set_ylabel("mean log R of the step's trajectories")
            fig.tight_layout()
            os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
            fig.savefig(args.plot, dpi=90)
            print(f"plot written to {args.plot}")
        except ImportError:
            print("(matplotlib not installed: no plot)")
    elapsed = time.time() - t0
    print(f"time {elapsed:.0f} s wall, {cpu_time():.0f} s CPU (" + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + ")")
    print(" ".join(f"{key}_acc{k}={results[key][k]:.4f}" for key, _ in methods for k in (3, 4, 5))
          + f" allowed_vocab={len(allowed_all)} n_eval={n_eval or 500} "
          f"calculator_fixed={int(args.calculator == 'fixed')} seconds={elapsed:.0f} cpu_seconds={cpu_time():.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
