"""Stage 1 (pre-training from scratch with one shared row for unseen ids) and stage 2 (the number drill).
"""
from __future__ import annotations

import math
import random
import time

import torch
import torch.nn.functional as F

from .common import (
    BATCH,
    BETAS,
    CLIP,
    EOS,
    LR,
    LR_FINAL_FRAC,
    N_EMBD,
    N_HEAD,
    N_LAYER,
    N_POS,
    RNG_VARIANTS,
    S2_LR,
    S2_STEPS,
    S2_VARIANT_ROWS,
    SEED,
    SEQ,
    VOCAB,
    WARMUP,
    WD,
    log,
)

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
