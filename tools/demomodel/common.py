"""Paths, hyper-parameters and the tokenizer shared by the demo model's build steps.
"""
from __future__ import annotations

import hashlib
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
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
