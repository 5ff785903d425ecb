import json
import os
import threading

import numpy as np
import pytest

import gfnlm
from conftest import FIXTURES, read_safetensors

VARIANT_ROOTS = ["gpt2-tiny", "gptj-tiny"]


def variants():
    out = []
    for m in VARIANT_ROOTS:
        d = os.path.join(FIXTURES, m)
        if not os.path.isdir(d):
            continue
        for v in sorted(os.listdir(d)):
            vj = os.path.join(d, v, "variant.json")
            if os.path.exists(vj):
                out.append((m, v))
    return out


def _header_macro(name: str) -> str:
    """A #define of include/gfnlm.h (where versions are written, once)."""
    header = os.path.join(os.path.dirname(__file__), "..", "..", "..", "include", "gfnlm.h")
    with open(header, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "#define" and parts[1] == name:
                return parts[2].strip('"')
    raise AssertionError(f"{name} not in include/gfnlm.h")


def test_version():
    assert gfnlm.version() == _header_macro("GFN_VERSION_STRING") == "0.6.1"
    assert gfnlm.abi_version() == int(_header_macro("GFN_ABI_VERSION")) == 2


def test_system_info_names_version_and_kernels():
    info = gfnlm.system_info()
    assert info.startswith(f"gfnlm {gfnlm.version()} (ABI {gfnlm.abi_version()}) | CPUs ")
    for field in ("AVX2 = ", "AVX-VNNI = ", "AVX512-VNNI = ", "bf16 products: ", "int8/4-bit products: "):
        assert field in info, (field, info)
    assert "\n" not in info and info.isprintable()


@pytest.mark.parametrize("model_name,variant", variants())
def test_fixture_logits(model_name, variant):
    d = os.path.join(FIXTURES, model_name, variant)
    meta = json.load(open(os.path.join(d, "variant.json")))
    if meta.get("expect") == "error":
        with pytest.raises(gfnlm.GfnError) as e:
            gfnlm.Model.load(d)
        assert meta["error_contains"] in str(e.value)
        return
    ref = read_safetensors(os.path.normpath(os.path.join(d, meta["reference"])))
    tol = float(meta.get("tolerance", 1e-4))
    m = gfnlm.Model.load(d)
    ids = ref["input_ids"].astype(np.int32)
    mask = ref["attention_mask"].astype(np.int32)
    got = m.logits(ids.tolist(), attention_mask=mask.tolist())
    valid = mask.astype(bool)
    diff = np.abs(got - ref["logits"])[valid].max()
    assert diff <= tol, f"{model_name}/{variant}: max |Δlogits| = {diff}"


def test_config_and_errors():
    m = gfnlm.Model.load(os.path.join(FIXTURES, "gptj-tiny", "legacy17"))
    c = m.config
    assert c["arch"] == "gptj" and c["n_layer"] == 2 and c["n_head"] == 4 and c["rotary_dim"] == 8
    assert c["n_embd"] == 64 and c["vocab_size"] == 512 and c["n_positions"] == 64
    with pytest.raises(gfnlm.GfnError) as e:
        m.logits([1, 2, 100000])
    assert e.value.name == "GFN_ERR_OUT_OF_RANGE"
    with pytest.raises(gfnlm.GfnError) as e:
        gfnlm.Model.load("/no/such/model.onnx")
    assert e.value.name == "GFN_ERR_IO" and "/no/such/model.onnx" in str(e.value)
    with pytest.raises(gfnlm.GfnError):
        m.logits(list(range(1, 70)))  # beyond n_positions


def test_realvocab_with_tokenizer():
    d = os.path.join(FIXTURES, "gpt2-realvocab", "legacy17")
    ref = read_safetensors(os.path.join(FIXTURES, "gpt2-realvocab", "hf", "reference.safetensors"))
    m = gfnlm.Model.load(d, tokenizer=os.path.join(FIXTURES, "tokenizer"))
    ids = m.tokenizer.encode("Hello world, this is")
    assert ids == ref["input_ids"][0].tolist()
    got = m.logits(ids)
    assert np.abs(got - ref["logits"][0]).max() < 1e-4
    assert m.tokenizer.decode(ids) == "Hello world, this is"


def test_tokenizer_roundtrip_and_threads():
    tok = gfnlm.Tokenizer.load(os.path.join(FIXTURES, "tokenizer"))
    texts = ["Hello world", " Hello  world", "naïve café 東京 🤖👩‍👩‍👧", "Hello<|endoftext|>World", ""]
    for t in texts:
        assert tok.decode(tok.encode(t)) == t
    assert tok.encode("Hello<|endoftext|>World") == [15496, 50256, 10603]
    assert tok.encode("Hello<|endoftext|>World", allow_special=False) != [15496, 50256, 10603]
    errors = []

    def work():
        try:
            for _ in range(50):
                assert tok.encode("Hello world") == [15496, 995]
                try:
                    tok.decode([99999])
                except gfnlm.GfnError as e:
                    assert e.name == "GFN_ERR_OUT_OF_RANGE"
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors
