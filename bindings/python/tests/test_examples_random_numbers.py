"""Short configuration (--quick) of the random-integer example (paper §2) on the demo model, and its evaluation
rule. GFNLM_DEMO_MODEL points elsewhere."""
import json
import math
import os

import pytest

from example_runner import MODEL, load_example, run_example

needs_demo = pytest.mark.skipif(not os.path.exists(os.path.join(MODEL, "model.onnx")),
                                reason=f"the demo model ({MODEL}/model.onnx) is absent")
KEYS = ["base_valid", "base_kl", "gfn_valid", "gfn_kl", "baseline_valid", "baseline_kl", "ppo_valid", "ppo_kl"]


def test_parse_number_is_the_references_rule():
    parse = load_example("random_numbers").parse_number
    assert parse("42") == 42 and parse("0") == 0 and parse("99") == 99
    assert parse("7 \n") == 7                      # rstrip, as the reference
    assert parse("100") is None and parse("-1") is None
    assert parse(" 42x") is None and parse("seven") is None and parse("") is None


@needs_demo
def test_quick_run(tmp_path):
    m, _ = run_example("random_numbers", tmp_path, data=False)
    assert list(m) == KEYS
    for k in KEYS:
        assert math.isfinite(m[k]), k
        assert (0 <= m[k] <= 1) if k.endswith("valid") else m[k] >= 0, (k, m[k])
    # the base fraction agrees with the exact value on the model card (2,000 samples: s.d. ≈ 0.01)
    info = json.load(open(os.path.join(MODEL, "build_info.json")))
    assert abs(m["base_valid"] - info["rng_exact"]["valid"]) < 0.05, (m["base_valid"], info["rng_exact"]["valid"])
    # twenty GFlowNet steps already move mass onto the integers
    assert m["gfn_valid"] > m["base_valid"], m
