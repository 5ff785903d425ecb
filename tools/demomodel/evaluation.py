"""Evaluation on the shipped weights: perplexity, samples, arithmetic accuracy, the random-number prompt's
base distribution and how far a policy could move it.
"""
from __future__ import annotations

import copy
import math
from collections import Counter

import numpy as np
import torch

from .common import EOS, N_POS, RNG_PROMPT_IDS, RNG_VARIANTS, SEED

# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def perplexity(model, tok, texts, batch=64):
    """exp(mean NLL) over every token of every text, each text scored alone after <|endoftext|>."""
    nll, n = 0.0, 0
    ids = tok(texts)["input_ids"]
    for i in range(0, len(ids), batch):
        chunk = [[EOS] + x[:N_POS - 1] for x in ids[i:i + batch]]
        L = max(len(c) for c in chunk)
        inp = torch.full((len(chunk), L), EOS, dtype=torch.int64)
        mask = torch.zeros((len(chunk), L), dtype=torch.int64)
        for r, c in enumerate(chunk):
            inp[r, :len(c)] = torch.tensor(c)
            mask[r, :len(c)] = 1
        logits = model(input_ids=inp, attention_mask=mask).logits.float()
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, inp[:, 1:, None])[..., 0]
        m = mask[:, 1:].bool()
        nll -= float(lp[m].sum())
        n += int(m.sum())
    return math.exp(nll / n), n


@torch.no_grad()
def sample(model, prompt_ids, n, max_new, temperature=1.0, gen=None, batch=1000, greedy=False):
    """Pure ancestral sampling (no top-k / top-p), KV cache; stops a row at <|endoftext|>."""
    from transformers import DynamicCache
    out = []
    o0 = model(input_ids=torch.tensor([prompt_ids]), past_key_values=DynamicCache(), use_cache=True)
    for s in range(0, n, batch):
        b = min(batch, n - s)
        cache = copy.deepcopy(o0.past_key_values)
        cache.batch_repeat_interleave(b)
        logits = o0.logits[:, -1].float().expand(b, -1)
        done = torch.zeros(b, dtype=torch.bool)
        gen_ids = []
        for t in range(max_new):
            if greedy:
                nxt = logits.argmax(-1)
            else:
                p = torch.softmax(logits / temperature, -1)
                nxt = torch.multinomial(p, 1, generator=gen)[:, 0]
            nxt = torch.where(done, torch.full_like(nxt, EOS), nxt)
            gen_ids.append(nxt)
            done |= nxt == EOS
            if bool(done.all()) or t == max_new - 1:
                break
            o = model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True)
            logits, cache = o.logits[:, -1].float(), o.past_key_values
        g = torch.stack(gen_ids, 1).tolist()
        for row in g:
            out.append(row[:row.index(EOS) + 1] if EOS in row else row)
    return out


@torch.no_grad()
def rng_exact(model, tok):
    """Exact base probabilities of the 100 valid outcomes: p(n | X) * p(<|endoftext|> | X n)."""
    num_ids = [tok.convert_tokens_to_ids(str(k)) for k in range(100)]
    x = torch.tensor([RNG_PROMPT_IDS + [i] for i in num_ids])
    lp = torch.log_softmax(model(input_ids=x).logits.double(), -1)
    p = (lp[0, -2, num_ids] + lp[:, -1, EOS]).exp().numpy()
    q = p / p.sum()
    first = torch.softmax(lp[0, -2], -1)
    return dict(valid=float(p.sum()), kl_valid=float(np.sum(q * np.log(q * 100))), probs=p.tolist(),
                p_first_is_number=float(first[num_ids].sum()), p_first_is_100=float(first[tok.convert_tokens_to_ids("100")]),
                p_first_is_eos=float(first[EOS]), min_q=float(q.min()), max_q=float(q.max()))


