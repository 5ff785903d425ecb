"""The build steps behind tools/train_demo_model.py (one module per stage).

Importing the package sets the environment that must be in place before transformers and torch are imported:
offline (nothing is downloaded from the Hugging Face hub) and passive OpenMP waiting (threads that spin while
waiting are twice as slow on a machine shared with other jobs).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
