"""The Vaswani encoder-decoder: torch parity, incremental decoding, greedy/beam, learning."""

import random

import pytest
import torch
from torch import nn

from lmforge.models import build_model
from lmforge.models.base import load_model_folder
from lmforge.models.beam import (
    Hypothesis,
    beam_search,
    greedy_search,
    length_penalty,
    repeated_ngram_tokens,
)
from lmforge.models.rnn import collate_pairs, strip_ids
from lmforge.models.transformer import Seq2SeqLMObjective, Transformer, TransformerConfig

pytestmark = pytest.mark.filterwarnings("ignore:.*nested")

V = 13  # 0 pad, 1 bos, 2 eos, 3..12 digits


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(src_vocab_size=V, tgt_vocab_size=V, d_model=16, n_head=4, n_encoder_layers=2,
               n_decoder_layers=2, d_ff=40, dropout=0.0, max_seq_len=24)
    cfg.update(kw)
    return Transformer(TransformerConfig(**cfg)).eval()


def digits(n, rng, lo=3, hi=7):
    return [[rng.randint(3, V - 1) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


# ---------------------------------------------------------------------- torch parity

@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_matches_torch_nn_transformer(norm_first, activation):
    torch.manual_seed(1)
    d, B, S, T = 16, 3, 7, 5
    tm = nn.Transformer(d_model=d, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                        dim_feedforward=40, dropout=0.0, activation=activation,
                        batch_first=True, norm_first=norm_first).eval()
    for p in tm.parameters():  # random LayerNorm weights and biases too
        nn.init.normal_(p, 0.0, 0.3)
    model = tiny(norm_first=norm_first, final_norm=True, activation=activation)
    model.load_torch_transformer(tm)
    x_src, x_tgt = torch.randn(B, S, d), torch.randn(B, T, d)
    src_mask = torch.ones(B, S, dtype=torch.bool)
    src_mask[1, 4:] = False
    src_mask[2, 2:] = False
    causal = nn.Transformer.generate_square_subsequent_mask(T)
    with torch.no_grad():
        want = tm(x_src, x_tgt, src_key_padding_mask=~src_mask, tgt_mask=causal,
                  memory_key_padding_mask=~src_mask, tgt_is_causal=True)
        want_memory = tm.encoder(x_src, src_key_padding_mask=~src_mask)
        memory = model.encoder(x_src, src_mask)
        got = model.decoder(x_tgt, memory, src_mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # torch's encoder fast path zeroes padded positions; compare the real ones
    torch.testing.assert_close(memory[src_mask], want_memory[src_mask], atol=1e-5, rtol=0)

    # The whole model: its embeddings fed through torch's stacks give the same states.
    src = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]])
    tgt_in = torch.tensor([[1, 7, 6, 5], [1, 10, 9, 8]])
    with torch.no_grad():
        e_src = model.src_embed(src) * d ** 0.5 + model.src_pos(torch.arange(5))
        e_tgt = model.tgt_embed(tgt_in) * d ** 0.5 + model.tgt_pos(torch.arange(4))
        want = tm(e_src, e_tgt, src_key_padding_mask=src == 0, memory_key_padding_mask=src == 0,
                  tgt_mask=nn.Transformer.generate_square_subsequent_mask(4), tgt_is_causal=True)
        mask = model.source_mask(src)
        got = model.decode(tgt_in, model.encode(src), mask)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(src, tgt_in), model.lm_head(want), atol=1e-5, rtol=0)


def test_load_torch_transformer_checks_shapes():
    tm = nn.Transformer(d_model=16, nhead=4, num_encoder_layers=2, num_decoder_layers=1,
                        dim_feedforward=40, batch_first=True)
    with pytest.raises(ValueError, match="n_decoder_layers"):
        tiny(final_norm=True).load_torch_transformer(tm)
    tm = nn.Transformer(d_model=16, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                        dim_feedforward=40, batch_first=True)
    with pytest.raises(ValueError, match="final_norm"):
        tiny().load_torch_transformer(tm)  # post-LN defaults to no final norm (the paper)


# ---------------------------------------------------------------------- masking, caching