@torch.no_grad()
def rng_reachable(model, tok, steps=3000):
    """How close can ANY fine-tuning that leaves the final LayerNorm and the tied embedding alone (LoRA on the blocks)
    get to the GFlowNet target on the first token: uniform over "0".."99" and nothing else? Optimise the LayerNorm's
    input directly (Adam, fp64) for min KL(U{0..99} || p(first token)); report that KL, the mass it puts on the
    numbers and their evenness. Also the model's own next-token mass on the numbers after the other number prompts."""
    num_ids = [tok.convert_tokens_to_ids(str(k)) for k in range(100)]
    W = model.transformer.wte.weight.detach().double()
    ln = model.transformer.ln_f
    g, b, eps = ln.weight.detach().double(), ln.bias.detach().double(), ln.eps
    gen = torch.Generator().manual_seed(SEED)
    u = torch.randn(W.shape[1], dtype=torch.float64, generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([u], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            n = (u - u.mean()) / torch.sqrt(u.var(unbiased=False) + eps)
            lp = torch.log_softmax(W @ (g * n + b), -1)
            loss = -lp[num_ids].mean() - math.log(100)
            opt.zero_grad()
            loss.backward()
            opt.step()
    pn = lp.detach().exp()[num_ids]
    q = pn / pn.sum()
    own = []
    for prompt in RNG_VARIANTS:
        ids = torch.tensor([tok(prompt)["input_ids"]])
        pr = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
        own.append(float(pr[num_ids].sum()))
    return dict(best_kl_u_p=float(loss.item()), mass=float(pn.sum()), kl_q_u=float((q * torch.log(q * 100)).sum()),
                variant_prompt_mass=own)


def arithmetic_accuracy(model, tok, heldout, n_per=100, max_new=48):
    """Greedy, no calculator, first n_per held-out problems per operand count; the answer is the integer
    after the last 'The answer is' (cut at the first newline or <|endoftext|>)."""
    res = {}
    for n_ops, items in heldout.items():
        items = items[:n_per]
        x = torch.tensor([tok(it["str_query"])["input_ids"] for it in items])   # same length per n_ops
        outs = []
        for i in range(0, len(items), 50):
            outs += greedy_batch(model, x[i:i + 50], max_new)
        ok, fmt = 0, 0
        for it, o in zip(items, outs):
            text = tok.decode([t for t in o if t != EOS]).split("\n")[0]
            try:
                ans = int(text.split("The answer is")[-1].strip().rstrip("."))
                fmt += "The answer is" in text
                ok += ans == it["num_sol"]
            except ValueError:
                pass
        res[n_ops] = dict(acc=ok / len(items), answered=fmt / len(items), example=items[0]["str_query"] + tok.decode(
            [t for t in outs[0] if t != EOS]).split("\n")[0])
    return res


@torch.no_grad()
def greedy_batch(model, x, max_new):
    from transformers import DynamicCache
    o = model(input_ids=x, past_key_values=DynamicCache(), use_cache=True)
    cache, cur, gen = o.past_key_values, o.logits[:, -1].argmax(-1), []
    for t in range(max_new):
        gen.append(cur)
        if t == max_new - 1:
            break
        o = model(input_ids=cur[:, None], past_key_values=cache, use_cache=True)
        cache, cur = o.past_key_values, o.logits[:, -1].argmax(-1)
    g = torch.stack(gen, 1).tolist()
    return [r[:r.index(EOS)] if EOS in r else r for r in g]


@torch.no_grad()
def tree_sample(model, prompt_ids, n, max_new, gen, stop=None, batch=128):
    """n pure ancestral samples at T=1 (no top-k/top-p), drawn level by level: all samples that share a
    prefix share its next-token distribution, so the counts of each next token are one multinomial draw.
    Same distribution as n independent runs, at the cost of one forward per distinct prefix. A prefix for
    which stop(prefix) is true is not extended further (it is returned as it is)."""
    active, done = {(): n}, Counter()
    head = model.lm_head.weight
    for depth in range(max_new):
        prefixes = list(active)
        nxt = Counter()
        for i in range(0, len(prefixes), batch):
            chunk = prefixes[i:i + batch]
            x = torch.tensor([prompt_ids + list(p) for p in chunk])
            h = model.transformer(input_ids=x).last_hidden_state[:, -1]
            probs = torch.softmax((h @ head.t()).double(), -1)
            for p, pr in zip(chunk, probs):
                draws = torch.multinomial(pr, active[p], replacement=True, generator=gen)
                for t, c in zip(*np.unique(draws.numpy(), return_counts=True)):
                    q = p + (int(t),)
                    if t == EOS or depth == max_new - 1 or (stop is not None and stop(q)):
                        done[q] += int(c)
                    else:
                        nxt[q] += int(c)
        active = nxt
        if not active:
            break
    return done


def rng_stats(model, tok, n, seed, n_full=10000):
    """Strict statistics from n samples (a sample is cut as soon as it is known to be invalid, which does not
    change the statistics); the lenient parse and the list of continuations from n_full full samples."""
    gen = torch.Generator().manual_seed(seed)
    num_ids = {tok.convert_tokens_to_ids(str(k)): k for k in range(100)}
    invalid = lambda q: q[0] not in num_ids or (len(q) >= 2 and q[1] != EOS)
    counts = np.zeros(100, dtype=np.int64)
    for seq, c in tree_sample(model, RNG_PROMPT_IDS, n, 5, gen, stop=invalid).items():
        if len(seq) == 2 and seq[1] == EOS and seq[0] in num_ids:
            counts[num_ids[seq[0]]] += c
    parse_counts = np.zeros(100, dtype=np.int64)
    outcomes = Counter()
    for seq, c in tree_sample(model, RNG_PROMPT_IDS, n_full, 5, gen).items():
        text = tok.decode([t for t in seq if t != EOS])
        outcomes[text] += c
        try:                         # the paper's lenient check: decode, drop eos, rstrip, int()
            v = int(text.rstrip())
            if 0 <= v <= 99:
                parse_counts[v] += c
        except ValueError:
            pass

    def kl(c):
        q = c / max(1, c.sum())
        return float(np.sum(q[q > 0] * np.log(q[q > 0] * 100)))
    return dict(n=n, valid=float(counts.sum() / n), kl_valid=kl(counts),
                support=int((counts > 0).sum()), n_full=n_full, parse_valid=float(parse_counts.sum() / n_full),
                kl_parse=kl(parse_counts), counts=counts.tolist(),
                top=[(k, v) for k, v in outcomes.most_common(25)])
