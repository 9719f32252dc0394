"""RNN language model (TBPTT) and the attentional seq2seq model (greedy, beam search)."""

import random

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import CheckpointError
from lmforge.models import build_model, model_class
from lmforge.models.base import load_model_folder
from lmforge.models.rnn import (
    RNNLM,
    RNNLMConfig,
    Seq2Seq,
    Seq2SeqConfig,
    Seq2SeqObjective,
    TBPTTBatches,
    TBPTTObjective,
    collate_pairs,
    detach_state,
    strip_ids,
)

PATTERN = [3, 1, 4, 1, 5, 9, 2, 6]  # after a 1 comes 4 or 5: needs the token before


def tiny_lm(cell="lstm", **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=10, cell=cell, d_embed=16, d_hidden=32, n_layer=1)
    cfg.update(kw)
    return RNNLM(RNNLMConfig(**cfg))


# ---------------------------------------------------------------------- RNNLM

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_rnnlm_learns_a_repeating_pattern(cell):
    model = tiny_lm(cell)
    seq = torch.tensor(PATTERN * 40)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        i = torch.randint(0, len(seq) - 33, (16,), generator=gen)
        x = torch.stack([seq[j:j + 32] for j in i])
        y = torch.stack([seq[j + 1:j + 33] for j in i])
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 10), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.05:
            break
    assert loss.item() < 0.1


def test_rnnlm_shapes_state_and_paths():
    model = tiny_lm("lstm", n_layer=2)
    x = torch.randint(0, 10, (3, 7))
    logits, (h, c) = model(x)
    assert logits.shape == (3, 7, 10) and h.shape == c.shape == (2, 3, 32)
    model.rnn.fused = False  # the readable loop, same parameters
    logits2, (h2, _) = model(x)
    torch.testing.assert_close(logits2, logits, atol=1e-5, rtol=0)
    # feeding the sequence in two chunks with the carried state = one pass
    model.rnn.fused = True
    a, state = model(x[:, :4])
    b, _ = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), logits, atol=1e-5, rtol=0)
    # lengths: the state is the one after each row's last real token
    _, (h3, _) = model(x, lengths=torch.tensor([7, 2, 5]))
    _, (h1, _) = model(x[1:2, :2])
    torch.testing.assert_close(h3[:, 1:2], h1, atol=1e-5, rtol=0)


def test_rnnlm_tied_embeddings_with_and_without_projection():
    same = tiny_lm("gru", d_embed=32, d_hidden=32, tie_embeddings=True)
    assert same.lm_head.weight is same.embed.weight and same.proj is None
    proj = tiny_lm("gru", d_embed=16, d_hidden=32, tie_embeddings=True)
    assert proj.lm_head.weight is proj.embed.weight and proj.proj is not None
    assert proj(torch.randint(0, 10, (2, 5)))[0].shape == (2, 5, 10)


def test_tbptt_batches_are_consecutive():
    src = TBPTTBatches(list(range(100)), batch_size=4, bptt=5)  # 4 rows of 25 tokens
    assert len(src) == 4  # (25 - 1) // 5
    c0, c1 = src.batch(0, 0), src.batch(1, 0)
    assert c0["reset"] and not c1["reset"]
    assert c0["input_ids"][:, -1].tolist() == [4, 29, 54, 79]
    assert c1["input_ids"][:, 0].tolist() == [5, 30, 55, 80]  # row b continues row b
    torch.testing.assert_close(c0["labels"][:, :-1], c0["input_ids"][:, 1:])
    assert src.batch(4, 0)["reset"]  # wraps around to chunk 0
    assert TBPTTBatches(list(range(100)), 4, 5, grad_accum=2).batch(1, 1) \
        ["input_ids"][0, 0] == 15
    with pytest.raises(ValueError, match="too few"):
        TBPTTBatches(list(range(10)), batch_size=4, bptt=5)


def test_tbptt_objective_carries_detached_state():
    model = tiny_lm("lstm")
    stream = torch.tensor(PATTERN * 10)
    src = TBPTTBatches(stream, batch_size=2, bptt=8)
    obj = TBPTTObjective()
    full_logits, _ = model(src.rows[:, :24])
    losses = []
    for i in range(3):
        batch = src.chunk(i)
        loss, _, n = obj(model, batch)
        loss.backward()  # would fail through a freed graph if the state were not detached
        assert n == 16
        state = obj._state[True]
        assert not state[0].requires_grad
        want = F.cross_entropy(full_logits[:, 8 * i:8 * i + 8].reshape(-1, 10),
                               batch["labels"].reshape(-1))
        losses.append((loss.item(), want.item()))
    for got, want in losses:  # chunked with carried state == one long pass
        assert got == pytest.approx(want, abs=1e-5)
    # reset, and a different batch size, start from zeros
    loss0, _, _ = obj(model, src.chunk(0))
    assert loss0.item() == pytest.approx(losses[0][0], abs=1e-5)
    assert detach_state(None) is None


def test_tbptt_objective_with_the_trainer(tmp_path):
    from lmforge.config import TrainConfig
    from lmforge.train.trainer import Trainer

    model = tiny_lm("gru")
    stream = PATTERN * 60
    cfg = TrainConfig(max_steps=60, batch_size=4, block_size=16, lr=1e-2, min_lr=1e-3,
                      warmup_steps=0, log_every=20, eval_every=60, eval_batches=2,
                      ckpt_every=60, precision="fp32", device="cpu", threads=1)
    train = TBPTTBatches(stream, batch_size=4, bptt=16, eval_tokens=stream[:200])
    result = Trainer(model, cfg, train, train, tmp_path / "run", seed=0,
                     objective=TBPTTObjective(), show_progress=False).fit()
    assert result.steps == 60 and result.final_val_loss < 0.5
    again = RNNLM.from_pretrained(result.last_checkpoint)
    assert isinstance(again, RNNLM)


def test_rnnlm_save_load_round_trip(tmp_path):
    model = tiny_lm("gru", n_layer=2, tie_embeddings=True, d_embed=32).eval()
    x = torch.randint(0, 10, (2, 6))
    model.save_pretrained(tmp_path / "m")
    again = RNNLM.from_pretrained(tmp_path / "m")
    assert again.config == model.config
    torch.testing.assert_close(again(x)[0], model(x)[0])
    assert again.lm_head.weight is again.embed.weight
    assert model_class("rnn_lm") is RNNLM
    with pytest.raises(CheckpointError):
        Seq2Seq.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("kw,match", [
    ({"cell": "transformer"}, "cell"), ({"dropout": 1.5}, "dropout"),
    ({"d_hidden": 0}, "d_hidden"), ({"vocab_size": 0}, "vocab_size")])
def test_rnnlm_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        RNNLMConfig(**{"vocab_size": 10, **kw})


# ---------------------------------------------------------------------- Seq2Seq

V = 13  # 0 pad, 1 bos, 2 eos, 3..12 digits


