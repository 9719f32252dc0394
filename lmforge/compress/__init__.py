"""Model compression, each method in its own module (``lmforge compress`` wires them):

- :mod:`.quantize`: int8 linear layers (weights only, or dynamic W8A8) and int8 tables;
- :mod:`.int4`: weight-only int4 in groups, PyTorch's CPU int4 kernel;
- :mod:`.prune`: unstructured magnitude pruning, one-shot or gradual (Zhu & Gupta);
  sizes in :mod:`.sparse_format`;
- :mod:`.structured`: attention heads and FFN neurons scored (Michel et al.) and removed
  (:mod:`.slicing`);
- :mod:`.lowrank`: truncated SVD of linear layers;
- :mod:`.distill`: knowledge distillation (Hinton et al.), students in
  :mod:`.distill_students`;
- :mod:`.sensitivity`: the quality change of quantising one layer at a time;
- :mod:`.onnx_export`: ONNX export and ONNX Runtime's int8; :mod:`.onnx_decode` decodes
  through ONNX Runtime;
- :mod:`.structure`: how folders record swapped modules so they load without
  re-compressing.
"""

from .quantize import Int8Linear, quantize_int8

__all__ = ["Int8Linear", "quantize_int8"]
