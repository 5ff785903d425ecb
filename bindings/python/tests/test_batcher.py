"""gfnlm.Batcher: results equal Model.generate / Model.score for the same arguments under concurrency (mixed
parameters, seeds, adapters, cancels), queue limits, streaming, asyncio, shutdown, adapters added/removed under
load, and GFlowNet policy requests with log q."""
import asyncio
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import gfnlm
from conftest import FIXTURES, ROOT

DEMO = os.path.join(ROOT, "models", "demo-gpt2")
REALVOCAB = os.path.join(FIXTURES, "gpt2-realvocab", "legacy17")
TOKENIZER = os.path.join(FIXTURES, "tokenizer")


@pytest.fixture(scope="module")
def model():
    return gfnlm.Model.load(REALVOCAB, tokenizer=TOKENIZER, n_threads=2)


def adapters(model):
    out = []
    for seed, targets in [(1, ["c_attn", "c_fc"]), (2, ["c_attn", "c_proj", "lm_head"])]:
        lora = gfnlm.LoRA(model, r=4, alpha=8, targets=targets, seed=seed)
        # a few SFT steps so that B ≠ 0 and the adapters really change the policy
        sft = gfnlm.SFTTrainer(model, lora, lr=5e-2)
        for _ in range(2):
            sft.step([("Hello world", " again and again")])
        out.append(lora)
    return out


def same_samples(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g.tokens) == list(w.tokens)
        assert g.finish_reason == w.finish_reason
        np.testing.assert_allclose(g.token_logprobs, w.token_logprobs, atol=1e-6, rtol=0)
        assert abs(g.logprob - w.logprob) <= 1e-5
        assert g.text == w.text


def test_concurrent_mixed_requests_equal_sequential_calls(model):
    loras = adapters(model)
    rng = random.Random(7)
    prompts = ["Hello world", "The movie was", "Once upon a time there", "A", "In 1999, the"]
    requests = []
    for i in range(48):
        kind = "score" if i % 6 == 5 else "sample"
        adapter = rng.choice([None, "a", "b"])
        if kind == "score":
            requests.append((kind, dict(context=rng.choice(prompts), continuation=" and then", adapter=adapter,
                                        per_token=True)))
            continue
        kw = dict(max_new_tokens=rng.randint(1, 12), temperature=rng.choice([0.0, 0.8, 1.0, 1.3]),
                  top_k=rng.choice([0, 20]), top_p=rng.choice([1.0, 0.9]), seed=rng.randrange(2**63),
                  n=rng.randint(1, 3), adapter=adapter)
        if rng.random() < 0.3:
            kw.update(allowed=list(range(200, 400)), disallowed_penalty=-99.0)
        requests.append((kind, dict(prompt=rng.choice(prompts), **kw)))
    named = {"a": loras[0], "b": loras[1]}

    with gfnlm.Batcher(model, max_batch=16, max_queue=64) as batcher:
        batcher.add_adapter("a", loras[0])
        batcher.add_adapter("b", loras[1])

        def run(i):
            kind, kw = requests[i]
            if kind == "score":
                kw = dict(kw)
                return batcher.submit_score(kw.pop("context"), kw.pop("continuation"), block=True, **kw)
            kw = dict(kw)
            future = batcher.submit(kw.pop("prompt"), block=True, **kw)
            if i % 11 == 3:
                future.cancel()
            return future

        with ThreadPoolExecutor(8) as pool:
            futures = list(pool.map(run, range(len(requests))))
        for i, ((kind, kw), future) in enumerate(zip(requests, futures)):
            kw = dict(kw)
            adapter = named.get(kw.pop("adapter"))
            if future.cancelled():
                assert i % 11 == 3
                continue
            try:
                got = future.result(timeout=120)
            except gfnlm.CancelledError:
                assert i % 11 == 3
                continue
            if kind == "score":
                want = model.score(kw.pop("context"), kw.pop("continuation"), adapter=adapter, **kw)
                assert abs(got[0] - want[0]) <= 1e-5
                np.testing.assert_allclose(got[1], want[1], atol=1e-6, rtol=0)
            else:
                same_samples(got, model.generate(kw.pop("prompt"), adapter=adapter, **kw))
        stats = batcher.stats()
        assert stats["submitted"] == len(requests)
        assert stats["completed"] + stats["cancelled"] == len(requests)


