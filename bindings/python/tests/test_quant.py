"""weights="int8" / "q4": loading, accuracy against fp32 (the per-format bound of QuantTests.swift), sampling /
scoring / LoRA training on a quantized base, refusals (export, full-parameter
training) and the C constants."""
import os

import numpy as np
import pytest

import gfnlm
from gfnlm import _lib
from conftest import FIXTURES

TINY = os.path.join(FIXTURES, "gpt2-tiny", "legacy17")
# |Δlogit| ≤ (2·n_layer + 1)·f·max|logit|: f = 2^-7 for int8, 2^-4 for 4-bit (see docs/quantization.md)
FRACTION = {"int8": 2.0 ** -7, "q4": 2.0 ** -4}


@pytest.mark.parametrize("weights", ["int8", "q4"])
def test_logits_within_the_per_format_bound(weights):
    f32 = gfnlm.Model.load(TINY)
    q = gfnlm.Model.load(TINY, weights=weights)
    ids = [[1, 5, 9, 33, 2, 7, 11, 4], [3, 3, 8, 1, 0, 2, 6, 5]]
    a = np.asarray(f32.logits(ids))
    b = np.asarray(q.logits(ids))
    d = float(np.abs(a - b).max())
    bound = (2 * f32.config["n_layer"] + 1) * FRACTION[weights] * max(1.0, float(np.abs(a).max()))
    assert 1e-4 < d <= bound


@pytest.mark.parametrize("weights", ["int8", "q4"])
def test_samples_scores_and_trains_lora(weights):
    m = gfnlm.Model.load(TINY, weights=weights, n_threads=2)
    s = m.generate([1, 2, 3], n=4, max_new_tokens=5, temperature=1.0, stop=[], seed=3)
    assert len(s) == 4 and all(len(x.tokens) == 5 for x in s)
    # reproducible from the seed, and sampling without the adapter is untouched by training it
    alone = m.generate([1, 2, 3], n=1, max_new_tokens=6, temperature=1.0, stop=[], seed=11)
    assert np.isfinite(m.score([1, 2, 3], [4, 5]))
    adapter = gfnlm.LoRA(m, r=2, alpha=4.0, targets=["c_attn"], seed=0)
    trainer = gfnlm.SFTTrainer(m, adapter, lr=1e-2)
    losses = [trainer.step([([1, 2], [3, 4, 5])])["loss"] for _ in range(15)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    again = m.generate([1, 2, 3], n=1, max_new_tokens=6, temperature=1.0, stop=[], seed=11)
    assert alone[0].tokens == again[0].tokens


@pytest.mark.parametrize("weights", ["int8", "q4"])
def test_refuses_export_and_full_fine_tuning(tmp_path, weights):
    m = gfnlm.Model.load(TINY, weights=weights)
    with pytest.raises(gfnlm.GfnError) as e:
        m.export_onnx(str(tmp_path / "x.onnx"))
    assert weights in str(e.value) and e.value.status == -4
    with pytest.raises(gfnlm.GfnError) as e:
        gfnlm.SFTTrainer(m, None)
    assert weights in str(e.value) and e.value.status == -4


def test_constants():
    assert (_lib.GFN_WEIGHTS_INT8, _lib.GFN_WEIGHTS_Q4) == (2, 3)


@pytest.mark.parametrize("weights", ["int8", "q4"])
def test_quantize_activations_option(weights):
    """quantize_activations=False keeps fp32 activations: other logits than the default's, both within the bound;
    decoding reproduces its own samples either way; on fp32 weights the option changes nothing."""
    f32 = gfnlm.Model.load(TINY)
    ids = [[1, 5, 9, 33, 2, 7, 11, 4]]
    a = np.asarray(f32.logits(ids))
    bound = (2 * f32.config["n_layer"] + 1) * FRACTION[weights] * max(1.0, float(np.abs(a).max()))
    integer = gfnlm.Model.load(TINY, weights=weights)
    exact = gfnlm.Model.load(TINY, weights=weights, quantize_activations=False)
    li, le = np.asarray(integer.logits(ids)), np.asarray(exact.logits(ids))
    assert not np.array_equal(li, le)
    assert float(np.abs(li - a).max()) <= bound and float(np.abs(le - a).max()) <= bound
    for m in (integer, exact):
        s1 = m.generate([1, 2, 3], n=3, max_new_tokens=6, temperature=1.0, stop=[], seed=5)
        s2 = m.generate([1, 2, 3], n=3, max_new_tokens=6, temperature=1.0, stop=[], seed=5)
        assert [x.tokens for x in s1] == [x.tokens for x in s2]
    plain = np.asarray(gfnlm.Model.load(TINY, quantize_activations=False).logits(ids))
    assert np.array_equal(plain, a)
