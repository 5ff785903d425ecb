"""Model.load(weight_cache=…): the first read-write load writes a converted weight cache beside the model, later
loads read it (same logits bit for bit), a damaged or stale cache is not used (the log handler says why) and the
model still loads correctly; the C constants and option checks."""
import os
import shutil

import numpy as np
import pytest

import gfnlm
from gfnlm import _lib
from conftest import FIXTURES

IDS = [[1, 5, 9, 33, 2, 7, 11, 4], [3, 3, 8, 1, 0, 2, 6, 5]]


@pytest.fixture
def model_dir(tmp_path):
    src = os.path.join(FIXTURES, "gptj-tiny", "external-onefile")
    for f in os.listdir(src):
        if f.startswith("model.onnx"):
            shutil.copy(os.path.join(src, f), tmp_path / f)
    return tmp_path


@pytest.fixture
def logs():
    seen = []
    gfnlm.set_log_handler(lambda level, message: seen.append((level, message)))
    yield seen
    gfnlm.set_log_handler(None)


@pytest.mark.parametrize("weights", ["fp32", "bf16", "int8", "q4"])
def test_round_trip(model_dir, logs, weights):
    reference = np.asarray(gfnlm.Model.load(model_dir, weights=weights).logits(IDS))
    cache = model_dir / f"model.onnx.gfnlm-{weights}.cache"
    first = gfnlm.Model.load(model_dir, weights=weights, weight_cache="readwrite")
    assert cache.exists()
    assert any(level == gfnlm.LOG_INFO and "wrote the weight cache" in m for level, m in logs), logs
    logs.clear()
    second = gfnlm.Model.load(model_dir, weights=weights, weight_cache="readonly")
    assert any(level == gfnlm.LOG_INFO and "from the weight cache" in m for level, m in logs), logs
    assert np.array_equal(np.asarray(first.logits(IDS)), reference)
    assert np.array_equal(np.asarray(second.logits(IDS)), reference)


def test_damaged_and_stale_caches_are_not_used(model_dir, logs):
    reference = np.asarray(gfnlm.Model.load(model_dir, weights="int8").logits(IDS))
    gfnlm.Model.load(model_dir, weights="int8", weight_cache="readwrite")
    cache = model_dir / "model.onnx.gfnlm-int8.cache"
    good = cache.read_bytes()
    bad = bytearray(good)
    bad[-3] ^= 0x10
    cache.write_bytes(bytes(bad))
    logs.clear()
    m = gfnlm.Model.load(model_dir, weights="int8", weight_cache="readonly")
    assert np.array_equal(np.asarray(m.logits(IDS)), reference)
    assert any(level == gfnlm.LOG_WARN and "checksum mismatch" in msg for level, msg in logs), logs
    assert cache.read_bytes() == bytes(bad)
    # read-write repairs it
    gfnlm.Model.load(model_dir, weights="int8", weight_cache="readwrite")
    assert cache.read_bytes() == good
    # a touched source: stale
    st = os.stat(model_dir / "model.onnx")
    os.utime(model_dir / "model.onnx", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    logs.clear()
    m = gfnlm.Model.load(model_dir, weights="int8", weight_cache="readonly")
    assert np.array_equal(np.asarray(m.logits(IDS)), reference)
    assert any(level == gfnlm.LOG_INFO and "changed since the cache was written" in msg for level, msg in logs), logs


def test_cache_directory_and_options(model_dir, tmp_path_factory):
    where = tmp_path_factory.mktemp("caches")
    gfnlm.Model.load(model_dir, weights="q4", weight_cache="readwrite", weight_cache_dir=where)
    names = os.listdir(where)
    assert len(names) == 1 and names[0].startswith("model.onnx.") and names[0].endswith(".gfnlm-q4.cache"), names
    assert not any(n.endswith(".cache") for n in os.listdir(model_dir))
    with pytest.raises(ValueError):
        gfnlm.Model.load(model_dir, weight_cache="yes")
    with pytest.raises(gfnlm.InvalidArgumentError) as e:
        gfnlm.Model.load(model_dir, weight_cache="readwrite", weight_cache_dir="")
    assert "weight_cache_dir" in str(e.value)
    assert (_lib.GFN_WEIGHT_CACHE_OFF, _lib.GFN_WEIGHT_CACHE_READ_WRITE, _lib.GFN_WEIGHT_CACHE_READ_ONLY) == (0, 1, 2)
    assert _lib.gfn_model_default_params().weight_cache == 0
