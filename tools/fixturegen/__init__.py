"""The fixture builders behind tools/make_fixtures.py (one module per kind of fixture).

Importing the package sets the environment that must be in place before transformers is imported: offline
(nothing is downloaded from the Hugging Face hub) and deterministic hashing.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYTHONHASHSEED", "0")
