"""PyTorch peer: Hugging Face transformers GPT2LMHeadModel (fp32, default sdpa attention), HF generate() for
decoding, one batched forward for scoring, PEFT for the LoRA step and the reference's own GFlowNet loop
(torch_gfn_reference.py) for the GFlowNet step."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import transformers
from transformers import GPT2LMHeadModel

import common as C

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()


class Engine:
    name = "torch"

    def __init__(self, threads: int):
        self.threads = threads
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        self.model = None

    def info(self) -> dict:
        import peft
        return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "num_threads": torch.get_num_threads()}

    # --- inference ---------------------------------------------------------------------------------------------
    def load(self) -> float:
        def go():
            m = GPT2LMHeadModel.from_pretrained(str(C.HF_DIR), torch_dtype=torch.float32)
            m.eval()
            return m
        t, self.model = C.timed(go)
        return t

    def load_decoder(self) -> float:
        return self.load()

    @torch.inference_mode()
    def prefill(self, ids: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(ids)
        logits = self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits
        return logits[:, -1, :8].numpy().copy()

    @torch.inference_mode()
    def decode(self, prompt: np.ndarray, batch: int, new_tokens: int, seed: int) -> int:
        torch.manual_seed(seed)
        x = torch.from_numpy(np.repeat(prompt[None, :], batch, axis=0))
        out = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True, temperature=1.0,
                                  top_k=0, top_p=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  pad_token_id=C.EOS, eos_token_id=C.EOS)
        return int((out.shape[1] - x.shape[1]) * batch)

    @torch.inference_mode()
    def score(self, ctx: np.ndarray, cont: np.ndarray) -> list:
        x = torch.from_numpy(np.concatenate([ctx, cont], axis=1))
        logits = self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits
        n = ctx.shape[1]
        lp = logits[:, n - 1:-1, :].log_softmax(-1).gather(-1, torch.from_numpy(cont)[..., None])[..., 0]
        return lp.double().sum(1).tolist()

    # --- training ----------------------------------------------------------------------------------------------
    def _peft_model(self):
        from peft import LoraConfig, get_peft_model
        base = GPT2LMHeadModel.from_pretrained(str(C.HF_DIR), torch_dtype=torch.float32)
        cfg = LoraConfig(r=C.LORA_R, lora_alpha=C.LORA_ALPHA, lora_dropout=C.LORA_DROPOUT,
                         target_modules=list(C.LORA_TARGETS), fan_in_fan_out=True, task_type="CAUSAL_LM")
        torch.manual_seed(0)
        pm = get_peft_model(base, cfg)
        pm.train()          # as PEFT users (and the reference) train: dropout on
        return pm

    def lora_setup(self):
        """Returns a step function: one LoRA step on 8 x 32 tokens (LM loss, forward + backward + AdamW)."""
        pm = self._peft_model()
        opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=C.LORA_LR)
        x = torch.from_numpy(C.lora_batch())

        def step():
            loss = pm(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss)
        self._keep = (pm, opt)
        return step

    def gfn_setup(self):
        """Returns a step function: one optimisation step of the reference's random-number GFlowNet loop."""
        from engines.torch_gfn_reference import RngTrainer
        pm = self._peft_model()
        trainer = RngTrainer(pm)
        self._keep = (pm, trainer)

        def step():
            return trainer.step()
        step.warmup = trainer.warmup
        return step
