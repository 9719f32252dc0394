import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402


def _share_the_cores() -> None:
    """Under pytest-xdist (``make test``), give each worker process an equal share of the
    cores, so that two workers on two cores do not each start two compute threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // workers))


_share_the_cores()


@pytest.fixture(scope="session")
def tiny_lm_run(tmp_path_factory):
    """A 2-layer GPT trained 60 steps on the world corpus, shared by the quantisation and
    compression tests (seconds; see compress_fixtures)."""
    from compress_fixtures import tiny_lm_run as train

    return train(tmp_path_factory.mktemp("tiny-lm") / "run")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Put torch's thread count back after every test. A training with ``train.threads``
    (and a test that calls ``torch.set_num_threads``) changes it for the whole process, so
    without this the tests after it, the long quality runs included, ran on one thread:
    twice as slow, and with other numerics than their bars were measured with."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
