"""Runs from an installed wheel (Tests/Install/test_wheel.sh, make check-clean-install): imports gfnlm with no
GFNLM_LIBRARY and no source checkout on any path, checks that the library is the wheel's own copy, samples from the
demo model and runs three GFlowNet steps.

    python wheel_smoke.py MODEL_DIR
"""
import importlib.metadata
import math
import os
import sys

assert "GFNLM_LIBRARY" not in os.environ, "GFNLM_LIBRARY must be unset"
import gfnlm  # noqa: E402

package_dir = os.path.dirname(os.path.abspath(gfnlm.__file__))
assert gfnlm.library_path == os.path.join(package_dir, "libgfnlm.so"), gfnlm.library_path
mapped = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libgfnlm" in line})
assert mapped == [os.path.realpath(gfnlm.library_path)], mapped
assert gfnlm.__version__ == importlib.metadata.version("gfnlm"), (gfnlm.__version__,
                                                                  importlib.metadata.version("gfnlm"))
for p in sys.path + os.environ.get("LD_LIBRARY_PATH", "").split(":"):
    assert not os.path.exists(os.path.join(p, "build", "libgfnlm.so")), f"a build/ is reachable through {p}"
print(f"gfnlm {gfnlm.__version__} (ABI {gfnlm.abi_version()}) from {gfnlm.library_path}")

with gfnlm.Model.load(sys.argv[1]) as model:
    print(model)
    tok = model.tokenizer
    prompt = tok.encode("The following is a random integer drawn uniformly between 0 and 100: ")
    samples = model.generate(prompt, max_new_tokens=4, n=3, seed=1, stop=[tok.eos_id])
    assert len(samples) == 3 and all(s.tokens for s in samples)
    for s in samples:
        assert math.isfinite(s.logprob) and abs(float(s.token_logprobs.sum()) - s.logprob) < 1e-3
        print(f"  sample {s.text!r} log p {s.logprob:.3f}")
    with gfnlm.LoRA(model, r=4, alpha=4, targets=["c_attn"], seed=0) as lora, \
            gfnlm.rewards.RandomInteger(model) as reward, \
            gfnlm.GFlowNetTrainer(model, lora, reward, prompts=[prompt], objective="tb", min_length=1, max_length=3,
                                  batch_size=4, lr=1e-3, warmup_steps=0, p_on_policy=1.0, p_replay=0.0,
                                  seed=3) as trainer:
        for i in range(3):
            st = trainer.step()
            assert st["step"] == i and st["applied"] and math.isfinite(st["loss"]), st
            print(f"  GFlowNet step {st['step'] + 1}: loss {st['loss']:.4f} mean log R {st['mean_log_r']:.3f}")
        drawn = trainer.sample(prompt, n=4, seed=5)
        assert len(drawn) == 4
        print(f"  trained sampler: {[s.text for s in drawn]}")
print("wheel smoke test passed")
