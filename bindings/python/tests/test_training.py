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


def test_lora_save_load_and_logits(tiny, tmp_path):
    lora = gfnlm.LoRA(tiny, r=4, alpha=8, targets=["c_attn", "c_proj"], seed=1)
    # 2 layers × (c_attn 64→192, attn.c_proj 64→64, mlp.c_proj 256→64)
    assert lora.parameter_count == 2 * (4 * (64 + 192) + 4 * (64 + 64) + 4 * (256 + 64))
    ids = [1, 2, 3, 4]
    base = tiny.logits(ids)
    assert np.array_equal(tiny.logits(ids, adapter=lora), base), "B = 0 at init: adapter = base model"
    sft = gfnlm.SFTTrainer(tiny, lora, lr=5e-2)
    batch = [([1, 2], [3, 4, 5]), ([6], [7, 8])]
    first = sft.evaluate(batch)
    for _ in range(30):
        last = sft.step(batch)
    assert last["applied"] and last["step"] == 30
    assert sft.evaluate(batch)["loss"] < first["loss"] / 3
    tuned = tiny.logits(ids, adapter=lora)
    assert np.abs(tuned - base).max() > 1e-2
    lora.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    again = gfnlm.LoRA.load(tiny, tmp_path / "adapter")
    assert np.abs(tiny.logits(ids, adapter=again) - tuned).max() < 1e-6
    with pytest.raises(gfnlm.GfnError):
        gfnlm.LoRA(tiny, r=4, targets=["q_proj"])   # a GPT-J name on GPT-2: matches nothing
    with pytest.raises(gfnlm.GfnError):
        gfnlm.LoRA.load(tiny, tmp_path / "missing")


def test_lora_on_the_tied_head(tiny, tmp_path):
    """LoRA on lm_head (tied to the embedding here): trained by SFT, used by logits and sampling, saved and reloaded
    in PEFT's layout; export refuses to merge it into the tied head."""
    lora = gfnlm.LoRA(tiny, r=4, alpha=8, targets=["c_attn", "lm_head"], seed=1)
    # 2 layers × c_attn 64→192, plus the head 64→512
    assert lora.parameter_count == 2 * 4 * (64 + 192) + 4 * (64 + 512)
    ids = [1, 2, 3, 4]
    base = tiny.logits(ids)
    assert np.array_equal(tiny.logits(ids, adapter=lora), base)
    sft = gfnlm.SFTTrainer(tiny, lora, lr=5e-2)
    batch = [([1, 2], [3, 4, 5]), ([6], [7, 8])]
    first = sft.evaluate(batch)
    for _ in range(30):
        sft.step(batch)
    assert sft.evaluate(batch)["loss"] < first["loss"] / 2
    tuned = tiny.logits(ids, adapter=lora)
    lora.save(tmp_path / "adapter")
    again = gfnlm.LoRA.load(tiny, tmp_path / "adapter")
    assert np.abs(tiny.logits(ids, adapter=again) - tuned).max() < 1e-6
    with pytest.raises(gfnlm.GfnError, match="lm_head"):
        tiny.export_onnx(tmp_path / "merged.onnx", adapter=lora)


def test_full_parameter_sft_snapshot(tiny):
    sft = gfnlm.SFTTrainer(tiny, None, lr=1e-2)
    before = sft.evaluate([([1, 2], [3, 4])])["loss"]
    for _ in range(20):
        sft.step([([1, 2], [3, 4])])
    after = sft.evaluate([([1, 2], [3, 4])])["loss"]
    assert after < before
    snap = sft.snapshot_model()
    assert np.abs(snap.logits([1, 2, 3]) - tiny.logits([1, 2, 3])).max() > 1e-3


def table_reward():
    rng = np.random.default_rng(0)
    table = {}

    def fn(prompt_index, states):
        out = []
        for s in states:
            key = tuple(s)
            if key not in table:
                table[key] = float(rng.normal())
            out.append(table[key])
        return out
    return fn


def test_gflownet_callback_training_exact_and_checkpoint(tiny, tmp_path):
    lora = gfnlm.LoRA(tiny, r=4, alpha=8, targets=["c_attn"], seed=2)
    reward = gfnlm.rewards.Callback(table_reward())
    tr = gfnlm.GFlowNetTrainer(tiny, lora, reward, prompts=[[5, 6, 7]], termination=0, max_length=2,
                               allowed=[1, 2, 3], penalty=-math.inf, batch_size=8, lr=1e-2, warmup_steps=0, seed=3)
    before = tr.exact([1, 2, 3])
    assert before["n_sequences"] == 13 and abs(before["mass_q"] - 1) < 1e-4
    seen = []
    stats = tr.train(40, progress=lambda s: seen.append(s["loss"]) is None)
    assert len(seen) == 40 and stats["applied"]
    after = tr.exact([1, 2, 3])
    assert after["kl_target_q"] < before["kl_target_q"]
    samples = tr.sample([5, 6, 7], n=10, seed=1)
    assert len(samples) == 10 and all(len(s.tokens) <= 2 and set(s.tokens) <= {1, 2, 3} for s in samples)
    tr.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "replay_buffer.json").exists()
    tr.load(tmp_path / "ckpt")


def test_gflownet_callback_errors_change_nothing(tiny):
    lora = gfnlm.LoRA(tiny, r=2, targets=["c_attn"], seed=4)

    def bad(prompt_index, states):
        raise RuntimeError("host reward failed")

    tr = gfnlm.GFlowNetTrainer(tiny, lora, gfnlm.rewards.Callback(bad), prompts=[[5, 6]], termination=0, max_length=3)
    # the callback's own exception comes back as itself, the library's GFN_ERR_CALLBACK as its context
    with pytest.raises(RuntimeError, match="host reward failed") as e:
        tr.step()
    assert isinstance(e.value.__context__, gfnlm.CallbackError)
    assert e.value.__context__.name == "GFN_ERR_CALLBACK"
    nan = gfnlm.GFlowNetTrainer(tiny, lora, gfnlm.rewards.Callback(lambda i, s: [float("nan")] * len(s)),
                                prompts=[[5, 6]], termination=0, max_length=3)
    with pytest.raises(gfnlm.GfnError) as e:
        nan.step()
    assert e.value.name == "GFN_ERR_NUMERICAL"
    assert np.array_equal(tiny.logits([1, 2], adapter=lora), tiny.logits([1, 2]))


def test_random_integer_reward_table():
    m = gfnlm.Model.load(REALVOCAB, tokenizer=TOKENIZER)
    r = gfnlm.rewards.RandomInteger(m)
    tok = m.tokenizer
    x = tok.encode("The following is a random integer drawn uniformly between 0 and 100: ")
    one = lambda s: tok.encode(s, allow_special=False)[0]
    assert isinstance(r(x, []), np.ndarray) and r(x, []).dtype == np.float64
    assert r(x, []).tolist() == [-8]
    assert r(x, [one("49")]).tolist() == [-8, 8]
    assert r(x, [one("4"), one("9")])[-1] == -8
    assert r(x, [one("49"), one("x"), one("y")])[-1] == -32
    assert r(x, [one("100")])[-1] == -8
    assert len(r.number_tokens) == 100
