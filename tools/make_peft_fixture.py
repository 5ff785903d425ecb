"""Writes Tests/Fixtures/peft/<model>/: a LoRA adapter saved by Hugging Face PEFT itself (random non-zero A and B)
for the tiny fixture models, and reference.safetensors with the PEFT model's logits, so that the tests check
gfnlm's PEFT loader against real PEFT output.  Run: <venv with tools/requirements-fixtures.txt>/bin/python
tools/make_peft_fixture.py  (deterministic; rewrites the folder)."""
import os
import shutil

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIX = os.path.join(ROOT, "Tests", "Fixtures")
# fixture name -> (model under Tests/Fixtures, LoraConfig arguments). The "-head" cases also adapt lm_head: tied to
# the token embedding on GPT-2 (PEFT wraps the head Linear; the embedding lookup is unchanged), untied on GPT-J.
CASES = {
    "gpt2-tiny": ("gpt2-tiny", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)),
    "gptj-tiny": ("gptj-tiny", dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"])),
    "gpt2-tiny-head": ("gpt2-tiny", dict(r=4, lora_alpha=8, target_modules=["c_attn", "lm_head"], fan_in_fan_out=True)),
    "gptj-tiny-head": ("gptj-tiny", dict(r=4, lora_alpha=8, target_modules=["v_proj", "lm_head"])),
}
SEEDS = {"gpt2-tiny": 1, "gptj-tiny": 2, "gpt2-tiny-head": 3, "gptj-tiny-head": 4}


def main():
    out_root = os.path.join(FIX, "peft")
    shutil.rmtree(out_root, ignore_errors=True)
    torch.manual_seed(0)
    for name, (model_name, cfg) in CASES.items():
        hf = os.path.join(FIX, model_name, "hf")
        config = AutoConfig.from_pretrained(hf)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        state = load_file(os.path.join(hf, "weights.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all("lm_head" in m or "attn.bias" in m or "masked_bias" in m for m in missing), missing
        model.tie_weights()
        model.eval()
        peft = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **cfg))
        g = torch.Generator().manual_seed(SEEDS[name])
        with torch.no_grad():
            for n, p in peft.named_parameters():
                if "lora_A" in n or "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        out = os.path.join(out_root, name)
        peft.save_pretrained(os.path.join(out, "adapter"))
        ref = load_file(os.path.join(hf, "reference.safetensors"))
        ids = ref["lm_input_ids"][:1]
        with torch.no_grad():
            logits = peft(input_ids=ids).logits
            base = peft.get_base_model()
            with peft.disable_adapter():
                base_logits = peft(input_ids=ids).logits
        assert (logits - base_logits).abs().max() > 1e-2, "the adapter must change the logits"
        save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous().float()},
                  os.path.join(out, "reference.safetensors"))
        print(f"{name}: adapter with {sum(p.numel() for n, p in peft.named_parameters() if 'lora_' in n)} LoRA values; "
              f"max |Δlogits| from the base {float((logits - base_logits).abs().max()):.3f}")


if __name__ == "__main__":
    main()
