"""The linear-chain CRF against brute-force enumeration of every tag sequence."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lmforge.nn.crf import CRF

K = 3


def _crf(seed: int = 0, k: int = K, scale: float = 1.0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(k).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0.0, scale)
    return crf


def _brute_score(crf: CRF, em: torch.Tensor, y: tuple[int, ...]) -> float:
    """score(y) for one unpadded sequence, written straight from the definition."""
    s = crf.start_transitions[y[0]] + crf.end_transitions[y[-1]]
    s = s + sum(em[t, y[t]] for t in range(len(y)))
    s = s + sum(crf.transitions[y[t - 1], y[t]] for t in range(1, len(y)))
    return float(s.detach())


def _batch(lengths: list[int], seed: int = 1, k: int = K):
    g = torch.Generator().manual_seed(seed)
    B, L = len(lengths), max(lengths)
    em = torch.randn(B, L, k, generator=g, dtype=torch.float64) * 2
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    return em, mask


LENGTHS = [1, 2, 3, 4, 4, 2]


def test_log_partition_score_and_viterbi_match_brute_force():
    crf = _crf()
    em, mask = _batch(LENGTHS)
    # garbage in the padding must not change anything
    em = em.masked_fill(~mask[:, :, None], 1e3)
    log_z = crf.log_partition(em, mask)
    paths = crf.decode(em, mask)
    for b, n in enumerate(LENGTHS):
        seqs = list(itertools.product(range(K), repeat=n))
        scores = torch.tensor([_brute_score(crf, em[b, :n], y) for y in seqs],
                              dtype=torch.float64)
        assert log_z[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-10)
        assert tuple(paths[b]) == seqs[int(scores.argmax())]
        assert len(paths[b]) == n
        # score() of each sequence, padded into the batch, equals the brute force
        for y, s in zip(seqs, scores, strict=True):
            tags = torch.zeros(len(LENGTHS), em.size(1), dtype=torch.long)
            tags[b, :n] = torch.tensor(y)
            assert crf.score(em, tags, mask)[b].item() == pytest.approx(s.item(), abs=1e-10)
        # probabilities of all sequences sum to one; each nll >= 0
        probs = torch.exp(scores - log_z[b])
        assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_nll_nonnegative_reductions_and_padding_tags():
    crf = _crf(2)
    em, mask = _batch(LENGTHS, seed=3)
    g = torch.Generator().manual_seed(0)
    tags = torch.randint(0, K, mask.shape, generator=g)
    tags[~mask] = -100  # ignore-index style padding is fine
    per_seq = crf.nll(em, tags, mask, reduction="none")
    assert per_seq.shape == (len(LENGTHS),)
    assert bool((per_seq >= 0).all())
    assert crf.nll(em, tags, mask, reduction="sum").item() == pytest.approx(per_seq.sum().item())
    assert crf.nll(em, tags, mask).item() == pytest.approx(per_seq.mean().item())
    # each padded sequence scores as if it were alone
    for b, n in enumerate(LENGTHS):
        alone = crf.nll(em[b:b + 1, :n], tags[b:b + 1, :n], reduction="none")
        assert alone.item() == pytest.approx(per_seq[b].item(), abs=1e-10)
    with pytest.raises(ValueError, match="reduction"):
        crf.nll(em, tags, mask, reduction="avg")


def test_marginals_match_brute_force_and_autograd():
    crf = _crf(4)
    em, mask = _batch(LENGTHS, seed=5)
    marg = crf.marginals(em, mask)
    log_z = crf.log_partition(em, mask)
    for b, n in enumerate(LENGTHS):
        expect = torch.zeros(em.size(1), K, dtype=torch.float64)
        for y in itertools.product(range(K), repeat=n):
            p = math.exp(_brute_score(crf, em[b, :n], y) - log_z[b].item())
            for t, j in enumerate(y):
                expect[t, j] += p
        torch.testing.assert_close(marg[b], expect, atol=1e-10, rtol=0)
    # d log Z / d E is the marginal too
    em2 = em.clone().requires_grad_(True)
    crf.log_partition(em2, mask).sum().backward()
    torch.testing.assert_close(em2.grad, marg, atol=1e-10, rtol=0)


def test_time_major_layout_gives_the_same_answers():
    crf = _crf(6)
    em, mask = _batch(LENGTHS, seed=7)
    tags = torch.randint(0, K, mask.shape, generator=torch.Generator().manual_seed(1))
    tm = CRF(K, batch_first=False).double()
    tm.load_state_dict(crf.state_dict())
    emT, maskT, tagsT = em.transpose(0, 1), mask.transpose(0, 1), tags.transpose(0, 1)
    torch.testing.assert_close(tm.log_partition(emT, maskT), crf.log_partition(em, mask))
    torch.testing.assert_close(tm.nll(emT, tagsT, maskT, "none"),
                               crf.nll(em, tags, mask, "none"))
    assert tm.decode(emT, maskT) == crf.decode(em, mask)
    torch.testing.assert_close(tm.marginals(emT, maskT).transpose(0, 1),
                               crf.marginals(em, mask))


def test_gradcheck_float64():
    crf = _crf(8)
    em, mask = _batch([3, 2], seed=9)
    em.requires_grad_(True)
    tags = torch.tensor([[0, 2, 1], [1, 1, 0]])

    # gradcheck through a functional wrapper over the parameters
    def fn(e, s, en, tr):
        m = CRF(K).double()
        del m.start_transitions, m.end_transitions, m.transitions
        m.start_transitions, m.end_transitions, m.transitions = s, en, tr
        return m.nll(e, tags, mask, reduction="sum")

    params = [p.detach().clone().requires_grad_(True) for p in
              (crf.start_transitions, crf.end_transitions, crf.transitions)]
    assert torch.autograd.gradcheck(fn, (em, *params))


def test_bad_masks_and_shapes_raise_clear_errors():
    crf = CRF(K)
    em = torch.randn(2, 3, K)
    with pytest.raises(ValueError, match="first time step"):
        crf.log_partition(em, torch.tensor([[True, True, True], [False, True, True]]))
    with pytest.raises(ValueError, match="right-padded"):
        crf.decode(em, torch.tensor([[True, False, True], [True, True, True]]))
    with pytest.raises(ValueError, match="num_tags"):
        crf.log_partition(torch.randn(2, 3, K + 1))
    with pytest.raises(ValueError, match="tags must lie"):
        crf.nll(em, torch.full((2, 3), K))
    with pytest.raises(ValueError, match="3 dimensions"):
        crf.decode(torch.randn(3, K))


def test_learns_a_transition_constraint_from_noisy_emissions():
    """Gold tags never go 0 -> 1; emissions alone (noisy) often suggest it.

    Training only the CRF's parameters on fixed emissions must learn a strongly negative
    T[0, 1], and Viterbi must then never output 0 -> 1 and beat the per-step argmax.
    """
    g = torch.Generator().manual_seed(0)
    B, L = 64, 8
    allowed = torch.tensor([[0.5, 0.0, 0.5], [0.3, 0.4, 0.3], [0.4, 0.3, 0.3]])
    tags = torch.zeros(B, L, dtype=torch.long)
    tags[:, 0] = torch.randint(0, K, (B,), generator=g)
    for t in range(1, L):
        tags[:, t] = torch.multinomial(allowed[tags[:, t - 1]], 1, generator=g).squeeze(1)
    em = torch.nn.functional.one_hot(tags, K).float() * 1.0 + torch.randn(B, L, K, generator=g)
    torch.manual_seed(0)
    crf = CRF(K)
    opt = torch.optim.Adam(crf.parameters(), lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        crf.nll(em, tags).backward()
        opt.step()
    # T is identifiable only up to T[i, j] + a_j - a_i (offset by start/end scores), so
    # compare gauge-invariant cycle scores: the 0<->1 cycle against the 0<->2 cycle
    T = crf.transitions.detach()
    cycle01 = T[0, 1] + T[1, 0] - T[0, 0] - T[1, 1]
    cycle02 = T[0, 2] + T[2, 0] - T[0, 0] - T[2, 2]
    assert cycle01 < cycle02 - 2.0
    paths = torch.tensor(crf.decode(em))
    assert not bool(((paths[:, :-1] == 0) & (paths[:, 1:] == 1)).any())
    greedy = em.argmax(-1)
    assert ((greedy[:, :-1] == 0) & (greedy[:, 1:] == 1)).any()  # the noise does violate it
    assert (paths == tags).float().mean() > (greedy == tags).float().mean()
