from __future__ import annotations

import ctypes
from ctypes import c_int32, c_size_t, c_void_p
from typing import TYPE_CHECKING

from . import _lib
from ._handle import Closeable

if TYPE_CHECKING:
    from ._types import PathLike, TokenIds


class Tokenizer(Closeable):
    """GPT-2 byte-level BPE tokenizer (also GPT-J's). Thread-safe; a context manager. A model's own tokenizer
    (Model.tokenizer) belongs to the model: closing it only detaches this wrapper."""

    _kind = "tokenizer"

    def __init__(self, handle: c_void_p, owner: object | None = None):
        self._h = handle
        self._owner = owner  # a Model that owns a borrowed tokenizer

    @classmethod
    def load(cls, path: PathLike) -> "Tokenizer":
        """Loads from a directory (tokenizer.json, or vocab.json + merges.txt) or a file."""
        h = c_void_p()
        _lib.check(_lib.gfn_tokenizer_load(_lib.encode_path(path), ctypes.byref(h)), path)
        return cls(h)

    def __repr__(self) -> str:
        if self.closed:
            return "<gfnlm.Tokenizer (closed)>"
        return f"<gfnlm.Tokenizer vocab_size={self.vocab_size} eos_id={self.eos_id}>"

    def close(self) -> None:
        """Frees a tokenizer loaded with Tokenizer.load (a model's own one stays with the model)."""
        if self._h and self._owner is None:
            _lib.gfn_tokenizer_free(self._h)
        self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Token ids of `text` (special tokens such as <|endoftext|> recognised unless allow_special=False)."""
        if not isinstance(text, str):
            raise TypeError(f"encode needs a str, got {type(text).__name__}")
        data = text.encode("utf-8")
        n = c_int32()
        cap = max(16, len(data) + 8)
        while True:
            buf = (c_int32 * cap)()
            st = _lib.gfn_tokenizer_encode(self._handle(), data, 1 if allow_special else 0, buf, cap, ctypes.byref(n))
            if st == -12:  # GFN_ERR_BUFFER_TOO_SMALL
                cap = n.value
                continue
            _lib.check(st)
            return list(buf[:n.value])

    def decode(self, ids: TokenIds) -> str:
        """The text of token ids (ints or numpy integers)."""
        ids = [_lib.checked_int(i, what="token id") for i in ids]
        arr = (c_int32 * max(1, len(ids)))(*ids)
        n = c_size_t()
        cap = 4 * len(ids) + 16
        while True:
            buf = ctypes.create_string_buffer(cap)
            st = _lib.gfn_tokenizer_decode(self._handle(), arr, len(ids), buf, cap, ctypes.byref(n))
            if st == -12:
                cap = n.value + 1
                continue
            _lib.check(st)
            return buf.raw[:n.value].decode("utf-8")

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        v = c_int32()
        _lib.check(_lib.gfn_tokenizer_vocab_size(self._handle(), ctypes.byref(v)))
        return v.value

    @property
    def eos_id(self) -> int | None:
        """The end-of-text token's id, None when the vocabulary has none."""
        v = c_int32()
        _lib.check(_lib.gfn_tokenizer_eos(self._handle(), ctypes.byref(v)))
        return None if v.value < 0 else v.value
