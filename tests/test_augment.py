"""EDA augmentation (lmforge.data.augment): each operation does what the paper says,
labels and entities survive, Chinese works, synonym sources, bad input."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pytest
from fakes import assert_user_error, run_cli
from seqeval.metrics.sequence_labeling import get_entities

from lmforge.data.augment import (
    EN_STOP_WORDS,
    ZH_STOP_WORDS,
    SynonymFile,
    SynonymSets,
    VectorSynonyms,
    augment_file,
    augment_record,
    augment_text,
    only_ops,
)
from lmforge.embeddings.keyed_vectors import KeyedVectors
from lmforge.errors import ConfigError, DataError, LmforgeError

EN_SETS = [["quick", "fast", "speedy"], ["brown", "tan"], ["fox", "vixen"],
           ["jumps", "leaps", "hops"], ["lazy", "idle"], ["dog", "hound", "canine"],
           ["happy", "glad", "cheerful"], ["the", "thee"], ["big", "large", "huge"]]
ZH_SETS = [["开心", "高兴", "快乐"], ["喜欢", "喜爱"], ["今天", "今日"], ["小狗", "小犬"],
           ["漂亮", "美丽"]]
SYN = SynonymSets(EN_SETS + ZH_SETS)
GROUP = {w: set(g) for g in EN_SETS + ZH_SETS for w in g}
WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")

SENT = "quick brown fox jumps lazy dog"  # 6 words, all with synonyms, none repeated


def _only(op: str, alpha: float) -> dict:
    """Options that switch on one operation."""
    off = {f"alpha_{o}": 0.0 for o in ("sr", "ri", "rs", "rd")}
    return {"alpha": alpha, **off, f"alpha_{op}": alpha}


def _words(text: str) -> list[str]:
    return WORD.findall(text)


# ----------------------------------------------------------------------------- operations


def test_deterministic_from_seed():
    a = augment_text(SENT + ", happy big dog.", n_aug=9, rng=random.Random(3), synonyms=SYN)
    b = augment_text(SENT + ", happy big dog.", n_aug=9, rng=random.Random(3), synonyms=SYN)
    c = augment_text(SENT + ", happy big dog.", n_aug=9, rng=random.Random(4), synonyms=SYN)
    assert a == b and a != c
    assert augment_text(SENT, n_aug=5, rng=7, synonyms=SYN) == augment_text(
        SENT, n_aug=5, rng=random.Random(7), synonyms=SYN)
    assert len(a) == 10 and a[0] == SENT + ", happy big dog."


@pytest.mark.parametrize("alpha,n", [(0.1, 1), (0.34, 2), (0.45, 2), (0.5, 3), (1.0, 6)])
def test_synonym_replacement_replaces_n_words_by_synonyms(alpha, n):
    # n = max(1, floor(alpha * l)) with l = 6: alpha 0.45 gives 2 (rounding would give 3).
    out = augment_text(SENT, n_aug=12, rng=random.Random(0), synonyms=SYN, **_only("sr", alpha))
    orig = SENT.split()
    assert len(out) == 13
    for copy in out[1:]:
        new = copy.split()
        assert len(new) == len(orig)
        changed = [(o, w) for o, w in zip(orig, new, strict=True) if o != w]
        assert len(changed) == n
        assert all(w in GROUP[o] for o, w in changed)


def test_synonym_replacement_skips_stop_words_and_keeps_case():
    text = "The dog and the Happy fox."
    out = augment_text(text, n_aug=20, rng=1, synonyms=SYN, **_only("sr", 1.0))
    seen = set()
    for copy in out[1:]:
        w = _words(copy)
        assert w[0] == "The" and w[3] == "the"  # stop words are never replaced
        assert w[-1] == "." and copy.endswith(".")
        seen.add(w[4])
    # "Happy" is found lower-cased; its synonyms come back capitalised.
    assert seen == {"Glad", "Cheerful"}


def test_synonym_replacement_replaces_every_occurrence_as_eda_py():
    out = augment_text("dog sees dog", n_aug=8, rng=0, synonyms=SYN, **_only("sr", 0.1))
    for copy in out[1:]:
        a, _, b = copy.split()
        assert a == b and a in {"hound", "canine"}


def test_synonym_replacement_changes_each_word_once():
    # "quick" -> "fast" must not be replaced again when the original "fast" is.
    for copy in augment_text("quick fast", n_aug=40, rng=0, synonyms=SYN,
                             **_only("sr", 1.0))[1:]:
        a, b = copy.split()
        assert a in {"fast", "speedy"} and b in {"quick", "speedy"}


@pytest.mark.parametrize("alpha,n", [(0.1, 1), (0.5, 3)])
def test_random_insertion_inserts_n_synonyms(alpha, n):
    out = augment_text(SENT, n_aug=12, rng=random.Random(2), synonyms=SYN, **_only("ri", alpha))
    orig = SENT.split()
    allowed = set().union(*(GROUP[w] for w in orig))
    for copy in out[1:]:
        new = copy.split()
        assert len(new) == len(orig) + n
        inserted = Counter(new) - Counter(orig)
        assert sum(inserted.values()) == n and set(inserted) <= allowed
        it = iter(new)  # the original words keep their order
        assert all(w in it for w in orig)


def test_random_swap_keeps_the_words_and_punctuation():
    text = "quick brown fox, lazy dog and a happy cat; big hound."
    out = augment_text(text, n_aug=16, rng=5, synonyms=SYN, **_only("rs", 0.3))
    orig = _words(text)
    punct = [(i, t) for i, t in enumerate(orig) if not t.isalnum()]
    assert any(c != text for c in out[1:])
    for copy in out[1:]:
        new = _words(copy)
        assert Counter(new) == Counter(orig)
        assert [(i, t) for i, t in enumerate(new) if not t.isalnum()] == punct
    # n = max(1, floor(0.3 * 11)) = 3 swaps move at most 6 words.
    assert all(sum(a != b for a, b in zip(_words(c), orig, strict=True)) <= 6 for c in out)


def test_random_deletion():
    text = "one two three four five six seven eight nine ten, eleven twelve."
    kept = augment_text(text, n_aug=8, rng=0, synonyms=SYN, **_only("rd", 1e-12))
    assert kept == [text] * 9  # p ~ 0 deletes nothing
    for copy in augment_text(text, n_aug=8, rng=0, synonyms=SYN, **_only("rd", 1.0))[1:]:
        words = [w for w in _words(copy) if w.isalnum()]
        assert len(words) == 1 and words[0] in text  # p = 1 keeps one random word
        assert [w for w in _words(copy) if not w.isalnum()] == [",", "."]
    # Each word goes with probability p: the deleted fraction is binomial around p.
    words = " ".join(f"w{i}" for i in range(20))
    out = augment_text(words, n_aug=400, rng=9, synonyms=SYN, **_only("rd", 0.3))
    assert len(out) == 401
    frac = 1 - np.mean([len(c.split()) for c in out[1:]]) / 20
    assert abs(frac - 0.3) < 0.03  # sd 0.005


def test_copies_split_over_operations(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"the quick fox {i} jumps", "label": i % 2})
                           + "\n" for i in range(10)), encoding="utf-8")
    stats = augment_file(src, tmp_path / "out.jsonl", n_aug=8, alpha=0.2, synonyms=SYN)
    assert stats["records"] == 10 and stats["written"] == 90 and stats["augmented"] == 80
    assert sum(stats["ops"].values()) == 80
    assert all(10 <= k <= 30 for k in stats["ops"].values())  # 3 per op per record, trimmed
    stats = augment_file(src, tmp_path / "out.jsonl", n_aug=8, alpha=0.2, alpha_sr=0,
                         synonyms=SYN)
    assert stats["ops"]["sr"] == 0 and sum(stats["ops"].values()) == 80
    stats = augment_file(src, tmp_path / "out.jsonl", n_aug=0, synonyms=SYN)
    assert stats["written"] == 10


def test_only_ops_switches_the_others_off(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"text": f"the quick fox {i} jumps", "label": i % 2})
                           + "\n" for i in range(10)), encoding="utf-8")
    assert only_ops(["rs", "rd"]) == {"alpha_sr": 0.0, "alpha_ri": 0.0}
    stats = augment_file(src, out, n_aug=4, synonyms=SYN, **only_ops(["rs"]))
    assert stats["ops"] == {"sr": 0, "ri": 0, "rs": 40, "rd": 0}
    for bad in (["xx"], [], "sw"):
        with pytest.raises(ConfigError, match="EDA operations are sr, ri, rs, rd"):
            only_ops(bad)
    code, stdout, _ = run_cli(["data", "augment", str(src), "--out", str(out), "--n-aug", "2",
                               "--ops", "rs, rd", "--seed", "1"], capsys)
    assert code == 0 and "wrote 30 records" in stdout
    copies = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    originals = {c["text"] for c in copies if c["augmented"] == 0}
    for c in copies:  # swaps and deletions only: no word that was not there
        words = set(c["text"].split())
        assert any(words <= set(o.split()) for o in originals)
    before = out.read_bytes()
    assert_user_error(["data", "augment", str(src), "--out", str(out), "--ops", "sr,swap"],
                      capsys, "EDA operations", "swap")
    assert out.read_bytes() == before


# ----------------------------------------------------------------------------- records


def test_classification_labels_kept(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    recs = [{"text": "the quick dog is happy", "label": "pos", "id": 1},
            {"text": "我今天很开心，因为我喜欢小狗。", "label": "正面", "id": 2},
            {"text": "a lazy brown fox", "label": "neg", "id": 3}]
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n",
                   encoding="utf-8")
    stats = augment_file(src, out, n_aug=4, alpha=0.2, synonyms=SYN, seed=1)
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(got) == 15 and stats["langs"] == {"en": 2, "zh": 1}
    assert stats["task"] == "classify"
    for i, r in enumerate(recs):
        block = got[5 * i:5 * i + 5]
        assert [b["augmented"] for b in block] == [0, 1, 2, 3, 4]
        assert block[0] == {**r, "augmented": 0}
        assert all(b["label"] == r["label"] and b["id"] == r["id"] for b in block)
        assert all(set(b) == set(r) | {"augmented"} for b in block)
    again = tmp_path / "again.jsonl"
    augment_file(src, again, n_aug=4, alpha=0.2, synonyms=SYN, seed=1)
    assert again.read_bytes() == out.read_bytes()


def test_chinese_uses_jieba_words():
    text = "我今天很开心，因为我喜欢这只小狗。"
    for copy in augment_text(text, n_aug=8, rng=0, synonyms=SYN, **_only("sr", 0.2))[1:]:
        assert " " not in copy and copy != text
        # n = max(1, floor(0.2 * 10 jieba words)) = 2 word types replaced by synonyms
        changed = {w for w in ("今天", "开心", "喜欢", "小狗") if w not in copy}
        assert len(changed) == 2
        assert all(any(s in copy for s in GROUP[w] - {w}) for w in changed)
        assert copy.endswith("。") and "，" in copy
    for copy in augment_text(text, n_aug=8, rng=0, synonyms=SYN, **_only("rs", 0.2))[1:]:
        assert sorted(copy) == sorted(text)


def _ner_record(rng: random.Random, lang: str) -> dict:
    """A random NER record: words and entities of the given language, BIO tags."""
    if lang == "en":
        o_words = ["the", "quick", "dog", "jumps", "over", "a", "lazy", "fox", "happy", "big",
                   ",", ".", "and", "very", "brown"]
        ents = {"PER": [["Alice"], ["Bob", "Smith"]], "LOC": [["New", "York"], ["Paris"]],
                "ORG": [["Acme", "Corp", "Ltd"]]}
    else:
        o_words = ["我", "今天", "很", "开心", "喜欢", "小狗", "，", "。", "漂亮", "在", "和"]
        ents = {"PER": [["张", "三"], ["李", "四"]], "LOC": [["北", "京"], ["上", "海"]],
                "ORG": [["清", "华", "大", "学"]]}
    tokens, tags = [], []
    for _ in range(rng.randint(1, 14)):
        if rng.random() < 0.3:
            label = rng.choice(sorted(ents))
            toks = rng.choice(ents[label])
            tags += [f"B-{label}"] + [f"I-{label}"] * (len(toks) - 1)
            tokens += toks
        else:
            w = rng.choice(o_words)
            toks = list(w) if lang == "zh" else [w]  # zh NER tokens are characters
            tokens += toks
            tags += ["O"] * len(toks)
    sep = "" if lang == "zh" else " "
    text = sep.join(tokens)
    offsets, pos = [], 0
    for t in tokens:
        offsets.append([pos, pos + len(t)])
        pos += len(t) + len(sep)
    spans = [{"start": offsets[a][0], "end": offsets[b][1], "label": lab,
              "text": text[offsets[a][0]:offsets[b][1]]}
             for lab, a, b in get_entities(tags)]
    rec = {"text": text, "tokens": tokens, "tags": tags, "spans": spans, "source": "t"}
    if rng.random() < 0.5:
        rec["offsets"] = offsets
    return rec


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_ner_entities_survive_augmentation(lang):
    rng = random.Random(0)
    changed = 0
    for _ in range(150):
        rec = _ner_record(rng, lang)
        ents = [(s["label"], s["text"]) for s in rec["spans"]]
        ent_tokens = [(t, g) for t, g in zip(rec["tokens"], rec["tags"], strict=True)
                      if g != "O"]
        out = augment_record(rec, n_aug=6, alpha=0.3, rng=rng, synonyms=SYN)
        assert out[0] == {**rec, "augmented": 0}
        for k, r in enumerate(out):
            assert r["augmented"] == k and r["source"] == "t"
            text, tokens, tags = r["text"], r["tokens"], r["tags"]
            assert len(tokens) == len(tags)
            # spans slice the new text to the same entities, same order and labels
            assert [(s["label"], text[s["start"]:s["end"]]) for s in r["spans"]] == ents
            assert [s["text"] for s in r["spans"]] == [e for _, e in ents]
            # tokens lie in the text in order, only whitespace between them
            pos, offs = 0, []
            for t in tokens:
                at = text.index(t, pos)
                assert not text[pos:at].strip()
                offs.append((at, at + len(t)))
                pos = at + len(t)
            assert not text[pos:].strip()
            if "offsets" in rec:
                assert [tuple(o) for o in r["offsets"]] == offs
            # the tags' entities are the spans, token for token
            assert [(lab, offs[a][0], offs[b][1]) for lab, a, b in get_entities(tags)] == [
                (s["label"], s["start"], s["end"]) for s in r["spans"]]
            assert [(t, g) for t, g in zip(tokens, tags, strict=True) if g != "O"] == \
                ent_tokens
            if lang == "zh":
                assert all(len(t) == 1 for t in tokens)
            changed += text != rec["text"]
    assert changed > 300  # the O words did change


def test_ner_columns_follow_tokens():
    rec = {"text": "Alice met the happy dog", "tokens": ["Alice", "met", "the", "happy", "dog"],
           "tags": ["B-PER", "O", "O", "O", "O"], "doc_start": True,
           "columns": [["NNP"], ["VBD"], ["DT"], ["JJ"], ["NN"]]}
    out = augment_record(rec, n_aug=8, alpha=0.5, rng=3, synonyms=SYN, task="ner")
    pos = dict(zip(rec["tokens"], rec["columns"], strict=True))
    for r in out[1:]:
        assert "doc_start" not in r and len(r["columns"]) == len(r["tokens"])
        for t, c in zip(r["tokens"], r["columns"], strict=True):
            assert c in (pos.get(t), ["-X-"])  # "-X-": a new token (maybe "dog" again)
        assert r["columns"][0] == ["NNP"]


def test_spans_must_match_entity_tokens():
    rec = {"text": "Alice met Bob", "tokens": ["Alice", "met", "Bob"],
           "tags": ["B-PER", "O", "B-PER"], "spans": [{"start": 0, "end": 9, "label": "PER"}]}
    with pytest.raises(DataError, match=r"spans\[0\].*entity-tagged"):
        augment_record(rec, rng=0, synonyms=SYN)
    bad = {**rec, "tokens": ["Alice", "meets", "Bob"], "spans": []}
    with pytest.raises(DataError, match="token 1 'meets'"):
        augment_record(bad, rng=0, synonyms=SYN)


# ----------------------------------------------------------------------------- synonyms


def test_synonym_file(tmp_path):
    p = tmp_path / "syn.txt"
    p.write_text("# comment\nhappy glad, cheerful\n\n开心，高兴、快乐\nglad pleased\n",
                 encoding="utf-8")
    syn = SynonymFile(p)
    assert syn.synonyms("happy") == ["glad", "cheerful"]
    assert syn.synonyms("glad") == ["happy", "cheerful", "pleased"]  # union of two sets
    assert syn.synonyms("高兴") == ["开心", "快乐"] and syn.synonyms("sad") == []
    for body, line, what in [("a b\nlonely\n", 2, "at least 2"), ("a b\n, ,\n", 2, "at least 2"),
                             ("a a\n", 1, "at least 2"), ("x y\nab\x00c d\n", 2, "garbled")]:
        p.write_text(body, encoding="utf-8")
        with pytest.raises(DataError, match=rf"syn.txt:line {line}: .*{what}"):
            SynonymFile(p)
    p.write_text("\n# nothing\n", encoding="utf-8")
    with pytest.raises(DataError, match="no synonym sets"):
        SynonymFile(p)
    p.write_bytes(b"happy glad\n\xff\xfe\n")
    with pytest.raises(DataError, match="not valid UTF-8"):
        SynonymFile(p)
    with pytest.raises(DataError, match="cannot read"):
        SynonymFile(tmp_path / "missing.txt")


def _vectors() -> KeyedVectors:
    # cos(happy, glad) = 0.9, cos(happy, joyful) = 0.7, cos(happy, sad) = 0.5
    words = ["happy", "glad", "joyful", "sad", "table"]
    vecs = np.array([[1, 0, 0], [0.9, np.sqrt(1 - 0.81), 0], [0.7, 0, np.sqrt(0.51)],
                     [0.5, -np.sqrt(0.75), 0], [0, 0, -1]], dtype=np.float32)
    return KeyedVectors(words, vecs)


@pytest.mark.parametrize("binary", [False, True])
def test_vector_synonyms_floor_and_topn(tmp_path, binary):
    p = tmp_path / ("v.bin" if binary else "v.txt")
    _vectors().save_word2vec_format(p, binary=binary)
    assert VectorSynonyms(p).synonyms("happy") == ["glad", "joyful"]
    assert VectorSynonyms(p, min_similarity=0.4).synonyms("happy") == ["glad", "joyful", "sad"]
    assert VectorSynonyms(p, min_similarity=0.8).synonyms("happy") == ["glad"]
    assert VectorSynonyms(p, topn=1, min_similarity=0.0).synonyms("happy") == ["glad"]
    assert VectorSynonyms(_vectors()).synonyms("unknown") == []
    out = augment_text("a happy table", n_aug=4, rng=0, synonyms=VectorSynonyms(p),
                       **_only("sr", 0.1))
    assert set(out[1:]) <= {"a glad table", "a joyful table"}
    for bad in [{"topn": 0}, {"min_similarity": 1.5}]:
        with pytest.raises(ConfigError):
            VectorSynonyms(p, **bad)
    (tmp_path / "junk.txt").write_text("not a header\n", encoding="utf-8")
    with pytest.raises(LmforgeError, match="junk.txt"):
        VectorSynonyms(tmp_path / "junk.txt")


def test_world_synonyms():
    tasks = pytest.importorskip("lmforge.corpora.tasks")
    if not hasattr(tasks, "synonym_sets"):  # the module is being written
        pytest.skip("lmforge.corpora.tasks.synonym_sets does not exist yet")
    from lmforge.data.augment import WorldSynonyms
    from lmforge.tokenize.zh import jieba_words

    for lang in ("en", "zh"):
        raw = tasks.synonym_sets(lang)
        groups = ([[k, *v] for k, v in raw.items()] if isinstance(raw, Mapping)
                  else [list(g) for g in raw])
        syn = WorldSynonyms(lang)
        assert len(syn) > 0
        word, group = next((w, g) for g in groups for w in g if len(set(g)) > 1
                           and w.isalnum() and w.lower() not in EN_STOP_WORDS | ZH_STOP_WORDS
                           and (lang == "en" or jieba_words(w) == [w]))
        assert set(syn.synonyms(word)) >= set(group) - {word}
        out = augment_text(word, n_aug=4, rng=0, lang=lang, **_only("sr", 1.0))
        assert len(out) == 5 and set(out[1:]) <= set(syn.synonyms(word))  # the default


# ----------------------------------------------------------------------------- bad input


def test_bad_options():
    for bad in [{"n_aug": -1}, {"n_aug": 2.5}, {"alpha": 1.5}, {"alpha": -0.1},
                {"alpha_sr": 2}, {"alpha": float("nan")}, {"lang": "fr"}]:
        with pytest.raises(ConfigError):
            augment_text(SENT, rng=0, synonyms=SYN, **bad)
    with pytest.raises(ConfigError, match="rng"):
        augment_text(SENT, rng="seed", synonyms=SYN)
    with pytest.raises(ConfigError, match="synonyms"):
        augment_text(SENT, rng=0, synonyms={"quick": ["fast"]})
    with pytest.raises(ConfigError, match="task"):
        augment_record({"text": SENT}, rng=0, synonyms=SYN, task="qa")


def test_bad_files_name_file_and_line(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    out.write_text("keep me\n", encoding="utf-8")
    good = json.dumps({"text": "a quick dog", "label": 1})
    cases = [
        (f"{good}\n{{bad json\n", 2, "invalid JSON"),
        (f"{good}\n\n{json.dumps({'label': 1})}\n", 3, "'text' is missing"),
        (f"{json.dumps({'text': 3})}\n", 1, "'text' is a number"),
        (f"{good}\n[1, 2]\n", 2, "expected a JSON object"),
        (json.dumps({"text": "a b", "tokens": ["a", "b"], "tags": ["O"]}) + "\n", 1,
         "2 tokens but 1 tags"),
        (json.dumps({"text": "a b", "tokens": ["a", "c"], "tags": ["O", "O"]}) + "\n", 1,
         "token 1 'c'"),
    ]
    for body, line, what in cases:
        src.write_text(body, encoding="utf-8")
        with pytest.raises(DataError, match=rf"in.jsonl:line {line}: .*{what}"):
            augment_file(src, out, synonyms=SYN)
        assert out.read_text(encoding="utf-8") == "keep me\n"  # atomic: left as it was
    src.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no records"):
        augment_file(src, out, synonyms=SYN)
    src.write_text(good + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="n_aug"):
        augment_file(src, out, n_aug=-1, synonyms=SYN)
    with pytest.raises(ConfigError, match="alpha"):
        augment_file(src, out, alpha=1.2, synonyms=SYN)
    with pytest.raises(DataError, match="cannot read"):
        augment_file(tmp_path / "missing.jsonl", out, synonyms=SYN)
