"""Chinese word2vec: the planted city-country analogies and word classes of the world
corpus's Chinese side, segmented with jieba as the ``w2v-world-zh`` recipe does.

Bounds from measurements on the same token lists (10k sentences, 139,936 tokens,
vector_size 50, 5 epochs, 1 worker, skip-gram, negative 5), seeds 1-6:

=========  ==========================  ============  =======================
model      city-country (528 q.)       class purity  巴黎:法国::东京:? top-3
=========  ==========================  ============  =======================
lmforge    0.436-0.483 (mean 0.464)    1.0           日本 (6/6)
gensim 4.4 0.402-0.473 (mean 0.448)    1.0           日本 (6/6)
random     0.004                       0.13          no
=========  ==========================  ============  =======================
"""

import numpy as np
import pytest
from fakes import run_cli

from lmforge.config import RECIPE_DIR
from lmforge.embeddings import (
    KeyedVectors,
    class_purity,
    evaluate_analogies,
    planted_analogies,
    tokenize,
    word_classes,
)
from lmforge.embeddings.recipe import load_embed_recipe, train_embeddings

pytest.importorskip("jieba")
pytest.importorskip("numba")

MIN_CITY_COUNTRY = 0.35
MIN_PURITY = 0.95


def jieba_tok(text):
    return tokenize(text, "zh", "jieba")


def quality(kv):
    sections = evaluate_analogies(kv, planted_analogies("zh", jieba_tok))["sections"]
    return sections["city-country"], class_purity(kv, word_classes("zh", jieba_tok))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("w2v-zh")
    recipe = load_embed_recipe(RECIPE_DIR / "embed" / "w2v-world-zh.yaml", [
        f"run.out_dir={out}", "data.world_sentences=10000", "word2vec.vector_size=50",
        "word2vec.epochs=5", "word2vec.workers=1"])
    kv, stats = train_embeddings(recipe, log=lambda *a: None)
    return out, kv, stats


def test_chinese_analogies_and_classes_are_learned(trained):
    _out, kv, stats = trained
    city, purity = quality(kv)
    assert city["total"] == 528 and city["skipped"] == 0  # jieba keeps the names whole
    assert city["accuracy"] >= MIN_CITY_COUNTRY, city
    assert stats["planted_analogies"]["city-country"] == pytest.approx(city["accuracy"])
    assert purity >= MIN_PURITY
    assert kv.doesnt_match(["红色", "蓝色", "绿色", "东京"]) == "东京"
    # the same vocabulary with untrained (random) vectors fails both bounds
    rnd = KeyedVectors(kv.index_to_key,
                       np.random.default_rng(0).random(kv.vectors.shape) - 0.5)
    r_city, r_purity = quality(rnd)
    assert r_city["accuracy"] < MIN_CITY_COUNTRY / 10 and r_purity < 0.5


def test_cli_answers_the_chinese_analogy(trained, capsys):
    out, _kv, _stats = trained
    code, stdout, _ = run_cli(["embed", "analogy", str(out), "巴黎", "法国", "东京", "--topn",
                               "3"], capsys)
    assert code == 0
    answers = [line.split("\t")[0] for line in stdout.splitlines()]
    assert "日本" in answers, answers
