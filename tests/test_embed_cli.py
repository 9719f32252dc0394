"""`lmforge embed train|query|analogy|plot` on a small world corpus."""

import pytest

from lmforge.cli import main
from lmforge.embeddings.recipe import load_vectors

pytest.importorskip("numba")


def run(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("w2v")
    with pytest.raises(SystemExit) as e:
        main(["embed", "train", "w2v-world", "--set", f"run.out_dir={out}",
              "--set", "data.world_sentences=8000", "--set", "word2vec.vector_size=48",
              "--set", "word2vec.epochs=3"])
        raise SystemExit(0)
    assert e.value.code == 0
    return out


def test_train_writes_gensim_readable_vectors_that_learned_the_world(trained):
    kv = load_vectors(trained)
    assert (trained / "config.yaml").is_file() and (trained / "stats.json").is_file()
    # every person name is closest to another person name (a planted word class)
    names = ["Alice", "Tom", "David", "Emma"]
    for n in names:
        top = [w for w, _ in kv.most_similar(n, topn=5)]
        assert any(w in {"Lucy", "Mary", "Anna", "Jack", "Peter", "James", *names} for w in top)


def test_query_analogy_plot(trained, tmp_path, capsys):
    code, out, err = run(["embed", "analogy", str(trained), "Paris", "France", "Tokyo",
                          "--topn", "5"], capsys)
    assert code == 0, err
    countries = {"Japan", "China", "Korea", "India", "France", "Britain", "Germany", "Italy",
                 "Spain", "America", "Canada", "Australia"}
    assert out.split()[0] in countries  # the answer is a country
    code, out, err = run(["embed", "query", str(trained), "--word", "teacher", "--topn", "3"],
                         capsys)
    assert code == 0 and out.startswith("teacher:")
    png = tmp_path / "w.png"
    code, out, err = run(["embed", "plot", str(trained), "--word", "Paris", "--word", "France",
                          "--word", "Tokyo", "--out", str(png)], capsys)
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_errors(trained, tmp_path, capsys):
    code, _, err = run(["embed", "query", str(trained), "--word", "nosuchword"], capsys)
    assert code == 2 and "not in the vocabulary" in err
    code, _, err = run(["embed", "train", "w2v-world", "--set", "word2vec.windo=3"], capsys)
    assert code == 2 and "windo" in err and "window" in err
    code, _, err = run(["embed", "query", str(tmp_path / "none"), "--word", "x"], capsys)
    assert code == 2 and "no word vectors" in err
