"""DeBERTa-v2/v3: parity with transformers (import and export), the disentangled attention
against an explicit double loop, log buckets, padding, save/load and strict loading
errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lmforge.errors import CheckpointError
from lmforge.models.base import load_model_folder
from lmforge.models.deberta import (
    DebertaV2,
    DebertaV2Config,
    DisentangledSelfAttention,
    log_bucket_position,
    relative_position_index,
)

HF_BASE = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=64, relative_attention=True,
               pos_att_type=["p2c", "c2p"], position_buckets=8, max_relative_positions=16,
               share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, type_vocab_size=0)

VARIANTS = {
    "v3": {},  # deberta-v3 style, small buckets so that T=40 uses the log range
    "no-buckets": dict(position_buckets=-1),
    "unshared-abs-pos-types": dict(share_att_key=False, position_biased_input=True,
                                   type_vocab_size=2),
    "c2p-only": dict(pos_att_type=["c2p"]),
    "conv-no-rel-norm": dict(conv_kernel_size=3, norm_rel_ebd="none"),
}


def hf_model(cls_name="DebertaV2Model", **kw):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = getattr(transformers, cls_name)(transformers.DebertaV2Config(**{**HF_BASE, **kw}))
    with torch.no_grad():  # non-trivial norms and biases (transformers inits them to 1 / 0)
        for n, p in hf.named_parameters():
            if "LayerNorm" in n and n.endswith("weight"):
                p.normal_(1.0, 0.3)
            elif n.endswith("bias"):
                p.normal_(0.0, 0.5)
    return hf.eval()


def inputs(seed=0, T=40):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, T - 10:] = 0
    return ids, mask


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hidden_states_match_transformers(variant):
    from lmforge.hf.deberta import load

    hf = hf_model(**VARIANTS[variant])
    model = load(hf.config.to_dict(), hf.state_dict())
    assert model.config.head == "none"
    ids, mask = inputs()
    tt = torch.randint(0, 2, ids.shape) if "types" in variant else None
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
        got = model(ids, mask, tt)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)  # padding rows included


@pytest.mark.parametrize("legacy", [True, False])
def test_mlm_logits_match_transformers(legacy):
    from lmforge.hf.deberta import load

    hf = hf_model("DebertaV2ForMaskedLM", legacy=legacy)
    model = load(hf.config.to_dict(), hf.state_dict())
    assert model.config.head == "mlm"
    ids, mask = inputs(1)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).logits
        got = model(ids, mask)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_loading_errors_name_the_tensor():
    from lmforge.hf.deberta import load

    hf = hf_model()
    cfg = hf.config.to_dict()
    state = dict(hf.state_dict())
    del state["encoder.layer.1.attention.self.value_proj.bias"]
    with pytest.raises(CheckpointError, match=r"missing tensor layers\.1\.attn\.value\.bias"):
        load(cfg, state)
    state = dict(hf.state_dict())
    state["encoder.rel_embeddings.weight"] = torch.zeros(10, 32)
    with pytest.raises(CheckpointError, match=r"rel_embeddings\.weight has shape \(10, 32\), "
                                              r"model expects \(16, 32\)"):
        load(cfg, state)
    state = dict(hf.state_dict())
    state["pooler.dense.weight"] = torch.zeros(32, 32)
    with pytest.raises(CheckpointError, match="unexpected tensor pooler.dense.weight"):
        load(cfg, state)
    # What transformers itself ignores is dropped: v3's RTD head, the position_ids buffer.
    state = dict(hf.state_dict())
    state["deberta.embeddings.position_ids"] = torch.arange(64)[None]
    state["mask_predictions.dense.weight"] = torch.zeros(32, 32)
    load(cfg, state)
    with pytest.raises(CheckpointError, match="pos_att_type"):
        load({**cfg, "pos_att_type": ["c2c"]}, hf.state_dict())
    from lmforge.hf import converter_for_arch, converter_for_model_type
    from lmforge.hf.deberta import export

    assert converter_for_model_type("deberta-v2").export is export
    assert converter_for_arch("deberta_v2").export is export
    with pytest.raises(CheckpointError, match="cannot export a Linear as DeBERTa-v2"):
        export(torch.nn.Linear(2, 2))


def tiny(**kw):
    cfg = dict(vocab_size=100, d_model=32, n_layer=2, n_head=4, d_ff=64, max_seq_len=64,
               position_buckets=8, max_relative_positions=16)
    cfg.update(kw)
    torch.manual_seed(0)
    return DebertaV2(DebertaV2Config(**cfg)).eval()


@pytest.mark.parametrize("share", [True, False])
def test_disentangled_attention_equals_double_loop(share):
    """A_ij = Qc_i.Kc_j + Qc_i.Kr_delta(i,j) + Kc_j.Qr_delta(i,j), / sqrt(3 d_h), softmax."""
    cfg = DebertaV2Config(vocab_size=10, d_model=16, n_head=2, position_buckets=6,
                          max_relative_positions=12, share_att_key=share)
    torch.manual_seed(0)
    attn = DisentangledSelfAttention(cfg).eval()
    T, k, dh = 20, cfg.att_span, cfg.head_dim
    x, P = torch.randn(1, T, 16), torch.randn(2 * k, 16)
    valid = torch.ones(1, T, dtype=torch.bool)
    valid[0, -3:] = False
    mask = valid[:, None, :, None] & valid[:, None, None, :]
    rel = relative_position_index(T, T, cfg)
    with torch.no_grad():
        got = attn(x, mask, rel, P)[0]  # (T, d)
        Qc, Kc, V = attn.query(x[0]), attn.key(x[0]), attn.value(x[0])
        Qr = (attn.query if share else attn.pos_query)(P)
        Kr = (attn.key if share else attn.pos_key)(P)
        want = torch.zeros(T, 16)
        for hd in range(2):
            s = slice(hd * dh, (hd + 1) * dh)
            A = torch.zeros(T, T)
            for i in range(T):
                for j in range(T):
                    d_ij = min(max(int(rel[i, j]) + k, 0), 2 * k - 1)
                    A[i, j] = (Qc[i, s] @ Kc[j, s] + Qc[i, s] @ Kr[d_ij, s]
                               + Kc[j, s] @ Qr[d_ij, s]) / math.sqrt(3 * dh)
            A = A.masked_fill(~mask[0, 0], torch.finfo(A.dtype).min)
            want[:, s] = torch.softmax(A, -1) @ V[:, s]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_log_buckets():
    rel = torch.arange(-40, 41)
    b = log_bucket_position(rel, bucket_size=8, max_position=16)
    mid = 4
    small = rel.abs() <= mid
    assert torch.equal(b[small], rel[small])  # exact near the diagonal
    assert torch.equal(b, -b.flip(0))  # odd: bucket(-r) = -bucket(r)
    assert (b[41:].diff() >= 0).all()  # monotone
    assert int(b[40 + 15]) == 7  # |r| = max_position - 1 -> bucket_size - 1
    assert b.abs().max() > 7  # beyond max_position: clamped later to the table's edge
    # deberta-v3 shape: 256 buckets, 512 positions
    b = log_bucket_position(torch.arange(0, 2000), 256, 512)
    assert int(b[127]) == 127 and int(b[511]) == 255 and (b.diff() >= 0).all()


def test_padding_does_not_change_real_tokens():
    m = tiny()
    ids, mask = inputs(2)
    with torch.no_grad():
        full = m.encode(ids, mask)
        alone = m.encode(ids[1:, :30])
    torch.testing.assert_close(full[1:, :30], alone, atol=1e-5, rtol=0)


def test_save_load_round_trip(tmp_path):
    m = tiny(conv_kernel_size=3, type_vocab_size=2, position_biased_input=True)
    m.save_pretrained(tmp_path / "m")
    back = DebertaV2.from_pretrained(tmp_path / "m")
    assert back.config == m.config and isinstance(load_model_folder(tmp_path / "m"), DebertaV2)
    ids, mask = inputs(3)
    with torch.no_grad():
        assert torch.equal(back(ids, mask), m(ids, mask))
        assert m(ids, mask).shape == (2, 40, 100)


def test_config_and_shape_errors():
    with pytest.raises(ValueError, match="max_relative_positions"):
        DebertaV2Config(vocab_size=10, position_buckets=256, max_relative_positions=100)
    with pytest.raises(ValueError, match="conv_kernel_size"):
        DebertaV2Config(vocab_size=10, conv_kernel_size=2)
    with pytest.raises(ValueError, match="MLM head"):
        m = tiny(head="none")
        m.mlm_logits(torch.zeros(1, 2, 32))
    cfg = DebertaV2Config(vocab_size=10, position_buckets=-1, max_relative_positions=-1)
    assert cfg.att_span == cfg.max_seq_len == 512


def test_mlm_objective_trains_deberta():
    mlm = pytest.importorskip("lmforge.train.mlm")
    m = tiny().train()
    ids, mask = inputs(4)
    labels = torch.full_like(ids, -100)
    labels[:, 3:30:4] = ids[:, 3:30:4]
    chosen = labels != -100
    with torch.no_grad():
        full = m.eval()(ids, mask)[chosen]
        torch.testing.assert_close(m(ids, mask, mlm_positions=chosen), full)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    m.train()
    objective = mlm.MLMObjective()
    losses = []
    for _ in range(15):
        loss, metrics, n = objective(m, {"input_ids": ids, "attention_mask": mask,
                                         "labels": labels})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert n == int(chosen.sum()) and losses[-1] < losses[0] - 1.0


# ------------------------------------------------------------------ export to transformers

#: lmforge configs exported to transformers (on top of tiny()'s v3-style defaults).
EXPORT_CASES = {
    # DeBERTa-v2 style: absolute positions too, own position projections, no buckets
    # (span 16 < T = 40: the clamp to the table's edge is exercised), token types.
    "v2": dict(position_biased_input=True, share_att_key=False, position_buckets=-1,
               norm_rel_ebd="none", type_vocab_size=2),
    # DeBERTa-v3 style: log buckets, shared keys, normed table, plus the ConvLayer.
    "v3-conv": dict(conv_kernel_size=3, conv_act="gelu"),
    # A factorised embedding (embedding_size < d_model: embed_proj), c2p only.
    "v3-embed-proj": dict(embedding_size=16, pos_att_type=["c2p"], hidden_act="gelu_new",
                          norm_eps=1e-5, pad_token_id=3),
    # No relative attention at all (a BERT with DeBERTa's layout).
    "no-relative": dict(relative_attention=False, position_biased_input=True),
}


def perturbed(model):
    """Non-trivial norms and biases (reset_parameters makes them 1 / 0)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.3)
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("head", ["mlm", "none"])
@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_matches_transformers(tmp_path, case, head):
    transformers = pytest.importorskip("transformers")
    from lmforge.convert import convert
    from lmforge.hf.deberta import export, load

    model = perturbed(tiny(head=head, **EXPORT_CASES[case]))
    model.save_pretrained(tmp_path / "lm")
    out = convert(tmp_path / "lm", tmp_path / "hf", to="hf")
    auto = transformers.AutoModelForMaskedLM if head == "mlm" else transformers.AutoModel
    hf, info = auto.from_pretrained(out, output_loading_info=True)
    hf.eval()
    cls_name = "DebertaV2ForMaskedLM" if head == "mlm" else "DebertaV2Model"
    assert type(hf).__name__ == cls_name and hf.config.model_type == "deberta-v2"
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids, mask = inputs(5)
    tt = torch.randint(0, 2, ids.shape) if model.config.type_vocab_size else None
    with torch.no_grad():
        hidden = model.encode(ids, mask, tt)
        base = hf.deberta if head == "mlm" else hf
        want = base(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
        torch.testing.assert_close(hidden, want, atol=1e-4, rtol=0)  # padding rows included
        if head == "mlm":
            # the decoder is the (re-tied) word embedding table, its bias cls.predictions.bias
            dec = hf.cls.predictions.decoder
            assert dec.weight.data_ptr() == base.embeddings.word_embeddings.weight.data_ptr()
            assert torch.equal(dec.bias, model.mlm_bias)
            want = hf(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
            torch.testing.assert_close(model(ids, mask, tt), want, atol=1e-4, rtol=0)
    # and back: the exported pair is the same lmforge model
    hf_config, state = export(model)
    again = load(hf_config, state)
    cfg = model.config
    if not cfg.relative_attention:  # norm_rel_ebd means nothing then; exported as "none"
        cfg = dataclasses.replace(cfg, norm_rel_ebd="none")
    assert again.config == cfg
    for (n, a), b in zip(again.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), n


#: transformers configs round-tripped HF -> lmforge -> HF (on top of HF_BASE).
ROUND_TRIP = {
    **{k: ("DebertaV2Model", v) for k, v in VARIANTS.items()},
    "mlm-v3": ("DebertaV2ForMaskedLM", {}),
    "mlm-embed-proj-conv": ("DebertaV2ForMaskedLM", dict(embedding_size=16, conv_kernel_size=3,
                                                         position_biased_input=True,
                                                         type_vocab_size=2)),
}


@pytest.mark.parametrize("case", list(ROUND_TRIP))
def test_hf_round_trip_is_identical(tmp_path, case):
    """save_pretrained -> lmforge convert -> lmforge convert --to hf: the same tensors under
    the same names (save_pretrained drops the tied decoder too) and the same config."""
    from safetensors.torch import load_file

    from lmforge.convert import convert
    from lmforge.hf import read_hf_config

    cls_name, kw = ROUND_TRIP[case]
    hf = hf_model(cls_name, **kw)
    hf.save_pretrained(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "lm")
    convert(tmp_path / "lm", tmp_path / "hf2", to="hf")
    want = load_file(str(tmp_path / "hf" / "model.safetensors"))
    got = load_file(str(tmp_path / "hf2" / "model.safetensors"))
    assert sorted(got) == sorted(want)
    for name, t in want.items():
        assert torch.equal(got[name], t), name
    a, b = read_hf_config(tmp_path / "hf"), read_hf_config(tmp_path / "hf2")
    same = ("architectures", "model_type", "vocab_size", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "max_position_embeddings",
            "type_vocab_size", "hidden_act", "layer_norm_eps", "relative_attention",
            "max_relative_positions", "position_buckets", "pos_att_type", "share_att_key",
            "norm_rel_ebd", "position_biased_input", "pad_token_id", "legacy",
            "tie_word_embeddings")
    assert {k: b[k] for k in same} == {k: a[k] for k in same}
    assert b.get("embedding_size", b["hidden_size"]) == a.get("embedding_size", a["hidden_size"])
    assert b["conv_kernel_size"] == a.get("conv_kernel_size", 0)


def test_convert_run_writes_tokenizer(tmp_path):
    """`lmforge convert RUN DST --to hf` on a DeBERTa run (tokenizer at the checkpoint, as the
    deberta-world recipe writes it): transformers loads model and tokenizer, which agree
    with lmforge's."""
    transformers = pytest.importorskip("transformers")
    from fakes import run_cli

    from lmforge.tokenize import train_tokenizer
    from lmforge.train.checkpoint import checkpoint_path, save_checkpoint

    text = "The river runs north. The old mill stands by the river, and the road runs west."
    tok = train_tokenizer("bpe", texts=[text] * 10, vocab_size=300, show_progress=False)
    model = perturbed(tiny(vocab_size=tok.vocab_size, pad_token_id=tok.pad_id))
    save_checkpoint(checkpoint_path(tmp_path / "run", 10), model, optimizer_payload={},
                    trainer_state={"step": 10, "seed": 0, "config": {}, "val_loss": 1.0},
                    tokenizer=tok)
    code, _, _ = run_cli(["convert", str(tmp_path / "run"), str(tmp_path / "hf"), "--to", "hf"])
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "hf").iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"]
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    assert (hf_tok.mask_token_id, hf_tok.pad_token_id) == (tok.mask_id, tok.pad_id)
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    cfg = hf.config
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (
        tok.pad_id, tok.bos_id, tok.eos_id)
    ids = torch.tensor([[tok.bos_id, *tok.encode(text), tok.eos_id]])
    ids[0, 3] = tok.mask_id
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(input_ids=ids).logits, atol=1e-4, rtol=0)
