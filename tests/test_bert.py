"""BERT / RoBERTa encoder: config, shapes, heads, masking, attention maps, save/load."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.models import arch_of, build_model
from lmforge.models.bert import BertConfig, BertModel, activation_fn

V = 50


def tiny(head="none", flavor="bert", seed=0, **kw) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=V, flavor=flavor, n_layer=2, n_head=4, d_model=32,
                     max_position=40, head=head, num_labels=3, dropout=0.0, **kw)
    return BertModel(cfg).eval()


def batch(pad_id=0, B=3, T=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    am = torch.ones(B, T, dtype=torch.long)
    am[1, 7:] = 0
    am[2, 4:] = 0
    ids[am == 0] = pad_id
    tt = torch.zeros_like(ids)
    tt[:, 5:] = 1
    return ids, am, tt


def test_flavor_defaults_and_validation():
    b = BertConfig(vocab_size=V)
    assert (b.pad_id, b.position_offset, b.type_vocab_size, b.d_ff, b.pooler) == \
        (0, 0, 2, 4 * b.d_model, True)
    r = BertConfig(vocab_size=V, flavor="roberta", max_position=40)
    assert (r.pad_id, r.position_offset, r.type_vocab_size) == (1, 2, 1)
    assert r.max_len == 38
    assert BertConfig(head="mlm").pooler is False
    assert BertConfig(head="pretraining").pooler is True
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="pooler"):
        BertConfig(head="seq_cls", pooler=False)
    with pytest.raises(ValueError, match="pad_id"):
        BertConfig(vocab_size=5, pad_id=7)
    with pytest.raises(ValueError, match="dropout"):
        BertConfig(dropout=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        BertModel(BertConfig())


def test_registered_as_bert():
    cfg = BertConfig(vocab_size=V, n_layer=1, d_model=16, n_head=2, head="mlm")
    assert arch_of(cfg) == "bert"
    assert isinstance(build_model(cfg), BertModel)


def test_exact_gelu():
    x = torch.linspace(-4, 4, 101)
    exact = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    assert torch.allclose(activation_fn("gelu")(x), exact, atol=1e-6)
    # the tanh approximation is a different function
    assert (activation_fn("gelu_tanh")(x) - exact).abs().max() > 1e-4


@pytest.mark.parametrize("head,shape", [
    ("none", [(3, 10, 32)]), ("mlm", [(3, 10, V)]), ("pretraining", [(3, 10, V), (3, 2)]),
    ("seq_cls", [(3, 3)]), ("token_cls", [(3, 10, 3)]), ("qa", [(3, 10), (3, 10)])])
def test_head_output_shapes(head, shape):
    m = tiny(head)
    ids, am, tt = batch()
    out = m(ids, am, tt)
    outs = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape) for o in outs] == shape
    assert all(torch.isfinite(o).all() for o in outs)


def test_mlm_decoder_is_tied_and_positions_select_rows():
    m = tiny("mlm")
    assert m.mlm.decoder.weight is m.embeddings.word.weight
    ids, am, tt = batch()
    full = m(ids, am, tt)
    sel = torch.zeros_like(ids, dtype=torch.bool)
    sel[0, 2] = sel[1, 5] = sel[2, 0] = True
    rows = m(ids, am, tt, mlm_positions=sel)
    assert rows.shape == (3, V)
    torch.testing.assert_close(rows, full[sel])
    untied = tiny("mlm", tie_embeddings=False)
    assert untied.mlm.decoder.weight is not untied.embeddings.word.weight


@pytest.mark.parametrize("flavor", ["bert", "roberta"])
def test_padding_does_not_change_real_tokens(flavor):
    m = tiny(flavor=flavor)
    pad = m.config.pad_id
    ids = torch.randint(5, V, (1, 6))
    alone = m(ids)
    padded = torch.cat([ids, torch.full((1, 4), pad)], 1)
    am = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long()
    torch.testing.assert_close(m(padded, am)[:, :6], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("flavor", ["bert", "roberta"])
def test_unpadded_encoding_equals_the_padded_one_at_real_tokens(flavor):
    ids, am, tt = batch(pad_id=1 if flavor == "roberta" else 0)
    tt = tt if flavor == "bert" else None  # RoBERTa has one token type
    real = am.bool()
    padded, unpadded = tiny(flavor=flavor, seed=3).train(), tiny(flavor=flavor, seed=3).train()
    h0 = padded.encode(ids, am, tt)
    h1 = unpadded.encode(ids, am, tt, unpad=True)
    torch.testing.assert_close(h1[real], h0[real], atol=1e-5, rtol=1e-5)
    assert h1[~real].abs().max() == 0  # padding is skipped, left at zero
    # the same gradients, for a loss that reads the real tokens only
    g = torch.randn(h0.shape, generator=torch.Generator().manual_seed(2)) * am[..., None]
    (h0 * g).sum().backward()
    (h1 * g).sum().backward()
    for (name, p0), p1 in zip(padded.named_parameters(), unpadded.parameters(), strict=True):
        if p0.grad is not None:
            torch.testing.assert_close(p1.grad, p0.grad, atol=1e-5, rtol=1e-4, msg=name)
    # [CLS] only: the last layer runs on the grid for the one query
    torch.testing.assert_close(unpadded.encode(ids, am, tt, cls_only=True, unpad=True),
                               h0[:, :1], atol=1e-5, rtol=1e-5)
    # nothing to skip, or attention maps asked: the padded path
    full = torch.ones_like(am)
    assert torch.equal(unpadded.encode(ids, full, unpad=True), unpadded.encode(ids, full))
    _, maps = unpadded.encode(ids, am, tt, output_attentions=True, unpad=True)
    assert len(maps) == 2


def test_roberta_positions_skip_padding():
    m = tiny(flavor="roberta")
    pad = m.config.pad_id
    ids = torch.tensor([[7, 8, 9, pad, pad], [pad, pad, 7, 8, 9]])
    pos = m.embeddings.positions(ids)
    assert pos.tolist() == [[2, 3, 4, 1, 1], [1, 1, 2, 3, 4]]
    # left padding gives the real tokens the same positions, hence the same states
    am = (ids != pad).long()
    out = m(ids, am)
    torch.testing.assert_close(out[1, 2:], out[0, :3], atol=1e-5, rtol=1e-5)
    assert m.embeddings.positions(torch.tensor([[5, 6]])).tolist() == [[2, 3]]


def test_token_types_matter_and_default_to_zero():
    m = tiny()
    ids, am, tt = batch()
    assert torch.equal(m(ids, am), m(ids, am, torch.zeros_like(ids)))
    assert not torch.allclose(m(ids, am, tt), m(ids, am))


def test_attention_maps_match_the_fused_path():
    m = tiny("mlm")
    ids, am, tt = batch()
    fast = m(ids, am, tt)
    out, attn = m(ids, am, tt, output_attentions=True)
    torch.testing.assert_close(out, fast, atol=1e-5, rtol=1e-5)
    assert len(attn) == 2 and attn[0].shape == (3, 4, 10, 10)
    torch.testing.assert_close(attn[0].sum(-1), torch.ones(3, 4, 10))
    assert attn[1][2, :, :, 4:].abs().max() == 0  # padding keys get no weight
    h, attn2 = m.encode(ids, am, tt, output_attentions=True)
    assert h.shape == (3, 10, 32) and len(attn2) == 2


def test_bidirectional_attention():
    """Unlike GPT, changing a later token changes earlier states."""
    m = tiny()
    ids = torch.randint(5, V, (1, 8))
    other = ids.clone()
    other[0, -1] = (other[0, -1] + 1 - 5) % (V - 5) + 5
    assert not torch.allclose(m(ids)[0, 0], m(other)[0, 0])


def test_too_long_raises():
    m = tiny(flavor="roberta")
    with pytest.raises(ValueError, match="exceeds"):
        m(torch.randint(5, V, (1, 39)))
    m(torch.randint(5, V, (1, 38)))


def test_padding_rows_initialised_to_zero():
    m = tiny()
    assert m.embeddings.word.weight[0].abs().sum() == 0
    r = tiny(flavor="roberta")
    assert r.embeddings.position.weight[1].abs().sum() == 0


def test_pooler_and_pool():
    m = tiny()
    h = m(*batch())
    p = m.pool(h)
    assert p.shape == (3, 32) and p.abs().max() <= 1
    with pytest.raises(ValueError, match="no pooler"):
        tiny("mlm").pool(h)


def test_save_and_load_roundtrip(tmp_path):
    m = tiny("pretraining", flavor="roberta")
    m.save_pretrained(tmp_path / "m")
    back = BertModel.from_pretrained(tmp_path / "m")
    assert back.config == m.config
    ids = torch.randint(5, V, (2, 7))
    for a, b in zip(m(ids), back(ids), strict=True):
        torch.testing.assert_close(a, b)
    assert back.mlm.decoder.weight is back.embeddings.word.weight


def test_dropout_only_in_training():
    torch.manual_seed(0)
    m = BertModel(BertConfig(vocab_size=V, n_layer=1, n_head=2, d_model=16, dropout=0.5))
    ids = torch.randint(5, V, (2, 6))
    m.eval()
    assert torch.equal(m(ids), m(ids))
    m.train()
    assert not torch.equal(m(ids), m(ids))


@pytest.mark.parametrize("cfg,total,no_emb", [
    # bert-base-uncased shape (BertModel with pooler): the published 110M
    (dict(vocab_size=30522, n_layer=12, n_head=12, d_model=768), 109_482_240, 85_646_592),
    # all-MiniLM-L6-v2 shape
    (dict(vocab_size=30522, n_layer=6, n_head=12, d_model=384, d_ff=1536),
     22_713_216, 10_795_392),
])
def test_parameter_counts(cfg, total, no_emb):
    with torch.device("meta"):
        m = BertModel(BertConfig(**cfg))
    assert m.num_parameters() == total
    assert m.num_parameters(exclude_embeddings=True) == no_emb
