"""Pictures of what models compute: attention maps (with CJK-capable fonts).

- :func:`plot_attention` -- PNG heatmaps of a GPT's attention over a text
  (``lmforge viz attention``);
- :func:`gpt_attention` -- the attention weights of every layer, computed explicitly;
- :func:`token_labels`, :func:`readable_labels`, :func:`find_cjk_font` -- readable token
  labels and a font that can draw Chinese.
"""

from .attention import attention_figure_size, gpt_attention, plot_attention, token_labels
from .fonts import LabelFont, find_cjk_font, font_covers, readable_labels

__all__ = ["plot_attention", "gpt_attention", "token_labels", "attention_figure_size",
           "readable_labels", "find_cjk_font", "font_covers", "LabelFont"]
