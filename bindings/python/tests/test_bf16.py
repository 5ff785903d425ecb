"""weights="bf16": loading, accuracy against fp32, sampling / scoring / beam search / LoRA training on a bf16 model,
refusals (export, full-parameter training) and bad values."""
import ctypes
import os

import numpy as np
import pytest

import gfnlm
from gfnlm import _lib
from conftest import FIXTURES

TINY = os.path.join(FIXTURES, "gpt2-tiny", "legacy17")


def test_bf16_logits_close_to_fp32_but_not_equal():
    f32 = gfnlm.Model.load(TINY)
    b16 = gfnlm.Model.load(TINY, weights="bf16")
    ids = [[1, 5, 9, 33, 2, 7, 11, 4]]
    a = np.asarray(f32.logits(ids))
    b = np.asarray(b16.logits(ids))
    d = float(np.abs(a - b).max())
    # bf16 rounding: ≤ (2·n_layer + 1)·2^-9·max|logit| (see BF16Tests.swift); and it must change something
    bound = (2 * f32.config["n_layer"] + 1) * 2.0 ** -9 * max(1.0, float(np.abs(a).max()))
    assert 1e-4 < d <= bound


def test_bf16_model_samples_scores_beams_and_trains_lora():
    m = gfnlm.Model.load(TINY, weights="bf16", n_threads=2)
    s = m.generate([1, 2, 3], n=4, max_new_tokens=5, temperature=1.0, stop=[], seed=3)
    assert len(s) == 4 and all(len(x.tokens) == 5 for x in s)
    sc = m.score([1, 2, 3], [4, 5])
    assert np.isfinite(sc)
    beams = m.beam_search([1, 2, 3], num_beams=3, num_return=2, max_new_tokens=4)
    assert len(beams) == 2
    adapter = gfnlm.LoRA(m, r=2, alpha=4.0, targets=["c_attn"], seed=0)
    trainer = gfnlm.SFTTrainer(m, adapter, lr=1e-2)
    losses = [trainer.step([([1, 2], [3, 4, 5])])["loss"] for _ in range(15)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_bf16_refuses_export(tmp_path):
    m = gfnlm.Model.load(TINY, weights="bf16")
    with pytest.raises(gfnlm.GfnError) as e:
        m.export_onnx(str(tmp_path / "x.onnx"))
    assert "bf16" in str(e.value) and e.value.status == -4
    with pytest.raises(gfnlm.GfnError) as e:
        gfnlm.SFTTrainer(m, None)  # full-parameter training
    assert "bf16" in str(e.value) and e.value.status == -4


@pytest.mark.parametrize("bad", ["bf32", "BF16", "fp16", "", None, 1])
def test_bad_weights_value(bad):
    with pytest.raises(ValueError, match="weights must be one of 'fp32', 'bf16', 'int8', 'q4'"):
        gfnlm.Model.load(TINY, weights=bad)


def test_c_abi_weight_type_and_old_struct_size():
    lib = _lib.lib
    p = _lib.gfn_model_default_params()
    assert p.size == ctypes.sizeof(_lib.ModelParams) == 48 and p.weight_type == _lib.GFN_WEIGHTS_F32
    assert p.quantize_activations == 1
    assert p.weight_cache == _lib.GFN_WEIGHT_CACHE_OFF and p.weight_cache_dir is None
    assert p.batch_invariant == 1 and p.reserved == 0
    h = ctypes.c_void_p()
    p.weight_type = 9
    assert _lib.gfn_model_load(TINY.encode(), ctypes.byref(p), ctypes.byref(h)) == -1
    assert b"weight_type" in _lib.gfn_last_error()
    # a caller built against the second header (24 bytes, padding where batch_invariant now is): garbage there is
    # ignored and batch invariance stays on
    p.size = 24
    p.weight_type = _lib.GFN_WEIGHTS_F32
    p.batch_invariant = 77
    p.reserved = 5
    assert _lib.gfn_model_load(TINY.encode(), ctypes.byref(p), ctypes.byref(h)) == 0
    lib.gfn_model_free(h)
    p.size = 32      # the third header's struct: ends before weight_cache, whose garbage is then ignored
    p.weight_cache = 99
    assert _lib.gfn_model_load(TINY.encode(), ctypes.byref(p), ctypes.byref(h)) == -1
    assert b"batch_invariant" in _lib.gfn_last_error() or b"reserved" in _lib.gfn_last_error()
    p.batch_invariant, p.reserved = 0, 0
    assert _lib.gfn_model_load(TINY.encode(), ctypes.byref(p), ctypes.byref(h)) == 0
    lib.gfn_model_free(h)
    p.size = 40      # the fourth header's struct: ends before quantize_activations, whose garbage is then ignored
    p.quantize_activations = 7
    assert _lib.gfn_model_load(TINY.encode(), ctypes.byref(p), ctypes.byref(h)) == -1
    assert b"weight_cache" in _lib.gfn_last_error()
    p.weight_cache = _lib.GFN_WEIGHT_CACHE_OFF
    assert _lib.gfn_model_load(TINY.encode(), ctypes.byref(p), ctypes.byref(h)) == 0
    lib.gfn_model_free(h)
    p.size = 48
    assert _lib.gfn_model_load(TINY.encode(), ctypes.byref(p), ctypes.byref(h)) == -1
    assert b"quantize_activations" in _lib.gfn_last_error()
    p.quantize_activations = 1
    # a caller built against the first header: 16-byte struct; garbage after it is ignored
    p.size = 16
    p.weight_type = 12345
    assert _lib.gfn_model_load(TINY.encode(), ctypes.byref(p), ctypes.byref(h)) == 0
    lib.gfn_model_free(h)
