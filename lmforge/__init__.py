"""lmforge: language models from theory to practice — readable, verified and fast.

The top-level names are imported lazily so that ``import lmforge`` stays cheap::

    from lmforge import load_pretrained, embed_text
    model, tokenizer = load_pretrained("runs/quickstart")   # or a Hugging Face folder
"""

__version__ = "0.1.0"

_LAZY = {
    "load_pretrained": ("lmforge.hub", "load_pretrained"),
    "embed_text": ("lmforge.embeddings", "embed_text"),
    "generate": ("lmforge.generate", "generate"),
    "GenerationConfig": ("lmforge.generate", "GenerationConfig"),
    "convert": ("lmforge.convert", "convert"),
    "plot_attention": ("lmforge.viz", "plot_attention"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'lmforge' has no attribute {name!r}")
