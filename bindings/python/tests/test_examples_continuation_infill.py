"""Short configurations of the sentence-continuation and infilling examples (paper §4.1, §4.2) and of the C example
that trains a sampler with a reward written in C. They need the demo model (models/demo-gpt2) and its data (data/);
GFNLM_DEMO_MODEL / GFNLM_DEMO_DATA point elsewhere. The C test also needs gcc and build/libgfnlm.so."""
import math
import os
import shutil
import subprocess

import pytest

from conftest import ROOT
from example_runner import DATA, MODEL, load_example, metrics, run_example

PROMPTS = os.path.join(DATA, "openwebtext", "prompts.txt")
LIB_DIR = os.path.dirname(os.environ.get("GFNLM_LIBRARY", os.path.join(ROOT, "build", "libgfnlm.so")))

needs_demo = pytest.mark.skipif(
    not (os.path.exists(os.path.join(MODEL, "model.onnx")) and os.path.exists(PROMPTS)),
    reason=f"the demo model ({MODEL}/model.onnx) or its data ({PROMPTS}) is absent; "
           "set GFNLM_DEMO_MODEL / GFNLM_DEMO_DATA to run these tests")


# --- metric implementations (no model needed) -----------------------------------------------------------------

def test_bleu_gleu_match_nltk():
    inf = load_example("infilling")
    # values computed with nltk 3.10.4: sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1)
    # and sentence_gleu([ref], hyp), whitespace tokens
    cases = [
        ("It is a guide to action that ensures that the military will forever heed Party commands",
         "It is a guide to action which ensures that the military always obeys the commands of the party",
         0.41180376356915777, 0.4393939393939394),
        ("the cat sat on the mat", "the cat sat on the mat", 1.0, 1.0),
        ("the cat sat on the mat", "a dog", 0.0, 0.0),
        ("the cat sat on the mat", "the cat", 0.04279677428117006, 0.16666666666666666),
        ("He went to the store and bought milk .", "She went to the shop and bought some milk .",
         0.1535259783865636, 0.35294117647058826),
        ("a b c d e", "a b c d e f g h i j k", 0.3508439695638686, 0.3684210526315789),
    ]
    for ref, hyp, bleu, gleu in cases:
        assert inf.sentence_bleu(ref.split(), hyp.split()) == pytest.approx(bleu, abs=1e-12)
        assert inf.sentence_gleu(ref.split(), hyp.split()) == pytest.approx(gleu, abs=1e-12)
    assert inf.sentence_bleu("a b".split(), []) == 0.0


def test_diversity_metrics():
    sc = load_example("sentence_continuation")
    assert sc.bag_diversity([[1, 2, 3], [1, 2, 3]]) == pytest.approx(0.0)
    assert sc.bag_diversity([[1, 2], [3, 4]]) == pytest.approx(1.0)
    assert sc.bag_diversity([[1, 1], [1, 2]]) == pytest.approx(1 - 2 / (2 * math.sqrt(2)))
    assert sc.distinct_2([[1, 2, 3], [1, 2, 4]]) == pytest.approx(3 / 4)


# --- the examples, short configurations -----------------------------------------------------------------------

@needs_demo
def test_illegal_tokens_are_single_tokens():
    import gfnlm
    sc = load_example("sentence_continuation")
    tok = gfnlm.Model.load(MODEL).tokenizer
    ids = sc.illegal_ids(tok)
    assert tok.eos_id in ids and tok.encode("\n")[0] in ids and tok.encode("A")[0] in ids
    assert tok.encode(".")[0] not in ids and tok.encode(" A")[0] not in ids
    assert len(ids) > 100


@needs_demo
def test_sentence_continuation_quick(tmp_path):
    m, out = run_example("sentence_continuation", tmp_path, timeout=600)
    methods = ["gfn", "sample", "tempered", "nucleus", "beam", "diverse_beam"]
    for k in methods:
        assert f"{k}_maxll" in m and f"{k}_div" in m
        assert -200 < m[f"{k}_maxll"] < 0, (k, m[f"{k}_maxll"])
        assert 0 <= m[f"{k}_div"] <= 1
    # beam search maximises the likelihood, at the price of diversity
    assert m["beam_maxll"] >= m["sample_maxll"]
    assert m["beam_div"] < m["sample_div"]
    assert "held-out prompt 0" in out


@needs_demo
def test_infilling_quick(tmp_path):
    m, out = run_example("infilling", tmp_path, timeout=600)
    for k in ["gfn", "prompt", "prompt_ending", "beam", "true"]:
        for s in ("logr", "logy", "bleu", "gleu"):
            assert f"{k}_{s}" in m
        assert 0 <= m[f"{k}_bleu"] <= 100 and 0 <= m[f"{k}_gleu"] <= 100
        assert m[f"{k}_logr"] < m[f"{k}_logy"] <= 0     # log p(Z Y | C) = log p(Z | C) + log p(Y | C Z)
    assert m["true_bleu"] == pytest.approx(100) and m["true_gleu"] == pytest.approx(100)
    assert "replay buffer seeded" in out


def build_c_example(tmp_path, *defines):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    if not os.path.exists(os.path.join(LIB_DIR, "libgfnlm.so")):
        pytest.skip(f"{LIB_DIR}/libgfnlm.so is absent (make lib)")
    exe = tmp_path / "train_sampler"
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", *defines,
                    "-I" + os.path.join(ROOT, "include"), os.path.join(ROOT, "examples", "c", "train_sampler.c"),
                    "-L" + LIB_DIR, "-lgfnlm", "-Wl,-rpath," + LIB_DIR, "-o", str(exe)], check=True)
    return exe


@needs_demo
def test_c_train_sampler_short(tmp_path):
    exe = build_c_example(tmp_path)
    out_dir = tmp_path / "adapter"
    p = subprocess.run([str(exe), MODEL, "6", str(out_dir)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    m = metrics(p.stdout)
    assert m["steps"] == 6
    assert 0 < m["before_one_comma"] < 1 and 0 <= m["after_one_comma"] <= 1
    a, e = m["before_one_comma"], math.exp(2.0)
    assert m["target_one_comma"] == pytest.approx(e * a / (e * a + 1 - a), abs=1e-3)
    assert m["reload_max_diff"] < 1e-5 and m["adapter_vs_base"] > 0
    assert (out_dir / "adapter_config.json").exists() and (out_dir / "adapter_model.safetensors").exists()


@needs_demo
def test_c_reward_is_the_model_itself_without_bonus(tmp_path):
    """With BONUS 0 the C reward is log p_LM(Z ⊤ | X) with the forced-stop convention: the untrained policy is
    already the target, so the sub-trajectory balance loss is 0."""
    exe = build_c_example(tmp_path, "-DBONUS=0.0")
    p = subprocess.run([str(exe), MODEL, "2", str(tmp_path / "adapter0")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    m = metrics(p.stdout)
    assert m["final_loss"] < 1e-6
    assert m["target_one_comma"] == pytest.approx(m["before_one_comma"], abs=1e-4)
