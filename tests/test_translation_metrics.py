"""Translation metrics against the reference: ``corpus_scores`` and ``sentence_scores``
equal what the ``sacrebleu`` command line prints for the same files (English and Chinese,
empty hypotheses, perfect matches, mixed scripts; 13a and zh tokenization; fixed cases
and random ones), signatures included; exact match by hand; bad input gives one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import one_line_error as error
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.errors import ConfigError, DataError, LmforgeError
from lmforge.eval.translation import corpus_scores, default_tokenize, sentence_scores

pytest.importorskip("sacrebleu")
SACREBLEU = Path(sys.executable).with_name("sacrebleu")
TOL = 1e-4  # the CLI prints 4 decimals (-w 4): at most 5e-5 off

EN_REFS = ["The cat sat on the mat.", "It is raining today.", "Hello, world!",
           "We trained a small language model.", "", "She isn't here.", "Good morning"]
EN_HYPS = ["The cat sat on a mat.", "", "Hello, world!", "We trained the small models .",
           "something", "  She isn't here.  ", "Good morning"]
ZH_REFS = ["我们训练了一个小型语言模型。", "今天下雨了。", "你好，世界！", "猫坐在垫子上。",
           "GPT-2 是一个语言模型。", "谢谢你"]
ZH_HYPS = ["我们训练了一个语言模型。", "", "你好，世界！", "垫子上坐着一只猫。",
           "GPT-2是语言模型", "谢谢"]
# The last pairs are shorter than 4 tokens: sentence BLEU needs the effective order.
CASES = {"en": (EN_HYPS, EN_REFS), "zh": (ZH_HYPS, ZH_REFS)}
DEFAULT_TOK = {"en": "13a", "zh": "zh"}  # sacrebleu's advice for each target language


def run_cli(hyps: list[str], refs: list[str], folder: Path, *args: str) -> str:
    """``sacrebleu REF -i HYP ARGS`` on files holding the texts, one per line."""
    ref, hyp = folder / "ref.txt", folder / "hyp.txt"
    ref.write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    hyp.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    out = subprocess.run([str(SACREBLEU), str(ref), "-i", str(hyp), "--no-color", *args],
                         capture_output=True, text=True, encoding="utf-8", check=True)
    return out.stdout


def cli_corpus(hyps: list[str], refs: list[str], folder: Path, tokenize: str) -> dict:
    """``{"BLEU": {...}, "chrF2": {...}}`` as sacrebleu's JSON output gives them."""
    out = run_cli(hyps, refs, folder, "-m", "bleu", "chrf", "-w", "4", "-f", "json",
                  "--tokenize", tokenize)
    return {d["name"]: d for d in json.loads(out)}


def check_against_cli(hyps: list[str], refs: list[str], folder: Path, lang: str,
                      tokenize: str | None) -> dict:
    ours = corpus_scores(hyps, refs, target_lang=lang, tokenize=tokenize)
    want = cli_corpus(hyps, refs, folder, tokenize or DEFAULT_TOK[lang])
    bleu, chrf = want["BLEU"], want["chrF2"]
    assert ours["bleu"] == pytest.approx(bleu["score"], abs=TOL)
    assert ours["chrf"] == pytest.approx(chrf["score"], abs=TOL)
    assert ours["bleu_signature"] == bleu["signature"]
    assert ours["chrf_signature"] == chrf["signature"]
    # "81.8/75.0/66.7/50.0 (BP = 1.000 ratio = 1.100 hyp_len = 11 ref_len = 10)"
    m = re.fullmatch(r"(\S+) \(BP = (\S+) ratio = \S+ hyp_len = (\d+) ref_len = (\d+)\)",
                     bleu["verbose_score"])
    assert m, bleu["verbose_score"]
    precisions = [float(x) for x in m.group(1).split("/")]
    assert ours["bleu_precisions"] == pytest.approx(precisions, abs=0.051)
    assert ours["brevity_penalty"] == pytest.approx(float(m.group(2)), abs=5e-4)
    assert (ours["hyp_len"], ours["ref_len"]) == (int(m.group(3)), int(m.group(4)))
    assert ours["n"] == len(hyps)
    return ours


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("tokenize", [None, "13a", "zh"])
def test_corpus_scores_equal_sacrebleu_cli(tmp_path, lang, tokenize):
    hyps, refs = CASES[lang]
    ours = check_against_cli(hyps, refs, tmp_path, lang, tokenize)
    assert f"tok:{tokenize or DEFAULT_TOK[lang]}|" in ours["bleu_signature"]
    assert 0 < ours["chrf"] < 100  # neither a perfect nor a hopeless set


