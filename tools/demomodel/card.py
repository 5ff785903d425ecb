"""models/demo-gpt2/README.md, written from build_info.json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .common import (
    BATCH,
    BETAS,
    CLIP,
    LR,
    LR_FINAL_FRAC,
    MERGES_SHA,
    N_SUBJ_TRAIN,
    RNG_PROMPT,
    RNG_PROMPT_IDS,
    RNG_VARIANTS,
    SEED,
    VOCAB_SHA,
    WARMUP,
    WD,
)

# ---------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------

def write_card(info, out: Path):
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
| arithmetic | {st['arith_docs']:,} | {st['arith_tokens']:,} | {c['n_arith_lines']:,} problems: the paper's 50 worked rationales + generated ones with 3/4/5 operands (35/40/25 %), operands 0–9, + and −, the paper's format (`Question: 6 - 0 - 4 - 8 = ? Answer: 6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6. The answer is -6.`), 1–4 per document joined by `\\n`; 25 % without the space after `Answer:` (the tool-mode seed format) |
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

The build steps live in `tools/demomodel/`. It rewrites every file above except the tokenizer
files and `NOTICE`, and `data/arithmetic/heldout_{{3,4,5}}op.jsonl`. The corpus is identical on every run; the weights are
identical up to torch's CPU floating-point nondeterminism (thread scheduling), so the numbers may move slightly.
The shipped build ran stage 1 in an earlier invocation and stage 2 + evaluation with `--stage2-only` from its saved
stage-1 weights (the same code path as one full run).
"""
    (out / "README.md").write_text(txt, encoding="utf-8")


def md_escape(s: str) -> str:
    return s.replace("\n", "\\n").replace("|", "\\|").replace("`", "'")
