"""Sampling, scoring and decoding baselines from Python with the shipped model.
Usage: PYTHONPATH=bindings/python python examples/python/generate.py [model_dir] [prompt] [tokenizer_dir]"""
import os
import sys

import gfnlm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "demo-gpt2")
    prompt = sys.argv[2] if len(sys.argv) > 2 else "The movie was"
    model = gfnlm.Model.load(path, tokenizer=sys.argv[3] if len(sys.argv) > 3 else None)
    print("config:", model.config)
    print("nucleus (top_p 0.95):")
    for s in model.generate(prompt, max_new_tokens=24, top_p=0.95, n=3, seed=7):
        print(f"  {prompt}{s.text!s}  [log q = {s.logprob:.2f}, {s.finish_reason}]")
    print("tempered (T = 0.7):")
    for s in model.generate(prompt, max_new_tokens=24, temperature=0.7, n=2, seed=8):
        print(f"  {prompt}{s.text}")
    greedy = model.generate(prompt, max_new_tokens=24, temperature=0)[0]
    print(f"greedy: {prompt}{greedy.text}")
    for h in model.beam_search(prompt, num_beams=4, num_return=2, max_new_tokens=12):
        print(f"beam: {prompt}{h.text}  [log p = {h.logprob:.2f}]")
    for h in model.beam_search(prompt, num_beams=4, num_groups=4, diversity_penalty=1.0, num_return=4,
                               max_new_tokens=12):
        print(f"diverse beam: {prompt}{h.text}")
    total, per_token, stop = model.score(prompt, " great fun.", per_token=True, stop=[model.tokenizer.eos_id])
    print(f"log p(' great fun.' | prompt) = {total:.3f}; per token {[round(float(x), 2) for x in per_token]}")
    print(f"ok samples={3} beams={2}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
