"""The n-gram LM as an lmforge model over token ids (``arch: ngram``).

The reference is :class:`~lmforge.models.ngram.NGramLM` on string tokens (itself checked
against NLTK and a naive implementation in ``test_ngram.py``): the model's log-
probabilities must be its log-probabilities, the ``<unk>`` mass must be shared by the
unseen ids so every distribution sums to 1, and save/load, generation with and without
the cache, and the CLI recipe must work like those of a neural model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmforge.errors import CheckpointError, DataError
from lmforge.hub import load_pretrained
from lmforge.models.ngram import BOS, EOS
from lmforge.models.ngram_model import NGramConfig, NGramModel

PAD, BOS_ID, EOS_ID, V = 0, 1, 2, 40


def documents(n=300, seed=0):
    """Ids 3..29 in a noisy chain (ids 30..39 never occur: the unseen ones)."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        x = int(rng.integers(3, 30))
        doc = [x]
        for _ in range(int(rng.integers(2, 12))):
            x = 3 + (x - 3 + int(rng.choice([1, 2, 7]))) % 27
            doc.append(x)
        docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def model():
    cfg = NGramConfig(order=3, vocab_size=V, pad_id=PAD, bos_id=BOS_ID, eos_id=EOS_ID)
    return NGramModel.fit(cfg, documents())


def test_logprobs_are_the_counting_models(model):
    lm = model.lm
    doc = documents(5, seed=1)[0] + [35]  # 35 was never seen: scored as <unk>
    ids = torch.tensor([[BOS_ID, *doc, EOS_ID]])
    got = model(ids)[0, :-1].gather(1, ids[0, 1:, None]).squeeze(1).double()
    hist = [BOS] * 2 + [str(t) for t in doc] + [EOS]
    want = [math.log(lm.prob(w, hist[i - 2:i])) for i, w in enumerate(hist) if i >= 2]
    want[-2] -= math.log(10)  # <unk> mass shared by the 10 unseen ids 30..39
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-5)


def test_distributions_sum_to_one_and_exclude_pad_and_bos(model):
    ids = torch.tensor([[BOS_ID, 5, 6, 13, 35, 7]])
    p = model(ids).double().exp()  # (1, T, V)
    assert torch.allclose(p.sum(-1), torch.ones(1, ids.shape[1], dtype=torch.float64),
                          atol=1e-6)
    assert (p[..., PAD] == 0).all() and (p[..., BOS_ID] == 0).all()
    assert (p[..., 30:] > 0).all()


def test_context_resets_at_bos_and_windows_use_the_last_tokens(model):
    assert model.context([9, 4, BOS_ID, 5]) == (-1, 5)  # -1 stands for <s>
    assert model.context([9, 4, 5]) == (4, 5)
    left = model(torch.tensor([[PAD, PAD, BOS_ID, 5, 6]]),
                 torch.tensor([[0, 0, 1, 1, 1]]))
    plain = model(torch.tensor([[BOS_ID, 5, 6]]))
    assert torch.equal(left[0, 2:], plain[0])


def test_save_load_round_trip_and_shape_check(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    loaded, _ = load_pretrained(tmp_path / "m")
    ids = torch.tensor([[BOS_ID, 5, 6, 13, 7, EOS_ID]])
    assert torch.equal(loaded(ids), model(ids))
    import json

    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["n_ngrams"] += 1
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="tensor ngrams has shape"):
        load_pretrained(tmp_path / "m")


def test_generation_with_and_without_cache_agree(model):
    from lmforge.generate import GenerationConfig
    from lmforge.generate.decode import BatchDecoder

    def run(use_cache):
        cfg = GenerationConfig(max_new_tokens=12, temperature=1.0, seed=7, use_cache=use_cache)
        out: dict[int, list[int]] = {}
        for rows, toks in BatchDecoder(model, [[BOS_ID, 5], [BOS_ID, 9, 10, 11]], cfg,
                                       eos_id=EOS_ID, pad_id=PAD):
            for r, t in zip(rows, toks, strict=True):
                out.setdefault(r, []).append(t)
        return out

    a = run(True)
    assert a == run(False) and len(a) == 2


def test_fit_rejects_special_ids_in_documents():
    cfg = NGramConfig(order=2, vocab_size=V, pad_id=PAD, bos_id=BOS_ID, eos_id=EOS_ID)
    with pytest.raises(DataError, match="special id 2"):
        NGramModel.fit(cfg, [[5, 6], [7, EOS_ID, 8]])
    with pytest.raises(ValueError, match="order"):
        NGramConfig(order=0)
