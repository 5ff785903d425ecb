"""Paper §4.3: subjectivity classification with latent rationales (E-step, Bayesian model averaging, M-step).

A review sentence X is classified as objective or subjective by a language model through a short latent
rationale Z (at most 5 tokens after "... This review is"):

* E-step: a GFlowNet (LoRA) learns to sample Z ∝ p_LM(Z Y_true | X) for the few labelled examples, where
  Y = ", so it is objective." or ", so it is subjective."; a rationale after which p_LM prefers the wrong label
  gets −50 (added after tempering, as in the reference). The replay buffer is seeded with "wishful" rationales:
  what the base model writes after X + " objective because it is" (or " subjective ...", the true label).
* BMA: for a test review, 10 rationales from the GFlowNet; each votes for the label p_LM prefers after
  X Z ", so it is" (adapter off), the majority wins (ties → subjective, as the reference).
* M-step: supervised fine-tuning (a fresh LoRA) of the label given X Z ", so it is" on rationales sampled for the
  labelled examples; it then classifies the test rationales, again by majority vote.

Baselines on the same test items: zero-shot (compare " objective" / " subjective" right after X), few-shot (as
many labelled examples as fit in the model's context, before X), and SFT of the label given X without a
rationale (LoRA). Test items: subj/train.jsonl lines 7000–7999 (never in the demo model's training text) minus
the few that are also in train.50.jsonl.

Besides the paper's rule (argmax over the two labels), each method's share of test items predicted objective and
its accuracy with a threshold fitted on the labelled examples (objective iff log p(objective) − log p(subjective)
> t, t chosen to classify the labelled examples best) are reported: a small model can prefer one label for every
input, and then every argmax accuracy is just that label's share of the test set.

The M-step and the SFT baseline train the reference's two-way label cross-entropy: −log softmax over the two label
tokens only (SFTTrainer.set_label_candidates), not the full-vocabulary NLL of the label token (--full-vocab-ce).

Usage: PYTHONPATH=bindings/python python examples/python/subjectivity.py [--quick] [--train-size 10|20|50]
       [--model DIR] [--data DIR] [--plot FILE]
The last line is machine-readable: zero_shot_acc=… few_shot_acc=… sft_acc=… gfn_acc=… gfn_mstep_acc=… …
"""
import argparse
import json
import os
import random
import sys
import time

import gfnlm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Strings verbatim from the reference notebooks.
X_TEMPLATE = 'Classify this movie review as objective or subjective: "{}" This review is'
Y_TEXT = {0: ", so it is objective.", 1: ", so it is subjective."}
LABEL_TEXT = {0: "objective", 1: "subjective"}
INVERSE_PROMPT = {0: " objective because it is", 1: " subjective because it is"}
SO_IT_IS = ", so it is"
WRONG_LABEL_PENALTY = 50.0
N_VOTES = 10


def read_jsonl(path, start=0, stop=None):
    with open(path) as f:
        lines = f.read().splitlines()
    return [json.loads(line) for line in lines[start:stop] if line.strip()]


def cpu_time():
    """CPU seconds of this process (user + system, all threads): on a shared machine the wall time says little."""
    t = os.times()
    return t.user + t.system


class SubjectivityReward:
    """The E-step reward as a Python callback (the built-in LMLikelihood has no wrong-label rule).

    For every state Z (a prefix of a rationale): log R = log p_LM(Z Y_true | X), minus 50·T_R when p_LM(Z Y_obj | X)
    and p_LM(Z Y_subj | X) pick the wrong label (ties pick objective, like torch's argmax). The trainer tells the
    callback its current T_R and divides by it, so the penalty is −50 after tempering, as in the reference. Both label scores of all new states of a
    micro-batch go to the library in one batched `model.score` call (the context X is shared, so it runs once);
    the base model never changes, so scores are cached."""

    def __init__(self, model, xs, labels, y_ids):
        self.model, self.xs, self.labels, self.y_ids = model, xs, labels, y_ids
        self.cache = {}
        self.scored = 0

    def label_scores(self, p, states):
        need = []
        for s in states:
            k = (p, tuple(s))
            if k not in self.cache and k not in need:
                need.append(k)
        if need:
            x = self.xs[p]
            conts = [list(k[1]) + self.y_ids[0] for k in need] + [list(k[1]) + self.y_ids[1] for k in need]
            vals = self.model.score([x] * len(conts), conts)
            for i, k in enumerate(need):
                self.cache[k] = (vals[i], vals[len(need) + i])
            self.scored += len(conts)
        return [self.cache[(p, tuple(s))] for s in states]

    def __call__(self, p, states, t_r):
        out = []
        label = self.labels[p]
        for lp_obj, lp_subj in self.label_scores(p, states):
            r = lp_obj if label == 0 else lp_subj
            predicted = 0 if lp_obj >= lp_subj else 1
            if predicted != label:
                r -= WRONG_LABEL_PENALTY * t_r
            out.append(r)
        return out


