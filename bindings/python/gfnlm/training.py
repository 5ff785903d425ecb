"""LoRA adapters (PEFT semantics and files) and supervised fine-tuning."""
from __future__ import annotations

import ctypes
from ctypes import POINTER, c_int32, c_void_p
from typing import TYPE_CHECKING, Sequence

from . import _lib
from ._handle import Closeable

if TYPE_CHECKING:
    from ._types import PathLike, TextOrIds
    from .model import Model


class LoRA(Closeable):
    """A LoRA adapter for a model, with PEFT's semantics: targets by Hugging Face module name (GPT-2 c_attn, c_proj,
    c_fc, attn.c_proj, mlp.c_proj; GPT-J q_proj, k_proj, v_proj, out_proj, fc_in, fc_out; both lm_head, the output
    head, also when tied to the embedding; export_onnx cannot merge lm_head into a tied head), scale alpha/r (alpha/√r
    with rslora), A Kaiming-uniform and B zero at init (so the adapter starts as the base model)."""

    _kind = "adapter"

    def __init__(self, model: Model, r: int = 8, alpha: float = 8.0, dropout: float = 0.0,
                 targets: str | Sequence[str] | None = None, seed: int = 0, rslora: bool = False,
                 _handle: c_void_p | None = None):
        self.model = model
        if _handle is not None:
            self._h = _handle
            return
        p = _lib.gfn_lora_default_params()
        p.r, p.alpha, p.dropout, p.use_rslora, p.seed = r, alpha, dropout, 1 if rslora else 0, seed
        if targets is not None:
            if isinstance(targets, str):
                targets = [targets]
            p.targets = ",".join(targets).encode()
        h = c_void_p()
        _lib.check(_lib.gfn_adapter_new(model._handle(), ctypes.byref(p), ctypes.byref(h)))
        self._h = h

    @classmethod
    def load(cls, model: Model, directory: PathLike) -> "LoRA":
        """Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)."""
        h = c_void_p()
        _lib.check(_lib.gfn_adapter_load(model._handle(), _lib.encode_path(directory), ctypes.byref(h)), directory)
        return cls(model, _handle=h)

    def __repr__(self) -> str:
        if self.closed:
            return "<gfnlm.LoRA (closed)>"
        return f"<gfnlm.LoRA parameters={self.parameter_count}>"

    def save(self, directory: PathLike) -> None:
        """Saves in PEFT's layout (loadable with peft.PeftModel.from_pretrained)."""
        _lib.check(_lib.gfn_adapter_save(self._handle(), _lib.encode_path(directory)))

    @property
    def parameter_count(self) -> int:
        """Number of trainable parameters (A and B of every targeted module)."""
        n = ctypes.c_int64()
        _lib.check(_lib.gfn_adapter_parameter_count(self._handle(), ctypes.byref(n)))
        return n.value


    def close(self) -> None:
        """Frees the adapter. Idempotent."""
        if self._h:
            _lib.gfn_adapter_free(self._h)
        self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass


def _train_params(lr=1e-4, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8, warmup_steps=0, total_steps=0,
                  cosine=False, max_grad_norm=None):
    p = _lib.gfn_train_default_params()
    p.lr, p.weight_decay, p.beta1, p.beta2, p.eps = lr, weight_decay, betas[0], betas[1], eps
    p.warmup_steps, p.total_steps, p.cosine = warmup_steps, total_steps, 1 if cosine else 0
    p.max_grad_norm = 0.0 if max_grad_norm is None else max_grad_norm
    return p


def _pairs(model, batch, keep):
    """[(context, target), ...] with str or ids → ctypes arrays."""
    n = len(batch)
    cp = (POINTER(c_int32) * n)()
    cl = (c_int32 * n)()
    tp = (POINTER(c_int32) * n)()
    tl = (c_int32 * n)()
    for i, (c, t) in enumerate(batch):
        a, k = keep.ids(model._ids(c))
        cp[i] = ctypes.cast(a, POINTER(c_int32)); cl[i] = k
        b, k2 = keep.ids(model._ids(t))
        tp[i] = ctypes.cast(b, POINTER(c_int32)); tl[i] = k2
    return cp, cl, tp, tl, n


