"""The training corpus: stories, movie-review sentences, arithmetic, and the random-number documents drawn
from a deliberately skewed table (RNG_TABLE) so that the GFlowNet demo has something to fix.
"""
from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import torch

from .common import (
    DATA,
    EOS,
    N_ARITH_LINES,
    N_HELDOUT_ARITH,
    N_RNG_DOCS,
    N_RNG_VARIANT_DOCS,
    N_STORY_LINES,
    N_SUBJ_TRAIN,
    RNG_PROMPT_IDS,
    RNG_VARIANTS,
    SEED,
    SEQ,
    SUBJ_HELDOUT,
)

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
