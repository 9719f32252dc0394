"""DP-SGD for the CRF tagger (lmforge.privacy.dp's CRF sampler, lmforge.nn.crf's forward):
the per-sentence gradients Opacus stores against single-sentence backward passes, a tiny
private tag+crf fine-tune that reports Opacus' ε and moves the CRF, and the non-private
loss left as it was."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_finetune import _conll, _ner, _recipe
from test_privacy_dp import B, V, _accountant_epsilon, _per_sample_vs_loop

from lmforge.nn.crf import CRF
from lmforge.privacy.dp import register_lmforge_samplers
from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.evaluation import TaskObjective
from lmforge.tasks.finetune import finetune
from lmforge.tasks.model import TaskModel, TaskModelConfig

pytest.importorskip("opacus")

TAGS = ["O", "B-X", "I-X"]
LENGTHS = [6, 3, 6, 1]  # words per sentence: padding of different lengths, one of 1 word


def _tag_batch() -> dict:
    """B sentences of 1 word-piece per word after a CLS: ``word_index`` (B, W), right-padded
    ``word_mask`` and labels (-100 at padding, as the collate writes them)."""
    g = torch.Generator().manual_seed(1)
    W = max(LENGTHS)
    word_mask = torch.arange(W).expand(B, W) < torch.tensor(LENGTHS)[:, None]
    attention = torch.cat([torch.ones(B, 1, dtype=torch.long), word_mask.long()], 1)
    labels = torch.randint(0, len(TAGS), (B, W), generator=g).masked_fill(~word_mask, -100)
    return {"input_ids": torch.randint(3, V, (B, W + 1), generator=g) * attention,
            "attention_mask": attention, "word_index": torch.arange(1, W + 1).repeat(B, 1),
            "word_mask": word_mask, "labels": labels}


def _tagger(encoder: str, cfg: dict) -> TaskModel:
    torch.manual_seed(0)
    model = TaskModel(TaskModelConfig("tag", TAGS, encoder, {"vocab_size": V, **cfg},
                                      head="crf", dropout=0.0))
    for p in model.crf.parameters():  # away from U(-0.1, 0.1): transitions that matter
        torch.nn.init.normal_(p)
    return model


@pytest.mark.parametrize("encoder, cfg", [
    ("textcnn", {"d_emb": 8, "n_filters": 4, "kernel_sizes": [2, 3]}),
    ("bilstm", {"d_emb": 8, "hidden": 6, "dropout": 0.0}),
])
def test_per_sentence_gradients_of_a_crf_tagger_match_a_loop(encoder, cfg):
    """Every parameter, the CRF's and the encoder's (the emissions' gradient reaching it),
    through the training loss (TaskObjective) against each sentence's own backward pass."""
    objective = TaskObjective("tag", crf=True)
    err = _per_sample_vs_loop(_tagger(encoder, cfg), _tag_batch(),
                              lambda m, b: objective(m, b)[0])
    assert err < 1e-5


def test_crf_grad_sample_equals_each_trimmed_sentence_alone():
    """On the CRF alone (float64), loss ``mean_i w_i nll_i``: ``p.grad_sample[i]`` is
    ``w_i`` times the gradient of sentence i's NLL computed on its unpadded words only,
    and the emissions get autograd's gradient."""
    from opacus import GradSampleModule

    register_lmforge_samplers()
    torch.manual_seed(0)
    crf = CRF(len(TAGS)).double()
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    batch = _tag_batch()
    tags, mask = batch["labels"].clamp(min=0), batch["word_mask"]
    em = torch.randn(B, max(LENGTHS), len(TAGS), dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)

    def loss():
        return (crf.nll(em, tags, mask, reduction="none") * w).mean()

    gsm = GradSampleModule(crf)
    loss().backward()  # crf.nll calls crf itself, where the hooks are
    got = {n: p.grad_sample.clone() for n, p in crf.named_parameters()}
    em_grad = em.grad.clone()
    gsm._close()
    params = list(crf.parameters())
    for i, n in enumerate(LENGTHS):
        alone = w[i] * crf.nll(em[i: i + 1, :n], tags[i: i + 1, :n], reduction="sum")
        ref = torch.autograd.grad(alone, params, allow_unused=True)  # 1 word: no transition
        for (name, g), r, p in zip(got.items(), ref, params, strict=True):
            r = torch.zeros_like(p) if r is None else r
            torch.testing.assert_close(g[i], r, rtol=0, atol=1e-12, msg=name)
    em_ref = torch.autograd.grad(loss(), em)[0]
    torch.testing.assert_close(em_grad, em_ref, rtol=0, atol=1e-12)


def test_crf_that_is_not_batch_first_is_refused():
    from opacus import GradSampleModule

    register_lmforge_samplers()
    crf = CRF(len(TAGS), batch_first=False)
    em = torch.randn(5, 2, len(TAGS), requires_grad=True)  # (L, B, K)
    gsm = GradSampleModule(crf)
    with pytest.raises(ValueError, match="batch_first"):
        crf.nll(em, torch.zeros(5, 2, dtype=torch.long)).backward()
    gsm._close()


def test_tiny_private_crf_finetune_reports_epsilon_and_trains_the_crf(tmp_path, monkeypatch):
    inits = []  # the CRF's parameters as built, before any update
    reset = CRF.reset_parameters

    def spy(self):
        reset(self)
        inits.append({k: v.detach().clone() for k, v in self.state_dict().items()})

    monkeypatch.setattr(CRF, "reset_parameters", spy)
    files = [_conll(tmp_path / f"{s}.conll", _ner(n, i))
             for i, (s, n) in enumerate([("train", 200), ("val", 20), ("test", 20)])]
    raw = _recipe(tmp_path, *files, steps=6, head={"head": "crf"}, train={
        "eval_every": 6, "ckpt_every": 6, "threads": 1,
        "privacy": {"noise_multiplier": 1.0, "delta": 1e-3}})
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    p = res.results["privacy"]
    q = 1 / -(-200 // 16)  # Opacus' DPDataLoader rate for N=200, batch 16
    assert p["sample_rate"] == pytest.approx(q) and p["steps"] == 6
    assert p["epsilon"] == pytest.approx(_accountant_epsilon("prv", 1.0, q, 6, 1e-3))
    trained = res.predictor.model.crf.state_dict()
    assert set(trained) == {"start_transitions", "end_transitions", "transitions"}
    for k, v in inits[0].items():
        assert not torch.isclose(trained[k].cpu(), v).any(), k


def test_non_private_crf_loss_is_the_mean_nll():
    """The training loss is ``mean_b (log Z_b - score_b)`` as before the forward changed,
    and ``crf.nll(..., 'none')`` is the module call."""
    model = _tagger("textcnn", {"d_emb": 8, "n_filters": 4, "kernel_sizes": [2, 3]})
    batch = _tag_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, _, n = TaskObjective("tag", crf=True)(model, batch)
    em, tags, mask = model(batch).float(), batch["labels"].clamp(min=0), batch["word_mask"]
    crf = model.crf
    want = (crf.log_partition(em, mask) - crf.score(em, tags, mask)).mean()
    assert torch.equal(loss, want) and n == B
    assert torch.equal(crf.nll(em, tags, mask, reduction="none"), crf(em, tags, mask))
    assert torch.equal(crf.nll(em, tags, mask), crf(em, tags, mask).mean())
