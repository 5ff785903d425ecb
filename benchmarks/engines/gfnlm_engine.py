"""gfnlm through its Python bindings (bindings/python/gfnlm, library from GFNLM_LIBRARY or build/libgfnlm.so).
This process imports neither torch nor onnxruntime, so its RSS is gfnlm's own (plus Python and numpy)."""
from __future__ import annotations

import numpy as np

import common as C
from engines import NotAvailable

import gfnlm


class Engine:
    name = "gfnlm"

    def __init__(self, threads: int):
        self.threads = threads
        self.model = None

    def info(self) -> dict:
        d = {"gfnlm": gfnlm.version(), "abi": gfnlm.abi_version(), "library": gfnlm._lib.lib._name}
        blas = C.loaded_openblas()
        if blas:
            d["openblas"] = blas
        return d

    # --- inference ---------------------------------------------------------------------------------------------
    def load(self) -> float:
        t, self.model = C.timed(gfnlm.Model.load, str(C.ONNX_PATH), n_threads=self.threads)
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

    # --- training: the drivers go here ---------------------------------------------------------------------------
    def lora_setup(self):
        """DRIVER TO WRITE when issue 4 lands (gfnlm.LoRA + gfnlm.SFTTrainer). Must do exactly what
        torch_engine.Engine.lora_setup does: base = self.model loaded from C.ONNX_PATH (call self.load() first);
        adapter = LoRA r=C.LORA_R, alpha=C.LORA_ALPHA, dropout=C.LORA_DROPOUT, targets=C.LORA_TARGETS, seeded;
        AdamW lr=C.LORA_LR (weight decay 0.01); batch = C.lora_batch() (8 x 32 ids), LM loss on every next token
        (as context ids[:, :1] and target ids[:, 1:], i.e. 31 predictions per row, like labels=ids in PyTorch).
        Return a zero-argument function that runs one step (forward + backward + optimiser update) and returns
        the loss."""
        if not hasattr(gfnlm, "LoRA") or not hasattr(gfnlm, "SFTTrainer"):
            raise NotAvailable("not implemented yet")
        raise NotAvailable("not implemented yet (gfnlm.LoRA exists: write the driver in gfnlm_engine.lora_setup)")

    def gfn_setup(self):
        """DRIVER TO WRITE when issue 5 lands (gfnlm.GFlowNetTrainer). Must do what torch_gfn_reference.RngTrainer
        does per step: prompt C.RNG_PROMPT, C.RNG_GRAD_ACC micro-batches of C.RNG_BSZ rows (64 trajectories),
        max_len C.RNG_MAX_LEN, min_len C.RNG_MIN_LEN, end token C.EOS, behaviour temperature 1, no buffer, the
        built-in random-number rule reward (algorithm.md §4.1, permitted first tokens C.number_token_ids()),
        modified SubTB λ = 1 (layout A, `cumsum >= 1` mask), LoRA r=512 alpha=32 dropout 0.1 on c_attn, AdamW
        lr 5e-4 betas (0.9, 0.999). Return a zero-argument function that runs one optimisation step."""
        if not hasattr(gfnlm, "GFlowNetTrainer"):
            raise NotAvailable("not implemented yet")
        raise NotAvailable("not implemented yet (gfnlm.GFlowNetTrainer exists: write the driver in "
                           "gfnlm_engine.gfn_setup)")
