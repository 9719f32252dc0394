"""Robustness to adversarial text: the normalisation defences (invisible characters,
homoglyphs, mixed scripts) on attacks and on text that must not change, the attacks'
determinism, rates and NER span re-mapping, and ``lmforge evaluate --attack`` end to end
on tiny task runs, with its bad-input errors."""

from __future__ import annotations

import json
import random
import re

import pytest
from fakes import assert_user_error, run_cli, tiny_gpt_folder
from serve_fixtures import ner_run, sentiment_run

from lmforge.corpora.tasks import render_task_set
from lmforge.data.augment import WorldSynonyms
from lmforge.data.clean import DEFENCES, clean_text
from lmforge.data.normalize_adversarial import (
    LOOKALIKES,
    fold_homoglyphs,
    fold_mixed_scripts,
    remove_invisible,
)
from lmforge.data.prepare import _clean_options
from lmforge.errors import ConfigError
from lmforge.eval.attacks import (
    ATTACKS,
    ZERO_WIDTH,
    attack_records,
    attack_text,
    check_rate,
    defended,
)
from lmforge.eval.attacks import _charnoise as charnoise_edits
from lmforge.tasks.evaluation import metrics_for

# Text no defence may change: Chinese (full-width punctuation included), genuine Russian
# and Greek, Russian beside English, emoji ZWJ sequences, a subdivision flag, Persian ZWNJ.
UNTOUCHED = [
    "你好，世界！今天天气很好。", "我买了一部手机，价格是２９９９元。",
    "Привет, мир! Москва — столица России.", "Καλημέρα κόσμε, η Αθήνα είναι όμορφη.",
    "English words and русский текст together", "family 👨\u200d👩\u200d👧 and 👍🏽",
    "flag 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f ok",
    "می\u200cخواهم بروم", "café naïve résumé", "plain ASCII text, 123!"]


@pytest.fixture(scope="module")
def english() -> list[str]:
    """English reviews of the world's sentiment set (ASCII)."""
    texts = [r["text"] for r in render_task_set("sentiment", seed=0).splits["test"]
             if r["lang"] == "en"][:200]
    assert all(t.isascii() for t in texts)
    return texts


@pytest.fixture(scope="module")
def ner_records() -> list[dict]:
    return render_task_set("ner", seed=0).splits["test"][:200]


# ----------------------------------------------------------------------------- defences


@pytest.mark.parametrize("text", UNTOUCHED)
def test_defences_leave_genuine_text_unchanged(text):
    assert clean_text(text, **DEFENCES) == text
    assert remove_invisible(text) == fold_homoglyphs(text) == fold_mixed_scripts(text) == text


def test_each_defence_on_positives():
    # invisible: zero-width, word joiner, BOM, soft hyphen, bidi controls, stray tags
    assert remove_invisible("g\u200bo\u200co\u200dd\u2060s\ufeff \u00adx") == "goods x"
    assert remove_invisible("evil\u202etxt.exe \u2066a\u2069 \u200eb\u200f") == "eviltxt.exe a b"
    assert remove_invisible("hi\U000e0041\U000e0042 你\u200d好") == "hi 你好"
    # homoglyphs: full-width letters (not punctuation), mathematical letters, and whole
    # look-alike words where no genuine Cyrillic/Greek word is present
    assert fold_homoglyphs("ｆｏｏｄ ９ 𝐛𝐨𝐥𝐝 ı，") == "food ９ bold i，"
    assert fold_homoglyphs("ѕо bad, gооd ΡΑΚ") == "so bad, good PAK"
    assert fold_homoglyphs("我们在Ѕеоul见面") == "我们在Seoul见面"
    assert fold_homoglyphs("ѕо bad, но плохо") == "ѕо bad, но плохо"  # genuine Russian
    # mixed scripts: per word, even beside genuine Russian; whole-Cyrillic words stay
    assert fold_mixed_scripts("pаsswоrd и Москва") == "password и Москва"
    assert fold_mixed_scripts("ѕо") == "ѕо"
    assert fold_mixed_scripts("Dжон") == "Dжон"  # ж has no look-alike: not a disguise
    # every look-alike maps to one ASCII letter or digit
    assert all(len(a) == 1 and a.isascii() and a.isalnum() for a in LOOKALIKES.values())


def test_clean_text_options_are_off_by_default_and_reach_the_data_config():
    s = "gоod\u200d"
    assert clean_text(s) == s  # the control step keeps joiners (emoji need them)
    assert clean_text(s, invisible=True, mixed_scripts=True) == "good"
    assert clean_text("ѕо bad", homoglyphs=True) == "so bad"
    assert _clean_options({"homoglyphs": True, "invisible": True}) == {
        "homoglyphs": True, "invisible": True}
    with pytest.raises(ConfigError, match="homoglyph"):
        _clean_options({"homoglyph": True})


# ----------------------------------------------------------------------------- attacks


