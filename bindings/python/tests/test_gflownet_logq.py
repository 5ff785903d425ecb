"""The amortized sampler's log q (GFlowNetTrainer.sample / gfn_gflownet_sample) against an independent computation:
numpy log-softmax of the adapter's logits (Model.logits with the adapter, no cache) plus the policy's mask, with the
min_length renormalisation and the stop at max_length done by hand."""
import math
import os

import numpy as np
import pytest

import gfnlm
from conftest import FIXTURES

TINY = os.path.join(FIXTURES, "gpt2-tiny", "legacy17")
REALVOCAB = os.path.join(FIXTURES, "gpt2-realvocab", "legacy17")
TOKENIZER = os.path.join(FIXTURES, "tokenizer")


@pytest.fixture(scope="module")
def tiny():
    return gfnlm.Model.load(TINY)


def log_softmax(row):
    m = row.max()
    return row - (m + np.log(np.exp(row - m).sum()))


def policy(model, lora, x, state, allowed, penalty, term):
    """log q(·| X ⊕ state) in float64: logits of the full sequence with the adapter, + the mask (⊤ always allowed)."""
    row = model.logits(list(x) + list(state), adapter=lora)[-1].astype(np.float64)
    mask = np.full(row.shape, penalty, dtype=np.float64)
    mask[list(allowed) + [term]] = 0.0
    return log_softmax(row + mask)


def test_sampler_logq_matches_the_adapters_logits(tiny):
    x = [5, 6, 7]
    allowed, penalty, term, min_len, max_len = [1, 2, 3, 4], -99.0, 0, 2, 3
    lora = gfnlm.LoRA(tiny, r=4, alpha=8, targets=["c_attn", "c_fc"], seed=5)
    reward = gfnlm.rewards.Callback(lambda i, states: [-float(len(s)) + (s[0] if s else 0) for s in states])
    tr = gfnlm.GFlowNetTrainer(tiny, lora, reward, prompts=[x], termination=term, min_length=min_len,
                               max_length=max_len, allowed=allowed, penalty=penalty, batch_size=8, lr=5e-2,
                               warmup_steps=0, seed=3)
    tr.train(5)   # a policy away from the base model (B ≠ 0)
    assert np.abs(tiny.logits(x, adapter=lora) - tiny.logits(x)).max() > 1e-3
    stopped = truncated = 0
    for temperature in (1.0, 1.6):
        for s in tr.sample(x, n=30, temperature=temperature, seed=9):
            assert len(s.token_logprobs) == len(s.tokens) >= min_len
            total = 0.0
            for t, a in enumerate(s.tokens):
                lp = policy(tiny, lora, x, s.tokens[:t], allowed, penalty, term)
                want = lp[a] - (math.log1p(-math.exp(lp[term])) if t < min_len else 0.0)
                assert s.token_logprobs[t] == pytest.approx(want, abs=2e-4)
                total += want
            if s.finish_reason == "stop":
                stopped += 1
                total += policy(tiny, lora, x, s.tokens, allowed, penalty, term)[term]
            else:
                truncated += 1      # forced stop at max_length: log q(⊤|s_max) := 0
                assert len(s.tokens) == max_len
            assert s.logprob == pytest.approx(total, abs=1e-3)
    assert stopped and truncated


def test_sampler_logq_next_sentence_layout_and_min_length_zero(tiny):
    x = [9, 8]
    allowed, term = [1, 2, 3], 0
    lora = gfnlm.LoRA(tiny, r=4, alpha=8, targets=["c_attn"], seed=6)
    reward = gfnlm.rewards.Callback(lambda i, states: [-0.5 * len(s) for s in states])
    tr = gfnlm.GFlowNetTrainer(tiny, lora, reward, prompts=[x], termination=term, max_length=2, layout="next_sentence",
                               allowed=allowed, penalty=-math.inf, batch_size=8, lr=5e-2, warmup_steps=0, seed=4)
    tr.train(3)
    seen = set()
    for s in tr.sample(x, n=40, seed=2):
        lps = [policy(tiny, lora, x, s.tokens[:t], allowed, -1e30, term) for t in range(len(s.tokens) + 1)]
        want = [lps[t][a] for t, a in enumerate(s.tokens)]
        assert s.token_logprobs == pytest.approx(want, abs=2e-4)
        # the next-sentence layout keeps the policy's real log q(⊤|s_max) for a truncated row, as in training
        assert s.logprob == pytest.approx(sum(want) + lps[-1][term], abs=1e-3)
        seen.add(s.finish_reason)
    assert seen == {"stop", "length"}