def _sft_dict(s):
    return {"loss": s.loss, "perplexity": s.perplexity, "tokens": s.tokens, "step": s.step,
            "grad_norm": s.grad_norm, "learning_rate": s.learning_rate, "applied": bool(s.applied)}


class SFTTrainer(Closeable):
    """Supervised fine-tuning: maximise log p(target | context), context masked. With `adapter` None every weight of
    a private copy of the model trains (small models; `snapshot_model()` returns it as a Model). `distributed` (a
    gfnlm.distributed exchange): one of world_size data-parallel replicas, each stepping on its own examples; the
    loss is the token-mean over every rank's tokens."""

    def __init__(self, model: Model, adapter: LoRA | None = None, lr: float = 1e-4, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), warmup_steps: int = 0, total_steps: int = 0,
                 cosine: bool = False, max_grad_norm: float | None = None,
                 distributed: object | None = None):
        self.model = model
        self.adapter = adapter
        p = _train_params(lr, weight_decay, betas, 1e-8, warmup_steps, total_steps, cosine, max_grad_norm)
        h = c_void_p()
        _lib.check(_lib.gfn_sft_new(model._handle(), adapter._handle() if adapter is not None else None,
                                    ctypes.byref(p), ctypes.byref(h)))
        self._h = h
        self.distributed = distributed
        if distributed is not None:
            distributed.attach(h, _lib.gfn_sft_set_distributed)

    def _call(self, fn, batch):
        from .inference import _Arrays
        keep = _Arrays()
        args = _pairs(self.model, batch, keep)
        s = _lib.SFTStats()
        s.size = ctypes.sizeof(_lib.SFTStats)
        _lib.check(fn(self._h, *args, ctypes.byref(s)))
        return _sft_dict(s)

    def step(self, batch: Sequence[tuple[TextOrIds, TextOrIds]]) -> dict:
        """One optimiser step on [(context, target), ...] (str or ids). Returns loss, perplexity, tokens, ..."""
        return self._call(_lib.gfn_sft_step, batch)

    def evaluate(self, batch: Sequence[tuple[TextOrIds, TextOrIds]]) -> dict:
        """The loss on [(context, target), ...] without a step."""
        return self._call(_lib.gfn_sft_evaluate, batch)

    def set_label_candidates(self, candidates: Sequence[int] | None) -> None:
        """Restricts the loss to these token ids: every target token's loss becomes −log softmax over the candidates
        only (e.g. the two label tokens of a classifier: the two-way label cross-entropy); None or [] restores the
        full vocabulary. Every target token must then be one of them."""
        ids = list(candidates or [])
        arr = (c_int32 * max(1, len(ids)))(*ids)
        _lib.check(_lib.gfn_sft_set_label_candidates(self._h, arr, len(ids)))

    def snapshot_model(self) -> Model:
        """The fully fine-tuned weights as a new Model (full-parameter training only)."""
        from .model import Model
        h = c_void_p()
        _lib.check(_lib.gfn_sft_snapshot_model(self._h, ctypes.byref(h)))
        return Model(h)

    def export_onnx(self, path: PathLike) -> PathLike:
        """Writes the trained weights (adapter merged, or the full-parameter weights) as an .onnx file."""
        _lib.check(_lib.gfn_sft_export_onnx(self._h, _lib.encode_path(path)))
        return path

    def save(self, directory: PathLike) -> None:
        """Writes a checkpoint (weights or adapter, optimiser state, step) into `directory`."""
        _lib.check(_lib.gfn_sft_save(self._h, _lib.encode_path(directory)), directory)

    def load(self, directory: PathLike) -> None:
        """Restores a checkpoint written by save()."""
        _lib.check(_lib.gfn_sft_load(self._h, _lib.encode_path(directory)), directory)

    def __repr__(self) -> str:
        if self.closed:
            return "<gfnlm.SFTTrainer (closed)>"
        return f"<gfnlm.SFTTrainer {'LoRA' if self.adapter is not None else 'full-parameter'}>"

    def close(self) -> None:
        """Frees the trainer. Idempotent."""
        if self._h:
            _lib.gfn_sft_free(self._h)
        self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass
