"""lmforge: language models from theory to practice — readable, verified and fast.

The top-level names are imported lazily so that ``import lmforge`` stays cheap::

    from lmforge import load_pretrained, generate
    model, tokenizer = load_pretrained("runs/quickstart")   # or a Hugging Face folder
    print(generate(model, tokenizer, ["小明"], max_new_tokens=20))

``lmforge.generate``, ``lmforge.chat`` and ``lmforge.convert`` are these functions, not
the subpackages of the same names; import from those with ``from lmforge.generate
import ...``. ``lmforge.chat(model, tokenizer, messages)`` replies to a conversation
through the model's chat template.
"""

import sys
import types

__version__ = "0.1.0"

_LAZY = {
    "load_pretrained": ("lmforge.hub", "load_pretrained"),
    "embed_text": ("lmforge.embeddings", "embed_text"),
    "generate": ("lmforge.generate", "generate"),
    "chat": ("lmforge.chat.generate", "chat"),
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


class _Package(types.ModuleType):
    """Importing a submodule binds its name on the package (``lmforge.generate`` = the
    module), which would shadow the lazy function of the same name; this keeps such
    names resolving through ``__getattr__`` to the function (the submodule stays in
    ``sys.modules``)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
