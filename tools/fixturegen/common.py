"""Shared by the fixture builders: paths, tolerances, the result table, the tiny model configs, the
PyTorch reference tensors.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, GPTJConfig, GPTJForCausalLM

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parent.parent.parent
FIX = REPO / "Tests" / "Fixtures"
PROMPTS = Path(os.environ.get("GFNLM_PROMPTS", REPO / "data" / "openwebtext" / "prompts.txt"))

TOL_FP32 = 1e-5       # ORT vs torch, checked by this script
TOL_FP16 = 5e-3
TOL_NATIVE_FP32 = 1e-4  # written into variant.json: what the Swift tests should accept
TOL_NATIVE_FP16 = 5e-3

VOCAB_SHA = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
MERGES_SHA = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True, warn_only=True)

RESULTS: list[dict] = []   # the ORT-vs-torch table
FAILURES: list[str] = []


def log(*a):
    print(*a, flush=True)


def seed_all(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, obj, indent=2):
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

def gpt2_tiny_config():
    return GPT2Config(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                      activation_function="gelu_new", tie_word_embeddings=True,
                      bos_token_id=511, eos_token_id=511)


def gptj_tiny_config():
    return GPTJConfig(vocab_size=512, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=64,
                      activation_function="gelu_new", tie_word_embeddings=False,
                      bos_token_id=511, eos_token_id=511)


def gpt2_realvocab_config():
    return GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                      activation_function="gelu_new", tie_word_embeddings=True,
                      bos_token_id=50256, eos_token_id=50256)


def build_model(arch: str, config, seed: int, attn: str | None = None):
    """A random model whose every bias and LayerNorm weight is random (no two equal tensors)."""
    seed_all(seed)
    cls = GPT2LMHeadModel if arch == "gpt2" else GPTJForCausalLM
    # attn None = the transformers default: sdpa for GPT-2, eager for GPT-J (its only one)
    config.architectures = [cls.__name__]
    model = cls._from_config(config, attn_implementation=attn) if attn else cls._from_config(config)
    g = torch.Generator().manual_seed(seed + 1)
    ln_params = set()
    emb_params = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            ln_params.add(f"{mname}.weight")
            ln_params.add(f"{mname}.bias")
        if isinstance(mod, torch.nn.Embedding):
            emb_params.add(f"{mname}.weight")
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name in ln_params and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith(".bias"):
                p.copy_(0.1 * r)
            elif name in emb_params:
                p.copy_(0.1 * r)
            else:
                p.copy_(0.05 * r)
    model.eval()
    return model


def clone_with(model, attn: str | None = None, round_to: torch.dtype | None = None):
    """A copy of the model (fp32), optionally with another attention implementation and with
    its weights rounded to fp16/bf16 (then back to fp32)."""
    m = type(model)._from_config(model.config, attn_implementation=attn or model.config._attn_implementation)
    m.load_state_dict(model.state_dict())
    if round_to is not None:
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.to(round_to).to(torch.float32))
    m.eval()
    return m


def n_heads_dims(config):
    n_head = config.n_head
    return n_head, config.n_embd // n_head


# --------------------------------------------------------------------------------------------
# Reference tensors
# --------------------------------------------------------------------------------------------

def make_inputs(vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (2, 8), generator=g, dtype=torch.int64)
    attention_mask = torch.ones(2, 8, dtype=torch.int64)
    attention_mask[1, :3] = 0
    input_ids[1, :3] = 0  # pad id 0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    step_input_ids = torch.randint(1, vocab, (2, 1), generator=g, dtype=torch.int64)
    lm_input_ids = torch.randint(1, vocab, (2, 8), generator=g, dtype=torch.int64)
    return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                step_input_ids=step_input_ids, lm_input_ids=lm_input_ids)


def compute_reference(model, inp, with_grads: bool):
    model.eval()
    out = {k: inp[k].clone() for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        r = model(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"],
                  position_ids=inp["position_ids"], use_cache=True, output_hidden_states=True)
        out["logits"] = r.logits.float()
        out["hidden_last"] = r.hidden_states[-1].float()
        step_mask = torch.cat([inp["attention_mask"], torch.ones(2, 1, dtype=torch.int64)], dim=1)
        step_pos = inp["position_ids"][:, -1:] + 1
        s = model(input_ids=inp["step_input_ids"], attention_mask=step_mask, position_ids=step_pos,
                  past_key_values=r.past_key_values, use_cache=True)
        out["step_input_ids"] = inp["step_input_ids"].clone()
        out["step_logits"] = s.logits[:, -1, :].float()
        # check: the cached step equals a full forward over the 9 tokens
        full_ids = torch.cat([inp["input_ids"], inp["step_input_ids"]], dim=1)
        full_pos = (step_mask.cumsum(-1) - 1).clamp(min=0)
        f = model(input_ids=full_ids, attention_mask=step_mask, position_ids=full_pos, use_cache=False)
        d = (f.logits[:, -1, :] - s.logits[:, -1, :]).abs().max().item()
        assert d < 1e-4, f"cached step differs from full forward by {d}"
    out["lm_input_ids"] = inp["lm_input_ids"].clone()
    model.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(with_grads):
        r = model(input_ids=inp["lm_input_ids"], labels=inp["lm_input_ids"], use_cache=False)
        out["lm_loss"] = r.loss.detach().float().reshape(())
        if with_grads:
            r.loss.backward()
            for name, p in model.named_parameters():
                assert p.grad is not None, name
                out[f"grad.{name}"] = p.grad.detach().float().clone()
            model.zero_grad(set_to_none=True)
    for k, v in out.items():
        assert torch.isfinite(v.float()).all(), f"non-finite reference tensor {k}"
    return {k: v.contiguous() for k, v in out.items()}


def hf_state_dict(model):
    sd = model.state_dict()
    if model.config.tie_word_embeddings and "lm_head.weight" in sd:
        del sd["lm_head.weight"]
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}
