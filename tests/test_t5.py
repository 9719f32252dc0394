"""T5 (v1.0 / v1.1): parity with transformers both ways, the KV cache, generation, padding,
save/load, span corruption and a short training run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmforge.errors import CheckpointError, DataError
from lmforge.models.base import load_model_folder
from lmforge.models.t5 import T5, T5Config
from lmforge.nn.positional import T5RelativePositionBias
from lmforge.train.span_corruption import (
    SpanCorruptionObjective,
    SpanCorruptionSource,
    corrupted_lengths,
    default_sentinels,
    noise_span_counts,
    random_spans_noise_mask,
    reconstruct,
    span_corrupt,
)

VARIANTS = {"v1.0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
            "v1.1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)}


def tiny(variant="v1.0", **kw):
    cfg = dict(vocab_size=96, d_model=32, d_kv=8, d_ff=48, n_layer=2, n_head=4,
               relative_buckets=8, relative_max_distance=20, **VARIANTS[variant])
    cfg.update(kw)
    torch.manual_seed(0)
    return T5(T5Config(**cfg)).eval()


def hf_tiny(variant, **kw):
    transformers = pytest.importorskip("transformers")
    cfg = dict(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
               relative_attention_num_buckets=8, relative_attention_max_distance=20,
               dropout_rate=0.0, decoder_start_token_id=0, **VARIANTS[variant])
    cfg.update(kw)
    torch.manual_seed(1)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**cfg)).eval()
    with torch.no_grad():  # non-trivial norms, and (v1.1) an lm_head of its own
        for n, p in hf.named_parameters():
            if "layer_norm" in n:
                p.normal_(1.0, 0.2)
        if not cfg["tie_word_embeddings"]:
            hf.lm_head.weight = torch.nn.Parameter(torch.randn(96, 32))
    return hf


def batch(seed=0, S=30, T=25):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 96, (3, S), generator=g)
    mask = torch.ones(3, S, dtype=torch.long)
    mask[1, S - 8:] = 0  # right padding
    mask[2, :5] = 0  # left padding (positions are relative: both work)
    dec = torch.randint(2, 96, (3, T), generator=g)
    return ids, mask, dec


# ---------------------------------------------------------------------- parity


@pytest.mark.parametrize("variant", ["v1.0", "v1.1"])
def test_logits_match_transformers(variant):
    from lmforge.hf.t5 import load

    hf = hf_tiny(variant, num_decoder_layers=3)
    model = load(hf.config.to_dict(), hf.state_dict())
    assert model.config.n_decoder_layer == 3
    assert model.config.tie_word_embeddings == (variant == "v1.0")
    assert model.config.scale_decoder_output == (variant == "v1.0")
    ids, mask, dec = batch()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        got = model(ids, mask, dec)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_mt5_logits_match_transformers():
    transformers = pytest.importorskip("transformers")
    from lmforge.hf.t5 import load

    torch.manual_seed(2)
    hf = transformers.MT5ForConditionalGeneration(transformers.MT5Config(
        vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=20,
        dropout_rate=0.0, decoder_start_token_id=0)).eval()
    model = load(hf.config.to_dict(), hf.state_dict())
    assert model.config.feed_forward_proj == "gated-gelu"
    assert not model.config.scale_decoder_output
    ids, mask, dec = batch(7)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        torch.testing.assert_close(model(ids, mask, dec), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["v1.0", "v1.1"])
def test_export_loads_in_transformers(variant, tmp_path):
    transformers = pytest.importorskip("transformers")
    from lmforge.hf.io import write_hf_folder
    from lmforge.hf.t5 import export

    model = tiny(variant)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.normal_(1.0, 0.2)
    hf_config, state = export(model)
    write_hf_folder(tmp_path / "hf", hf_config, state)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    assert (hf.lm_head.weight.data_ptr() == hf.shared.weight.data_ptr()) == (variant == "v1.0")
    ids, mask, dec = batch(1)
    with torch.no_grad():
        want = model(ids, mask, dec)
        got = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_greedy_generation_matches_transformers_and_stops_at_eos():
    from lmforge.hf.t5 import load

    hf = hf_tiny("v1.1")
    model = load(hf.config.to_dict(), hf.state_dict())
    ids, mask, _ = batch(2)
    want = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                       num_beams=1)[:, 1:]  # drop the start token
    got = model.generate(ids, mask, max_new_tokens=12)
    assert len(set(want.flatten().tolist())) > 3  # not a degenerate constant output
    assert torch.equal(got, want)
    # With eos = a token some row emits, that row stops there and is padded afterwards.
    eos = int(got[0, 3])
    model.config.eos_token_id = eos
    hf.generation_config.eos_token_id = eos
    want = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                       num_beams=1)[:, 1:]
    got = model.generate(ids, mask, max_new_tokens=12)
    n = want.shape[1]
    assert torch.equal(got[:, :n], want) and (got[:, n:] == 0).all()
    first = int((got[0] == eos).nonzero()[0])
    assert (got[0, first + 1:] == model.config.pad_token_id).all()


def test_missing_and_mismatched_tensors_are_named():
    from lmforge.hf.t5 import load

    hf = hf_tiny("v1.0")
    state = dict(hf.state_dict())
    del state["decoder.block.1.layer.1.EncDecAttention.k.weight"]
    with pytest.raises(CheckpointError, match=r"missing tensor decoder\.blocks\.1\.cross_attn"
                                              r"\.k\.weight"):
        load(hf.config.to_dict(), state)
    state = dict(hf.state_dict())
    state["encoder.block.0.layer.1.DenseReluDense.wi.weight"] = torch.zeros(40, 32)
    with pytest.raises(CheckpointError, match=r"encoder\.blocks\.0\.ff\.wi\.weight has shape "
                                              r"\(40, 32\), model expects \(48, 32\)"):
        load(hf.config.to_dict(), state)
    state = dict(hf.state_dict())
    state["encoder.block.0.layer.0.SelfAttention.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected tensor"):
        load(hf.config.to_dict(), state)
    with pytest.raises(CheckpointError, match="feed_forward_proj"):
        load({**hf.config.to_dict(), "feed_forward_proj": "gated-swish"}, hf.state_dict())


def test_converter_is_registered():
    from lmforge.hf import converter_for_arch, converter_for_model_type

    assert converter_for_model_type("t5").export is not None
    assert "t5" in converter_for_arch("t5").archs


# ---------------------------------------------------------------------- the model itself


def test_structure_bias_shared_once_per_stack_and_no_scaling():
    m = tiny("v1.0")
    biases = [mod for mod in m.modules() if isinstance(mod, T5RelativePositionBias)]
    assert len(biases) == 2
    assert m.encoder.rel_bias.bidirectional and not m.decoder.rel_bias.bidirectional
    assert all(lin.bias is None for lin in m.modules() if isinstance(lin, torch.nn.Linear))
    assert m.lm_head.weight is m.shared.weight
    m11 = tiny("v1.1")
    assert m11.lm_head.weight is not m11.shared.weight
    # parameter count of the tiny v1.0 model by hand
    d, dkv, h, ff, V, nb = 32, 8, 4, 48, 96, 8
    attn = 4 * d * h * dkv
    enc = 2 * (attn + 2 * d * ff + 2 * d)
    dec = 2 * (2 * attn + 2 * d * ff + 3 * d)
    assert m.num_parameters() == V * d + enc + dec + 2 * (nb * h + d)


@pytest.mark.parametrize("variant", ["v1.0", "v1.1"])
def test_padding_does_not_change_real_tokens(variant):
    m = tiny(variant)
    ids, mask, dec = batch(3)
    with torch.no_grad():
        full = m(ids, mask, dec)
        for row in (1, 2):
            real = mask[row].bool()
            alone = m(ids[row: row + 1, real], None, dec[row: row + 1])
            torch.testing.assert_close(full[row: row + 1], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["v1.0", "v1.1"])
def test_cached_decoding_equals_full_decoding(variant):
    m = tiny(variant)
    ids, mask, dec = batch(4, T=9)
    with torch.no_grad():
        memory = m.encode(ids, mask)
        full = m.decode(dec, memory, mask)
        cache = m.new_cache(3, 9)
        steps = [m.decode(dec[:, :4], memory, mask, cache)]  # a prefix, then one at a time
        for t in range(4, 9):
            steps.append(m.decode(dec[:, t: t + 1], memory, mask, cache))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
    assert torch.equal(m.generate(ids, mask, 7), m.generate(ids, mask, 7, use_cache=False))


@pytest.mark.parametrize("variant", ["v1.0", "v1.1"])
def test_save_load_round_trip(variant, tmp_path):
    m = tiny(variant)
    m.save_pretrained(tmp_path / "m")
    back = T5.from_pretrained(tmp_path / "m")
    assert back.config == m.config and isinstance(load_model_folder(tmp_path / "m"), T5)
    ids, mask, dec = batch(5)
    with torch.no_grad():
        torch.testing.assert_close(back(ids, mask, dec), m(ids, mask, dec), atol=0, rtol=0)
    assert (back.lm_head.weight is back.shared.weight) == (variant == "v1.0")


def test_config_errors():
    with pytest.raises(ValueError, match="relative_buckets"):
        T5Config(vocab_size=10, relative_buckets=2)
    with pytest.raises(ValueError, match="eos_token_id"):
        T5Config(vocab_size=10, eos_token_id=10)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        tiny()(torch.zeros(1, 3, dtype=torch.long))
    assert T5Config(vocab_size=10, tie_word_embeddings=False).scale_decoder_output is False


# ---------------------------------------------------------------------- span corruption


@pytest.mark.parametrize("length", [2, 3, 10, 17, 32, 100, 114, 512, 568])
def test_noise_counts_follow_t5_formulas(length):
    n_noise, n_spans = noise_span_counts(length)
    assert n_noise == min(max(round(length * 0.15), 1), length - 1)
    assert n_spans == max(round(n_noise / 3), 1)
    for seed in range(5):
        mask = random_spans_noise_mask(length, np.random.default_rng(seed))
        assert mask.sum() == n_noise
        starts = mask & ~np.concatenate([[False], mask[:-1]])
        assert starts.sum() == n_spans
        assert not mask[0] and mask[-1]  # kept run first, noise span last (T5, no roll)


def test_span_corruption_reconstructs_with_ordered_sentinels():
    sentinels = default_sentinels(1000)
    assert sentinels[0] == 999 and sentinels[1] == 998  # <extra_id_0> = V - 1, counting down
    for seed in range(20):
        rng = np.random.default_rng(seed)
        tokens = rng.integers(2, 800, size=int(rng.integers(2, 200)))
        inp, tgt = span_corrupt(tokens, np.random.default_rng(seed), eos_id=1,
                                sentinel_ids=sentinels)
        assert (inp[-1], tgt[-1]) == (1, 1)
        assert (len(inp), len(tgt)) == corrupted_lengths(len(tokens))
        s_in = [t for t in inp if t >= 900]
        s_tgt = [t for t in tgt if t >= 900]
        assert s_in == s_tgt == list(sentinels[: len(s_in)])
        assert tgt[0] == sentinels[0]  # the target starts with <extra_id_0>
        assert reconstruct(inp, tgt, eos_id=1, sentinel_ids=sentinels) == tokens.tolist()
        again = span_corrupt(tokens, np.random.default_rng(seed), eos_id=1,
                             sentinel_ids=sentinels)
        assert np.array_equal(again[0], inp) and np.array_equal(again[1], tgt)


def test_span_corruption_worked_example():
    # The cute dog walks in the park -> The <X0> walks in <X1> park </s>
    #                                    <X0> cute dog <X1> the <X2> </s>
    tokens = [10, 11, 12, 13, 14, 15, 16]
    mask = np.array([0, 1, 1, 0, 0, 1, 0], dtype=bool)
    inp, tgt = span_corrupt(tokens, None, eos_id=1, sentinel_ids=[99, 98, 97],
                            noise_mask=mask)
    assert inp.tolist() == [10, 99, 13, 14, 98, 16, 1]
    assert tgt.tolist() == [99, 11, 12, 98, 15, 97, 1]
    assert reconstruct(inp, tgt, eos_id=1, sentinel_ids=[99, 98, 97]) == tokens


def test_span_corruption_errors():
    with pytest.raises(DataError, match="sentinel"):
        span_corrupt(np.arange(2, 200), np.random.default_rng(0), eos_id=1,
                     sentinel_ids=[999, 998])  # 200 tokens need ~10 spans
    src = SpanCorruptionSource(np.arange(30, 60), 2, 10, vocab_size=64, eos_id=1,
                               sentinel_ids=np.arange(63, 40, -1))
    with pytest.raises(DataError, match="also a sentinel"):
        src.batch(0, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise_density"):
        noise_span_counts(10, noise_density=1.5)


# ---------------------------------------------------------------------- training


def markov_corpus(n: int, seed: int, n_tokens: int = 40) -> np.ndarray:
    """Tokens 2..41: next = perm[prev] with probability 0.9, else uniform."""
    rng = np.random.default_rng(seed)
    perm = np.random.default_rng(123).permutation(n_tokens) + 2
    out = np.empty(n, dtype=np.int64)
    out[0] = 2
    for i in range(1, n):
        out[i] = perm[out[i - 1] - 2] if rng.random() < 0.9 else rng.integers(2, n_tokens + 2)
    return out


def test_span_corruption_training_beats_unigram(tmp_path):
    from lmforge.config import TrainConfig
    from lmforge.train import Trainer

    threads = torch.get_num_threads()
    V, sentinels = 64, np.arange(63, 43, -1)  # data 2..41, sentinels 63..44
    kw = dict(vocab_size=V, eos_id=1, sentinel_ids=sentinels, decoder_start_id=0)
    train = SpanCorruptionSource(markov_corpus(20000, 0), 16, 32, **kw)
    val = SpanCorruptionSource(markov_corpus(3000, 1), 32, 32, max_eval_batches=4, **kw)
    assert (train.input_length, train.target_length) == corrupted_lengths(32) == (30, 8)

    # Unigram baseline: the entropy of the target tokens' marginal distribution.
    rng = np.random.default_rng(7)
    labels = np.concatenate([train.batch(0, 0, rng)["labels"].numpy().ravel()
                             for _ in range(100)])
    p = np.bincount(labels) / labels.size
    unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())

    torch.manual_seed(0)
    model = T5(T5Config(vocab_size=V, d_model=64, d_kv=16, d_ff=128, n_layer=2, n_head=4,
                        relative_buckets=16, relative_max_distance=32,
                        feed_forward_proj="gated-gelu", tie_word_embeddings=False))
    objective = SpanCorruptionObjective()
    with torch.no_grad():
        initial = float(np.mean([float(objective(model.eval(), b)[0])
                                 for b in val.eval_batches()]))
    cfg = TrainConfig(max_steps=100, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=10,
                      weight_decay=0.0, eval_every=100, ckpt_every=100, log_every=50,
                      precision="fp32", device="cpu")
    try:
        result = Trainer(model, cfg, train, val, tmp_path / "run", seed=0, objective=objective,
                         show_progress=False).fit()
    finally:
        torch.set_num_threads(threads)
    final = result.final_val_loss
    assert initial > unigram  # a random model is worse than the unigram model
    assert final < unigram - 0.5, (initial, unigram, final)
    assert final < initial - 1.0
    assert math.isfinite(final)


def test_hf_folder_round_trip_through_convert(tmp_path):
    """transformers folder -> `lmforge convert` -> lmforge folder -> back -> transformers."""
    transformers = pytest.importorskip("transformers")
    from lmforge.convert import convert
    from lmforge.hub import load_pretrained

    hf = hf_tiny("v1.1")
    hf.save_pretrained(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "lm")
    model, _ = load_pretrained(tmp_path / "lm")
    assert isinstance(model, T5) and not model.config.tie_word_embeddings
    convert(tmp_path / "lm", tmp_path / "back", to="hf")
    back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
    ids, mask, dec = batch(6)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        torch.testing.assert_close(model(ids, mask, dec), want, atol=1e-4, rtol=0)
        torch.testing.assert_close(back(input_ids=ids, attention_mask=mask,
                                        decoder_input_ids=dec).logits, want, atol=1e-4, rtol=0)


def _has_repeat(row: list[int], n: int) -> bool:
    grams = [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]
    return len(grams) != len(set(grams))


def test_no_repeat_ngram_greedy_matches_transformers_and_beam_of_one():
    from lmforge.hf.t5 import load

    hf = hf_tiny("v1.1")
    model = load(hf.config.to_dict(), hf.state_dict())
    ids, mask, _ = batch(2)
    free = model.generate(ids, mask, max_new_tokens=16).tolist()
    assert any(_has_repeat(r, 2) for r in free)  # the constraint has something to remove
    want = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=False,
                       num_beams=1, no_repeat_ngram_size=2)[:, 1:]
    got = model.generate(ids, mask, max_new_tokens=16, no_repeat_ngram_size=2)
    assert torch.equal(got, want)
    assert not any(_has_repeat([0, *r], 2) for r in got.tolist())
    beams = model.beam_search(ids, mask, beam_size=1, max_len=16, no_repeat_ngram_size=2)
    assert [h[0].tokens for h in beams] == [[t for t in r if t != 0] for r in got.tolist()]


def test_beam_search_never_repeats_an_ngram_and_scores_are_sorted():
    model = tiny("v1.1").eval()
    ids, mask, _ = batch(3)
    for n in (1, 2, 3):
        results = model.beam_search(ids, mask, beam_size=3, max_len=14, n_best=3,
                                    no_repeat_ngram_size=n)
        for hyps in results:
            assert hyps and [h.score for h in hyps] == sorted((h.score for h in hyps),
                                                                reverse=True)
            for h in hyps:
                assert not _has_repeat([model.config.decoder_start_token_id, *h.tokens], n)
