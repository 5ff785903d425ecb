"""The reference's GFlowNet loop for the random-number task, in PyTorch, written from the paper's reference implementation
(its layout-A rollout `generate_and_return_eos_logprob`, gradient flow and accumulation, learning-rate schedule, the
random-number notebook's loop, task and reward). It is the peer side of the "GFlowNet step" row: what the reference does per
optimisation step, on the same GPT-2 small, on this machine.

One step = grad_acc (8) micro-batches; each micro-batch samples bsz (8) rows of at most max_len (5) tokens after the
14-token prompt with the LoRA policy, with gradients enabled through the sampling pass and its KV cache (as the
reference does), computes the rule reward for every prefix, the modified SubTB loss (λ = 1, `cumsum >= 1` mask,
pooled mean), and calls backward; then one AdamW step (lr 5e-4, betas (0.9, 0.999), weight decay 0.01) and the
LambdaLR warm-up/linear-decay schedule. Dropout is on (model.train(), as the reference samples in train mode), τ = 1, min_len 1, no buffer.
"""
from __future__ import annotations

import torch

import common as C


def rng_log_reward(generated: list, eos: int, nice: set) -> float:
    """The random-integer reward: empty -> -8; position 1: +8 if a single-token "0".."99" else -8; position m >= 2:
    0 if it is the end token, else -8m."""
    if not generated:
        return -8.0
    r = 8.0 if generated[0] in nice else -8.0
    for m, t in enumerate(generated[1:], start=2):
        r += 0.0 if t == eos else -8.0 * m
    return r


def generate_and_return_eos_logprob(model, encoded_prompt, eos, nice, max_len, min_len, temperature=1.0):
    """Layout A. Returns (tokens [B, P+L'+1], LPF, LPT, LR each [B, L+1])."""
    B, P = encoded_prompt.shape
    active = torch.ones(B, dtype=torch.bool)
    state = encoded_prompt.clone()
    token_ids = state
    past = None
    lpf = [torch.zeros(B) for _ in range(max_len + 1)]
    lpt = [torch.zeros(B) for _ in range(max_len + 1)]
    lr = [torch.zeros(B) for _ in range(max_len + 1)]
    lr[0] = torch.full((B,), rng_log_reward([], eos, nice))
    for i in range(max_len):
        out = model(input_ids=token_ids, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1, :]
        with torch.no_grad():
            modified = logits.clone()
            if i < min_len:
                modified[:, eos] = -float("inf")
            prob = (modified / temperature).softmax(dim=-1)
            token_ids = torch.multinomial(prob, num_samples=1)
        token_ids = torch.where(active[:, None], token_ids, torch.full_like(token_ids, eos))
        logprob = logits.log_softmax(dim=-1)
        zero = torch.zeros(B)
        lpf[i] = torch.where(active, logprob.gather(-1, token_ids)[:, 0], zero)
        lpt[i] = torch.where(active, logprob[:, eos], zero)
        state = torch.cat([state, token_ids], dim=-1)
        gen = state[:, P:].tolist()
        lr[i + 1] = torch.tensor([rng_log_reward(_truncate(g, eos), eos, nice) if a else 0.0
                                  for g, a in zip(gen, active.tolist())])
        active = active & (token_ids[:, 0] != eos)
        if not active.any():
            break
    lpf[max_len] = torch.zeros(B)
    lpt[max_len] = torch.zeros(B)
    state = torch.cat([state, torch.full((B, 1), eos, dtype=state.dtype)], dim=-1)
    return state, torch.stack(lpf, 1), torch.stack(lpt, 1), torch.stack(lr, 1)


def _truncate(g: list, eos: int) -> list:
    """The state truncated after its first end token (the reward sees a just-emitted end token)."""
    return g[:g.index(eos) + 1] if eos in g else g


def modified_subtb_loss(tokens, lpf, lpt, lr, prompt_len, eos, max_len, lam=1.0):
    """Pooled, λ-weighted mean over kept sub-trajectories (mask `cumsum >= 1`)."""
    delta = lr[:, :-1] + lpf[:, :-1] + lpt[:, 1:] - lr[:, 1:] - lpt[:, :-1]          # [B, L]
    csum = torch.cat([torch.zeros_like(delta[:, :1]), delta], 1).cumsum(1)          # [B, L+1]
    mask = (tokens[:, prompt_len:] == eos).cumsum(dim=-1) >= 1
    mask = mask[:, :max_len]
    if mask.shape[1] < max_len:
        mask = torch.cat([mask, torch.ones(mask.shape[0], max_len - mask.shape[1], dtype=torch.bool)], 1)
    loss = 0.0
    total = 0.0
    for ell in range(1, max_len + 1):
        term = (csum[:, ell:] - csum[:, :-ell]) ** 2
        keep = ~mask[:, ell - 1:]
        loss = loss + lam ** (ell - 1) * (term * keep).sum()
        total = total + lam ** (ell - 1) * keep.sum()
    return loss / total


class RngTrainer:
    def __init__(self, model, lr=5e-4, warmup=10, total_steps=2560, seed=42):
        torch.manual_seed(seed)
        self.model = model
        self.nice = set(C.number_token_ids())
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / total_steps))
        self.prompt = torch.tensor([C.RNG_PROMPT], dtype=torch.long)

    def warmup(self) -> float:
        """One micro-batch (sampling, loss, backward) without an optimiser step: warms allocators and kernels at a
        eighth of a step's cost."""
        self.model.train()
        enc = self.prompt.repeat(C.RNG_BSZ, 1)
        tokens, lpf, lpt, lr = generate_and_return_eos_logprob(
            self.model, enc, C.EOS, self.nice, C.RNG_MAX_LEN, C.RNG_MIN_LEN)
        loss = modified_subtb_loss(tokens, lpf, lpt, lr, enc.shape[1], C.EOS, C.RNG_MAX_LEN)
        loss.backward()
        self.opt.zero_grad(set_to_none=True)
        return float(loss)

    def step(self) -> float:
        self.model.train()
        total = 0.0
        for _ in range(C.RNG_GRAD_ACC):
            enc = self.prompt.repeat(C.RNG_BSZ, 1)
            tokens, lpf, lpt, lr = generate_and_return_eos_logprob(
                self.model, enc, C.EOS, self.nice, C.RNG_MAX_LEN, C.RNG_MIN_LEN)
            loss = modified_subtb_loss(tokens, lpf, lpt, lr, enc.shape[1], C.EOS, C.RNG_MAX_LEN)
            loss.backward()
            total += float(loss)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return total
