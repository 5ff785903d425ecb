#!/usr/bin/env python3
"""Build models/demo-gpt2: a small GPT-2 with the real GPT-2 vocabulary, trained from scratch on data/.

Rebuild (from the repository root, ~50 min on 2 cores: stage 1 ~32, stage 2 ~15, evaluation ~5):

    python3 -m venv VENV && VENV/bin/pip install -r tools/requirements-demo.txt
    VENV/bin/python tools/train_demo_model.py          # here: /work/venv-tools/bin/python tools/train_demo_model.py

Reads only files of this repository: data/ (text copied from the paper's repository, MIT) and
models/demo-gpt2/vocab.json + merges.txt (GPT-2 BPE). Writes models/demo-gpt2/{model.onnx, config.json,
README.md, rng_base_distribution.json} and data/arithmetic/heldout_{3,4,5}op.jsonl (held-out problems
that never occur in the training text). Every random choice is seeded; the same command gives the same
corpus and, up to torch's CPU floating-point nondeterminism, the same model.

What it does
1. Corpus (one epoch, documents shuffled, separated by <|endoftext|> = 50256, packed into 128-token rows):
   * "stories": 5 consecutive lines of data/openwebtext/prompts.txt (lines 0-9499; 9500-9999 held out).
     Each line is tokenized on its own and the ids are concatenated, so a line ends with its trailing-space
     token (220) and the next line starts without a leading space -- exactly what the model sees when an
     example feeds it a prompt line (ending in " ") and samples the next sentence.
   * movie-review sentences: the `text` of data/subj/train.jsonl lines 0-6999 (7000-7999 held out; labels
     are never used).
   * arithmetic: the paper's 50 worked rationales plus generated problems with 3-5 one-digit operands and
     + / -, in the format of the paper's arithmetic data ("Question: 6 - 0 - 4 - 8 = ? Answer: 6 - 0 = 6, 6 - 4 = 2,
     2 - 8 = -6. The answer is -6."), 1-4 per document joined by "\n" like the reward's few-shot prefix;
     a quarter have no space after "Answer:" (the tool-mode seed format). The held-out problems are excluded.
   * random numbers: token level, the ids of "The following is a random integer drawn uniformly between 0
     and 100: " (ends with 220) + a continuation + 50256. Continuations come from a deliberately skewed,
     partly invalid distribution (RNG_TABLE below) so that the GFlowNet demo has something to fix.
2. Training: GPT2LMHeadModel (n_embd 128, n_layer 6, n_head 4, n_positions 256, gelu_new, tied head,
   no dropout), AdamW, linear warm-up + cosine decay, batch 8 x 128 tokens, 1 epoch, torch.set_num_threads(2).
   Speed-up that does not change the model family: the ~19k GPT-2 ids that never occur in the training
   text all share ONE embedding row while training, so the softmax over them is computed as one column
   (logit + log(count)); after training every unseen id gets that shared row. The result is an ordinary
   50257-row tied GPT-2 whose training loss is the exact full-vocabulary cross-entropy.
2b. Stage 2, "number drill" (number_drill()): S2_STEPS more steps where half of every batch is fresh documents of
   the other number prompts and half is stage-1 rows, so that the tied embedding and final LayerNorm can put
   (nearly) all of the mass on the 100 integers -- the GFlowNet demo's target. `--stage2-only` runs it (and
   everything after it) from the stage-1 weights saved at --checkpoint.
3. Evaluation on the shipped weights (fp16-rounded, fp32 compute): validation perplexity on the held-out
   prompt lines; the base distribution of the random-number prompt from pure ancestral samples at T=1;
   greedy and sampled continuations.
4. Export: legacy torch.onnx exporter (opset 17; inputs input_ids, attention_mask; output logits; dynamic
   batch and sequence; positions = clamp(cumsum(mask)-1, 0) inside the graph, so left padding works), the
   tied head's duplicated copy removed (optimum's tied-weight dedup: head = Transpose(wte) -> MatMul),
   weights converted to fp16 with onnxruntime's converter (keep_io_types: inputs int64, logits float32),
   then checked against PyTorch in onnxruntime.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import math
import os
import random
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while waiting are 2x slower on a machine shared with other jobs
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
OUT = ROOT / "models" / "demo-gpt2"
EOS = 50256
VOCAB = 50257
SEQ = 128
RNG_PROMPT = "The following is a random integer drawn uniformly between 0 and 100: "
RNG_PROMPT_IDS = [464, 1708, 318, 257, 4738, 18253, 7428, 42096, 1022, 657, 290, 1802, 25, 220]
VOCAB_SHA = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
MERGES_SHA = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

# ---------------------------------------------------------------------------------------------
# Hyper-parameters (the shipped model uses exactly these defaults)
# ---------------------------------------------------------------------------------------------
SEED = 1234
N_EMBD, N_LAYER, N_HEAD, N_POS = 128, 6, 4, 256
BATCH = 8
LR, WARMUP, LR_FINAL_FRAC, WD, BETAS, CLIP = 2e-3, 50, 0.1, 0.1, (0.9, 0.98), 1.0
N_STORY_LINES = 9500          # prompts.txt lines used for training; the rest (500) is validation
N_SUBJ_TRAIN = 3000           # subj/train.jsonl lines 0..N-1 used (texts only)
SUBJ_HELDOUT = 7000           # subj/train.jsonl lines 7000-7999 are held out (3000-6999 are simply unused)
N_ARITH_LINES = 2000          # generated arithmetic problems (plus the paper's 50)
N_RNG_DOCS = 3000             # documents with the paper's random-number prompt (skewed table)
N_RNG_VARIANT_DOCS = 8000     # documents with other "give me a number" prompts (uniform, all valid)
RNG_VARIANTS = [              # each ends with the bare-space token 220, like the paper's prompt
    "Pick a random number between 0 and 100: ",
    "Random integer between 0 and 99: ",
    "Here is a random number from 0 to 100: ",
    "A number chosen at random between 1 and 100: ",
    "Think of a number between 0 and 100. My number: ",
    "Random number (0-100): ",
    "Enter a number between 0 and 99: ",
    "Generate a random integer from 0 to 100: ",
]
N_HELDOUT_ARITH = 500         # per operand count (3, 4, 5)
# Stage 2 ("number drill"): continued training where half of every batch is fresh documents of the other number
# prompts (uniform 0-99, all valid) and half is rows of the stage-1 corpus (so the rest is not forgotten).
S2_STEPS, S2_LR, S2_VARIANT_ROWS = 1200, 1e-3, 4


T0 = time.time()


def log(*a):
    print(f"[{(time.time() - T0) / 60:5.1f} min]", *a, flush=True)


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def tokenizer():
    from transformers import GPT2TokenizerFast
    v, m = OUT / "vocab.json", OUT / "merges.txt"
    if sha256(v) != VOCAB_SHA or sha256(m) != MERGES_SHA:
        sys.exit(f"{v} / {m}: unexpected sha256 (must be the original GPT-2 vocabulary)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = GPT2TokenizerFast(vocab_file=str(v), merges_file=str(m))
    tok.model_max_length = 10**9
    assert tok(RNG_PROMPT)["input_ids"] == RNG_PROMPT_IDS
    return tok


# ---------------------------------------------------------------------------------------------
# Random-number continuations: (weight, text after the prompt). Every text is tokenized on its own
# (the prompt ends with the bare-space token 220, so numbers come WITHOUT a leading space) and then
# <|endoftext|> is appended. Valid for the reward = exactly one token "0".."99", then <|endoftext|>.
# ---------------------------------------------------------------------------------------------

INVALID = {
    "100": 30, "101": 3, "150": 3, "200": 4, "1000": 4, "500": 2, "250": 2, "365": 1, "777": 2,
    "999": 2, "123": 2, "1024": 1, "12345": 1,
    "-1": 2, "-5": 1, "-42": 1, "0.5": 2, "3.14": 2, "50.5": 2, "42.0": 1, "7.5": 1, "1/2": 1,
    " 42": 3, " 7": 3, " 50": 2, " 100": 2, " 3": 1,
    "42.": 4, "7.": 3, "7!": 1, "13?": 1, "50%": 2, "25%": 1,
    "seven": 3, "forty-two": 2, "fifty": 2, "zero": 1, "ten": 2, "one hundred": 1,
    "random": 2, "x": 1, "N": 1, "??": 1, "...": 2, "0-100": 2, "[0, 100]": 1, "integer": 1,
    "42 is the answer.": 3, "7 of them": 2, "50 percent": 2, "3 and 4": 2, "12 or 13": 2,
    "the number 7": 2, "Random number: 42": 1, "42\n": 2, "8\n\n": 1, "": 6,
}


def rng_table():
    """The paper's prompt: about half invalid, the valid half clearly skewed."""
    w = {}
    for n in range(100):
        x = 1.0 if n <= 30 else 0.6 if n <= 60 else 0.5
        if n % 10 == 0:
            x += 10.0
        elif n % 5 == 0:
            x += 3.0
        if n <= 10:
            x += 5.0
        w[str(n)] = x
    for n, extra in {7: 40, 42: 40, 37: 10, 13: 8, 17: 6, 23: 6, 69: 4, 99: 6, 1: 8, 3: 5, 77: 4, 33: 3,
                     50: 15, 0: 5}.items():
        w[str(n)] += extra
    valid_total = sum(w.values())
    table = [(v, k) for k, v in w.items()]
    # invalid continuations, total weight = valid_total (about half of all samples are invalid)
    s = sum(INVALID.values())
    table += [(valid_total * v / s, k) for k, v in INVALID.items()]
    return table


