"""gfnlm through its Python bindings (bindings/python/gfnlm, library from GFNLM_LIBRARY or build/libgfnlm.so).
This process imports neither torch nor onnxruntime, so its RSS is gfnlm's own (plus Python and numpy)."""
from __future__ import annotations

import numpy as np

import common as C
from engines import NotAvailable

import gfnlm


class Engine:
    name = "gfnlm"
    weights = "fp32"

    def __init__(self, threads: int):
        self.threads = threads
        self.model = None

    def info(self) -> dict:
        d = {"gfnlm": gfnlm.version(), "abi": gfnlm.abi_version(), "library": gfnlm._lib.lib._name}
        if hasattr(gfnlm, "system_info"):   # the kernels that served this run (VNNI, AVX512-BF16 or AVX2), 0.6.1+
            d["system"] = gfnlm.system_info()
        blas = C.loaded_openblas()
        if blas:
            d["openblas"] = blas
        return d

    # --- inference ---------------------------------------------------------------------------------------------
    def load(self) -> float:
        t, self.model = C.timed(gfnlm.Model.load, str(C.ONNX_PATH), n_threads=self.threads, weights=self.weights)
        cfg = self.model.config
        if (cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"]) != (C.N_LAYER, C.N_HEAD * C.HEAD_DIM, C.VOCAB):
            raise RuntimeError(f"gfnlm read an unexpected config: {cfg}")
        return t

    def load_decoder(self) -> float:
        return self.load()       # the same file serves prefill, decoding and scoring

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        out = self.model.logits(ids.tolist())                  # full logits [16, 64, V]
        return out[:, -1, :8].copy()

    def decode(self, prompt: np.ndarray, batch: int, new_tokens: int, seed: int) -> int:
        samples = self.model.generate(prompt.tolist(), n=batch, max_new_tokens=new_tokens, temperature=1.0,
                                      stop=[], seed=seed)
        return sum(len(s.tokens) for s in samples)

    def score(self, ctx: np.ndarray, cont: np.ndarray) -> list:
        return [float(x) for x in self.model.score(ctx.tolist(), cont.tolist())]

    # --- training ---------------------------------------------------------------------------------------------
    def lora_setup(self):
        """One LoRA step, the configuration of torch_engine.Engine.lora_setup: LoRA r=C.LORA_R, alpha=C.LORA_ALPHA,
        dropout=C.LORA_DROPOUT on C.LORA_TARGETS; AdamW lr=C.LORA_LR (weight decay 0.01); 8 x 32 ids with the LM
        loss on every next token (context ids[:1], target ids[1:]: 31 predictions per row, like labels=ids)."""
        if not hasattr(gfnlm, "LoRA") or not hasattr(gfnlm, "SFTTrainer"):
            raise NotAvailable("not implemented yet")
        self.load()
        adapter = gfnlm.LoRA(self.model, r=C.LORA_R, alpha=float(C.LORA_ALPHA), dropout=C.LORA_DROPOUT,
                             targets=list(C.LORA_TARGETS), seed=0)
        trainer = gfnlm.SFTTrainer(self.model, adapter, lr=C.LORA_LR)
        batch = [(row[:1], row[1:]) for row in C.lora_batch().tolist()]
        self._keep = (adapter, trainer)

        def step():
            self.last_stats = trainer.step(batch)
            return float(self.last_stats["loss"])
        return step

    def gfn_setup(self):
        """One GFlowNet step of the random-number configuration, as torch_gfn_reference.RngTrainer: prompt
        C.RNG_PROMPT, C.RNG_GRAD_ACC micro-batches of C.RNG_BSZ rows (64 trajectories, gradients summed), max_len 5,
        min_len 1, end token C.EOS, on-policy at τ = 1 (no tempering, no replay), the built-in random-integer rule
        reward, modified SubTB λ = 1 (layout A, `cumsum >= 1` mask), LoRA r=512 alpha=32 dropout 0.1 on c_attn
        (dropout on, as in the reference), AdamW lr 5e-4 betas (0.9, 0.999), warm-up 10 + linear decay to 2560."""
        if not hasattr(gfnlm, "GFlowNetTrainer"):
            raise NotAvailable("not implemented yet")
        self.model = gfnlm.Model.load(str(C.ONNX_PATH), tokenizer=str(C.TOKENIZER_DIR), n_threads=self.threads,
                                      weights=self.weights)
        adapter = gfnlm.LoRA(self.model, r=C.LORA_R, alpha=float(C.LORA_ALPHA), dropout=C.LORA_DROPOUT,
                             targets=list(C.LORA_TARGETS), seed=0)
        reward = gfnlm.rewards.RandomInteger(self.model, termination=C.EOS)
        trainer = gfnlm.GFlowNetTrainer(
            self.model, adapter, reward, [C.RNG_PROMPT], objective="subtb", subtb_lambda=1.0, strict_mask=False,
            termination=C.EOS, min_length=C.RNG_MIN_LEN, max_length=C.RNG_MAX_LEN, layout="forced_stop",
            batch_size=C.RNG_BSZ, grad_accumulation=C.RNG_GRAD_ACC, average_accumulation=False, lr=5e-4,
            warmup_steps=10, total_steps=2560, betas=(0.9, 0.999), p_on_policy=1.0, p_replay=0.0,
            lora_dropout=True, seed=42)
        self._keep = (adapter, reward, trainer)

        def step():
            self.last_stats = trainer.step()      # kept in the worker's JSON (mean_length, trajectories, …)
            return float(self.last_stats["loss"])
        return step


class BF16Engine(Engine):
    """gfnlm with weights="bf16": the matrices converted to bf16 at load (inference phases only)."""
    name = "gfnlm-bf16"
    weights = "bf16"

    def lora_setup(self):
        raise NotAvailable("inference phases only")

    def gfn_setup(self):
        raise NotAvailable("inference phases only")


class Int8Engine(Engine):
    """gfnlm with weights="int8": block-quantized at load (32 per block, fp16 scale); every phase (the LoRA and
    GFlowNet steps train adapters on the frozen int8 base)."""
    name = "gfnlm-int8"
    weights = "int8"


class Q4Engine(Engine):
    """gfnlm with weights="q4": 4-bit linear maps (32 per block), 6-bit embedding / tied head; every phase."""
    name = "gfnlm-q4"
    weights = "q4"
