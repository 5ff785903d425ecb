#!/usr/bin/env python3
"""Build models/demo-gpt2: a small GPT-2 with the real GPT-2 vocabulary, trained from scratch on data/.

Rebuild (from the repository root, ~50 min on 2 cores: stage 1 ~32, stage 2 ~15, evaluation ~5):

    python3 -m venv VENV && VENV/bin/pip install -r tools/requirements-demo.txt
    VENV/bin/python tools/train_demo_model.py          # the build steps live in tools/demomodel/

Reads only files of this repository: data/ (text copied from the paper's repository, MIT) and
models/demo-gpt2/vocab.json + merges.txt (GPT-2 BPE). Writes models/demo-gpt2/{model.onnx, config.json,
README.md, rng_base_distribution.json} and data/arithmetic/heldout_{3,4,5}op.jsonl (held-out problems
that never occur in the training text). Every random choice is seeded; the same command gives the same
corpus and, up to torch's CPU floating-point nondeterminism, the same model.

What it does
1. Corpus (one epoch, documents shuffled, separated by <|endoftext|> = 50256, packed into 128-token rows):
   * "stories": 5 consecutive lines of data/openwebtext/prompts.txt (lines 0-9499; 9500-9999 held out).
     Each line is tokenized on its own and the ids are concatenated, so a line ends with its trailing-space
     token (220) and the next line starts without a leading space -- exactly what the model sees when an
     example feeds it a prompt line (ending in " ") and samples the next sentence.
   * movie-review sentences: the `text` of data/subj/train.jsonl lines 0-6999 (7000-7999 held out; labels
     are never used).
   * arithmetic: the paper's 50 worked rationales plus generated problems with 3-5 one-digit operands and
     + / -, in the format of the paper's arithmetic data ("Question: 6 - 0 - 4 - 8 = ? Answer: 6 - 0 = 6, 6 - 4 = 2,
     2 - 8 = -6. The answer is -6."), 1-4 per document joined by "\n" like the reward's few-shot prefix;
     a quarter have no space after "Answer:" (the tool-mode seed format). The held-out problems are excluded.
   * random numbers: token level, the ids of "The following is a random integer drawn uniformly between 0
     and 100: " (ends with 220) + a continuation + 50256. Continuations come from a deliberately skewed,
     partly invalid distribution (RNG_TABLE below) so that the GFlowNet demo has something to fix.
2. Training: GPT2LMHeadModel (n_embd 128, n_layer 6, n_head 4, n_positions 256, gelu_new, tied head,
   no dropout), AdamW, linear warm-up + cosine decay, batch 8 x 128 tokens, 1 epoch, torch.set_num_threads(2).
   Speed-up that does not change the model family: the ~19k GPT-2 ids that never occur in the training
   text all share ONE embedding row while training, so the softmax over them is computed as one column
   (logit + log(count)); after training every unseen id gets that shared row. The result is an ordinary
   50257-row tied GPT-2 whose training loss is the exact full-vocabulary cross-entropy.
2b. Stage 2, "number drill" (number_drill()): S2_STEPS more steps where half of every batch is fresh documents of
   the other number prompts and half is stage-1 rows, so that the tied embedding and final LayerNorm can put
   (nearly) all of the mass on the 100 integers -- the GFlowNet demo's target. `--stage2-only` runs it (and
   everything after it) from the stage-1 weights saved at --checkpoint.
3. Evaluation on the shipped weights (fp16-rounded, fp32 compute): validation perplexity on the held-out
   prompt lines; the base distribution of the random-number prompt from pure ancestral samples at T=1;
   greedy and sampled continuations.
4. Export: legacy torch.onnx exporter (opset 17; inputs input_ids, attention_mask; output logits; dynamic
   batch and sequence; positions = clamp(cumsum(mask)-1, 0) inside the graph, so left padding works), the
   tied head's duplicated copy removed (optimum's tied-weight dedup: head = Transpose(wte) -> MatMul),
   weights converted to fp16 with onnxruntime's converter (keep_io_types: inputs int64, logits float32),
   then checked against PyTorch in onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import demomodel  # noqa: F401  (first: sets the environment before torch and transformers are imported)
import numpy as np
import torch

from demomodel.common import DATA, OUT, RNG_PROMPT, RNG_PROMPT_IDS, SEED, VOCAB, log, tokenizer
from demomodel.corpus import build_corpus, rng_design_stats
from demomodel.training import gpt2_config, number_drill, round_fp16_, train
from demomodel.evaluation import arithmetic_accuracy, perplexity, rng_exact, rng_reachable, rng_stats, sample
from demomodel.export import export_onnx
from demomodel.card import md_escape, write_card


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-steps", type=int, default=None, help="stop early (development only; never for the shipped model)")
    ap.add_argument("--rng-samples", type=int, default=100000)
    ap.add_argument("--card-only", action="store_true", help="only rewrite README.md from build_info.json")
    ap.add_argument("--reach-only", action="store_true",
                    help="only (re)compute rng_reachable() from --checkpoint into build_info.json and README.md")
    ap.add_argument("--checkpoint", default="/tmp/demo-gpt2-trained.pt",
                    help="the trained torch weights are saved here (not part of the repository)")
    ap.add_argument("--eval-only", action="store_true",
                    help="skip training: load --checkpoint, then evaluate, export and write the card")
    ap.add_argument("--stage2-only", action="store_true",
                    help="load the stage-1 weights from --checkpoint, then run stage 2, evaluate, export, write the card")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help="where model.onnx, config.json, README.md go")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    import transformers
    import onnxruntime
    t_all = time.time()
    tok = tokenizer()
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    if args.card_only:
        write_card(json.loads((OUT / "build_info.json").read_text()), OUT)
        return
    if args.reach_only:
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel._from_config(gpt2_config(VOCAB), attn_implementation="eager")
        final = Path(args.checkpoint).with_name(Path(args.checkpoint).stem + "-stage2" + Path(args.checkpoint).suffix)
        model.load_state_dict(torch.load(final, weights_only=True)["state_dict"], strict=False)
        model.tie_weights()
        model.eval()
        with torch.no_grad():
            reach = rng_reachable(model, tok)
        log(f"reachable: {reach}")
        info = json.loads((OUT / "build_info.json").read_text())
        info["rng_reachable"] = reach
        (OUT / "build_info.json").write_text(json.dumps(info, indent=1) + "\n")
        write_card(info, OUT)
        return

    log("== corpus")
    corpus = build_corpus(tok, random.Random(SEED))
    for n_ops, items in corpus["heldout"].items():
        p = DATA / "arithmetic" / f"heldout_{n_ops}op.jsonl"
        p.write_text("".join(json.dumps(x) + "\n" for x in items))
    rows = corpus["rows"]
    seen = torch.unique(rows)
    design_valid, design_kl = rng_design_stats(corpus["table"], tok)
    log(f"{corpus['n_tokens']:,} tokens, {rows.shape[0]} rows, {len(seen)} distinct ids; {corpus['stats']}")
    log(f"random-number table by design: valid {design_valid:.3f}, KL(valid || U) {design_kl:.3f}")

    ckpt = Path(args.checkpoint)
    s2_path = ckpt.with_name(ckpt.stem + "-stage2" + ckpt.suffix)   # the final (shipped) weights
    if args.eval_only or args.stage2_only:
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel._from_config(gpt2_config(VOCAB), attn_implementation="eager")
        blob = torch.load(s2_path if args.eval_only else ckpt, weights_only=True)
        model.load_state_dict(blob["state_dict"], strict=False)
        model.tie_weights()
        model.eval()
        tinfo = json.loads(blob["tinfo"])
        log(f"== loaded {ckpt} (no stage-1 training)")
    else:
        log("== train")
        model, tinfo = train(rows, seen, args.max_steps)
        round_fp16_(model)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
                    "tinfo": json.dumps(tinfo)}, ckpt)
        log(f"saved the stage-1 weights (fp16-rounded) to {ckpt}")
    if args.eval_only:
        s2 = tinfo.get("stage2")
    else:
        log("== stage 2: number drill")
        s2 = number_drill(model, rows, seen, tok)
        round_fp16_(model)
        tinfo["stage2"] = s2
        torch.save({"state_dict": {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
                    "tinfo": json.dumps(tinfo)}, s2_path)
        log(f"saved the stage-2 weights (fp16-rounded) to {s2_path}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"trained {tinfo['steps']} steps in {tinfo['train_time_s'] / 60:.1f} min, final loss {tinfo['final_train_loss']:.3f}, "
        f"{n_params:,} params")

    log("== evaluate")
    val_ppl, val_tokens = perplexity(model, tok, corpus["val_lines"])
    subj_ppl, _ = perplexity(model, tok, corpus["subj_val"])
    log(f"validation perplexity (held-out prompts) {val_ppl:.2f} over {val_tokens} tokens; held-out subj {subj_ppl:.2f}")
    r = rng_stats(model, tok, args.rng_samples, SEED, n_full=min(10000, args.rng_samples))
    log(f"random numbers sampled ({args.rng_samples} strict, {r['n_full']} full)")
    log(f"random numbers: valid {r['valid']:.3f} KL {r['kl_valid']:.3f} support {r['support']}; "
        f"lenient valid {r['parse_valid']:.3f} KL {r['kl_parse']:.3f}")
    log("top: " + repr(r["top"][:12]))
    rx = rng_exact(model, tok)
    log(f"random numbers, exact: valid {rx['valid']:.4f} KL {rx['kl_valid']:.4f} (q min {rx['min_q']:.5f} max {rx['max_q']:.4f}); "
        f"p(first = number) {rx['p_first_is_number']:.3f}, p(100) {rx['p_first_is_100']:.3f}, p(eos) {rx['p_first_is_eos']:.3f}")
    reach = rng_reachable(model, tok)
    log(f"random numbers, reachable by LoRA on the blocks: KL(U || p) {reach['best_kl_u_p']:.4f}, mass on 0..99 "
        f"{reach['mass']:.4f}, KL(q || U) {reach['kl_q_u']:.4f}; other number prompts' own mass {reach['variant_prompt_mass']}")
    arith = arithmetic_accuracy(model, tok, corpus["heldout"])
    for k, v in arith.items():
        log(f"arithmetic {k} operands, greedy, no calculator: acc {v['acc']:.2f}, answered {v['answered']:.2f}; {v['example']!r}")
    gen = torch.Generator().manual_seed(SEED)
    sample_prompts = [
        "The city council",
        corpus["val_lines"][0],
        corpus["val_lines"][3],
        "the movie is",
        "Question: 7 + 2 - 5 = ? Answer:",
        "Question: 3 - 8 + 6 + 1 = ? Answer:",
    ]
    samples = []
    for pr in sample_prompts:
        ids = tok(pr)["input_ids"]
        for mode in ("greedy", "sample", "sample"):
            out = sample(model, ids, 1, max_new=40, gen=gen, greedy=(mode == "greedy"))[0]
            text = tok.decode(out)
            shown = pr if len(pr) <= 70 else "…" + pr[-69:]
            samples.append(dict(mode=mode, prompt=md_escape(shown), text=md_escape(text)))
            log(f"[{mode}] {pr!r} -> {text!r}")

    log("== export")
    model.config.architectures = ["GPT2LMHeadModel"]
    exp = export_onnx(model, tok, OUT / "model.onnx")
    log(f"model.onnx {exp['bytes']:,} bytes; onnxruntime vs torch: max|dlogit| {exp['max_abs_logit_diff']:.5f}, "
        f"mean {exp['mean_abs_logit_diff']:.6f}, max|dlogprob| {exp['max_abs_logprob_diff']:.5f}, "
        f"argmax agreement {exp['same_argmax']:.3f}; {exp['initializer_dtypes']}")
    if exp["bytes"] > 20 * 1000 * 1000:
        sys.exit("model.onnx is larger than 20 MB")
    if exp["max_abs_logprob_diff"] > 0.1:
        sys.exit("onnxruntime and torch disagree")
    model.config.save_pretrained(OUT)
    (OUT / "generation_config.json").unlink(missing_ok=True)
    rng_json = dict(prompt=RNG_PROMPT, prompt_ids=RNG_PROMPT_IDS, n_samples=r["n"], n_full_samples=r["n_full"],
                    temperature=1.0, max_new_tokens=5,
                    valid=r["valid"], kl_valid_vs_uniform=r["kl_valid"], lenient_valid=r["parse_valid"],
                    lenient_kl=r["kl_parse"], counts_0_99=r["counts"], top_continuations=r["top"],
                    design_valid=design_valid, design_kl=design_kl, exact=rx)
    (OUT / "rng_base_distribution.json").write_text(json.dumps(rng_json, indent=1) + "\n")
    info = dict(corpus=dict(stats=corpus["stats"], n_tokens=corpus["n_tokens"], n_rows=int(rows.shape[0]),
                            n_arith_lines=corpus["n_arith_lines"]),
                design=dict(valid=design_valid, kl=design_kl), train=tinfo, rng=r, export=exp,
                val_ppl=val_ppl, val_tokens=val_tokens, rng_exact=rx, rng_reachable=reach, arith=arith, subj_ppl=subj_ppl, samples=samples, n_params=n_params,
                n_params_wte=model.transformer.wte.weight.numel(),
                versions=dict(transformers=transformers.__version__, onnxruntime=onnxruntime.__version__))
    info["total_time_s"] = time.time() - t_all
    (OUT / "build_info.json").write_text(json.dumps(info, indent=1) + "\n")
    write_card(info, OUT)
    log(f"== done in {(time.time() - t_all) / 60:.1f} min: {OUT}")


if __name__ == "__main__":
    main()
