"""lmforge: language models from theory to practice — readable, verified and fast."""

__version__ = "0.1.0"
