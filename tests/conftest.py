import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_lm_run(tmp_path_factory):
    """A 2-layer GPT trained 150 steps on the world corpus, shared by the quantisation and
    compression tests (seconds; see compress_fixtures)."""
    from compress_fixtures import tiny_lm_run as train

    return train(tmp_path_factory.mktemp("tiny-lm") / "run")