def test_calculator_output_tokens_are_not_actions():
    m = gfnlm.Model.load(REALVOCAB, tokenizer=TOKENIZER)
    tok = m.tokenizer
    x = tok.encode("Question: 7 + 7 = ? Answer:")
    eq = tok.encode(" =")[0]
    allowed = [tok.encode(w)[0] for w in (" 7", " +", " =")]
    eos = tok.eos_id
    lora = gfnlm.LoRA(m, r=2, alpha=4, targets=["c_attn"], seed=1)
    tr = gfnlm.GFlowNetTrainer(m, lora, gfnlm.rewards.Callback(lambda i, st: [0.0] * len(st)), prompts=[x],
                               termination=eos, min_length=3, max_length=5, allowed=allowed, penalty=-math.inf,
                               calculator="fixed", batch_size=2, seed=1)
    with_tool = 0
    for s in tr.sample(x, n=24, seed=5):
        total = 0.0
        n_actions = 0
        tool, runs = [], []
        for t, a in enumerate(s.tokens):
            if s.token_logprobs[t] == 0.0:
                # a calculator result: context, not an action; it follows the " =" that triggered it
                assert tool or s.tokens[t - 1] == eq
                tool.append(a)
                continue
            if tool:
                runs.append(tool)
                tool = []
            lp = policy(m, lora, x, s.tokens[:t], allowed, -1e30, eos)
            want = lp[a] - (math.log1p(-math.exp(lp[eos])) if n_actions < 3 else 0.0)
            assert s.token_logprobs[t] == pytest.approx(want, abs=2e-4)
            total += want
            n_actions += 1
        if tool:
            runs.append(tool)
        assert 3 <= n_actions <= 5
        for r in runs:
            int(tok.decode(r))          # every zero run is a number the calculator wrote
            with_tool += 1
        if s.finish_reason == "stop":
            total += policy(m, lora, x, s.tokens, allowed, -1e30, eos)[eos]
        assert s.logprob == pytest.approx(total, abs=1e-3)
    assert with_tool > 0, "no sample triggered the calculator"


def test_reward_callback_is_told_the_reward_temperature(tiny):
    seen = []

    def fn(prompt_index, states, t_r):
        seen.append(t_r)
        return [-0.3 * len(s) for s in states]

    lora = gfnlm.LoRA(tiny, r=2, alpha=4, targets=["c_attn"], seed=1)
    tr = gfnlm.GFlowNetTrainer(tiny, lora, gfnlm.rewards.Callback(fn, temperature=True), prompts=[[4, 5]],
                               termination=0, max_length=3, allowed=[1, 2, 3], penalty=-math.inf, batch_size=4,
                               reward_temperature=(2.0, 0.5, 3), p_on_policy=1.0, p_replay=0.0, seed=1)
    tr.seed_buffer(0, [[1, 2]])
    assert seen == [2.0]
    temps = [tr.step()["reward_temperature"] for _ in range(5)]
    assert temps == [2.0, 1.5, 1.0, 0.5, 0.5]
    assert seen[1:] == temps                         # one call per step (one micro-batch), told that step's T_R
    plain = gfnlm.rewards.Callback(lambda i, states: [0.0] * len(states))
    assert list(plain([4, 5], [1, 2])) == [0.0, 0.0, 0.0]
    told = []
    gfnlm.rewards.Callback(lambda i, states, t_r: told.append(t_r) or [0.0] * len(states),
                           temperature=True)([4, 5], [1])
    assert told == [1.0]                             # outside training: T_R = 1