def digits(n, rng, lo=3, hi=7):
    return [[rng.randint(3, V - 1) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def tiny_s2s(attention="luong", cell="lstm", **kw):
    torch.manual_seed(0)
    cfg = dict(src_vocab=V, tgt_vocab=V, cell=cell, d_embed=16, d_hidden=32,
               attention=attention)
    cfg.update(kw)
    return Seq2Seq(Seq2SeqConfig(**cfg))


def train_reverser(model, steps, lr, seed=0):
    rng = random.Random(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    obj = Seq2SeqObjective()
    model.train()
    for _ in range(steps):
        src = digits(32, rng)
        loss, _, _ = obj(model, collate_pairs(src, [s[::-1] for s in src]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def exact_match(model, seqs, **kw):
    b = collate_pairs(seqs)
    out = model.greedy_decode(b["src"], b["src_lengths"], max_len=12, **kw)
    return sum(strip_ids(o.tolist(), 2, 0) == s[::-1] for o, s in zip(out, seqs, strict=True)) \
        / len(seqs)


@pytest.fixture(scope="module")
def reverser():
    return train_reverser(tiny_s2s("luong", "lstm"), steps=250, lr=5e-3)


def test_seq2seq_learns_to_reverse(reverser):
    held_out = digits(200, random.Random(123))
    assert exact_match(reverser, held_out) >= 0.9


def test_beam_of_one_is_greedy(reverser):
    seqs = digits(12, random.Random(7), 2, 9)
    b = collate_pairs(seqs)
    greedy = reverser.greedy_decode(b["src"], b["src_lengths"], max_len=6)  # some cut short
    beams = reverser.beam_search(b["src"], b["src_lengths"], beam_size=1, max_len=6)
    for g, hyps in zip(greedy, beams, strict=True):
        assert hyps[0].tokens == [t for t in g.tolist() if t != 0]
    untrained = tiny_s2s("bahdanau", "gru")  # also with no confident model
    g = untrained.greedy_decode(b["src"], b["src_lengths"], max_len=8)
    hyps = untrained.beam_search(b["src"], b["src_lengths"], beam_size=1, max_len=8)
    assert [h[0].tokens for h in hyps] == [[t for t in r.tolist() if t != 0] for r in g]


def test_beam_search_sorted_and_scores_are_consistent(reverser):
    seqs = digits(4, random.Random(8))
    b = collate_pairs(seqs)
    alpha = 0.6
    results = reverser.beam_search(b["src"], b["src_lengths"], beam_size=4, max_len=12,
                                   alpha=alpha, n_best=4)
    for s, hyps in zip(seqs, results, strict=True):
        assert 1 <= len(hyps) <= 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert strip_ids(hyps[0].tokens, 2, 0) == s[::-1]
        for h in hyps:  # the score is the teacher-forced log-probability / GNMT penalty
            assert h.score == pytest.approx(h.log_prob / ((5 + len(h.tokens)) / 6) ** alpha)
            tgt_in = torch.tensor([[1] + h.tokens[:-1]])
            with torch.no_grad():
                logp = reverser(b["src"][seqs.index(s):seqs.index(s) + 1],
                                b["src_lengths"][seqs.index(s):seqs.index(s) + 1],
                                tgt_in).log_softmax(-1)
            lp = logp[0, torch.arange(len(h.tokens)), torch.tensor(h.tokens)].sum()
            assert h.log_prob == pytest.approx(lp.item(), abs=1e-4)


@pytest.mark.parametrize("attention", ["bahdanau", "luong", "none"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_teacher_forcing_equals_step_by_step(attention, cell):
    model = tiny_s2s(attention, cell, n_layer=2).eval()
    b = collate_pairs([[3, 4, 5], [6, 7]], [[5, 4, 3], [7, 6]])
    logits, attn = model(b["src"], b["src_lengths"], b["tgt_in"], return_attention=True)
    assert logits.shape == (2, 4, V)
    enc = model.encode(b["src"], b["src_lengths"])
    state = enc.state
    for t in range(4):
        z, state, w = model.decode_step(b["tgt_in"][:, t], state, enc)
        torch.testing.assert_close(z, logits[:, t], atol=1e-5, rtol=0)
        if attention != "none":
            torch.testing.assert_close(w, attn[:, t], atol=1e-6, rtol=0)
            assert torch.all(w[1, 2:] == 0)  # source padding gets no weight
            torch.testing.assert_close(w.sum(-1), torch.ones(2))
    if attention == "none":
        assert attn is None


def test_source_padding_changes_nothing():
    model = tiny_s2s("bahdanau", "gru").eval()
    b = collate_pairs([[3, 4, 5], [6, 7]], [[5, 4, 3], [7, 6]])
    padded = torch.cat([b["src"], torch.zeros(2, 3, dtype=torch.long)], 1)
    a = model(b["src"], b["src_lengths"], b["tgt_in"])
    c = model(padded, None, b["tgt_in"])  # lengths inferred from pad_id
    torch.testing.assert_close(a, c, atol=1e-5, rtol=0)


def test_fused_and_readable_seq2seq_agree():
    model = tiny_s2s("luong", "gru", n_layer=2).eval()
    b = collate_pairs([[3, 4, 5, 6], [6, 7]], [[5, 4, 3], [7, 6]])
    a = model(b["src"], b["src_lengths"], b["tgt_in"])
    model.encoder.fused = model.decoder.fused = False
    torch.testing.assert_close(model(b["src"], b["src_lengths"], b["tgt_in"]), a,
                               atol=1e-5, rtol=0)


def test_seq2seq_save_load_round_trip(tmp_path):
    model = tiny_s2s("bahdanau", "lstm", n_layer=2)
    model.save_pretrained(tmp_path / "s2s")
    again = load_model_folder(tmp_path / "s2s")
    assert isinstance(again, Seq2Seq) and again.config == model.config
    b = collate_pairs([[3, 4, 5]], [[5, 4, 3]])
    model.eval()
    torch.testing.assert_close(again(b["src"], None, b["tgt_in"]),
                               model(b["src"], None, b["tgt_in"]))
    assert isinstance(build_model(Seq2SeqConfig(src_vocab=8, tgt_vocab=9)), Seq2Seq)


def test_seq2seq_config_errors_and_collate():
    with pytest.raises(ValueError, match="attention"):
        Seq2SeqConfig(src_vocab=8, tgt_vocab=8, attention="transformer")
    with pytest.raises(ValueError, match="eos_id"):
        Seq2SeqConfig(src_vocab=8, tgt_vocab=8, eos_id=9)
    with pytest.raises(ValueError, match="differ"):
        Seq2SeqConfig(src_vocab=8, tgt_vocab=8, bos_id=0)
    b = collate_pairs([[5, 6, 7], [8]], [[9], [4, 4]])
    assert b["src"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["src_lengths"].tolist() == [3, 1]
    assert b["tgt_in"].tolist() == [[1, 9, 0], [1, 4, 4]]
    assert b["tgt_out"].tolist() == [[9, 2, 0], [4, 4, 2]]
    with pytest.raises(ValueError, match="at least one token"):
        collate_pairs([[]])


@pytest.mark.slow
def test_bahdanau_gru_reverses_digits_exactly():
    model = train_reverser(tiny_s2s("bahdanau", "gru"), steps=500, lr=3e-3)
    held_out = digits(200, random.Random(123))
    assert exact_match(model, held_out) >= 0.95
    b = collate_pairs(held_out[:50])
    beams = model.beam_search(b["src"], b["src_lengths"], beam_size=4, max_len=12)
    acc = sum(strip_ids(h[0].tokens, 2, 0) == s[::-1] for h, s in zip(beams, held_out[:50],
                                                                      strict=True)) / 50
    assert acc >= 0.95
