"""Short configurations (--quick) of the subjectivity (paper §4.3) and arithmetic (§4.4) examples, and their
evaluation rules (answer extraction and vote, the prompt strings, the arithmetic vocabulary). The runs need the demo model (models/demo-gpt2) and its data (data/);
GFNLM_DEMO_MODEL / GFNLM_DEMO_DATA point elsewhere."""
import json
import os
import re

import pytest

from example_runner import DATA, MODEL, load_example, run_example
NEEDED = [os.path.join(MODEL, "model.onnx"), os.path.join(DATA, "subj", "train.jsonl"),
          os.path.join(DATA, "arithmetic", "heldout_5op.jsonl"),
          os.path.join(DATA, "arithmetic_with_tool", "1digit_34_op+-_hw.json")]

needs_demo = pytest.mark.skipif(
    not all(os.path.exists(p) for p in NEEDED),
    reason=f"the demo model ({MODEL}/model.onnx) or its data ({DATA}: subj/, arithmetic/, arithmetic_with_tool/) "
           "is absent; set GFNLM_DEMO_MODEL / GFNLM_DEMO_DATA to run these tests")


# --- evaluation rules (no model needed) --------------------------------------------------------------------------

def test_arithmetic_answer_extraction_and_vote():
    ar = load_example("arithmetic")
    # answer extraction and vote
    assert ar.extract_answer("Question: 9 + 4 - 8 = ? Answer: 9 + 4 = 13, 13 - 8 = 5") == 5
    assert ar.extract_answer("... = 5.") == 5
    assert ar.extract_answer("2 - 8 = -6") == -6
    assert ar.extract_answer("abc") is None           # the reference's −1, which never counts as correct here
    assert ar.extract_answer("Question: 1 + 2 = ? Answer:") is None
    assert ar.extract_answer("") is None
    assert ar.extract_answer("1 + 2 = 3, 3 + 4 =") is None   # "" after the last "=", and the last word is "="
    assert ar.extract_answer("the answer is 7.") == 7
    assert ar.vote([3, 5, 3, 5]) == 3                  # ties: the answer seen first
    assert ar.vote([None, 4, None]) is None
    assert ar.vote([5, 3, 3]) == 3


def test_arithmetic_demo_prefix_verbatim():
    ar = load_example("arithmetic")                    # the demonstration prefix, byte for byte
    assert ar.DEMO_PREFIX == (
        "Question: 6 - 0 - 4 - 8 = ? Answer: 6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6. The answer is -6.\n"
        "Question: 9 + 4 - 8 = ? Answer: 9 + 4 = 13, 13 - 8 = 5. The answer is 5.\n"
        "Question: 5 + 9 - 3 + 8 = ? Answer: 5 + 9 = 14, 14 - 3 = 11, 11 + 8 = 19. The answer is 19.\n")


def test_subjectivity_fitted_threshold():
    sj = load_example("subjectivity")
    assert sj.fit_threshold([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 0]) == 2.5      # objective iff margin > t
    assert sj.fit_threshold([5.0, 5.0, 5.0], [0, 0, 1]) == 4.0              # all objective: 2 of 3
    assert sj.fit_threshold([-3.0, 3.0], [1, 0]) == 0.0                     # ties: the smallest |t|
    assert sj.margins([(-1.0, -3.0), (-2.0, -1.0)]) == [2.0, -1.0]


def test_subjectivity_strings_and_vote():
    sj = load_example("subjectivity")
    # the X of train.10 item 0
    x = sj.X_TEMPLATE.format("another story follows the relationship between a stepfather ( neeson ) and his "
                             "young stepson .")
    assert x == ('Classify this movie review as objective or subjective: "another story follows the relationship '
                 'between a stepfather ( neeson ) and his young stepson ." This review is')
    assert sj.Y_TEXT == {0: ", so it is objective.", 1: ", so it is subjective."}
    assert sj.INVERSE_PROMPT == {0: " objective because it is", 1: " subjective because it is"}
    # 5 objective vs 5 subjective votes → subjective; a strict majority of objective → objective
    assert sj.majority([0] * 5 + [1] * 5) == 1
    assert sj.majority([0] * 6 + [1] * 4) == 0
    assert sj.majority([1] * 10) == 1
    assert sj.predict([(-1.0, -2.0), (-2.0, -1.0), (-1.0, -1.0)]) == [0, 1, 1]
    assert sj.cut_rationale([5, 6, 50256, 7], 50256) == [5, 6]
    assert sj.cut_rationale([5, 6], 50256) == [5, 6]


def test_subjectivity_reward_wrong_label_penalty():
    """log R = log p(Z Y_true | X), minus 50·T_R when the label comparison picks the wrong label (so −50 after
    the trainer divides by T_R); scores are requested once per state and label."""
    sj = load_example("subjectivity")

    class FakeModel:
        def __init__(self):
            self.calls = 0

        def score(self, contexts, conts):
            self.calls += 1
            # the last but one token of Y is the label: 1 = objective, 2 = subjective; Z = [9] favours subjective
            return [(-1.0 if c[-2] == 1 else -3.0) + (-5.0 if 9 in c[:-3] and c[-2] == 1 else 0.0) for c in conts]

    fm = FakeModel()
    y = {0: [7, 1, 0], 1: [7, 2, 0]}
    r = sj.SubjectivityReward(fm, xs=[[100], [101]], labels=[0, 1], y_ids=y)   # told T_R by the trainer
    assert r(0, [[], [4]], 1.2) == [-1.0, -1.0]                      # objective, picked: no penalty
    assert r(0, [[9]], 1.2) == [pytest.approx(-6.0 - 50 * 1.2)]     # objective, but subjective is preferred
    assert r(1, [[], [9]], 1.2) == [pytest.approx(-3.0 - 50 * 1.2), -3.0]
    calls = fm.calls
    assert r(0, [[9], [4]], 1.0) == [pytest.approx(-56.0), -1.0]    # cached: no new scoring call
    assert fm.calls == calls


