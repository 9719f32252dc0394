"""Model compression for inference: int8 quantisation (:mod:`.quantize`)."""

from .quantize import Int8Linear, quantize_int8

__all__ = ["Int8Linear", "quantize_int8"]