def test_chinese_targets_default_to_zh_tokenization():
    hyps, refs = CASES["zh"]
    assert default_tokenize("zh") == default_tokenize("zh-CN") == "zh"
    assert default_tokenize("en") == default_tokenize("de") == "13a"
    zh = corpus_scores(hyps, refs, target_lang="zh")
    w13a = corpus_scores(hyps, refs, target_lang="zh", tokenize="13a")
    # Under 13a a Chinese clause is one word: no sentence has a bigram, so BLEU is 0.
    assert w13a["bleu"] == 0 and w13a["hyp_len"] == 5 and zh["bleu"] > 30
    assert zh["chrf"] == w13a["chrf"]  # chrF does not tokenize


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_perfect_and_empty_hypotheses(tmp_path, lang):
    _, refs = CASES[lang]
    refs = [r for r in refs if r]
    perfect = check_against_cli(refs, refs, tmp_path, lang, None)
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    assert perfect["exact_match"] == 1.0 and perfect["brevity_penalty"] == 1.0
    empty = check_against_cli([""] * len(refs), refs, tmp_path, lang, None)
    assert (empty["bleu"], empty["chrf"], empty["exact_match"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_sentence_scores_equal_sacrebleu_sentence_level(tmp_path, lang):
    hyps, refs = CASES[lang]
    ours = sentence_scores(hyps, refs, target_lang=lang)
    tok = DEFAULT_TOK[lang]
    for metric, key in (("bleu", "bleu"), ("chrf", "chrf")):
        out = run_cli(hyps, refs, tmp_path, "-sl", "-b", "-w", "4", "-m", metric,
                      "--tokenize", tok)
        want = [float(x) for x in out.split()]
        assert [s[key] for s in ours] == pytest.approx(want, abs=TOL)
    same = [h.strip() == r.strip() for h, r in zip(hyps, refs, strict=True)]
    assert [s["exact"] for s in ours] == same
    assert any(s["exact"] for s in ours) and not all(s["exact"] for s in ours)


def test_exact_match_strips_outer_whitespace_only():
    hyps = [" a b ", "a  b", "A b", "猫\n", "", "x"]
    refs = ["a b", "a b", "a b", "猫", " ", "y"]
    # equal: 1 ("a b"), 4 ("猫"), 5 (both empty after stripping)
    assert corpus_scores(hyps, refs, target_lang="en")["exact_match"] == pytest.approx(3 / 6)


EN_WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "runs", ",", ".", "Hello",
            "world", "isn't", "model", "models", "(1)", "trained", "We"]
ZH_UNITS = list("我们的猫在垫子上坐着你好世界今天下雨了。，！") + ["GPT-2", "AI", "3.5"]


@st.composite
def corpora(draw) -> tuple[str, list[str], list[str], str | None]:
    """A target language, hypotheses and references: exact copies, edited copies (words
    dropped, others added), unrelated sentences and empty ones, sometimes padded."""
    lang = draw(st.sampled_from(["en", "zh"]))
    vocab, sep = (EN_WORDS, " ") if lang == "en" else (ZH_UNITS, "")
    unit = st.sampled_from(vocab)
    refs = draw(st.lists(st.lists(unit, max_size=14), min_size=1, max_size=8))
    hyps = []
    for ref in refs:
        kind = draw(st.sampled_from(["same", "edit", "edit", "other", "empty"]))
        if kind == "same":
            hyp = ref
        elif kind == "edit":
            keep = draw(st.lists(st.booleans(), min_size=len(ref), max_size=len(ref)))
            hyp = [t for t, k in zip(ref, keep, strict=True) if k] + draw(st.lists(unit, max_size=3))
        else:
            hyp = draw(st.lists(unit, max_size=14)) if kind == "other" else []
        pad = draw(st.sampled_from(["", " ", "  "]))
        hyps.append(pad + sep.join(hyp) + pad)
    tokenize = draw(st.sampled_from([None, "13a", "zh"]))
    return lang, hyps, [sep.join(r) for r in refs], tokenize


@settings(max_examples=25, deadline=None)
@given(corpora())
def test_random_corpora_equal_sacrebleu_cli(tmp_path_factory, case):
    lang, hyps, refs, tokenize = case
    ours = check_against_cli(hyps, refs, tmp_path_factory.mktemp("cli"), lang, tokenize)
    same = sum(h.strip() == r.strip() for h, r in zip(hyps, refs, strict=True))
    assert ours["exact_match"] == pytest.approx(same / len(hyps))


# ----------------------------------------------------------------------------- errors




@pytest.mark.parametrize("fn", [corpus_scores, sentence_scores])
def test_bad_input_gives_one_line(fn):
    assert "2 hypotheses but 3 references" in error(
        DataError, fn, ["a", "b"], ["a", "b", "c"], target_lang="en")
    assert "empty" in error(DataError, fn, [], [], target_lang="en")
    assert "list of strings" in error(DataError, fn, "a b", "a b", target_lang="en")
    assert "hypotheses[1] is NoneType" in error(DataError, fn, ["a", None], ["a", "b"],
                                                target_lang="en")
    assert "references[0] is int" in error(DataError, fn, ["a"], [1], target_lang="en")
    assert "tokenize='bogus' is not one of" in error(ConfigError, fn, ["a"], ["a"],
                                                     target_lang="en", tokenize="bogus")
    assert "target_lang" in error(ConfigError, fn, ["a"], ["a"], target_lang="")


def test_unavailable_tokenizer_gives_one_line():
    try:
        import MeCab  # noqa: F401
        pytest.skip("MeCab is installed, so ja-mecab works")
    except ImportError:
        pass
    msg = error(ConfigError, corpus_scores, ["a"], ["a"], target_lang="ja",
                tokenize="ja-mecab")
    assert msg.startswith("tokenize='ja-mecab' cannot be used here: ") and "sacrebleu[ja]" in msg


def test_missing_sacrebleu_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    monkeypatch.setitem(sys.modules, "sacrebleu.metrics", None)
    msg = error(LmforgeError, corpus_scores, ["a"], ["a"], target_lang="en")
    assert "pip install 'lmforge[generation]'" in msg
