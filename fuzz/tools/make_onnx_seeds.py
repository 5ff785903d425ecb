#!/usr/bin/env python3
"""Micro GPT-2 / GPT-J ONNX exports for the ONNX fuzz target's seed corpus (fuzz/corpus/onnx) and the data
files the harness places beside every fuzzed model (fuzz/data/onnx).

Run: VENV/bin/python fuzz/tools/make_onnx_seeds.py   (VENV: the venv of tools/requirements-fixtures.txt)

The models are the fixtures' exporters (tools/make_fixtures.py) with a micro configuration (vocab 32, n_embd 8,
one layer, two heads, 16 positions), so each graph is a few kB: small inputs make libFuzzer fast. External-data
variants keep their data files in fuzz/data/onnx under names that cannot collide (gpt2.data, gptj.data,
gpt2__<tensor>, gptj__<tensor>); the harness copies that folder next to the model it writes.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
warnings.filterwarnings("ignore")

import make_fixtures as mf  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, numpy_helper  # noqa: E402
from transformers import GPT2Config, GPTJConfig  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus" / "onnx"
DATA = ROOT / "fuzz" / "data" / "onnx"


def micro_config(arch: str):
    if arch == "gpt2":
        return GPT2Config(vocab_size=32, n_embd=8, n_layer=1, n_head=2, n_positions=16,
                          activation_function="gelu_new", tie_word_embeddings=True,
                          bos_token_id=31, eos_token_id=31)
    return GPTJConfig(vocab_size=32, n_embd=8, n_layer=1, n_head=2, rotary_dim=2, n_positions=16,
                      activation_function="gelu_new", tie_word_embeddings=False,
                      bos_token_id=31, eos_token_id=31)


def externalize_onefile(src: Path, dst: Path, location: str):
    m = onnx.load(str(src))
    tmp = Path(tempfile.mkdtemp())
    onnx.save_model(m, str(tmp / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0, convert_attribute=False)
    shutil.copy(tmp / "model.onnx", dst)
    shutil.copy(tmp / location, DATA / location)
    shutil.rmtree(tmp)


def externalize_pertensor(src: Path, dst: Path, prefix: str):
    m = onnx.load(str(src))
    for t in m.graph.initializer:
        arr = numpy_helper.to_array(t)
        data = t.raw_data if t.HasField("raw_data") and len(t.raw_data) else arr.tobytes()
        fname = prefix + mf._safe_file_name(t.name)
        (DATA / fname).write_bytes(data)
        for f in ("raw_data", "float_data", "int64_data", "int32_data"):
            t.ClearField(f)
        del t.external_data[:]
        e = t.external_data.add()
        e.key, e.value = "location", fname
        t.data_location = TensorProto.EXTERNAL
    onnx.save_model(m, str(dst))


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    shutil.rmtree(DATA, ignore_errors=True)
    CORPUS.mkdir(parents=True)
    DATA.mkdir(parents=True)
    for arch in ("gpt2", "gptj"):
        cfg = micro_config(arch)
        model = mf.build_model(arch, cfg, seed=7 if arch == "gpt2" else 8)
        work = Path(tempfile.mkdtemp(prefix=f"seeds-{arch}-"))
        mf.legacy_export(model, work / "legacy17.onnx", 17, past=False)
        mf.legacy_export(model, work / "legacy14.onnx", 14, past=False)
        mf.legacy_export(model, work / "legacy17-past.onnx", 17, past=True)
        try:
            mf.dynamo_export(model, work / "dynamo.onnx")
        except Exception as e:  # the dynamo exporter is optional for seeds
            print(f"{arch}: dynamo export skipped ({e})")
        mf.bf16_from_fp32(work / "legacy17.onnx", work / "bf16.onnx")
        try:
            mf.fp16_converter(work / "legacy17.onnx", work / "fp16-converter.onnx")
        except Exception as e:
            print(f"{arch}: fp16 converter skipped ({e})")
        m16 = mf.clone_with(model, attn="eager" if arch == "gpt2" else None).half()
        mf.legacy_export(m16, work / "fp16.onnx", 17, past=False)
        if arch == "gpt2":
            try:
                mf.ort_optimize(work / "legacy17.onnx", work / "ort-optimized.onnx", cfg, attention=False)
            except Exception as e:
                print(f"{arch}: ort optimizer skipped ({e})")
        externalize_onefile(work / "legacy17.onnx", work / "external-onefile.onnx", f"{arch}.data")
        externalize_pertensor(work / "legacy17.onnx", work / "external-pertensor.onnx", f"{arch}__")
        for f in sorted(work.glob("*.onnx")):
            shutil.copy(f, CORPUS / f"{arch}-{f.name}")
        shutil.rmtree(work)
    shutil.copy(ROOT / "Tests" / "Fixtures" / "not-a-gpt" / "model.onnx", CORPUS / "not-a-gpt.onnx")
    total = sum(p.stat().st_size for p in CORPUS.iterdir()) + sum(p.stat().st_size for p in DATA.iterdir())
    print(f"{len(list(CORPUS.iterdir()))} seeds, {len(list(DATA.iterdir()))} data files, {total} bytes")


if __name__ == "__main__":
    main()