class LabelScorer:
    """log p(" objective" | context) and log p(" subjective" | context) from one scoring row per context (the
    second label is read as a stop probability), with an optional adapter; cached by context."""

    def __init__(self, model, obj_id, subj_id):
        self.model, self.obj_id, self.subj_id = model, obj_id, subj_id
        self.caches = {}

    def __call__(self, contexts, adapter=None):
        cache = self.caches.setdefault(id(adapter) if adapter is not None else None, {})
        need = list({tuple(c) for c in contexts if tuple(c) not in cache})
        for i in range(0, len(need), 512):
            part = need[i:i + 512]
            res = self.model.score([list(c) for c in part], [[self.obj_id]] * len(part), per_token=True,
                                   stop=[self.subj_id], adapter=adapter)
            for c, (total, _tok, stops) in zip(part, res):
                cache[c] = (total, stops[0])
        return [cache[tuple(c)] for c in contexts]


def predict(scores):
    """0 (objective) iff log p(objective) > log p(subjective)."""
    return [0 if o > s else 1 for o, s in scores]


def majority(votes):
    """Objective iff more than half of the votes are objective: ties go to subjective (the reference)."""
    return 0 if sum(1 for v in votes if v == 0) / len(votes) > 0.5 else 1


def margins(scores):
    """log p(objective) − log p(subjective) per context."""
    return [o - s for o, s in scores]


def fit_threshold(margin_values, labels):
    """The threshold t that classifies the labelled examples best with "objective iff margin > t" (ties: the
    smallest |t|). Not the paper's rule: a one-parameter calibration of the label prior, fitted on the labelled
    examples only, reported beside the plain argmax because a small model can prefer one label everywhere."""
    vals = sorted(set(margin_values))
    cands = [vals[0] - 1.0] + [(a + b) / 2 for a, b in zip(vals, vals[1:])] + [vals[-1] + 1.0]
    best = None
    for t in cands:
        a = accuracy([0 if m > t else 1 for m in margin_values], labels)
        if best is None or a > best[0] or (a == best[0] and abs(t) < abs(best[1])):
            best = (a, t)
    return best[1]


def accuracy(pred, gold):
    return sum(int(a == b) for a, b in zip(pred, gold)) / max(1, len(gold))


def cut_rationale(ids, eos):
    """The rationale's actions: the state truncated at its first ⊤ (the reference keeps tokens after ⊤ here; they are not part of the rationale)."""
    return ids[:ids.index(eos)] if eos in ids else list(ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-gpt2"))
    ap.add_argument("--data", default=os.path.join(ROOT, "data"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer files, when not beside the model")
    ap.add_argument("--quick", action="store_true", help="a short run for tests")
    ap.add_argument("--train-size", type=int, choices=(10, 20, 50), default=None,
                    help="labelled examples: data/subj/train.N.jsonl (default 20; --quick 10)")
    ap.add_argument("--test-size", type=int, default=None,
                    help="held-out test items (default 200, --quick 12; 0 = all 992)")
    ap.add_argument("--steps", type=int, default=None, help="E-step optimiser steps")
    ap.add_argument("--batch-size", type=int, default=None, help="E-step trajectories per micro-batch")
    ap.add_argument("--grad-accumulation", type=int, default=None, help="E-step micro-batches per step")
    ap.add_argument("--lr", type=float, default=5e-4, help="E-step learning rate (the reference's)")
    ap.add_argument("--seeds-per-example", type=int, default=None,
                    help="inverse-prompted buffer seeds per labelled example (the reference: 20; default 10, --quick 2)")
    ap.add_argument("--mstep-steps", type=int, default=None)
    ap.add_argument("--sft-steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-vocab-ce", action="store_true",
                    help="M-step and SFT baseline: full-vocabulary NLL of the label instead of the two-way label CE")
    ap.add_argument("--seeds", type=int, default=1,
                    help="rerun for seeds seed … seed+N−1 and report mean ± sd of every number of the last line")
    ap.add_argument("--plot", default=os.path.join(ROOT, "build", "subjectivity.png"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # the examples' shared helpers
    import _seeds
    if args.seeds > 1:
        return _seeds.rerun(os.path.abspath(__file__), sys.argv[1:], args.seed, args.seeds)
    q = args.quick
    n_train = args.train_size or (10 if q else 20)
    test_size = args.test_size if args.test_size is not None else (12 if q else 200)
    steps = args.steps or (4 if q else 40)
    bsz = args.batch_size or 8
    grad_acc = args.grad_accumulation or (1 if q else 2)
    mstep_steps = args.mstep_steps or (3 if q else 30)
    sft_steps = args.sft_steps or (3 if q else 30)
    rationales_per_train = 8 if q else 100
    n_seeds_each = args.seeds_per_example or (2 if q else 10)
    t0 = time.time()
    timings = {}

    def lap(name, since):
        timings[name] = time.time() - since
        print(f"  [{name}: {timings[name]:.0f} s; CPU so far {cpu_time():.0f} s]")
        return time.time()

    model = gfnlm.Model.load(args.model, tokenizer=args.tokenizer)
    tok = model.tokenizer
    eos = tok.eos_id
    obj_id, = tok.encode(" objective")
    subj_id, = tok.encode(" subjective")
    label_ids = {0: obj_id, 1: subj_id}
    y_ids = {k: tok.encode(v) for k, v in Y_TEXT.items()}
    so_it_is = tok.encode(SO_IT_IS)
    print(f"model {args.model}: {model.config['n_layer']} layers, n_embd {model.config['n_embd']}, "
          f"{model.config['n_positions']} positions")

    # ---- data -------------------------------------------------------------------------------------------------
    subj = os.path.join(args.data, "subj")
    train = read_jsonl(os.path.join(subj, f"train.{n_train}.jsonl"))
    in_train50 = {r["text"] for r in read_jsonl(os.path.join(subj, "train.50.jsonl"))}
    held_out = [r for r in read_jsonl(os.path.join(subj, "train.jsonl"), 7000, 8000) if r["text"] not in in_train50]
    n_dropped = 1000 - len(held_out)
    test = held_out if test_size <= 0 else held_out[:test_size]
    max_x = model.config["n_positions"] - 5 - len(y_ids[1]) - 1
    train_x = [tok.encode(X_TEMPLATE.format(r["text"])) for r in train]
    test_x = [tok.encode(X_TEMPLATE.format(r["text"]))[:max_x] for r in test]
    train_y = [r["label"] for r in train]
    test_y = [r["label"] for r in test]
    print(f"train.{n_train}: {sum(1 for v in train_y if v == 0)} objective / {sum(train_y)} subjective; "
          f"test: {len(test)} of the {len(held_out)} held-out items (subj lines 7000–7999 minus {n_dropped} also "
          f"in train.50), {sum(1 for v in test_y if v == 0)} objective / {sum(test_y)} subjective")
    print(f"X for train item 0: {X_TEMPLATE.format(train[0]['text'])!r}")
    scorer = LabelScorer(model, obj_id, subj_id)
    acc = {}

    # ---- baselines without rationales ------------------------------------------------------------------------
    t = time.time()
    cal, pred_obj = {}, {}

    def calibrated(name, train_margins, train_labels, test_margins, votes=1):
        """Accuracy with the threshold fitted on the labelled examples (votes > 1: per-rationale margins,
        majority vote per test item)."""
        t = fit_threshold(train_margins, train_labels)
        v = [0 if m > t else 1 for m in test_margins]
        pred = v if votes == 1 else [majority(v[j * votes:(j + 1) * votes]) for j in range(len(test_y))]
        cal[name] = accuracy(pred, test_y)
        print(f"  {name}, threshold fitted on the labelled examples (t = {t:.2f}): {cal[name]:.3f}")

    sc = scorer(test_x)
    acc["zero_shot"] = accuracy(predict(sc), test_y)
    pred_obj["zero_shot"] = predict(sc).count(0) / len(test_y)
    print(f"zero-shot (compare ' objective' / ' subjective' after X): {acc['zero_shot']:.3f} "
          f"({pred_obj['zero_shot']:.0%} predicted objective)")
    calibrated("zero_shot", margins(scorer(train_x)), train_y, margins(sc))
    demos = [tok.encode(X_TEMPLATE.format(r["text"]) + " " + LABEL_TEXT[r["label"]] + ".\n") for r in train]
    order = list(range(len(demos)))
    random.Random(2).shuffle(order)       # the reference's few-shot shuffle seed
    # As many labelled examples as fit before X (the model has n_positions tokens; not all N always fit).
    contexts, ks = [], []
    for x in test_x:
        room, ctx, k = model.config["n_positions"] - len(x) - 1, [], 0
        for i in order:
            if len(ctx) + len(demos[i]) > room:
                break
            ctx += demos[i]
            k += 1
        ks.append(k)
        contexts.append(ctx + x)
    fs = predict(scorer(contexts))
    acc["few_shot"] = accuracy(fs, test_y)
    pred_obj["few_shot"] = fs.count(0) / len(test_y)
    print(f"few-shot ({sum(ks) / len(ks):.1f} labelled examples in context on average, at most {max(ks)}; "
          f"the model has {model.config['n_positions']} positions): {acc['few_shot']:.3f}")
    sft_lora = gfnlm.LoRA(model, r=64, alpha=32, targets=["c_attn", "c_proj"], seed=args.seed + 3)
    sft = gfnlm.SFTTrainer(model, sft_lora, lr=1e-3, warmup_steps=max(1, sft_steps // 5), total_steps=sft_steps)
    if not args.full_vocab_ce:
        sft.set_label_candidates([obj_id, subj_id])     # the two-way label cross-entropy
    pairs = [(x, [label_ids[y]]) for x, y in zip(train_x, train_y)]
    rng = random.Random(args.seed + 3)
    for i in range(sft_steps):
        st = sft.step([rng.choice(pairs) for _ in range(16)])
        if i % max(1, sft_steps // 4) == 0 or i == sft_steps - 1:
            print(f"  SFT step {i:3d}: loss {st['loss']:.3f}")
    sc = scorer(test_x, adapter=sft_lora)
    acc["sft"] = accuracy(predict(sc), test_y)
    pred_obj["sft"] = predict(sc).count(0) / len(test_y)
    print(f"SFT on the {n_train} labelled examples (no rationale, LoRA): {acc['sft']:.3f} "
          f"({pred_obj['sft']:.0%} predicted objective)")
    calibrated("sft", margins(scorer(train_x, adapter=sft_lora)), train_y, margins(sc))
    t = lap("baselines", t)

    # ---- E-step: GFlowNet over rationales ---------------------------------------------------------------------
    horizon = max(1, round(steps * 0.15))       # the reference: 1.2 → 1.0 over 150 of 1000 steps
    t_start, t_end = 1.2, 1.0
    reward = SubjectivityReward(model, train_x, train_y, y_ids)
    lora = gfnlm.LoRA(model, r=64, alpha=32, targets=["c_attn", "c_proj"], seed=args.seed)
    tr = gfnlm.GFlowNetTrainer(
        model, lora, gfnlm.rewards.Callback(reward, temperature=True),
        prompts=[{"x": x, "y": y_ids[y]} for x, y in zip(train_x, train_y)],
        objective="subtb", termination=eos, min_length=1, max_length=5, batch_size=bsz, grad_accumulation=grad_acc,
        lr=args.lr, betas=(0.9, 0.99), warmup_steps=max(1, steps // 10), total_steps=steps,
        reward_temperature=(t_start, t_end, horizon), p_on_policy=0.25, p_replay=0.5, temperature_range=(0.5, 2.0),
        buffer_capacity=100, buffer_tolerance=0.1, seed=args.seed)
    # Buffer seeds: the base model's continuation of X + " <true label> because it is" (5 tokens at T = 1), cut
    # at the first token that is not alphanumeric once spaces are removed.
    inverse = [x + tok.encode(INVERSE_PROMPT[y]) for x, y in zip(train_x, train_y)]
    gens = model.generate(inverse, max_new_tokens=5, n=n_seeds_each, seed=args.seed + 11, stop=[eos],
                          include_stop=False)
    n_seeds = n_empty = 0
    examples = []
    for i, samples in enumerate(gens):
        seeds = []
        for s in samples:
            z = []
            for tid in s.tokens:
                if not tok.decode([tid]).strip().isalnum():
                    break
                z.append(tid)
            if z:
                seeds.append(z)
            else:
                n_empty += 1
        if seeds:
            tr.seed_buffer(i, seeds)
            n_seeds += len(seeds)
        if i < 2:
            examples.append(f"{LABEL_TEXT[train_y[i]]}: " + " | ".join(repr(tok.decode(z)) for z in seeds[:4]))
    print(f"buffer seeded with {n_seeds} inverse-prompted rationales ({n_empty} empty ones dropped), e.g.")
    for e in examples:
        print("   ", e)
    t = lap("seeding", t)
    curve = []
    for i in range(steps):
        st = tr.step()
        curve.append(st["mean_log_r"])
        if i % max(1, steps // 6) == 0 or i == steps - 1:
            print(f"  E-step {i:4d}: loss {st['loss']:9.3f}  mean log R {st['mean_log_r']:8.2f}  T_R "
                  f"{st['reward_temperature']:.3f}  unique {st['fraction_unique']:.2f}  "
                  f"(on-policy/tempered/replay {st['on_policy_batches']}/{st['tempered_batches']}/"
                  f"{st['replay_batches']})")
    t = lap("E-step", t)

    # Rationales for the labelled examples (M-step data) and how often p_LM then picks the true label.
    m_pairs = []
    agree = total = 0
    draws = _seeds.EVAL_SEED_STRIDE * args.seed
    for i, (x, y) in enumerate(zip(train_x, train_y)):
        zs = [cut_rationale(s.tokens, eos) for s in tr.sample(x, n=rationales_per_train, seed=draws + 10_000 + i)]
        preds = predict(scorer([x + z + so_it_is for z in zs]))
        agree += sum(int(p == y) for p in preds)
        total += len(zs)
        m_pairs += [(x + z + so_it_is, [label_ids[y]]) for z in zs]
    m_labels = [0 if target[0] == obj_id else 1 for _, target in m_pairs]
    train_agree = agree / total
    print(f"E-step rationales for the labelled examples: p_LM picks the true label after {train_agree:.1%} of them")
    print("  e.g. " + " | ".join(f"{tok.decode(z[len(train_x[0]):-len(so_it_is)])!r}" for z, _ in m_pairs[:5])
          + f"  ({LABEL_TEXT[train_y[0]]})")

    # ---- BMA: 10 rationales per test item, label by p_LM (adapter off), majority vote -------------------------
    test_z = []
    for j, x in enumerate(test_x):
        test_z.append([cut_rationale(s.tokens, eos) for s in tr.sample(x, n=N_VOTES, seed=draws + 20_000 + j)])
    t = lap("test rationales", t)
    rows = [x + z + so_it_is for x, zs in zip(test_x, test_z) for z in zs]
    sc = scorer(rows)
    votes = predict(sc)
    bma = [majority(votes[j * N_VOTES:(j + 1) * N_VOTES]) for j in range(len(test_x))]
    acc["gfn"] = accuracy(bma, test_y)
    pred_obj["gfn"] = bma.count(0) / len(test_y)
    print(f"GFlowNet E-step + BMA ({N_VOTES} rationales, majority vote): {acc['gfn']:.3f}   "
          f"(single-rationale accuracy {accuracy(votes, [y for y in test_y for _ in range(N_VOTES)]):.3f}; "
          f"{pred_obj['gfn']:.0%} predicted objective)")
    calibrated("gfn", margins(scorer([c for c, _ in m_pairs])), m_labels, margins(sc), votes=N_VOTES)
    for j in range(2):
        print(f"  {test[j]['text'][:70]!r}… ({LABEL_TEXT[test_y[j]]}): "
              + " | ".join(repr(tok.decode(z)) for z in test_z[j][:4]))
    t = lap("BMA", t)

    # ---- M-step: SFT of the label given X Z ", so it is" on sampled rationales ---------------------------------
    m_lora = gfnlm.LoRA(model, r=64, alpha=32, targets=["c_attn", "c_proj"], seed=args.seed + 7)
    msft = gfnlm.SFTTrainer(model, m_lora, lr=1e-3, warmup_steps=max(1, mstep_steps // 5), total_steps=mstep_steps)
    if not args.full_vocab_ce:
        msft.set_label_candidates([obj_id, subj_id])    # the two-way label cross-entropy
    rng = random.Random(args.seed + 7)
    for i in range(mstep_steps):
        st = msft.step([rng.choice(m_pairs) for _ in range(16)])
        if i % max(1, mstep_steps // 4) == 0 or i == mstep_steps - 1:
            print(f"  M-step {i:3d}: loss {st['loss']:.3f}")
    sc = scorer(rows, adapter=m_lora)
    m_votes = predict(sc)
    m_bma = [majority(m_votes[j * N_VOTES:(j + 1) * N_VOTES]) for j in range(len(test_x))]
    acc["gfn_mstep"] = accuracy(m_bma, test_y)
    pred_obj["gfn_mstep"] = m_bma.count(0) / len(test_y)
    print(f"E-step + M-step (the M-step model classifies the same {N_VOTES} rationales, majority vote): "
          f"{acc['gfn_mstep']:.3f} ({pred_obj['gfn_mstep']:.0%} predicted objective)")
    calibrated("gfn_mstep", margins(scorer([c for c, _ in m_pairs], adapter=m_lora)), m_labels, margins(sc),
               votes=N_VOTES)
    t = lap("M-step", t)

    names = [("zero_shot", "zero-shot"), ("few_shot", "few-shot"), ("sft", "SFT (no rationale)"),
             ("gfn", "GFlowNet E-step + BMA"), ("gfn_mstep", "E-step + M-step")]
    print(f"\naccuracy on {len(test)} held-out items (train.{n_train}):")
    print(f"  {'':24s} {'argmax':>7s} {'fitted threshold':>17s} {'predicted objective':>20s}")
    for k, label in names:
        c = f"{cal[k]:17.3f}" if k in cal else f"{'—':>17s}"
        print(f"  {label:24s} {acc[k]:7.3f} {c} {pred_obj[k]:20.0%}")
    print(f"  (test: {sum(1 for v in test_y if v == 0) / len(test_y):.0%} objective; argmax = the paper's rule; "
          "fitted threshold: objective iff log p(objective) − log p(subjective) > t, t fitted on the labelled examples)")
    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
            a1.bar(range(len(names)), [acc[k] for k, _ in names], color=["#999", "#999", "#999", "C0", "C1"])
            a1.set_xticks(range(len(names)))
            a1.set_xticklabels([label.replace(" + ", "\n+ ") for _, label in names], fontsize=8)
            a1.axhline(0.5, color="k", lw=0.8, ls="--")
            a1.set_ylim(0, 1)
            a1.set_ylabel("test accuracy")
            a1.set_title(f"subjectivity, train.{n_train}, {len(test)} held-out items")
            a2.plot(curve)
            a2.set_xlabel("E-step optimiser step")
            a2.set_ylabel("mean log R of the step's trajectories")
            a2.set_title("E-step reward")
            fig.tight_layout()
            os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
            fig.savefig(args.plot, dpi=90)
            print(f"plot written to {args.plot}")
        except ImportError:
            print("(matplotlib not installed: no plot)")
    elapsed = time.time() - t0
    print(f"time {elapsed:.0f} s wall, {cpu_time():.0f} s CPU (" + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + ")")
    print(" ".join(f"{k}_acc={acc[k]:.4f}" for k, _ in names)
          + " " + " ".join(f"{k}_cal_acc={cal[k]:.4f}" for k, _ in names if k in cal)
          + " " + " ".join(f"{k}_pred_obj={pred_obj[k]:.4f}" for k, _ in names)
          + f" train_agree={train_agree:.4f} n_train={n_train} n_test={len(test)} seconds={elapsed:.0f} cpu_seconds={cpu_time():.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