def test_queue_full_blocking_streaming_and_shutdown(model):
    batcher = gfnlm.Batcher(model, max_batch=2, max_queue=1)
    release = threading.Event()
    first = batcher.submit("Hello", n=2, max_new_tokens=30, stop=[], on_token=lambda e: release.wait(30) and None)
    while batcher.stats()["active_rows"] == 0:
        pass
    queued = batcher.submit("Hello", max_new_tokens=2)
    with pytest.raises(gfnlm.BusyError, match="queue is full"):
        batcher.submit("Hello", max_new_tokens=2)
    with pytest.raises(ValueError, match="max_batch"):
        batcher.submit("Hello", n=3)
    with pytest.raises(ValueError, match="top_p"):
        batcher.submit("Hello", top_p=0.0)
    with pytest.raises(ValueError, match="no adapter named"):
        batcher.submit("Hello", adapter="missing")
    blocked = []
    t = threading.Thread(target=lambda: blocked.append(batcher.submit("Hi", max_new_tokens=2, block=True)))
    t.start()
    release.set()
    t.join(60)
    assert len(first.result(60)[0].tokens) == 30
    assert queued.result(60) and blocked[0].result(60)

    events = list(batcher.stream("The movie was", max_new_tokens=6, n=2, seed=3, stop=[]))
    want = model.generate("The movie was", max_new_tokens=6, n=2, seed=3, stop=[])
    for k in range(2):
        assert [e.token for e in events if e.index == k] == list(want[k].tokens)

    async def two():   # max_queue is 1: the second submission waits for room instead of racing the admission
        return await asyncio.gather(batcher.agenerate("Hello", seed=1, max_new_tokens=4, block=True),
                                    batcher.ascore("Hello", " world", block=True))
    samples, score = asyncio.run(two())
    same_samples(samples, model.generate("Hello", seed=1, max_new_tokens=4))
    assert abs(score - model.score("Hello", " world")) <= 1e-5

    long_one = batcher.submit("Hello", max_new_tokens=200, stop=[], on_token=lambda e: None)
    waiting = batcher.submit("Hello", max_new_tokens=2, block=True)   # long_one may still be queued (max_queue 1)
    batcher.close(drain=False)
    for f in (long_one, waiting):
        with pytest.raises(gfnlm.CancelledError):
            f.result(30)
    with pytest.raises(ValueError, match="closed"):
        batcher.submit("Hello")


def test_adapters_added_and_removed_under_load(model):
    loras = adapters(model)
    with gfnlm.Batcher(model, max_batch=8) as batcher:
        futures = []
        for i in range(24):
            name = f"task{i % 3}"
            if i % 3 == 0:
                batcher.add_adapter(name, loras[i % 2])
            futures.append((loras[i % 2] if i % 3 == 0 else None, i,
                            batcher.submit("Once upon a time", seed=i, max_new_tokens=5,
                                           adapter=name if i % 3 == 0 else None)))
            if i % 3 == 0:
                batcher.remove_adapter(name)   # requests already submitted keep their adapter
        for lora, i, f in futures:
            same_samples(f.result(60), model.generate("Once upon a time", seed=i, max_new_tokens=5, adapter=lora))


@pytest.mark.skipif(not os.path.exists(os.path.join(DEMO, "model.onnx")), reason="demo model absent")
def test_policy_requests_return_log_q():
    demo = gfnlm.Model.load(DEMO, n_threads=2)
    lora = gfnlm.LoRA(demo, r=4, alpha=8, targets=["c_attn"], seed=0)
    x = demo.tokenizer.encode("The following is a random integer drawn uniformly between 0 and 100: ")
    trainer = gfnlm.GFlowNetTrainer(demo, lora, gfnlm.rewards.RandomInteger(demo), prompts=[x], min_length=1,
                                    max_length=4, batch_size=4, p_on_policy=1.0, p_replay=0.0)
    trainer.train(2)
    with gfnlm.Batcher(demo) as batcher:
        samples = batcher.submit_policy(trainer, x, n=6, seed=5).result(60)
    eos = demo.tokenizer.eos_id
    for s in samples:
        assert 1 <= len(s.tokens) <= 4
        # log q per action from the adapter's logits, independently (log-softmax); before min_length the action
        # was drawn with ⊤ banned, so its log q is that of the renormalised q̃ = q / (1 − q(⊤)).
        ids = list(x)
        total = 0.0
        for t, tok in enumerate(s.tokens):
            logits = demo.logits(ids, adapter=lora)[-1].astype(np.float64)
            lse = logits.max() + np.log(np.exp(logits - logits.max()).sum())
            want = logits[tok] - lse
            if t < 1:
                want -= np.log1p(-np.exp(logits[eos] - lse))
            assert abs(want - s.token_logprobs[t]) <= 2e-4
            total += want
            ids.append(tok)
        assert abs(total - s.logprob) <= 1e-3
        assert s.finish_reason == ("stop" if s.tokens[-1] == eos else "length")