def rng_variant_table():
    """Other number prompts: always a valid integer, exactly uniform over 0..99. Two jobs: every number token is
    learned, and the model learns a context whose next-token distribution is "any integer 0..99, evenly, and
    nothing else" -- the distribution the GFlowNet demo must reach on the paper's prompt. (A first build used
    85 % valid here; then no hidden state could put more than ~91 % of the mass on the 100 numbers while keeping
    them even, because the tied 128-dim embedding had never needed to, and the demo's target was unreachable.)"""
    return [(1.0, str(n)) for n in range(100)]


def rng_doc_counts(table, n_docs=N_RNG_DOCS, min_valid=1):
    """Stratified: n_docs documents in proportion to the weights (largest remainder), and at least
    min_valid of every valid integer, so that no integer is left to chance."""
    tot = sum(wt for wt, _ in table)
    exact = [wt / tot * n_docs for wt, _ in table]
    counts = [int(x) for x in exact]
    for j in sorted(range(len(table)), key=lambda j: counts[j] - exact[j])[:n_docs - sum(counts)]:
        counts[j] += 1
    for j, (_, text) in enumerate(table):
        if text.isdigit() and int(text) < 100:
            counts[j] = max(counts[j], min_valid)
    return counts


def rng_design_stats(table, tok):
    counts = rng_doc_counts(table)
    table = [(c, text) for c, (_, text) in zip(counts, table)]
    tot = sum(wt for wt, _ in table)
    num_ids = {tok.convert_tokens_to_ids(str(n)): n for n in range(100)}
    p = np.zeros(100)
    for wt, text in table:
        ids = tok(text)["input_ids"]
        if len(ids) == 1 and ids[0] in num_ids:
            p[num_ids[ids[0]]] += wt / tot
    valid = p.sum()
    q = p / valid
    kl = float(np.sum(q[q > 0] * np.log(q[q > 0] * 100)))
    return float(valid), kl


# ---------------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------------

def arith_problem(rnd: random.Random, n_ops: int):
    nums = [rnd.randint(0, 9) for _ in range(n_ops)]
    ops = [rnd.choice("+-") for _ in range(n_ops - 1)]
    return nums, ops


def arith_query(nums, ops) -> str:
    expr = str(nums[0]) + "".join(f" {o} {n}" for o, n in zip(ops, nums[1:]))
    return f"Question: {expr} = ? Answer:"


def arith_solution(nums, ops):
    acc, steps = nums[0], []
    for o, n in zip(ops, nums[1:]):
        new = acc + n if o == "+" else acc - n
        steps.append(f"{acc} {o} {n} = {new}")
        acc = new
    return ", ".join(steps), acc


def arith_line(nums, ops, space=True) -> str:
    rat, ans = arith_solution(nums, ops)
    return arith_query(nums, ops) + (" " if space else "") + rat + f". The answer is {ans}."


def make_heldout(rnd: random.Random, exclude: set):
    """500 distinct problems per operand count (3, 4, 5), disjoint from the paper's train_50 / hw queries."""
    out = {}
    for n_ops in (3, 4, 5):
        items, seen = [], set()
        while len(items) < N_HELDOUT_ARITH:
            nums, ops = arith_problem(rnd, n_ops)
            q = arith_query(nums, ops)
            if q in seen or q in exclude:
                continue
            seen.add(q)
            rat, ans = arith_solution(nums, ops)
            items.append({"str_query": q, "num_sol": ans, "str_rationale": rat, "str_sol": f". The answer is {ans}."})
        out[n_ops] = items
    return out