# --- the examples, short configurations ------------------------------------------------------------------------

def zero_shot_accuracy(n_test):
    """Zero-shot accuracy on the first n_test clean held-out items, computed here independently of the example:
    two scoring calls per item (log p(" objective" | X) vs log p(" subjective" | X)) instead of its one row."""
    import gfnlm
    sj = load_example("subjectivity")
    model = gfnlm.Model.load(MODEL)
    tok = model.tokenizer
    with open(os.path.join(DATA, "subj", "train.50.jsonl")) as f:
        in50 = {json.loads(line)["text"] for line in f if line.strip()}
    with open(os.path.join(DATA, "subj", "train.jsonl")) as f:
        lines = f.read().splitlines()[7000:8000]
    items = [r for r in (json.loads(line) for line in lines if line.strip()) if r["text"] not in in50][:n_test]
    max_x = model.config["n_positions"] - 5 - len(tok.encode(sj.Y_TEXT[1])) - 1
    xs = [tok.encode(sj.X_TEMPLATE.format(r["text"]))[:max_x] for r in items]
    obj = model.score(xs, [tok.encode(" objective")] * len(xs))
    subj = model.score(xs, [tok.encode(" subjective")] * len(xs))
    correct = sum(int((0 if o > s else 1) == r["label"]) for o, s, r in zip(obj, subj, items))
    return correct / len(items)


@needs_demo
def test_subjectivity_quick(tmp_path):
    m, out = run_example("subjectivity", tmp_path)
    n = 12
    assert m["n_train"] == 10 and m["n_test"] == n
    keys = [f"{k}_{s}" for k in ("zero_shot", "few_shot", "sft", "gfn", "gfn_mstep") for s in ("acc", "pred_obj")]
    keys += [f"{k}_cal_acc" for k in ("zero_shot", "sft", "gfn", "gfn_mstep")]
    for k in keys:
        assert 0.0 <= m[k] <= 1.0, k
        # an accuracy over n items: a multiple of 1/n (printed with 4 decimals)
        assert abs(m[k] * n - round(m[k] * n)) <= n * 5e-5 + 1e-9, (k, m[k])
    # 10 × 8 rationales for the labelled examples, each either agreeing with the true label or not
    assert 0.0 <= m["train_agree"] <= 1.0 and abs(m["train_agree"] * 80 - round(m["train_agree"] * 80)) <= 80 * 5e-5
    assert m["zero_shot_acc"] == pytest.approx(zero_shot_accuracy(n), abs=5e-5)
    # an argmax that predicts one label everywhere scores that label's share of the test items
    test_obj = float(re.search(r"test: (\d+)% objective", out).group(1)) / 100
    for k in ("zero_shot", "few_shot", "sft", "gfn", "gfn_mstep"):
        if m[f"{k}_pred_obj"] in (0.0, 1.0):
            share = test_obj if m[f"{k}_pred_obj"] == 1.0 else 1 - test_obj
            assert m[f"{k}_acc"] == pytest.approx(share, abs=0.01), k
    assert "buffer seeded with" in out and "E-step" in out and "M-step" in out


def calculator_results(out):
    """(a, op, b, result) for every "a op b = result" step that starts a comma/period-separated chunk of the
    rationales the example prints ('Question: … Answer: …' → vote); the result is the calculator's output, as the
    policy never writes after "=" (result None when the rationale ends right after "=")."""
    found = []
    for line in out.splitlines():
        mt = re.match(r"\s+'Question: [^']*? Answer:(.*)' → ", line)
        if not mt:
            continue
        for mm in re.finditer(r"(?:^|[,.])\s*(\d) ([+-]) (\d) =( -?\d+)?", mt.group(1)):
            a, op, b, r = int(mm.group(1)), mm.group(2), int(mm.group(3)), mm.group(4)
            found.append((a, op, b, None if r is None else int(r), mm.end() == len(mt.group(1))))
    return found


def test_calculator_results_parser():
    out = ("    'Question: 9 + 9 - 7 = ? Answer: 1 + 2 = 3 = 3, 4 - 6 = -2, 12 + 3 = 15.' → 4 (true 11)\n"
           "    'Question: 1 + 1 = ? Answer: 5 + 5 =' → None (true 2)\n")
    assert calculator_results(out) == [(1, "+", 2, 3, False), (4, "-", 6, -2, False), (5, "+", 5, None, True)]


@needs_demo
def test_arithmetic_quick(tmp_path):
    m, out = run_example("arithmetic", tmp_path)
    for method in ("gfn", "sft", "kshot3"):
        for k in (3, 4, 5):
            assert 0.0 <= m[f"{method}_acc{k}"] <= 1.0
            assert abs(m[f"{method}_acc{k}"] * 2 - round(m[f"{method}_acc{k}"] * 2)) <= 1e-4   # 2 problems each
    assert m["allowed_vocab"] == 1805                 # 1804 arithmetic ids + ⊤
    assert m["calculator_fixed"] == 0 and m["n_eval"] == 2
    assert "seeded" in out
    # the calculator ran inside the sampled rationales: every two-operand step carries its exact result
    steps = calculator_results(out)
    assert steps, "no 'a op b =' step in the printed rationales"
    for a, op, b, r, at_end in steps:
        assert r == (a + b if op == "+" else a - b) or (r is None and at_end), (a, op, b, r)