def test_attacks_are_deterministic_per_seed_and_keep_labels(english, ner_records):
    recs = [{"text": t, "label": "x"} for t in english[:30]]
    for attack in ATTACKS:
        a, b = attack_records(recs, attack, 0.2, seed=3), attack_records(recs, attack, 0.2, 3)
        assert a == b
        assert a != attack_records(recs, attack, 0.2, seed=4)
        assert all(r["label"] == "x" for r in a)
        assert sum(r["text"] != o["text"] for r, o in zip(a, recs, strict=True)) >= 20
        n = attack_records(ner_records[:30], attack, 0.2, seed=3)
        assert n == attack_records(ner_records[:30], attack, 0.2, seed=3)
    # a record's attack does not depend on the records after it
    assert attack_records(recs[:6], "charnoise", 0.3, 1) == \
        attack_records(recs, "charnoise", 0.3, 1)[:6]


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_attack_rates(english, rate):
    text = " ".join(english)
    letters = sum(c.isascii() and c.isalpha() for c in text)
    alnum = sum(c.isalnum() for c in text)
    nonspace = sum(not c.isspace() for c in text)
    tol = 4 * (rate * (1 - rate) / letters) ** 0.5  # 4 standard deviations
    hom = attack_text(text, "homoglyph", rate, random.Random(0))
    assert len(hom) == len(text)
    changed = sum(a != b for a, b in zip(hom, text, strict=True))
    assert abs(changed / letters - rate) < tol
    assert all(LOOKALIKES.get(a) == b for a, b in zip(hom, text, strict=True) if a != b)
    zw = attack_text(text, "zerowidth", rate, random.Random(0))
    assert abs(sum(c in ZERO_WIDTH for c in zw) / nonspace - rate) < tol
    assert "".join(c for c in zw if c not in ZERO_WIDTH) == text
    noisy, edits = charnoise_edits(text, rate, random.Random(0), "")
    assert abs(edits / alnum - rate) < tol and noisy != text
    # synonym: EDA's synonym replacement with alpha = rate, world synonyms only
    syn = WorldSynonyms("en")
    for t in english[:40]:
        new = attack_text(t, "synonym", rate, random.Random(1))
        old_w, new_w = re.findall(r"\w+", t), re.findall(r"\w+", new)
        if len(old_w) == len(new_w):
            swaps = {(a, b) for a, b in zip(old_w, new_w, strict=True) if a != b}
            assert len({a for a, _ in swaps}) <= max(1, int(rate * len(old_w)))
            assert all(b in syn.synonyms(a) or b.lower() in syn.synonyms(a.lower())
                       for a, b in swaps)


def test_check_rate():
    assert check_rate(1) == 1.0 and check_rate(0.25) == 0.25
    for bad in (0, 0.0, -0.1, 1.5, True, "0.1", float("nan")):
        with pytest.raises(ConfigError, match="rate"):
            check_rate(bad)


def test_ner_spans_are_remapped_exactly(ner_records):
    rec = {"text": "Anna lives in Paris .", "tokens": ["Anna", "lives", "in", "Paris", "."],
           "tags": ["B-PER", "O", "O", "B-LOC", "O"],
           "spans": [{"start": 0, "end": 4, "label": "PER", "text": "Anna"},
                     {"start": 14, "end": 19, "label": "LOC", "text": "Paris"}]}
    out = attack_records([rec], "zerowidth", 1.0, seed=0)[0]
    # every character of every token is followed by one zero-width character
    assert [len(t) for t in out["tokens"]] == [8, 10, 4, 10, 2]
    assert out["offsets"] == [[0, 8], [9, 19], [20, 24], [25, 35], [36, 38]]
    assert [(s["start"], s["end"]) for s in out["spans"]] == [(0, 8), (25, 35)]
    assert out["spans"][1]["text"] == out["text"][25:35] == out["tokens"][3]
    assert out["tags"] == rec["tags"]
    for attack in ATTACKS:
        for old, new in zip(ner_records, attack_records(ner_records, attack, 0.3, 0),
                            strict=True):
            assert len(new["tokens"]) == len(new["tags"])
            for tok, (s, e) in zip(new["tokens"], new["offsets"], strict=True):
                assert new["text"][s:e] == tok and tok
            for sp in new["spans"]:
                assert new["text"][sp["start"]:sp["end"]] == sp["text"]
            if attack != "synonym":  # the same tokens, each edited in place
                assert new["tags"] == old["tags"]
                first = {s: k for k, (s, _) in enumerate(old["offsets"])}
                for so, sn in zip(old["spans"], new["spans"], strict=True):
                    assert sn["start"] == new["offsets"][first[so["start"]]][0]
            else:  # entities are never changed by synonym replacement
                assert [s["text"] for s in new["spans"]] == [s["text"] for s in old["spans"]]
    # the entity metric is computable on attacked records: gold tags are still aligned
    att = attack_records(ner_records, "charnoise", 0.3, 0)
    gold = [r["tags"] for r in att]
    assert metrics_for("tag", gold, gold)["entity_f1"] == 1.0


