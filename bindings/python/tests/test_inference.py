import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import gfnlm
from conftest import FIXTURES, ROOT

REALVOCAB = os.path.join(FIXTURES, "gpt2-realvocab", "legacy17")
TOKENIZER = os.path.join(FIXTURES, "tokenizer")


@pytest.fixture(scope="module")
def model():
    return gfnlm.Model.load(REALVOCAB, tokenizer=TOKENIZER)


@pytest.fixture(scope="module")
def tiny():
    return gfnlm.Model.load(os.path.join(FIXTURES, "gptj-tiny", "legacy17"))


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def test_generate_reports_policy_logprobs(model):
    prompt = model.tokenizer.encode("Hello world, this is")
    samples = model.generate(prompt, max_new_tokens=5, n=3, seed=1, stop=[])
    assert len(samples) == 3
    for s in samples:
        assert len(s.tokens) == 5 and s.finish_reason == "length"
        ids = prompt + s.tokens
        logits = model.logits(ids)
        for t, tok in enumerate(s.tokens):
            lp = log_softmax(logits[len(prompt) - 1 + t])[tok]
            assert abs(lp - s.token_logprobs[t]) < 1e-4
        assert abs(sum(s.token_logprobs) - s.logprob) < 1e-3
        assert abs(model.score(prompt, s.tokens) - s.logprob) < 1e-3


def test_same_seed_same_tokens_and_strings(model):
    a = model.generate("Hello", max_new_tokens=8, n=2, seed=5)
    b = model.generate("Hello", max_new_tokens=8, n=2, seed=5)
    assert [s.tokens for s in a] == [s.tokens for s in b]
    assert all(isinstance(s.text, str) for s in a)
    many = model.generate(["Hello", "The cat"], max_new_tokens=4, n=2, seed=1)
    assert len(many) == 2 and all(len(x) == 2 for x in many)


def test_stop_min_max_and_masks(tiny):
    allowed = [5, 6, 7, 8]
    out = tiny.generate([1, 2, 3], max_new_tokens=6, n=50, seed=2, stop=[7], min_new_tokens=2, allowed=allowed)
    for s in out:
        assert all(t in allowed for t in s.tokens)
        assert len(s.tokens) <= 6
        if s.finish_reason == "stop":
            assert s.tokens[-1] == 7 and len(s.tokens) >= 3 and 7 not in s.tokens[:-1]
        assert len(s.stop_logprobs) == len(s.tokens) and len(s.stop_logprobs[0]) == 1
    soft = tiny.generate([1, 2, 3], max_new_tokens=1, n=20, seed=3, stop=[], allowed=allowed, disallowed_penalty=-99)
    logits = tiny.logits([1, 2, 3])[-1].astype(np.float64)
    pen = np.full_like(logits, -99.0)
    pen[allowed] = 0
    lp = log_softmax(logits + pen)
    for s in soft:
        assert abs(lp[s.tokens[0]] - s.token_logprobs[0]) < 1e-4


def test_score_per_token_and_stop(tiny):
    total, per, stop = tiny.score([1, 2, 3], [4, 5], per_token=True, stop=[9])
    logits = tiny.logits([1, 2, 3, 4, 5]).astype(np.float64)
    exp_tokens = [log_softmax(logits[2])[4], log_softmax(logits[3])[5]]
    exp_stop = [log_softmax(logits[i])[9] for i in (2, 3, 4)]
    assert np.allclose(per, exp_tokens, atol=1e-4)
    assert np.allclose(stop, exp_stop, atol=1e-4)
    assert abs(total - sum(exp_tokens)) < 1e-4
    batch = tiny.score([[1, 2], [1, 2], [3]], [[4], [5, 6], []])
    assert len(batch) == 3 and batch[2] == 0.0


def test_beam_search(tiny):
    hyps = tiny.beam_search([1, 2, 3], num_beams=4, num_return=3, max_new_tokens=3, stop=[], length_penalty=0)
    assert len(hyps) == 3
    assert hyps[0].score >= hyps[1].score >= hyps[2].score
    greedy = tiny.generate([1, 2, 3], max_new_tokens=3, temperature=0, stop=[])[0]
    assert hyps[0].logprob >= greedy.logprob - 1e-5
    div = tiny.beam_search([1, 2, 3], num_beams=4, num_groups=4, diversity_penalty=50.0, num_return=4,
                           max_new_tokens=2, stop=[])
    assert len({h.tokens[0] for h in div}) == 4


def test_errors_are_gfnerror(tiny):
    with pytest.raises(gfnlm.GfnError) as e:
        tiny.generate([1, 2], n=0)
    assert e.value.name == "GFN_ERR_INVALID_ARGUMENT"
    with pytest.raises(gfnlm.GfnError) as e:
        tiny.generate([100000])
    assert e.value.name == "GFN_ERR_OUT_OF_RANGE"
    with pytest.raises(gfnlm.GfnError) as e:
        tiny.generate(list(range(1, 100)))
    assert e.value.name == "GFN_ERR_OUT_OF_RANGE"
    with pytest.raises(gfnlm.GfnError):
        tiny.generate([1], top_p=0.0)
    with pytest.raises(gfnlm.GfnError):
        tiny.beam_search([1], num_beams=3, num_groups=2)
    with pytest.raises(gfnlm.GfnError):
        tiny.generate("text without tokenizer")


def test_four_threads_equal_sequential(tiny):
    def run(seed):
        return [s.tokens for s in tiny.generate([1, 2, 3], max_new_tokens=10, n=4, seed=seed, stop=[])]

    seq = [run(i) for i in range(4)]
    got = [None] * 4

    def worker(i):
        got[i] = run(i)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert got == seq


def test_examples_run():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", "generate.py"), REALVOCAB,
                          "Hello world", TOKENIZER], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ok samples=" in out.stdout


def test_ids_beyond_the_tokenizer_decode_as_replacement_characters(model):
    """A model may have more rows than its tokenizer has ids (GPT-J's 50400 vs GPT-2's 50257 tokens): sampling such
    an id must not fail; the text shows U+FFFD for it and the tokens keep the id."""
    tok = model.tokenizer
    V = tok.vocab_size
    hello = tok.encode("Hello world")
    decode = model._decode()
    assert decode(hello) == "Hello world"
    assert decode([V + 7] + hello + [V, V + 1]) == "\ufffdHello world\ufffd\ufffd"
    with pytest.raises(gfnlm.GfnError):
        tok.decode([V + 7])      # the tokenizer itself stays strict


def test_beam_search_reports_per_token_logprobs(model):
    """gfn_sample_info promises n_tokens per-token log-probabilities for beam hypotheses too (they were empty, and a
    caller following the header read past the buffer): each is log p(token | prefix) of the adjusted policy."""
    prompt = model.tokenizer.encode("Hello world, this is")
    hyps = model.beam_search(prompt, num_beams=3, num_return=2, max_new_tokens=4, allowed=list(range(100, 3000)),
                             disallowed_penalty=-5.0)
    for h in hyps:
        assert len(h.token_logprobs) == len(h.tokens)
        assert abs(float(np.sum(h.token_logprobs, dtype=np.float64)) - h.logprob) <= 1e-3
        ids = list(prompt)
        for t, tok in enumerate(h.tokens):
            logits = model.logits(ids)[-1].astype(np.float64)
            adj = np.full_like(logits, -5.0)
            adj[100:3000] = 0
            adj[model.tokenizer.eos_id] = 0
            z = logits + adj
            assert abs((z[tok] - (z.max() + np.log(np.exp(z - z.max()).sum()))) - h.token_logprobs[t]) <= 1e-4
            ids.append(tok)