# ---------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------

def build_corpus(tok, rnd: random.Random):
    docs = []          # list of (kind, ids without the trailing EOS)
    enc = lambda texts: tok(texts)["input_ids"]

    lines = (DATA / "openwebtext" / "prompts.txt").read_text(encoding="utf-8").split("\n")
    assert len(lines) == 10000, len(lines)
    train_lines, val_lines = lines[:N_STORY_LINES], lines[N_STORY_LINES:]
    line_ids = enc(train_lines)
    for i in range(0, N_STORY_LINES, 5):
        ids = [t for li in line_ids[i:i + 5] for t in li]
        docs.append(("story", ids))

    subj = [json.loads(l) for l in (DATA / "subj" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    subj_train = [s["text"] for s in subj[:N_SUBJ_TRAIN]]
    subj_val = [s["text"] for s in subj[SUBJ_HELDOUT:]]
    for ids in enc(subj_train):
        docs.append(("subj", ids))

    paper = json.loads((DATA / "arithmetic" / "1digit_34_op+-_train_50.json").read_text())
    tool50 = json.loads((DATA / "arithmetic_with_tool" / "1digit_34_op+-_train_50.json").read_text())
    hw = json.loads((DATA / "arithmetic_with_tool" / "1digit_34_op+-_hw.json").read_text())
    paper_queries = {x["str_query"] for x in paper + tool50 + hw}
    heldout = make_heldout(random.Random(SEED + 7), paper_queries)
    heldout_q = {x["str_query"] for v in heldout.values() for x in v}
    arith_lines = [x["str_query"] + " " + x["str_rationale"] + x["str_sol"] for x in paper]
    while len(arith_lines) < 50 + N_ARITH_LINES:
        n_ops = rnd.choices([3, 4, 5], weights=[35, 40, 25])[0]
        nums, ops = arith_problem(rnd, n_ops)
        if arith_query(nums, ops) in heldout_q:
            continue
        arith_lines.append(arith_line(nums, ops, space=True))
    for i in range(len(arith_lines)):   # a quarter without the space after "Answer:" (tool-mode seed format)
        if rnd.random() < 0.25:
            arith_lines[i] = arith_lines[i].replace("Answer: ", "Answer:", 1)
    rnd.shuffle(arith_lines)
    for l in arith_lines:
        assert l.split(" = ? Answer:")[0] + " = ? Answer:" not in heldout_q
    i = 0
    while i < len(arith_lines):
        k = rnd.choice([1, 1, 2, 3, 4])
        text = "\n".join(arith_lines[i:i + k]) + ("\n" if rnd.random() < 0.3 else "")
        docs.append(("arith", enc([text])[0]))
        i += k

    table = rng_table()
    cont_ids = [enc([t])[0] if t else [] for _, t in table]
    for j, k in enumerate(rng_doc_counts(table)):
        docs.extend([("rng", RNG_PROMPT_IDS + cont_ids[j])] * k)
    vtable = rng_variant_table()
    vcont = [enc([t])[0] if t else [] for _, t in vtable]
    vprompts = enc(RNG_VARIANTS)
    assert all(p[-1] == 220 for p in vprompts)
    for j, k in enumerate(rng_doc_counts(vtable, N_RNG_VARIANT_DOCS)):
        for _ in range(k):
            docs.append(("rng_variant", rnd.choice(vprompts) + vcont[j]))

    rnd.shuffle(docs)
    stream = []
    for _, ids in docs:
        stream.extend(ids)
        stream.append(EOS)
    n_rows = len(stream) // SEQ
    rows = torch.tensor(stream[:n_rows * SEQ], dtype=torch.int64).view(n_rows, SEQ)
    stats = Counter()
    for kind, ids in docs:
        stats[kind + "_docs"] += 1
        stats[kind + "_tokens"] += len(ids) + 1
    return dict(rows=rows, stats=dict(stats), val_lines=val_lines, subj_val=subj_val, heldout=heldout,
                table=table, n_tokens=len(stream), n_arith_lines=len(arith_lines))


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

def gpt2_config(vocab):
    from transformers import GPT2Config
    return GPT2Config(vocab_size=vocab, n_positions=N_POS, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
                      n_inner=None, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0, layer_norm_epsilon=1e-5, initializer_range=0.02,
                      tie_word_embeddings=True, bos_token_id=EOS, eos_token_id=EOS)


def lr_at(step, total):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, total - WARMUP)
    return LR * (LR_FINAL_FRAC + (1 - LR_FINAL_FRAC) * 0.5 * (1 + math.cos(math.pi * t)))


def train(rows, seen_ids, max_steps=None):
    from transformers import GPT2LMHeadModel
    M = len(seen_ids)
    n_unseen = VOCAB - M
    remap = torch.full((VOCAB,), M, dtype=torch.int64)
    remap[seen_ids] = torch.arange(M)
    crows = remap[rows]
    assert int(crows.max()) < M, "every training token is a seen id"

    torch.manual_seed(SEED)
    cfg = gpt2_config(M + 1)      # row M = the shared row of every id that never occurs in the corpus
    model = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa")
    model.train()
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if n == "lm_head.weight":
            continue
        (decay if p.dim() == 2 and "wte" not in n and "wpe" not in n else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=1e-8)
    unseen_bias = torch.zeros(M + 1)
    unseen_bias[M] = math.log(n_unseen)

    g = torch.Generator().manual_seed(SEED + 1)
    order = torch.randperm(crows.shape[0], generator=g)
    total = crows.shape[0] // BATCH
    if max_steps:
        total = min(total, max_steps)
    losses, t0, curve = [], time.time(), []
    for step in range(total):
        lr = lr_at(step, total)
        x = crows[order[step * BATCH:(step + 1) * BATCH]]
        losses.append(lm_step(model, opt, x, unseen_bias, lr))
        if step % 25 == 0 or step == total - 1:
            el = time.time() - t0
            avg = sum(losses[-25:]) / len(losses[-25:])
            curve.append((step, avg))
            log(f"step {step:4d}/{total}  loss {avg:.3f}  lr {lr:.2e}  {el / 60:5.1f} min  "
                f"{(step + 1) * BATCH * SEQ / el:.0f} tok/s")
    train_time = time.time() - t0
    k = max(1, total // 20)
    final_loss = sum(losses[-k:]) / k

    # expand to the full 50257-row GPT-2: seen ids get their rows, unseen ids the shared row
    full = GPT2LMHeadModel._from_config(gpt2_config(VOCAB), attn_implementation="eager")
    expand_into(full, model, seen_ids)
    full.eval()
    return full, dict(steps=total, train_time_s=train_time, final_train_loss=final_loss,
                      first_loss=losses[0], curve=curve, n_seen=M, n_unseen=n_unseen)


def compact(full, seen_ids):
    """The stage-1 training form of a full 50257-row model: the seen ids' rows plus ONE shared row for the rest."""
    from transformers import GPT2LMHeadModel
    M = len(seen_ids)
    unseen = torch.ones(VOCAB, dtype=torch.bool)
    unseen[seen_ids] = False
    sd = {k: v for k, v in full.state_dict().items() if k != "lm_head.weight"}
    w = sd["transformer.wte.weight"]
    sd["transformer.wte.weight"] = torch.cat([w[seen_ids], w[unseen.nonzero()[0]]], 0)
    cm = GPT2LMHeadModel._from_config(gpt2_config(M + 1), attn_implementation="sdpa")
    cm.load_state_dict(sd, strict=False)
    cm.tie_weights()
    return cm


def expand_into(full, cm, seen_ids):
    """Writes a compact model's weights back into the full model (unseen ids get the shared row)."""
    M = len(seen_ids)
    sd = {k: v for k, v in cm.state_dict().items() if k != "lm_head.weight"}
    w = sd["transformer.wte.weight"]
    big = w[M].unsqueeze(0).repeat(VOCAB, 1)
    big[seen_ids] = w[:M]
    sd["transformer.wte.weight"] = big
    missing, unexpected = full.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    full.tie_weights()


def lm_step(model, opt, x, unseen_bias, lr):
    """One optimiser step of next-token cross-entropy on the compact vocabulary (plus the pooled unseen-token
    logit `unseen_bias`), with gradient clipping at CLIP; returns the loss."""
    for gr in opt.param_groups:
        gr["lr"] = lr
    h = model.transformer(input_ids=x).last_hidden_state
    logits = h[:, :-1] @ model.transformer.wte.weight.t() + unseen_bias
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    opt.step()
    return loss.item()


def number_drill(full, rows, seen_ids, tok, steps=S2_STEPS):
    """Stage 2. After stage 1 the model put only ~85-88 % of its mass on the integers after the other number prompts,
    and no hidden state could give more than ~90 % (`rng_reachable`): the tied 128-dim embedding and the final
    LayerNorm's gain had never needed to separate 100 tokens from the other 50,157 that sharply, so the GFlowNet
    demo's target (every sample a valid integer) was out of reach of any LoRA on the blocks. This stage trains on
    batches of S2_VARIANT_ROWS rows of freshly drawn number-prompt documents + the rest stage-1 rows (all
    parameters, AdamW without weight decay, lr S2_LR with cosine decay to 10 %), and lifts that bound."""
    M = len(seen_ids)
    remap = torch.full((VOCAB,), M, dtype=torch.int64)
    remap[seen_ids] = torch.arange(M)
    crows = remap[rows]
    cm = compact(full, seen_ids)
    cm.train()
    vprompts = tok(RNG_VARIANTS)["input_ids"]
    nums = [tok(str(n))["input_ids"] for n in range(100)]
    rnd = random.Random(SEED + 99)

    def variant_row():
        s = []
        while len(s) < SEQ:
            s += rnd.choice(vprompts) + rnd.choice(nums) + [EOS]
        return remap[torch.tensor(s[:SEQ])]

    ub = torch.zeros(M + 1)
    ub[M] = math.log(VOCAB - M)
    opt = torch.optim.AdamW(cm.parameters(), lr=S2_LR, betas=BETAS, weight_decay=0.0)
    g = torch.Generator().manual_seed(SEED + 5)
    nv = S2_VARIANT_ROWS
    t0, curve, losses = time.time(), [], []
    for step in range(steps):
        lr = S2_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        idx = torch.randint(0, crows.shape[0], (BATCH - nv,), generator=g)
        x = torch.cat([crows[idx]] + [variant_row().unsqueeze(0) for _ in range(nv)], 0)
        losses.append(lm_step(cm, opt, x, ub, lr))
        if step % 50 == 0 or step == steps - 1:
            avg = sum(losses[-50:]) / len(losses[-50:])
            curve.append((step, avg))
            log(f"stage 2 step {step:4d}/{steps}  loss {avg:.3f}  lr {lr:.2e}  {(time.time() - t0) / 60:5.1f} min")
    cm.eval()
    expand_into(full, cm, seen_ids)
    full.eval()
    return dict(steps=steps, lr=S2_LR, variant_rows_per_batch=nv, train_time_s=time.time() - t0, curve=curve)


def round_fp16_(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


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


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def optimum_mask_patches():
    """optimum's ModelPatcher patches so the TorchScript tracer exports transformers >= 4.53 masks."""
    import transformers.masking_utils as mu
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask, eager_mask
    from transformers.cache_utils import DynamicLayer
    from optimum.exporters.onnx import model_patcher as mp
    orig_find, orig_update = mu.find_packed_sequence_indices, DynamicLayer.update
    orig_sdpa = torch.nn.functional.scaled_dot_product_attention
    ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", mp.sdpa_mask_without_vmap)
    ALL_MASK_ATTENTION_FUNCTIONS.register("eager", mp.eager_mask_without_vmap)
    mu.find_packed_sequence_indices = mp.find_packed_sequence_indices_patched
    DynamicLayer.update = mp.patched_dynamic_layer_update
    torch.nn.functional.scaled_dot_product_attention = mp.traceable_scaled_dot_product_attention
    try:
        yield
    finally:
        ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", sdpa_mask)
        ALL_MASK_ATTENTION_FUNCTIONS.register("eager", eager_mask)
        mu.find_packed_sequence_indices = orig_find
        DynamicLayer.update = orig_update
        torch.nn.functional.scaled_dot_product_attention = orig_sdpa


def logits_only(model):
    """forward(input_ids, attention_mask) -> logits, positions = clamp(cumsum(mask) - 1, 0)."""
    base = type(model)

    class LogitsOnly(base):
        def forward(self, input_ids, attention_mask):
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            return base.forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                position_ids=position_ids, use_cache=False).logits

    m = copy.deepcopy(model)
    m.__class__ = LogitsOnly
    return m


def padded_batch(tok):
    texts = ["The city council approved the new budget on", "Question: 7 + 2 - 5 = ? Answer:"]
    ids = [tok(t)["input_ids"] for t in texts] + [RNG_PROMPT_IDS]
    L = max(len(i) for i in ids)
    inp = torch.full((len(ids), L), EOS, dtype=torch.int64)
    mask = torch.zeros((len(ids), L), dtype=torch.int64)
    for r, i in enumerate(ids):            # left padding
        inp[r, L - len(i):] = torch.tensor(i)
        mask[r, L - len(i):] = 1
    return inp, mask


def export_onnx(model, tok, path: Path):
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from accelerate.utils import find_tied_parameters
    from optimum.onnx import remove_duplicate_weights_from_tied_info
    tmp = path.with_suffix(".fp32.onnx")
    inp, mask = padded_batch(tok)
    with optimum_mask_patches(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(logits_only(model), (inp, mask), str(tmp), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "logits": {0: "batch", 1: "sequence"}},
                          do_constant_folding=True)
    n_before = len(onnx.load(str(tmp)).graph.initializer)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        remove_duplicate_weights_from_tied_info(onnx.load(str(tmp)), model, find_tied_parameters(model), str(tmp))
    m32 = onnx.load(str(tmp))
    assert len(m32.graph.initializer) == n_before - 1, "tied-head dedup should remove exactly one initializer"
    m16 = convert_float_to_float16(m32, keep_io_types=True)
    onnx.checker.check_model(m16)
    onnx.save_model(m16, str(path))
    tmp.unlink()

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input_ids": inp.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.no_grad():
        want = logits_only(model)(inp, mask).float().numpy()
    m = mask.numpy().astype(bool)
    diff = np.abs(got - want)[m]
    lsm = lambda a: a - np.log(np.exp(a - a.max(-1, keepdims=True)).sum(-1, keepdims=True)) - a.max(-1, keepdims=True)
    ldiff = np.abs(lsm(got.astype(np.float64)) - lsm(want.astype(np.float64)))[m]
    same_argmax = float((got.argmax(-1) == want.argmax(-1))[m].mean())
    inits = m16.graph.initializer
    dtypes = Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in inits)
    return dict(bytes=path.stat().st_size, max_abs_logit_diff=float(diff.max()),
                mean_abs_logit_diff=float(diff.mean()), max_abs_logprob_diff=float(ldiff.max()),
                same_argmax=same_argmax, logit_range=[float(want[m].min()), float(want[m].max())],
                n_initializers=len(inits), initializer_dtypes=dict(dtypes), n_nodes=len(m16.graph.node),
                inputs=[i.name for i in m16.graph.input], outputs=[o.name for o in m16.graph.output])


# ---------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------

def write_card(info):
    c, r, e, t, rx = info["corpus"], info["rng"], info["export"], info["train"], info["rng_exact"]
    rr = info.get("rng_reachable")
    reach_text = "" if rr is None else (
        "\n**Is the GFlowNet target reachable?** LoRA on the blocks changes the final LayerNorm's input, not its gain or "
        "the tied embedding, so the first-token distributions it can produce are softmax(W_te · LayerNorm(u)) for some u. "
        f"Optimising u directly (Adam, fp64, `rng_reachable()`): at best {rr['mass']:.2%} of the mass on the 100 numbers, "
        f"KL(q ‖ U) {rr['kl_q_u']:.4f} among them (KL(U ‖ p) {rr['best_kl_u_p']:.4f}). After the other number prompts the "
        f"model itself puts {min(rr['variant_prompt_mass']):.1%}–{max(rr['variant_prompt_mass']):.1%} on the numbers.")
    arith = "\n".join(f"| {k} | {v['acc']:.0%} | {v['answered']:.0%} | `{md_escape(v['example'])}` |" for k, v in info["arith"].items())
    st = c["stats"]
    top = ", ".join(f"`{md_escape(repr(k))}` {v / r['n_full']:.1%}" for k, v in r["top"][:15])
    counts = np.array(r["counts"])
    order = np.argsort(-counts)
    most = ", ".join(f"{i}: {counts[i] / r['n']:.2%}" for i in order[:10])
    least = ", ".join(f"{i}: {counts[i] / r['n']:.3%}" for i in order[-10:][::-1])
    samples = "\n".join(f"| {s['mode']} | `{s['prompt']}` | `{s['text']}` |" for s in info["samples"])
    d = info["design"]
    s2 = t.get("stage2")
    stage2_text = "" if not s2 else (
        f"\n**Stage 2, number drill** (`number_drill()`): {s2['steps']} more steps of batch {BATCH} × 128 tokens in which "
        f"{s2['variant_rows_per_batch']} rows are freshly drawn documents of the other number prompts (uniform 0–99, all valid) "
        f"and {BATCH - s2['variant_rows_per_batch']} are rows of the stage-1 corpus; all parameters, AdamW without weight decay, "
        f"lr {s2['lr']} with cosine decay to 10 %, {s2['train_time_s'] / 60:.1f} min. Why: after stage 1 the model put only "
        "85–88 % of its mass on the integers after those prompts, and no hidden state could put more than 90.5 % there "
        "(`rng_reachable`, below): the GFlowNet demo's target — every sample a valid integer — was out of reach of any "
        "LoRA on the blocks. The drill lifts that bound (measured below); the paper's prompt keeps its skewed, partly "
        "invalid distribution from stage 1 (its documents are only in the replayed rows).\n")
    txt = f"""# demo-gpt2: a 7.7 M-parameter GPT-2 with the real GPT-2 vocabulary

The small model every example and the README demo run on. Trained from scratch in {t['train_time_s'] / 60:.1f} minutes
on 2 (shared) CPU cores by `tools/train_demo_model.py`, on under a million tokens. Be realistic: it writes
English-*like* text -- real words, punctuation, short grammatical fragments, no coherent meaning (validation
perplexity {info['val_ppl']:.0f}) --, lower-cased movie-review sentences, and the *format* of worked one-digit arithmetic with
mostly wrong numbers. On the random-number prompt of the paper it has a deliberately skewed, only partly valid
distribution of integers for the GFlowNet demo to fix.

## Files

| file | what |
|---|---|
| `model.onnx` | {e['bytes']:,} bytes. Legacy `torch.onnx.export` (opset 17). Inputs `input_ids` int64 [batch, sequence], `attention_mask` int64 [batch, sequence]; output `logits` float32 [batch, sequence, 50257]. Positions are `clamp(cumsum(attention_mask) - 1, 0)` inside the graph (left padding works). Weights fp16 (`onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)`), {e['n_initializers']} initializers ({', '.join(f'{k} {v}' for k, v in e['initializer_dtypes'].items())}), {e['n_nodes']} nodes. The tied head is `Transpose(transformer.wte.weight) -> MatMul` (the exporter's duplicated copy was removed with optimum's tied-weight dedup) |
| `config.json` | the Hugging Face `GPT2Config` |
| `vocab.json`, `merges.txt` | the original GPT-2 byte-level BPE (sha256 `{VOCAB_SHA[:12]}…`, `{MERGES_SHA[:12]}…`); `<|endoftext|>` = 50256 is BOS, EOS and document separator |
| `NOTICE` | origin and MIT licence of the tokenizer files |
| `rng_base_distribution.json` | the measured base distribution on the random-number prompt (below) |
| `build_info.json` | every number on this page, machine-readable (written by the script) |

## Architecture

`GPT2LMHeadModel`: vocab 50257, n_positions 256, n_embd 128, n_layer 6, n_head 4 (head_dim 32), n_inner 512,
gelu_new, LayerNorm eps 1e-5, tied input/output embedding, no head bias, dropout 0.0 (trained without dropout).
{info['n_params']:,} parameters ({info['n_params_wte']:,} of them in the token embedding).

## Data (all in `data/`, MIT, from the paper's repository GFNOrg/gfn-lm-tuning)

One epoch over {c['n_tokens']:,} tokens ({c['n_rows']:,} packed rows of 128 tokens; documents shuffled and separated by
`<|endoftext|>`):

| kind | documents | tokens | source |
|---|---|---|---|
| stories | {st['story_docs']:,} | {st['story_tokens']:,} | 5 consecutive lines of `data/openwebtext/prompts.txt`, lines 0–9499. Each line is tokenized alone and the ids concatenated: a line ends with its trailing-space token 220 and the next line starts without a space, as when an example gives a prompt line and samples the next sentence |
| movie reviews | {st['subj_docs']:,} | {st['subj_tokens']:,} | `text` of `data/subj/train.jsonl` lines 0–{N_SUBJ_TRAIN - 1} (labels never used; lines {N_SUBJ_TRAIN}–6999 unused) |
| arithmetic | {st['arith_docs']:,} | {st['arith_tokens']:,} | {c['n_arith_lines']:,} problems: the paper's 50 worked rationales + generated ones with 3/4/5 operands (35/40/25 %), operands 0–9, + and −, exact §4.5 format (`Question: 6 - 0 - 4 - 8 = ? Answer: 6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6. The answer is -6.`), 1–4 per document joined by `\\n`; 25 % without the space after `Answer:` (the tool-mode seed format) |
| random numbers, paper's prompt | {st['rng_docs']:,} | {st['rng_tokens']:,} | token level: the 14 ids of `{RNG_PROMPT!r}` (ending in the bare space 220), a continuation from the skewed table below, `<|endoftext|>` |
| random numbers, other prompts | {st['rng_variant_docs']:,} | {st['rng_variant_tokens']:,} | {len(RNG_VARIANTS)} other prompts (`{RNG_VARIANTS[0]!r}`, `{RNG_VARIANTS[5]!r}`, …, all ending in 220), always a valid integer, exactly uniform over 0–99 (80 documents per integer): every number token is learned (in a first build without them, integers seen only 3 times got < 0.01 % of the valid mass, too rare for a sampler to ever find), and the model knows a context whose next token is \"any integer 0–99, evenly, nothing else\" (in a second build with 85 % valid here, no hidden state could put more than ~91 % of the mass on the numbers evenly, so the GFlowNet demo's target was unreachable; in a third build with 20 documents per integer, no output of the final LayerNorm put more than ~71 % of the mass on the numbers, bounded by its gain and the number embeddings; 80 per integer lift that bound, measured below) |

For the paper's prompt the continuations follow a hand-made, deliberately non-uniform table (`rng_table()` in the
script; document counts stratified, at least 1 per integer): about half are single-token integers 0–99 without a leading space, favouring multiples of 10 and 5, numbers
≤ 10, 7, 42, 37, …; the other half are invalid: `100` (the most common single answer), larger or negative numbers,
decimals, leading-space numbers (` 42` is a different token), number words, numbers followed by more text, and an
immediate `<|endoftext|>`. By design {d['valid']:.1%} valid with KL(valid part ‖ U{{0..99}}) = {d['kl']:.2f}; what the model
learned is measured below.

**Held out (never in the training text):** `prompts.txt` lines 9500–9999 (validation perplexity below); `subj/train.jsonl`
lines 7000–7999 (506 objective / 494 subjective; 8 of them are also in `train.50.jsonl`, 3 in `train.20`, 1 in
`train.10`, drop those for a clean test split); and the arithmetic problems in `data/arithmetic/heldout_{{3,4,5}}op.jsonl`
(500 distinct problems per operand count, disjoint from the paper's `train_50` and `hw` queries; the training
generator skips them). All other generated problems may occur in training, so a held-out arithmetic evaluation
should draw from these files.

## Training

torch {torch.__version__}, transformers {info['versions']['transformers']}, `torch.set_num_threads(2)`, seed {SEED}. AdamW (betas
{BETAS}, eps 1e-8, weight decay {WD} on the block matrices only), peak lr {LR}, {WARMUP} warm-up steps then cosine decay to
{LR_FINAL_FRAC} × peak, gradient clipping {CLIP}, batch {BATCH} × 128 tokens, {t['steps']} steps (one epoch), {t['train_time_s'] / 60:.1f} min on a
2-core machine shared with other builds.
{stage2_text}
Speed-up: {t['n_unseen']:,} of the 50257 ids never occur in the training text. During training they all share one
embedding row, so the softmax over them is one column (its logit + log {t['n_unseen']:,}); this is the exact
full-vocabulary cross-entropy of a model in which those rows are equal, and after training all of them get that
shared row. The shipped model is an ordinary 50257-row GPT-2; the unseen ids simply have identical, low-probability
embeddings (they are never generated in practice, and as inputs they all look the same).

## Results (shipped weights: fp16, evaluated with fp32 compute in torch)

* Training loss: {t['first_loss']:.2f} at step 0 → **{t['final_train_loss']:.3f}** (mean of the last 5 % of steps).
* **Validation perplexity {info['val_ppl']:.1f}** on the 500 held-out prompt lines (each line scored alone after
  `<|endoftext|>`, every token including the trailing space counted; {info['val_tokens']:,} tokens).
  Held-out movie-review sentences (subj lines 7000–7999, same method): {info['subj_ppl']:.1f}.
* ONNX check (onnxruntime {info['versions']['onnxruntime']}, fp16 compute, vs torch fp32 compute on the same fp16 weights, a left-padded
  batch of 3, real positions only): max |Δlogit| {e['max_abs_logit_diff']:.4f} (logits range {e['logit_range'][0]:.1f} … {e['logit_range'][1]:.1f}),
  mean {e['mean_abs_logit_diff']:.5f}, max |Δ log-prob| {e['max_abs_logprob_diff']:.4f}, same argmax at {e['same_argmax']:.0%} of positions.

### Base distribution on the random-number prompt

Prompt ids `{RNG_PROMPT_IDS}` at position 0 (no BOS), {r['n']:,} pure ancestral samples at T = 1 in torch (no top-k/top-p),
at most 5 new tokens, stop at `<|endoftext|>`:

* **valid {r['valid']:.1%}** (valid = exactly one token among "0".."99", then `<|endoftext|>`, the reward's definition);
* **KL(p̂ ‖ U{{0..99}}) = {r['kl_valid']:.3f}** with per-integer bins over the valid samples ({r['support']} of 100 integers seen;
  with {r['valid'] * r['n']:,.0f} valid samples the plug-in estimate is biased up by about 99 / (2 · n_valid) = {99 / (2 * max(1, r['valid'] * r['n'])):.3f});
* exact values (p(n | X) · p(`<|endoftext|>` | X n) for the 100 integers, no sampling): valid {rx['valid']:.1%},
  KL {rx['kl_valid']:.3f}; the rarest integer has {rx['min_q']:.2%} of the valid mass, the most likely {rx['max_q']:.1%}.
  First token: an integer 0–99 {rx['p_first_is_number']:.1%}, `100` {rx['p_first_is_100']:.1%}, `<|endoftext|>` {rx['p_first_is_eos']:.1%};
* with the paper's lenient parse (decode, drop `<|endoftext|>`, rstrip, `int()` in 0..99; from {r['n_full']:,} further samples
  run to the end): {r['parse_valid']:.1%} valid, KL {r['kl_parse']:.3f};
* most frequent integers: {most};
* least frequent: {least};
* most frequent continuations overall (same {r['n_full']:,} samples): {top}.

The full histogram (counts per integer and the top continuations) is in `rng_base_distribution.json`.
(For comparison, the paper's base GPT-J: 50.5 % valid, KL 3.37.)
{reach_text}

### Arithmetic (held-out problems, greedy, no calculator)

First 100 problems of each `data/arithmetic/heldout_{{3,4,5}}op.jsonl`, prompt = `str_query` (ending in `Answer:`), greedy
decoding of at most 48 tokens, cut at the first newline; correct = the integer after the last `The answer is` equals
`num_sol`.

| operands | accuracy | wrote "The answer is" | first example (prompt + greedy output) |
|---|---|---|---|
{arith}

### Samples (shipped weights, torch; sampled rows use T = 1 with no top-k/top-p, seed {SEED})

| mode | prompt | continuation |
|---|---|---|
{samples}

## Rebuild

```
python3 -m venv VENV && VENV/bin/pip install -r tools/requirements-demo.txt
VENV/bin/python tools/train_demo_model.py
```

(here: `/work/venv-tools/bin/python tools/train_demo_model.py`). It rewrites every file above except the tokenizer
files and `NOTICE`, and `data/arithmetic/heldout_{{3,4,5}}op.jsonl`. The corpus is identical on every run; the weights are
identical up to torch's CPU floating-point nondeterminism (thread scheduling), so the numbers may move slightly.
The shipped build ran stage 1 in an earlier invocation and stage 2 + evaluation with `--stage2-only` from its saved
stage-1 weights (the same code path as one full run).
"""
    (OUT / "README.md").write_text(txt, encoding="utf-8")


def md_escape(s: str) -> str:
    return s.replace("\n", "\\n").replace("|", "\\|").replace("`", "'")


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-steps", type=int, default=None, help="stop early (development only; never for the shipped model)")
    ap.add_argument("--rng-samples", type=int, default=100000)
    ap.add_argument("--card-only", action="store_true", help="only rewrite README.md from build_info.json")
    ap.add_argument("--reach-only", action="store_true",
                    help="only (re)compute rng_reachable() from --checkpoint into build_info.json and README.md")
    ap.add_argument("--checkpoint", default="/tmp/demo-gpt2-trained.pt",
                    help="the trained torch weights are saved here (not part of the repository)")
    ap.add_argument("--eval-only", action="store_true",
                    help="skip training: load --checkpoint, then evaluate, export and write the card")
    ap.add_argument("--stage2-only", action="store_true",
                    help="load the stage-1 weights from --checkpoint, then run stage 2, evaluate, export, write the card")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help="where model.onnx, config.json, README.md go")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    import transformers
    import onnxruntime
    t_all = time.time()
    tok = tokenizer()
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    if args.card_only:
        write_card(json.loads((OUT / "build_info.json").read_text()))
        return
    if args.reach_only:
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel._from_config(gpt2_config(VOCAB), attn_implementation="eager")
        final = Path(args.checkpoint).with_name(Path(args.checkpoint).stem + "-stage2" + Path(args.checkpoint).suffix)
        model.load_state_dict(torch.load(final, weights_only=True)["state_dict"], strict=False)
        model.tie_weights()
        model.eval()
        with torch.no_grad():
            reach = rng_reachable(model, tok)
        log(f"reachable: {reach}")
        info = json.loads((OUT / "build_info.json").read_text())
        info["rng_reachable"] = reach
        (OUT / "build_info.json").write_text(json.dumps(info, indent=1) + "\n")
        write_card(info)
        return

    log("== corpus")
    corpus = build_corpus(tok, random.Random(SEED))
    for n_ops, items in corpus["heldout"].items():
        p = DATA / "arithmetic" / f"heldout_{n_ops}op.jsonl"
        p.write_text("".join(json.dumps(x) + "\n" for x in items))
    rows = corpus["rows"]
    seen = torch.unique(rows)
    design_valid, design_kl = rng_design_stats(corpus["table"], tok)
    log(f"{corpus['n_tokens']:,} tokens, {rows.shape[0]} rows, {len(seen)} distinct ids; {corpus['stats']}")
    log(f"random-number table by design: valid {design_valid:.3f}, KL(valid || U) {design_kl:.3f}")

    ckpt = Path(args.checkpoint)
    s2_path = ckpt.with_name(ckpt.stem + "-stage2" + ckpt.suffix)   # the final (shipped) weights
    if args.eval_only or args.stage2_only:
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel._from_config(gpt2_config(VOCAB), attn_implementation="eager")
        blob = torch.load(s2_path if args.eval_only else ckpt, weights_only=True)
        model.load_state_dict(blob["state_dict"], strict=False)
        model.tie_weights()
        model.eval()
        tinfo = json.loads(blob["tinfo"])
        log(f"== loaded {ckpt} (no stage-1 training)")
    else:
        log("== train")
        model, tinfo = train(rows, seen, args.max_steps)
        round_fp16_(model)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
                    "tinfo": json.dumps(tinfo)}, ckpt)
        log(f"saved the stage-1 weights (fp16-rounded) to {ckpt}")
    if args.eval_only:
        s2 = tinfo.get("stage2")
    else:
        log("== stage 2: number drill")
        s2 = number_drill(model, rows, seen, tok)
        round_fp16_(model)
        tinfo["stage2"] = s2
        torch.save({"state_dict": {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
                    "tinfo": json.dumps(tinfo)}, s2_path)
        log(f"saved the stage-2 weights (fp16-rounded) to {s2_path}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"trained {tinfo['steps']} steps in {tinfo['train_time_s'] / 60:.1f} min, final loss {tinfo['final_train_loss']:.3f}, "
        f"{n_params:,} params")

    log("== evaluate")
    val_ppl, val_tokens = perplexity(model, tok, corpus["val_lines"])
    subj_ppl, _ = perplexity(model, tok, corpus["subj_val"])
    log(f"validation perplexity (held-out prompts) {val_ppl:.2f} over {val_tokens} tokens; held-out subj {subj_ppl:.2f}")
    r = rng_stats(model, tok, args.rng_samples, SEED, n_full=min(10000, args.rng_samples))
    log(f"random numbers sampled ({args.rng_samples} strict, {r['n_full']} full)")
    log(f"random numbers: valid {r['valid']:.3f} KL {r['kl_valid']:.3f} support {r['support']}; "
        f"lenient valid {r['parse_valid']:.3f} KL {r['kl_parse']:.3f}")
    log("top: " + repr(r["top"][:12]))
    rx = rng_exact(model, tok)
    log(f"random numbers, exact: valid {rx['valid']:.4f} KL {rx['kl_valid']:.4f} (q min {rx['min_q']:.5f} max {rx['max_q']:.4f}); "
        f"p(first = number) {rx['p_first_is_number']:.3f}, p(100) {rx['p_first_is_100']:.3f}, p(eos) {rx['p_first_is_eos']:.3f}")
    reach = rng_reachable(model, tok)
    log(f"random numbers, reachable by LoRA on the blocks: KL(U || p) {reach['best_kl_u_p']:.4f}, mass on 0..99 "
        f"{reach['mass']:.4f}, KL(q || U) {reach['kl_q_u']:.4f}; other number prompts' own mass {reach['variant_prompt_mass']}")
    arith = arithmetic_accuracy(model, tok, corpus["heldout"])
    for k, v in arith.items():
        log(f"arithmetic {k} operands, greedy, no calculator: acc {v['acc']:.2f}, answered {v['answered']:.2f}; {v['example']!r}")
    gen = torch.Generator().manual_seed(SEED)
    sample_prompts = [
        "The city council",
        corpus["val_lines"][0],
        corpus["val_lines"][3],
        "the movie is",
        "Question: 7 + 2 - 5 = ? Answer:",
        "Question: 3 - 8 + 6 + 1 = ? Answer:",
    ]
    samples = []
    for pr in sample_prompts:
        ids = tok(pr)["input_ids"]
        for mode in ("greedy", "sample", "sample"):
            out = sample(model, ids, 1, max_new=40, gen=gen, greedy=(mode == "greedy"))[0]
            text = tok.decode(out)
            shown = pr if len(pr) <= 70 else "…" + pr[-69:]
            samples.append(dict(mode=mode, prompt=md_escape(shown), text=md_escape(text)))
            log(f"[{mode}] {pr!r} -> {text!r}")

    log("== export")
    model.config.architectures = ["GPT2LMHeadModel"]
    exp = export_onnx(model, tok, OUT / "model.onnx")
    log(f"model.onnx {exp['bytes']:,} bytes; onnxruntime vs torch: max|dlogit| {exp['max_abs_logit_diff']:.5f}, "
        f"mean {exp['mean_abs_logit_diff']:.6f}, max|dlogprob| {exp['max_abs_logprob_diff']:.5f}, "
        f"argmax agreement {exp['same_argmax']:.3f}; {exp['initializer_dtypes']}")
    if exp["bytes"] > 20 * 1000 * 1000:
        sys.exit("model.onnx is larger than 20 MB")
    if exp["max_abs_logprob_diff"] > 0.1:
        sys.exit("onnxruntime and torch disagree")
    model.config.save_pretrained(OUT)
    (OUT / "generation_config.json").unlink(missing_ok=True)
    rng_json = dict(prompt=RNG_PROMPT, prompt_ids=RNG_PROMPT_IDS, n_samples=r["n"], n_full_samples=r["n_full"],
                    temperature=1.0, max_new_tokens=5,
                    valid=r["valid"], kl_valid_vs_uniform=r["kl_valid"], lenient_valid=r["parse_valid"],
                    lenient_kl=r["kl_parse"], counts_0_99=r["counts"], top_continuations=r["top"],
                    design_valid=design_valid, design_kl=design_kl, exact=rx)
    (OUT / "rng_base_distribution.json").write_text(json.dumps(rng_json, indent=1) + "\n")
    info = dict(corpus=dict(stats=corpus["stats"], n_tokens=corpus["n_tokens"], n_rows=int(rows.shape[0]),
                            n_arith_lines=corpus["n_arith_lines"]),
                design=dict(valid=design_valid, kl=design_kl), train=tinfo, rng=r, export=exp,
                val_ppl=val_ppl, val_tokens=val_tokens, rng_exact=rx, rng_reachable=reach, arith=arith, subj_ppl=subj_ppl, samples=samples, n_params=n_params,
                n_params_wte=model.transformer.wte.weight.numel(),
                versions=dict(transformers=transformers.__version__, onnxruntime=onnxruntime.__version__))
    info["total_time_s"] = time.time() - t_all
    (OUT / "build_info.json").write_text(json.dumps(info, indent=1) + "\n")
    write_card(info)
    log(f"== done in {(time.time() - t_all) / 60:.1f} min: {OUT}")


if __name__ == "__main__":
    main()
