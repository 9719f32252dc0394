"""Attention pictures: explicit weights equal the model's forward, PNGs, CJK labels."""

import warnings

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tokenize import train_tokenizer
from lmforge.viz import (
    attention_figure_size,
    font_covers,
    gpt_attention,
    plot_attention,
    readable_labels,
    token_labels,
)
from lmforge.viz import fonts as fonts_mod

TEXT = "你好，世界！Hello attention 语言模型"


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("bpe", texts=[TEXT, "Hello world, hello 世界."] * 10, vocab_size=290,
                           show_progress=False)


def _gpt(style, vocab, **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=vocab, style=style, n_layer=2, n_head=4, d_model=32, max_seq_len=32,
               init_std=0.2)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


@pytest.mark.parametrize("style,kw", [("gpt2", {}), ("llama", {"n_kv_head": 2})])
def test_explicit_attention_reproduces_forward(style, kw):
    model = _gpt(style, 50, **kw)
    ids = torch.randint(0, 50, (2, 9))
    logits, weights = gpt_attention(model, ids)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(ids), atol=1e-5, rtol=0)
    assert len(weights) == 2 and weights[0].shape == (2, 4, 9, 9)
    w = weights[1]
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9))
    assert torch.all(w.triu(1) == 0)  # causal: no weight on future tokens
    # left padding: positions skip the pads, pads get no weight
    mask = torch.tensor([[1] * 9, [0] * 3 + [1] * 6])
    logits, weights = gpt_attention(model, ids, mask)
    with torch.no_grad():
        ref = model(ids, attention_mask=mask)
    torch.testing.assert_close(logits[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)
    assert torch.all(weights[0][1, :, 3:, :3] == 0)


def test_token_labels_are_readable(tok):
    ids = tok.encode(" 你好\n")
    labels = token_labels(tok, ids)
    text = "".join(labels)
    assert "\ufffd" not in text and "␣" in text and "\\n" in text
    # a lone byte of a multi-byte character is shown as its hex value
    byte_id = tok.token_to_id("ä")  # byte 0xe4, the first byte of 你
    assert token_labels(tok, [byte_id]) == ["<e4>"]


def test_label_font_covers_cjk_or_falls_back(monkeypatch):
    labels = ["中", "文", "abc"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # machines without a CJK font warn here
        res = readable_labels(labels)
    if res.fallback:
        assert res.labels[:2] == ["U+4E2D", "U+6587"] and res.labels[2] == "abc"
    else:
        assert res.family and any(font_covers(f, "中文") for f in res.font_files)
        assert res.labels == labels
    # forced fallback (no CJK font installed): code points, and one warning
    fonts_mod._warn_once.cache_clear()
    with pytest.warns(UserWarning, match="no installed font has CJK glyphs"):
        res = readable_labels(labels, cjk_font=None)
    assert res.fallback and res.labels == ["U+4E2D", "U+6587", "abc"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        readable_labels(labels, cjk_font=None)  # warned once already
        assert readable_labels(["plain ascii"]).family is None  # no CJK: default font
    # a bad $LMFORGE_CJK_FONT is reported, and the search goes on
    monkeypatch.setenv("LMFORGE_CJK_FONT", __file__)
    with pytest.warns(UserWarning, match="LMFORGE_CJK_FONT"):
        fonts_mod.find_cjk_font()
    # matplotlib's "Last Resort" font draws boxes: it never counts
    assert not font_covers("/x/LastResortHE-Regular.ttf", "中")
    assert font_covers(fonts_mod.default_font(), "Ab") and not font_covers(
        fonts_mod.default_font(), "中")


def test_plot_attention_writes_pngs(tmp_path, tok):
    from matplotlib.image import imread

    model = _gpt("llama", tok.vocab_size, n_kv_head=2)
    model.save_pretrained(tmp_path / "m")
    tok.save(tmp_path / "m")
    n = len(tok.encode(TEXT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-CJK-font warning on machines without one
        grid = plot_attention(tmp_path / "m", TEXT, tmp_path / "out")
        single = plot_attention(tmp_path / "m", TEXT, tmp_path / "out2", layers=[-1],
                                heads=[0, 3])
    assert [p.name for p in grid] == ["layer_00.png", "layer_01.png"]
    assert [p.name for p in single] == ["layer_01_head_00.png", "layer_01_head_03.png"]
    h, w = imread(grid[0]).shape[:2]
    assert (w, h) == attention_figure_size(n, 4) and w > h > 300
    h, w = imread(single[1]).shape[:2]
    assert (w, h) == attention_figure_size(n, 1)
    with pytest.raises(ConfigError, match="layer: 5 is out of range"):
        plot_attention(tmp_path / "m", TEXT, tmp_path / "out3", layers=[5])