def test_sample_rollouts_without_a_trainer():
    """The calculator in plain sampling: the base model (no adapter) or any adapter, the same samples and log q as a
    trainer's sampler with the same settings."""
    m = gfnlm.Model.load(REALVOCAB, tokenizer=TOKENIZER)
    tok = m.tokenizer
    x = tok.encode("Question: 7 + 7 = ? Answer:")
    allowed = [tok.encode(w)[0] for w in (" 7", " +", " =")]
    eos = tok.eos_id
    opts = dict(termination=eos, min_length=3, max_length=5, allowed=allowed, penalty=-math.inf, calculator="fixed")
    base = gfnlm.gflownet.sample_rollouts(m, x, n=16, seed=5, **opts)
    tool_runs = 0
    for s in base:
        n_actions = 0
        for t, a in enumerate(s.tokens):
            if s.token_logprobs[t] == 0.0:
                tool_runs += s.tokens[t - 1] == tok.encode(" =")[0]
                continue
            lp = policy(m, None, x, s.tokens[:t], allowed, -1e30, eos)
            want = lp[a] - (math.log1p(-math.exp(lp[eos])) if n_actions < 3 else 0.0)
            assert s.token_logprobs[t] == pytest.approx(want, abs=2e-4)
            n_actions += 1
    assert tool_runs > 0
    lora = gfnlm.LoRA(m, r=2, alpha=4, targets=["c_attn"], seed=1)
    tr = gfnlm.GFlowNetTrainer(m, lora, gfnlm.rewards.Callback(lambda i, st: [0.0] * len(st)), prompts=[x],
                               batch_size=2, seed=1, pack_weights=False, **opts)
    a = tr.sample(x, n=16, temperature=1.3, seed=7)
    b = gfnlm.gflownet.sample_rollouts(m, x, n=16, adapter=lora, temperature=1.3, seed=7, **opts)
    assert [s.tokens for s in a] == [s.tokens for s in b]
    assert [s.logprob for s in a] == pytest.approx([s.logprob for s in b], abs=1e-6)
    with pytest.raises(gfnlm.GfnError):
        gfnlm.gflownet.sample_rollouts(m, x, n=0, **opts)
    with pytest.raises(gfnlm.GfnError):
        gfnlm.gflownet.sample_rollouts(m, x, n=2, termination=eos, min_length=6, max_length=5)


def test_learned_root_flow_option(tiny):
    """root_flow="learned": SubTB trains a log Z per prompt as the flow of X (min_length ≥ 1); the default keeps the
    reference's R(X⊤)/q(⊤|X) and reports mean(log R/T_R − log q) as log_z."""
    reward = gfnlm.rewards.Callback(lambda i, states: [2.0 + 0.1 * len(s) for s in states])
    for root, moves in (("learned", True), ("reward", False)):
        lora = gfnlm.LoRA(tiny, r=2, alpha=4, targets=["c_attn"], seed=1)
        tr = gfnlm.GFlowNetTrainer(tiny, lora, reward, prompts=[[4, 5]], termination=0, min_length=1, max_length=3,
                                   allowed=[1, 2, 3], penalty=-math.inf, batch_size=4, root_flow=root,
                                   warmup_steps=0, seed=2)
        z = [tr.step()["log_z"] for _ in range(4)]
        if moves:
            assert z == sorted(z) and z[-1] > 2.5        # log Z (lr 1, from 0) climbs toward log Σ R ≈ 2.2 + log 39
    with pytest.raises(gfnlm.GfnError):
        gfnlm.GFlowNetTrainer(tiny, lora, reward, prompts=[[4, 5]], termination=0, root_flow="learned",
                              logz_init=math.nan)
