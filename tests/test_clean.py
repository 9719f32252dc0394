"""Cleaning rules and exact deduplication."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.clean import clean_text, strip_html
from lmforge.data.dedup import ExactDedup, digest64


def test_fullwidth_and_nfkc():
    assert clean_text("ＡＢＣ１２３") == "ABC123"
    assert clean_text("ｈｅｌｌｏ！（ｗｏｒｌｄ）") == "hello!(world)"
    assert clean_text("你好，世界！") == "你好,世界!"           # U+FF0C, U+FF01
    assert clean_text("中文　空格") == "中文 空格"               # U+3000 ideographic space
    assert clean_text("ﬁ ①²") == "fi 12"
    # the explicit full-width step also works without NFKC, and NFKC alone does it too
    assert clean_text("ＡＢＣ　１２３", nfkc=False) == "ABC 123"
    assert clean_text("ＡＢＣ", nfkc=True, fullwidth=False) == "ABC"
    assert clean_text("ＡＢＣ", nfkc=False, fullwidth=False) == "ＡＢＣ"
    assert clean_text("e\u0301") == "é"


def test_chinese_is_untouched():
    s = "机器学习是人工智能的一个分支。它研究“学习”的算法——《统计学习方法》、深度学习等"
    assert clean_text(s) == s
    assert clean_text("天气很好\n\n我们去公园") == "天气很好\n我们去公园"


def test_html():
    assert clean_text("&lt;") == "<"
    assert clean_text("<b>x</b>") == "x"
    assert clean_text("&lt;b&gt;x&lt;/b&gt;") == "<b>x</b>"  # escaped tags are text
    assert clean_text("<p>第一段</p><p>second</p>") == "第一段\nsecond"
    assert clean_text("a<br/>b") == "a\nb"
    assert clean_text("<td>a</td><td>b</td>") == "a b"
    assert clean_text("x<script type='text/js'>if (a > b) {}</script>y") == "xy"
    assert clean_text("<STYLE>p { color: red }</STYLE>text") == "text"
    assert clean_text("<!-- note -->kept<!DOCTYPE html>") == "kept"
    assert clean_text('<a href="x>y" title=\'t\'>link</a>') == "link"
    assert clean_text("1 < 2 and 3 > 2, x<y") == "1 < 2 and 3 > 2, x<y"
    assert clean_text("&amp;lt; &#20320;&#x597D; &nbsp;") == "&lt; 你好"
    assert clean_text("<b>x</b>", strip_html=False) == "<b>x</b>"
    assert strip_html("<script>never closed") == ""


def test_control_characters():
    assert clean_text("a\x00b") == "ab"
    assert clean_text("a\x00b", control=False) == "a\x00b"
    assert clean_text("zero\u200bwidth\ufeff soft\u00adhyphen") == "zerowidth softhyphen"
    assert clean_text("a\r\nb\rc", whitespace=False) == "a\nb\nc"
    assert clean_text("page\x0cbreak", whitespace=False) == "page\nbreak"
    assert clean_text("tab\tkept", whitespace=False) == "tab\tkept"
    family = "👨\u200d👩\u200d👧"
    assert clean_text(f"emoji {family}!") == f"emoji {family}!"
    flag = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    assert clean_text(flag) == flag
    assert clean_text("lone \ud800 surrogate") == "lone surrogate"


def test_whitespace():
    assert clean_text("a\t\tb   c") == "a b c"
    assert clean_text("  a  \n \n\t b  ") == "a\nb"
    assert clean_text("  a  \n \n\t b  ", newlines=False) == "a b"
    assert clean_text("a\u00a0\u2003b\u2028c") == "a b\nc"
    assert clean_text("   \n\t ") == ""
    assert clean_text("x  y", whitespace=False) == "x  y"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60))
def test_clean_is_idempotent(s):
    once = clean_text(s)
    assert clean_text(once) == once


def test_dedup_exact():
    d = ExactDedup(capacity=4)
    assert d.add_batch(["a", "b", "a", "你好"]).tolist() == [True, True, False, True]
    assert d.add("b") is False and d.add("c") is True
    assert len(d) == 4
    assert digest64("a") != digest64("b") and 0 <= digest64("你好") < 2**64


def test_dedup_matches_a_python_set_through_growth():
    rng = np.random.default_rng(0)
    d, seen = ExactDedup(capacity=2), set()
    for _ in range(40):
        batch = rng.integers(0, 500, size=int(rng.integers(0, 80))).astype(np.uint64)
        got = d.add_digests(batch).tolist()
        want = []
        for v in batch.tolist():
            want.append(max(v, 1) not in seen)
            seen.add(max(v, 1))
        assert got == want
    assert len(d) == len(seen)
    assert d.nbytes <= 8 * 2 / 0.7 * (len(seen) + 80)  # load > 0.35, reserved per batch
