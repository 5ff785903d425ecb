"""The README's main demo: load the small model shipped in the repository and generate text with it."""
import os
import sys

import gfnlm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "demo-gpt2")
if not os.path.isdir(MODEL):  # until the demo model lands, the tiny real-vocabulary test model
    MODEL = os.path.join(ROOT, "Tests", "Fixtures", "gpt2-realvocab", "legacy17")


def main():
    model = gfnlm.Model.load(MODEL, tokenizer=None if os.path.exists(os.path.join(MODEL, "vocab.json"))
                             else os.path.join(ROOT, "Tests", "Fixtures", "tokenizer"))
    print(f"gfnlm {gfnlm.version()}: loaded {MODEL}: {model.config}")
    prompt = "The movie was"
    for s in model.generate(prompt, max_new_tokens=20, temperature=1.0, top_p=0.95, n=3, seed=1):
        print(f"  {prompt!r} → {s.text!r}  (log q = {s.logprob:.2f}, {s.finish_reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