@pytest.mark.parametrize("rate", [0.3, 1.0])
def test_defences_undo_homoglyph_and_zerowidth_exactly_on_ascii(english, ner_records, rate):
    recs = [{"text": t, "label": "x"} for t in english]
    for attack in ("homoglyph", "zerowidth"):
        att = attack_records(recs, attack, rate, seed=2)
        assert sum(a != r for a, r in zip(att, recs, strict=True)) > len(recs) // 2
        assert defended(att) == recs
        assert [clean_text(r["text"], **DEFENCES) for r in att] == english
        # NER: tokens, offsets, spans and text all restored (Chinese records included)
        assert defended(attack_records(ner_records, attack, rate, seed=2)) == ner_records
    assert defended(recs) == recs and defended(ner_records) == ner_records


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("adv")
    return sentiment_run(d), ner_run(d), d


def test_cli_bad_input(runs, tmp_path, capsys):
    sent, _, d = runs
    data = str(d / "sent.jsonl")
    code, _, err = run_cli(["evaluate", str(sent), "--data", data, "--attack", "typo"],
                           capsys)
    assert code == 2 and "Invalid value for '--attack'" in err and "homoglyph" in err
    for rate in ("0", "1.5", "-0.2"):
        assert_user_error(["evaluate", str(sent), "--data", data, "--attack", "charnoise",
                           "--rate", rate], capsys, "--rate", "(0, 1]")
    gpt = tiny_gpt_folder(tmp_path / "gpt")
    assert_user_error(["evaluate", str(gpt), "--data", data, "--attack", "homoglyph"],
                      capsys, "apply to fine-tuned classifier and NER runs only")


def test_cli_attack_evaluation_end_to_end(runs, tmp_path, capsys):
    sent, ner, d = runs
    data = str(d / "sent.jsonl")
    out = tmp_path / "ev"
    code, stdout, err = run_cli(["evaluate", str(sent), "--data", data, "--attack",
                                 "homoglyph", "--rate", "1", "--out", str(out)], capsys)
    assert code == 0, err
    assert "under attack homoglyph (rate 1.0, seed 0)" in stdout
    res = json.loads((out / "sent" / "attack.json").read_text())
    clean = json.loads((out / "sent" / "metrics.json").read_text())
    assert res["clean"] == clean and res["n"] == 24
    assert res["drop"]["accuracy"] == pytest.approx(clean["accuracy"]
                                                   - res["attacked"]["accuracy"])
    line = next(ln for ln in stdout.splitlines() if ln.strip().startswith("accuracy")
                and len(ln.split()) == 4)
    assert [float(x) for x in line.split()[1:]] == pytest.approx(
        [clean["accuracy"], res["attacked"]["accuracy"], res["drop"]["accuracy"]], abs=1e-4)
    # with the defences, the homoglyph attack is undone: no drop at all
    code, stdout, err = run_cli(["evaluate", str(sent), "--data", data, "--attack",
                                 "homoglyph", "--rate", "1", "--defend", "--out",
                                 str(tmp_path / "ev2")], capsys)
    assert code == 0, err
    res2 = json.loads((tmp_path / "ev2" / "sent" / "attack.json").read_text())
    assert res2["defend"] and res2["clean"] == clean
    assert all(v == 0 for v in res2["drop"].values())
    # NER: entity metrics under attack
    code, stdout, err = run_cli(["evaluate", str(ner), "--data", str(d / "ner.conll"),
                                 "--attack", "charnoise", "--rate", "0.5", "--seed", "1"],
                                capsys)
    assert code == 0, err
    assert "under attack charnoise (rate 0.5, seed 1)" in stdout
    row = next(ln for ln in stdout.splitlines() if ln.split()[:1] == ["entity_f1"]
               and len(ln.split()) == 4)
    f1_clean, f1_att, drop = map(float, row.split()[1:])
    assert 0 <= f1_att <= 1 and drop == pytest.approx(f1_clean - f1_att, abs=2e-4)


def test_predict_with_the_defences_sees_through_homoglyphs(runs, capsys):
    sent = runs[0]
    clean = "I love this film, it is wonderful."
    attacked = "I lоvе this film, it is wоndеrful.\u200b"  # Cyrillic о/е, a zero-width space
    outs = []
    for text, extra in ((clean, []), (attacked, ["--defend"])):
        code, out, err = run_cli(["predict", str(sent), "--text", text, *extra], capsys)
        assert code == 0, err
        outs.append(json.loads(out.strip()))
    assert outs[1]["text"] == clean and outs[1]["label"] == outs[0]["label"]
    assert outs[1]["probs"] == pytest.approx(outs[0]["probs"])
