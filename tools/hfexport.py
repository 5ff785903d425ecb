"""Hugging Face -> ONNX export helpers shared by the tools that export models (tools/fixturegen/,
tools/demomodel/, tools/make_bench_models.py). torch, transformers and optimum are imported when a helper is
called, so importing this module needs none of them."""
from __future__ import annotations

import contextlib
import copy


@contextlib.contextmanager
def optimum_mask_patches():
    """The patches optimum's ModelPatcher applies so that the TorchScript tracer can export
    transformers >= 4.53 models (loop-free mask builders instead of vmap, etc.)."""
    import torch
    import transformers.masking_utils as mu
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask, eager_mask
    from transformers.cache_utils import DynamicLayer
    from optimum.exporters.onnx import model_patcher as mp
    orig_find = mu.find_packed_sequence_indices
    orig_update = DynamicLayer.update
    orig_sdpa = torch.nn.functional.scaled_dot_product_attention
    ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", mp.sdpa_mask_without_vmap)
    ALL_MASK_ATTENTION_FUNCTIONS.register("eager", mp.eager_mask_without_vmap)
    mu.find_packed_sequence_indices = mp.find_packed_sequence_indices_patched
    DynamicLayer.update = mp.patched_dynamic_layer_update
    torch.nn.functional.scaled_dot_product_attention = mp.traceable_scaled_dot_product_attention
    try:
        yield
    finally:
        ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", sdpa_mask)
        ALL_MASK_ATTENTION_FUNCTIONS.register("eager", eager_mask)
        mu.find_packed_sequence_indices = orig_find
        DynamicLayer.update = orig_update
        torch.nn.functional.scaled_dot_product_attention = orig_sdpa


def logits_only(model):
    """Same module (same parameter names, no `model.` prefix) whose forward is
    (input_ids, attention_mask) -> logits, positions computed as generate() does:
    clamp(cumsum(mask) - 1, min=0)."""
    base = type(model)

    class LogitsOnly(base):
        def forward(self, input_ids, attention_mask):
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            return base.forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                position_ids=position_ids, use_cache=False).logits

    m = copy.deepcopy(model)
    m.__class__ = LogitsOnly
    return m


def with_past(model):
    """(input_ids, attention_mask, past.0.key, past.0.value, ...) -> (logits, present.0.key, ...)."""
    from transformers.cache_utils import DynamicCache
    base = type(model)

    class WithPast(base):
        def forward(self, input_ids, attention_mask, *past):
            cache = DynamicCache.from_legacy_cache(tuple((past[2 * i], past[2 * i + 1])
                                                         for i in range(len(past) // 2)))
            seq = input_ids.shape[1]
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -seq:]
            out = base.forward(self, input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids, past_key_values=cache, use_cache=True)
            flat = []
            for k, v in out.past_key_values.to_legacy_cache():
                flat += [k, v]
            return (out.logits, *flat)

    m = copy.deepcopy(model)
    m.__class__ = WithPast
    return m
