"""Paper §4.2: story infilling — sample the missing middle of a story given its beginning and its ending.

A story is five consecutive lines s1 … s5 of data/openwebtext/prompts.txt (the demo model's training documents are
such five-line groups; each line is tokenized alone and the ids concatenated). Given the beginning s1 s2 s3 and the
ending Y = s5, the posterior over middles Z is p(Z | s1 s2 s3, Y) ∝ p_LM(Z Y | s1 s2 s3): an intractable posterior
that left-to-right sampling cannot reach, because the language model reads the ending only after the middle.
GFlowNet fine-tuning turns the model into an amortized sampler of R(Z)^(1/T_R), R(Z) = p_LM(Z Y | s1 s2 s3).

Choices: the reward is the paper-faithful p_LM(Z Y | s1 s2 s3) (main_infill.py's
intent; the reference's runnable main.py scores p_LM(Z Y | "Beginning … Ending … Middle:") instead), computed with
the adapter off through the prompt's reward context. The policy has to see the ending: by default its prompt X is
"s5 <|endoftext|> s1 s2 s3" (the ending as a previous document, then the beginning), a layout the demo model has
seen, so that the untrained policy is the model continuing the beginning; --policy-prompt paper uses the paper's
"Beginning: s1 s2 s3\\nEnding: s5\\nMiddle:" instead (a format the demo model never saw). ⊤ = <|endoftext|>, at least
--min-len tokens (the trainer's target is R restricted to middles of ≥ --min-len tokens, whatever the reward gives
shorter ones; --reward-min-len adds the reference's −99 below, which no longer changes the target), at most
--max-len (reaching it ends the middle: layout forced_stop),
T_R 1.1 → 0.85, behaviour on-policy 25 % / replay 25 % (prioritised) / tempered τ ~ U[0.5, 2] 50 %, and the replay
buffer is seeded with the true middle s4 of every training story.

Training stories come from lines 0–9499 (the demo model's own training text, as the paper's reward model was
fine-tuned on its training stories); evaluation stories from the held-out lines 9500–9999, which the demo model never
saw. Only stories whose middle fits in --max-len tokens are used (and, for training, whose ending has ≤ 24 tokens:
the reward scores Y after every prefix, so its cost grows with |Y|).

Evaluation on held-out stories, per method, --samples middles per story: the mean log-likelihood under the reward
log p_LM(Z Y | s1 s2 s3) (untempered), its part log p_LM(Y | s1 s2 s3 Z) (how well the middle leads to the ending),
and BLEU-4 and GLEU-4 (×100, whitespace tokens, implemented here as nltk's sentence_bleu with smoothing method1 and
sentence_gleu) against the true middle s4. Methods: the GFlowNet sampler (τ = 1); prompting baselines on the base
model: sampling given the beginning only (what a left-to-right model can do), sampling given the policy's prompt
(the untrained policy), and beam search (8 beams) given the beginning; and the true middle itself as a reference.

Usage: PYTHONPATH=bindings/python python examples/python/infilling.py [--quick] [--model DIR] [--data DIR]
The last line is machine-readable: gfn_logr=… gfn_bleu=… gfn_gleu=… prompt_logr=… …
"""
import argparse
import math
import os
import sys
import time
from collections import Counter

import gfnlm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# --- BLEU-4 and GLEU (sentence level), as nltk computes them --------------------------------------------------

def _ngrams(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(reference, hypothesis, max_n=4):
    """nltk.translate.bleu_score.sentence_bleu([reference], hypothesis) with SmoothingFunction().method1
    (ε = 0.1 added to the numerator of n-gram precisions with no match), uniform weights, brevity penalty; 0 when
    not even one unigram matches."""
    if not hypothesis:
        return 0.0
    logs = 0.0
    for n in range(1, max_n + 1):
        h, r = _ngrams(hypothesis, n), _ngrams(reference, n)
        num = sum(min(c, r[g]) for g, c in h.items())
        if n == 1 and num == 0:
            return 0.0
        den = max(1, sum(h.values()))
        p = num / den if num > 0 else 0.1 / den
        logs += math.log(p) / max_n
    c, ref_len = len(hypothesis), len(reference)
    bp = 1.0 if c > ref_len else math.exp(1 - ref_len / c)
    return bp * math.exp(logs)


def sentence_gleu(reference, hypothesis, min_n=1, max_n=4):
    """nltk.translate.gleu_score.sentence_gleu: matching n-grams (1–4) / max(hypothesis n-grams, reference n-grams)."""
    tp = tpfp = tpfn = 0
    for n in range(min_n, max_n + 1):
        h, r = _ngrams(hypothesis, n), _ngrams(reference, n)
        tp += sum(min(c, r[g]) for g, c in h.items())
        tpfp += sum(h.values())
        tpfn += sum(r.values())
    d = max(tpfp, tpfn)
    return tp / d if d > 0 else 0.0


# --- data ---------------------------------------------------------------------------------------------------

def read_stories(data, tok, first, last, max_middle, max_ending=None):
    """Five-line groups (lines i … i+4, i a multiple of 5) inside [first, last), as token ids per line."""
    with open(os.path.join(data, "openwebtext", "prompts.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    out = []
    for i in range(first, min(last, len(lines)) - 4, 5):
        s = lines[i:i + 5]
        if any(not t.strip() for t in s):
            continue
        ids = [tok.encode(t) for t in s]
        if len(ids[3]) > max_middle or (max_ending is not None and len(ids[4]) > max_ending):
            continue
        out.append({"line": i, "text": s, "ids": ids, "beginning": ids[0] + ids[1] + ids[2],
                    "middle": ids[3], "ending": ids[4]})
    return out


def policy_prompt(tok, story, kind):
    if kind == "paper":
        s = [t.strip() for t in story["text"]]
        return tok.encode(f"Beginning: {s[0]} {s[1]} {s[2]}\nEnding: {s[4]}\nMiddle:")
    return story["ending"] + [tok.eos_id] + story["beginning"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-gpt2"))
    ap.add_argument("--data", default=os.path.join(ROOT, "data"))
    ap.add_argument("--quick", action="store_true", help="a short run for tests (about a minute)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default 24, quick 3)")
    ap.add_argument("--train-stories", type=int, default=None, help="default 24, quick 4")
    ap.add_argument("--eval-stories", type=int, default=None, help="default 12, quick 2")
    ap.add_argument("--samples", type=int, default=None, help="middles per story and method (default 12, quick 4)")
    ap.add_argument("--policy-prompt", choices=["ending-first", "paper"], default="ending-first")
    ap.add_argument("--min-len", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--temp-end", type=float, default=0.85, help="final reward temperature (start 1.1)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--reward-min-len", type=int, default=0,
                    help="states shorter than this get log R = −99 (the reference: = min-len); 0: no such penalty. "
                         "Either way the trainer's target is R restricted to ≥ --min-len tokens")
    ap.add_argument("--max-ending", type=int, default=16, help="longest ending (tokens) of a training story")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1,
                    help="rerun for seeds seed … seed+N−1 and report mean ± sd of every number of the last line")
    ap.add_argument("--plot", default=os.path.join(ROOT, "build", "infilling.png"))
    ap.add_argument("--save-adapter", default=None, help="directory to save the trained LoRA adapter (PEFT layout)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # the examples' shared helpers
    import _seeds
    if args.seeds > 1:
        return _seeds.rerun(os.path.abspath(__file__), sys.argv[1:], args.seed, args.seeds)
    steps = args.steps if args.steps is not None else (3 if args.quick else 24)
    n_train = args.train_stories or (4 if args.quick else 24)
    n_eval = args.eval_stories or (2 if args.quick else 12)
    K = args.samples or (4 if args.quick else 12)
    t0 = time.time()

    model = gfnlm.Model.load(args.model)
    tok = model.tokenizer
    eos = tok.eos_id
    train = read_stories(args.data, tok, 0, 9500, args.max_len, max_ending=args.max_ending)[:n_train]
    held = read_stories(args.data, tok, 9500, 10000, args.max_len)[:n_eval]
    print(f"model {args.model}: {model.config['n_layer']} layers, n_embd {model.config['n_embd']}")
    print(f"{len(train)} training stories (lines 0-9499), {len(held)} held-out stories (lines 9500-9999) with a "
          f"middle of ≤ {args.max_len} tokens; policy prompt: {args.policy_prompt}")

    prompts = [{"x": policy_prompt(tok, s, args.policy_prompt), "y": s["ending"], "reward_context": s["beginning"]}
               for s in train]
    reward = gfnlm.rewards.LMLikelihood(model, min_length=args.reward_min_len)
    lora = gfnlm.LoRA(model, r=16, alpha=32, dropout=0.0, targets=["c_attn", "c_proj", "c_fc"], seed=args.seed)
    grad_acc = 1 if args.quick else 2
    horizon = max(1, int(steps * 0.5))
    tr = gfnlm.GFlowNetTrainer(
        model, lora, reward, prompts=prompts, objective="subtb", termination=eos, min_length=args.min_len,
        max_length=args.max_len, layout="forced_stop", batch_size=8, grad_accumulation=grad_acc, lr=args.lr,
        warmup_steps=min(20, max(1, steps // 10)), reward_temperature=(1.1, args.temp_end, horizon),
        p_on_policy=0.25, p_replay=0.25, temperature_range=(0.5, 2.0), buffer_capacity=25, buffer_prioritized=True,
        seed=args.seed)
    for i, s in enumerate(train):
        if len(s["middle"]) >= args.min_len:     # shorter middles are outside the target (the trainer refuses them)
            tr.seed_buffer(i, [s["middle"]])
    print(f"LoRA r=16 α=32 on c_attn,c_proj,c_fc ({lora.parameter_count} parameters); replay buffer seeded with the "
          f"{len(train)} true middles; {steps} steps of {grad_acc}×8 trajectories, T_R 1.1 → {args.temp_end} over "
          f"{horizon} steps")
    t_train = time.time()
    for i in range(steps):
        s = tr.step()
        if i % max(1, steps // 10) == 0 or i == steps - 1:
            print(f"  step {i:4d} (CPU {sum(os.times()[:2]):5.0f} s): loss {s['loss']:9.3f}  T_R {s['reward_temperature']:.3f}  mean log R {s['mean_log_r']:7.2f}"
                  f"  length {s['mean_length']:5.2f}  unique {s['fraction_unique']:.2f}"
                  f"  [{s['on_policy_batches']} on-policy, {s['tempered_batches']} tempered, {s['replay_batches']} replay]",
                  flush=True)
    t_train = time.time() - t_train
    print(f"training: {t_train:.0f} s")
    if args.save_adapter:
        lora.save(args.save_adapter)
        print(f"adapter saved to {args.save_adapter}")

    # --- evaluation -----------------------------------------------------------------------------------------
    def cut(tokens):
        z = list(tokens)
        if eos in z:
            z = z[:z.index(eos)]
        return z[:args.max_len]

    gen = dict(max_new_tokens=args.max_len, min_new_tokens=args.min_len, stop=[eos], include_stop=False)

    def draw(method, story, seed):
        if method == "gfn":
            return [cut(s.tokens) for s in tr.sample(policy_prompt(tok, story, args.policy_prompt), n=K, seed=seed)]
        if method == "prompt":
            return [cut(s.tokens) for s in model.generate(story["beginning"], n=K, seed=seed, **gen)]
        if method == "prompt_ending":
            return [cut(s.tokens) for s in model.generate(policy_prompt(tok, story, args.policy_prompt), n=K, seed=seed,
                                                          **gen)]
        if method == "beam":
            return [cut(s.tokens) for s in model.beam_search(story["beginning"], num_beams=8, num_return=1, **gen)]
        if method == "true":
            return [story["middle"]]
        raise ValueError(method)

    def scores(story, zs):
        """(log p(Z Y | C), log p(Y | C Z)) per middle, base model, the reward's −99 below min_len."""
        y = story["ending"]
        res = model.score([story["beginning"]] * len(zs), [z + y for z in zs], per_token=True)
        out = []
        for z, (tot, toks, _) in zip(zs, res):
            ly = sum(toks[len(z):])
            out.append((tot if len(z) >= args.min_len else -99.0, ly))
        return out

    # the metric is the trainer's reward at the terminal state
    st = held[0]
    r0 = reward(st["beginning"], st["middle"], y=st["ending"])[-1]
    assert abs(r0 - scores(st, [st["middle"]])[0][0]) < 1e-2, (r0, scores(st, [st["middle"]]))

    methods = ["gfn", "prompt", "prompt_ending", "beam", "true"]
    labels = {"gfn": "GFlowNet sampler (τ=1)", "prompt": "sample | beginning", "prompt_ending": "sample | policy prompt",
              "beam": "beam (8) | beginning", "true": "true middle s4"}
    res = {m: {"logr": [], "logy": [], "bleu": [], "gleu": [], "len": [], "all_logr": []} for m in methods}
    t_eval = time.time()
    shown = {}
    for si, story in enumerate(held):
        ref = tok.decode(story["middle"]).split()
        for m in methods:
            zs = draw(m, story, seed=2000 + si + _seeds.EVAL_SEED_STRIDE * args.seed)
            sc = scores(story, zs)
            r = res[m]
            texts = [tok.decode(z) for z in zs]
            r["logr"].append(sum(a for a, _ in sc) / len(sc))
            r["all_logr"].extend(a for a, _ in sc)
            r["logy"].append(sum(b for _, b in sc) / len(sc))
            r["bleu"].append(100 * sum(sentence_bleu(ref, t.split()) for t in texts) / len(texts))
            r["gleu"].append(100 * sum(sentence_gleu(ref, t.split()) for t in texts) / len(texts))
            r["len"].append(sum(len(z) for z in zs) / len(zs))
            if si == 0:
                shown[m] = sorted(zip([a for a, _ in sc], texts), reverse=True)
    t_eval = time.time() - t_eval

    mean = lambda v: sum(v) / len(v) if v else float("nan")
    st = held[0]
    print(f"\nheld-out story (lines {st['line']}-{st['line'] + 4}):\n  beginning: {' '.join(t.strip() for t in st['text'][:3])!r}"
          f"\n  ending:    {st['text'][4].strip()!r}")
    for m in methods:
        print(f"  {labels[m]}:")
        for ll, t in shown[m][:3]:
            print(f"    {ll:8.2f}  {t!r}")
    print(f"\n{len(held)} held-out stories, {K} middles per story for the samplers ({t_eval:.0f} s)")
    print(f"{'method':26s} {'log p(ZY|C)':>11s} {'log p(Y|CZ)':>11s} {'BLEU-4':>7s} {'GLEU':>6s} {'length':>6s}")
    for m in methods:
        r = res[m]
        print(f"{labels[m]:26s} {mean(r['logr']):11.2f} {mean(r['logy']):11.2f} {mean(r['bleu']):7.2f} "
              f"{mean(r['gleu']):6.2f} {mean(r['len']):6.2f}")
    print("(C = s1 s2 s3, Y = s5, Z the middle; log-likelihoods under the base model = the untempered reward; BLEU-4 / "
          "GLEU ×100 against the true s4)")

    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(7, 4.2))
            vals = [v for m in methods for v in res[m]["all_logr"] if v > -99] or [-99.0, 0.0]
            lo, hi = min(vals), max(vals) + 1e-6
            bins = [lo + (hi - lo) * k / 30 for k in range(31)]
            for m in ("prompt", "prompt_ending", "gfn"):
                v = [v for v in res[m]["all_logr"] if v > -99]
                if v:
                    ax.hist(v, bins=bins, alpha=0.5, density=True, label=labels[m])
            for m, ls in (("beam", "--"), ("true", ":")):
                ax.axvline(mean(res[m]["all_logr"]), color="k", ls=ls, lw=1, label=f"{labels[m]} (mean)")
            ax.set_xlabel("log p_LM(Z Y | s1 s2 s3)  (the untempered reward)")
            ax.set_ylabel("density")
            ax.set_title(f"Infilling: {len(held)} held-out stories × {K} middles")
            ax.legend(fontsize=8)
            fig.tight_layout()
            os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
            fig.savefig(args.plot, dpi=90)
            print(f"plot written to {args.plot}")
        except ImportError:
            print("(matplotlib not installed: no plot)")
    total = time.time() - t0
    cpu = sum(os.times()[:2])
    print(f"time {total:.0f} s (training {t_train:.0f} s, evaluation {t_eval:.0f} s; CPU {cpu:.0f} s)")
    parts = []
    for m in methods:
        parts += [f"{m}_logr={mean(res[m]['logr']):.3f}", f"{m}_logy={mean(res[m]['logy']):.3f}",
                  f"{m}_bleu={mean(res[m]['bleu']):.3f}", f"{m}_gleu={mean(res[m]['gleu']):.3f}"]
    print(" ".join(parts + [f"steps={steps}", f"time_s={total:.0f}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