def test_causal_and_padding_masks():
    model = tiny()
    src = torch.tensor([[3, 4, 5], [6, 7, 0]])
    tgt = torch.tensor([[1, 5, 4, 3], [1, 7, 6, 2]])
    base = model(src, tgt)
    changed = tgt.clone()
    changed[:, 2] = 9  # a later target token cannot change earlier logits
    out = model(src, changed)
    torch.testing.assert_close(out[:, :2], base[:, :2])
    assert not torch.allclose(out[:, 2:], base[:, 2:])
    padded = torch.cat([src, torch.zeros(2, 4, dtype=torch.long)], 1)  # more padding
    torch.testing.assert_close(model(padded, tgt), base, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least one real"):
        model(torch.tensor([[0, 0]]), tgt[:1])


@pytest.mark.parametrize("norm_first,positional", [(False, "sinusoidal"), (True, "learned")])
def test_incremental_decoding_equals_full(norm_first, positional):
    model = tiny(norm_first=norm_first, positional=positional)
    src = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    tgt = torch.tensor([[1, 6, 5, 4, 3, 2], [1, 8, 7, 2, 0, 0]])
    with torch.no_grad():
        full = model(src, tgt)
        mask = model.source_mask(src)
        cache = model.new_cache(model.encode(src), mask, max_len=8)
        steps = [model.decode_step(tgt[:, t:t + 1], cache) for t in range(tgt.shape[1])]
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
        assert cache.length == 6
        # a prefix fed in one chunk (causal mask inside the chunk), then single tokens
        cache = model.new_cache(model.encode(src), mask, max_len=8)
        chunk = model.decode_step(tgt[:, :4], cache)
        rest = [model.decode_step(tgt[:, t:t + 1], cache) for t in (4, 5)]
        torch.testing.assert_close(torch.cat([chunk, *rest], 1), full, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="cache holds"):
            model.decode_step(tgt[:, :3], cache)


def test_cache_reorder_follows_rows():
    model = tiny()
    src = torch.tensor([[3, 4, 5], [6, 7, 8]])
    tgt = torch.tensor([[1, 5, 4], [1, 8, 7]])
    with torch.no_grad():
        full = model(src, tgt)
        cache = model.new_cache(model.encode(src), model.source_mask(src), 4)
        model.decode_step(tgt[:, :2], cache)
        cache.reorder(torch.tensor([1, 1, 0]))  # swap and repeat rows
        last = model.decode_step(tgt[[1, 1, 0], 2:3], cache)
    torch.testing.assert_close(last[:, 0], full[[1, 1, 0], 2], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- learning, search

def train_reverser(model, steps=500, lr=3e-3, label_smoothing=0.0, seed=0):
    rng = random.Random(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / 30, 1 - s / steps))
    obj = Seq2SeqLMObjective(label_smoothing)
    model.train()
    for _ in range(steps):
        src = digits(32, rng)
        loss, _, _ = obj(model, collate_pairs(src, [s[::-1] for s in src]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def exact_match(model, seqs):
    b = collate_pairs(seqs)
    out = model.greedy_decode(b["src"], max_len=12)
    return sum(strip_ids(o.tolist(), 2, 0) == s[::-1] for o, s in zip(out, seqs, strict=True)) \
        / len(seqs)


@pytest.fixture(scope="module")
def reverser():
    model = tiny(d_model=64, n_head=4, n_encoder_layers=1, n_decoder_layers=1, d_ff=128,
                 share_embeddings=True, max_seq_len=16)
    return train_reverser(model)


def test_learns_to_reverse(reverser):
    assert exact_match(reverser, digits(200, random.Random(123))) >= 0.9


def test_beam_of_one_is_greedy(reverser):
    seqs = digits(12, random.Random(7), 2, 9)
    src = collate_pairs(seqs)["src"]
    for model in (reverser, tiny()):  # trained, and untrained (no confident model)
        greedy = model.greedy_decode(src, max_len=6)  # some cut short
        beams = model.beam_search(src, beam_size=1, max_len=6)
        assert [h[0].tokens for h in beams] == [[t for t in g.tolist() if t != 0]
                                                for g in greedy]


def test_beam_search_sorted_and_scores_are_consistent(reverser):
    seqs = digits(4, random.Random(8))
    src = collate_pairs(seqs)["src"]
    alpha = 0.6
    results = reverser.beam_search(src, beam_size=4, max_len=12, alpha=alpha, n_best=4)
    for i, (s, hyps) in enumerate(zip(seqs, results, strict=True)):
        assert 1 <= len(hyps) <= 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert strip_ids(hyps[0].tokens, 2, 0) == s[::-1]
        for h in hyps:  # score = teacher-forced log-probability / GNMT penalty
            assert h.score == pytest.approx(h.log_prob / ((5 + len(h.tokens)) / 6) ** alpha)
            with torch.no_grad():
                logp = reverser(src[i:i + 1], torch.tensor([[1] + h.tokens[:-1]])
                                ).log_softmax(-1)
            lp = logp[0, torch.arange(len(h.tokens)), torch.tensor(h.tokens)].sum()
            assert h.log_prob == pytest.approx(lp.item(), abs=1e-4)


def test_generic_beam_search_on_a_fixed_distribution():
    # A "model" whose next-token distribution depends only on the step: the best
    # sequence by length-penalised score is known by hand.
    table = torch.log(torch.tensor([
        [0.0, 0.0, 0.4, 0.6],  # step 0: eos 0.4, token 3 0.6
        [0.0, 0.0, 0.9, 0.1],  # step 1: eos 0.9
        [0.0, 0.0, 1.0, 0.0],
    ]) + 1e-30)
    t = {"step": 0}

    def step(y):
        out = table[t["step"]].expand(y.shape[0], 4)
        t["step"] += 1
        return out

    hyps = beam_search(step, lambda rows: None, 1, beam_size=2, max_len=3, bos_id=1,
                       eos_id=2, alpha=0.0, n_best=2, banned_ids=(0, 1))[0]
    # [eos]: 0.4;  [3, eos]: 0.6 * 0.9 = 0.54 -> best without a length penalty
    assert [h.tokens for h in hyps] == [[3, 2], [2]]
    assert hyps[0].log_prob == pytest.approx(float(torch.log(torch.tensor(0.54))), abs=1e-5)
    t["step"] = 0
    g = greedy_search(step, 1, max_len=3, bos_id=1, eos_id=2, pad_id=0, banned_ids=(0, 1))
    assert g.tolist() == [[3, 2]]
    assert length_penalty(1, 0.6) == pytest.approx((6 / 6) ** 0.6)
    assert isinstance(hyps[0], Hypothesis)


def test_repeated_ngram_tokens_by_hand():
    assert repeated_ngram_tokens([1, 5, 6, 5], 2) == [6]  # (5, 6) seen: after 5, not 6
    assert repeated_ngram_tokens([1, 5, 6, 5, 7, 5], 2) == [6, 7]
    assert repeated_ngram_tokens([1, 5, 6, 5], 3) == []  # (6, 5) never followed
    assert repeated_ngram_tokens([1, 5, 6, 5, 6], 3) == [5]  # (5, 6, 5) seen
    assert sorted(repeated_ngram_tokens([1, 5, 6], 1)) == [1, 5, 6]
    assert repeated_ngram_tokens([1], 3) == []


def test_decoders_never_repeat_an_ngram():
    # A loop 3 4 3 4 ... is the likeliest output; with n = 2 the bigram (3, 4) and (4, 3)
    # may appear once each.
    logits = torch.full((5,), -5.0)

    def step(y):
        out = logits.expand(y.shape[0], 5).clone()
        out[:, 3] = torch.where(y == 4, 2.0, 0.0) + torch.where(y == 1, 2.0, 0.0)
        out[:, 4] = torch.where(y == 3, 2.0, 0.0)
        return out

    free = greedy_search(step, 1, max_len=6, bos_id=1, eos_id=2, pad_id=0, banned_ids=(0, 1))
    assert free.tolist() == [[3, 4, 3, 4, 3, 4]]
    g = greedy_search(step, 1, max_len=6, bos_id=1, eos_id=2, pad_id=0, banned_ids=(0, 1),
                      no_repeat_ngram_size=2)
    assert g.tolist()[0][:3] == [3, 4, 3]  # then (3, 4) is banned
    hyps = beam_search(step, lambda rows: None, 1, beam_size=2, max_len=6, bos_id=1, eos_id=2,
                       n_best=2, banned_ids=(0, 1), no_repeat_ngram_size=2)[0]
    for h in hyps:
        grams = list(zip([1, *h.tokens], h.tokens, strict=False))
        assert len(grams) == len(set(grams))
    model = tiny()
    src = collate_pairs(digits(6, random.Random(3), 2, 9))["src"]
    for hyps in model.beam_search(src, beam_size=3, max_len=10, n_best=3,
                                  no_repeat_ngram_size=1):
        assert all(len(set(h.tokens)) == len(h.tokens) for h in hyps)


# ---------------------------------------------------------------------- objective

def test_label_smoothed_objective():
    model = tiny()
    b = collate_pairs([[3, 4, 5], [6, 7]], [[5, 4, 3], [7, 6]])
    eps = 0.1
    loss, metrics, n = Seq2SeqLMObjective(eps)(model, b)
    assert n == 7  # 4 + 3 target tokens with their eos; padding is ignored
    logp = model(b["src"], b["tgt_in"]).log_softmax(-1)
    keep = b["tgt_out"] != 0
    nll = -logp.gather(-1, b["tgt_out"][..., None])[..., 0][keep]
    smooth = -logp.mean(-1)[keep]  # eps spread uniformly over all V classes
    torch.testing.assert_close(loss, ((1 - eps) * nll + eps * smooth).mean())
    torch.testing.assert_close(metrics["nll"], nll.mean())
    plain, m0, _ = Seq2SeqLMObjective()(model, b)
    torch.testing.assert_close(plain, nll.mean())
    assert m0 == {}
    with pytest.raises(ValueError, match="label_smoothing"):
        Seq2SeqLMObjective(1.0)


# ---------------------------------------------------------------------- config, storage

def test_shared_embeddings_and_tied_output_share_storage(tmp_path):
    model = tiny(share_embeddings=True, tie_output=True)
    w = model.src_embed.weight
    assert model.tgt_embed.weight is w and model.lm_head.weight is w
    assert model.tgt_embed.weight.data_ptr() == model.lm_head.weight.data_ptr() == w.data_ptr()
    untied = tiny(share_embeddings=False, tie_output=False)
    assert untied.num_parameters() - model.num_parameters() == 2 * V * 16
    assert untied.num_parameters(exclude_embeddings=True) - \
        model.num_parameters(exclude_embeddings=True) == V * 16  # the output projection
    model.save_pretrained(tmp_path / "m")
    again = load_model_folder(tmp_path / "m")
    assert again.lm_head.weight is again.src_embed.weight is again.tgt_embed.weight
    with torch.no_grad():
        again.src_embed.weight[5, 0] += 1.0  # one tensor: the output moves with it
    assert again.lm_head.weight[5, 0] == again.tgt_embed.weight[5, 0]


def test_save_load_round_trip(tmp_path):
    model = tiny(positional="learned", norm_first=True, activation="gelu")
    model.save_pretrained(tmp_path / "t")
    again = Transformer.from_pretrained(tmp_path / "t")
    assert again.config == model.config and again.config.final_norm is True
    src, tgt = torch.tensor([[3, 4, 5]]), torch.tensor([[1, 5, 4]])
    torch.testing.assert_close(again(src, tgt), model(src, tgt))
    assert isinstance(build_model(TransformerConfig(src_vocab_size=8, tgt_vocab_size=9,
                                                    d_model=8, n_head=2, d_ff=8,
                                                    n_encoder_layers=1, n_decoder_layers=1)),
                      Transformer)


@pytest.mark.parametrize("kw,match", [
    (dict(d_model=10, n_head=4), "divisible"),
    (dict(share_embeddings=True, tgt_vocab_size=14), "one vocabulary"),
    (dict(eos_id=20), "eos_id"),
    (dict(bos_id=0), "differ"),
    (dict(activation="swish"), "activation"),
    (dict(positional="rope"), "positional"),
    (dict(dropout=1.0), "dropout"),
    (dict(n_decoder_layers=0), "n_decoder_layers"),
])
def test_config_errors(kw, match):
    cfg = dict(src_vocab_size=V, tgt_vocab_size=V)
    cfg.update(kw)
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**cfg)


def test_decode_length_limits():
    model = tiny(max_seq_len=8)
    src = torch.tensor([[3, 4]])
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(src, max_len=9)
    assert model.greedy_decode(src, max_len=8).shape[1] <= 8


@pytest.mark.slow
def test_pre_ln_with_label_smoothing_reverses_and_beam_agrees():
    model = tiny(d_model=64, n_head=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=128,
                 norm_first=True, max_seq_len=16)
    train_reverser(model, steps=800, label_smoothing=0.1)
    held_out = digits(200, random.Random(123))
    assert exact_match(model, held_out) >= 0.95
    src = collate_pairs(held_out[:50])["src"]
    beams = model.beam_search(src, beam_size=4, max_len=12)
    acc = sum(strip_ids(h[0].tokens, 2, 0) == s[::-1]
              for h, s in zip(beams, held_out[:50], strict=True)) / 50
    assert acc >= 0.95
