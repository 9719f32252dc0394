"""MLM masking (80/10/10, whole words), NSP pairs, batch sources and the objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmforge.data.prepare import prepare_data
from lmforge.errors import ConfigError, DataError
from lmforge.models.bert import BertConfig, BertModel
from lmforge.train.mlm import (
    IGNORE_INDEX,
    Masker,
    MLMBatchSource,
    MLMObjective,
    split_sentences,
    truncate_pair,
    wordpiece_word_starts,
)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, UNK, CLS, SEP, MASK]


def masker(vocab=100, **kw) -> Masker:
    return Masker(mask_id=MASK, vocab_size=vocab, special_ids=SPECIALS, **kw)


def big_batch(vocab=100, B=512, T=128, seed=0):
    """Random ordinary ids with [CLS] ... [SEP] and a padded tail on odd rows."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (B, T))
    ids[:, 0] = CLS
    ids[:, T // 2] = SEP
    ids[:, -1] = SEP
    valid = np.ones((B, T), dtype=bool)
    valid[1::2, 100:] = False
    ids[~valid] = PAD
    return ids, valid


# ------------------------------------------------------------------------------ masking

def test_80_10_10_proportions_on_a_big_batch():
    ids, valid = big_batch()
    out, labels = masker()(ids, np.random.default_rng(0), valid=valid)
    out, labels = out.numpy(), labels.numpy()
    chosen = labels != IGNORE_INDEX
    cand = valid & (ids >= 5)
    # 15% of the ordinary tokens of every row (round(0.15 n) per row)
    assert abs(chosen.sum() / cand.sum() - 0.15) < 0.005
    assert np.all(chosen.sum(1) == np.rint(0.15 * cand.sum(1)))
    assert np.array_equal(labels[chosen], ids[chosen])  # labels: the original ids
    masked = chosen & (out == MASK)
    kept = chosen & (out == ids)
    replaced = chosen & ~masked & ~kept
    n = chosen.sum()
    assert abs(masked.sum() / n - 0.8) < 0.015
    assert abs(replaced.sum() / n - 0.1) < 0.015
    # a random replacement equals the original with probability 1/95; tolerance covers it
    assert abs(kept.sum() / n - 0.1) < 0.015
    assert np.array_equal(out[~chosen], ids[~chosen])  # nothing else changes
    assert np.all(out[replaced] >= 5)  # random tokens are never special


def test_specials_and_padding_are_never_chosen():
    ids, valid = big_batch(B=64)
    for seed in range(5):
        _, labels = masker(mlm_prob=0.5)(ids, seed, valid=valid)
        chosen = labels.numpy() != IGNORE_INDEX
        assert not chosen[np.isin(ids, SPECIALS)].any()
        assert not chosen[~valid].any()


def test_masking_is_deterministic_given_the_generator():
    ids, valid = big_batch(B=8)
    a = masker()(ids, np.random.default_rng(7), valid=valid)
    b = masker()(ids, np.random.default_rng(7), valid=valid)
    c = masker()(ids, np.random.default_rng(8), valid=valid)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])


def test_every_row_gets_at_least_one_prediction():
    ids = np.array([[CLS, 10, SEP, PAD, PAD], [CLS, 11, 12, 13, SEP]])
    _, labels = masker()(ids, 0)
    assert ((labels != IGNORE_INDEX).sum(1) >= 1).all()


def test_bad_inputs():
    with pytest.raises(ConfigError, match="mlm_prob"):
        masker(mlm_prob=0.0)
    with pytest.raises(ConfigError, match="random_frac"):
        masker(mask_frac=0.8, random_frac=0.3)
    with pytest.raises(DataError, match="token ids"):
        masker(vocab=20)(np.array([[CLS, 25, SEP]]), 0)


def test_whole_word_masking_takes_all_pieces_of_a_word():
    vocab = 60
    word_start = np.ones(vocab, dtype=bool)
    word_start[40:] = False  # ids 40.. are '##' continuation pieces
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(256):  # words of 1-3 pieces
        row = [CLS]
        while len(row) < 60:
            row += [int(rng.integers(5, 40))] + [int(x) for x in rng.integers(40, 60,
                                                                           rng.integers(0, 3))]
        rows.append(row[:60] + [SEP])
    ids = np.array(rows)
    m = masker(vocab, word_start=word_start)
    assert m.whole_word
    _, labels = m(ids, np.random.default_rng(0))
    chosen = labels.numpy() != IGNORE_INDEX
    word = np.cumsum(word_start[ids] | np.isin(ids, SPECIALS), axis=1)
    for b in range(ids.shape[0]):
        for w in np.unique(word[b][chosen[b]]):
            assert chosen[b][word[b] == w].all(), "a word was chosen only in part"
    cand = ~np.isin(ids, SPECIALS)
    assert abs(chosen.sum() / cand.sum() - 0.15) < 0.02
    # without whole-word masking, words are routinely split
    _, labels = masker(vocab)(ids, np.random.default_rng(0))
    chosen = labels.numpy() != IGNORE_INDEX
    split = sum(not chosen[b][word[b] == w].all() for b in range(ids.shape[0])
                for w in np.unique(word[b][chosen[b]]))
    assert split > 0


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    from lmforge.tokenize import train_tokenizer

    texts = ["the unbelievable transformers are remarkable models",
             "tokenization splits unbelievable words into pieces",
             "今天天气很好，我们去公园散步。", "机器学习是人工智能的一个分支。"] * 20
    return train_tokenizer("wordpiece", texts=texts, vocab_size=120, min_frequency=1,
                           show_progress=False)


def test_wordpiece_word_starts_and_cjk(wordpiece):
    table = wordpiece_word_starts(wordpiece)
    vocab = wordpiece.get_vocab()
    assert any(t.startswith("##") for t in vocab)
    for tok, i in vocab.items():
        if tok.startswith("##") and len(tok) > 2:
            is_cjk = len(tok) == 3 and "\u4e00" <= tok[2] <= "\u9fff"
            assert table[i] == is_cjk
        else:
            assert table[i]
    ids = wordpiece.encode("今天天气")  # four characters = four words
    assert len(ids) == 4 and table[ids].all()
    m = Masker.from_tokenizer(wordpiece, whole_word=True)
    assert m.mask_id == wordpiece.mask_id and m.special[sorted(wordpiece.special_ids)].all()


def test_chinese_whole_words_follow_jieba(wordpiece):
    from lmforge.tokenize.zh import jieba_words
    from lmforge.train.mlm import ChineseWordStarts

    text = "机器学习是人工智能的一个分支。今天天气很好，我们去公园散步。"
    ids = np.array([wordpiece.encode(text)] * 400)
    chars = [wordpiece.id_to_token(i) for i in ids[0]]
    assert "".join(chars) == text  # one token per character
    # the reference: jieba's words of each punctuation-free run
    word = np.zeros(len(chars), dtype=np.int64)
    k, i = 0, 0
    for run in ["机器学习是人工智能的一个分支", "。", "今天天气很好", "，", "我们去公园散步", "。"]:
        for w in jieba_words(run):
            word[i:i + len(w)] = k
            k, i = k + 1, i + len(w)
    assert i == len(chars) and k < len(chars)  # some words have several characters
    starts = ChineseWordStarts(wordpiece)(ids)
    assert np.array_equal(starts[0], np.r_[True, word[1:] != word[:-1]])

    m = Masker.from_tokenizer(wordpiece, whole_word=True)  # zh_words="jieba" by default
    _, labels = m(ids, np.random.default_rng(0))
    chosen = labels.numpy() != IGNORE_INDEX
    for b in range(ids.shape[0]):
        for w in np.unique(word[chosen[b]]):
            assert chosen[b][word == w].all(), "a jieba word was chosen only in part"
    # per-character units split multi-character words
    _, labels = Masker.from_tokenizer(wordpiece, whole_word=True, zh_words="char")(
        ids, np.random.default_rng(0))
    chosen = labels.numpy() != IGNORE_INDEX
    assert any(not chosen[b][word == w].all() for b in range(ids.shape[0])
               for w in np.unique(word[chosen[b]]))
    with pytest.raises(ConfigError, match="zh_words"):
        Masker.from_tokenizer(wordpiece, whole_word=True, zh_words="ltp")


def test_whole_word_needs_wordpiece():
    from lmforge.tokenize import train_tokenizer

    tok = train_tokenizer("char", texts=["abc 你好"] * 3, vocab_size=50, show_progress=False)
    with pytest.raises(ConfigError, match="WordPiece"):
        Masker.from_tokenizer(tok, whole_word=True)


# ------------------------------------------------------------------------------ pairs

def test_split_sentences_zh_en():
    text = "今天天气很好。我们去公园吧！Are you coming? Pi is 3.14 today. 好的\n新的一行"
    assert split_sentences(text) == ["今天天气很好。", "我们去公园吧！", "Are you coming?",
                                     "Pi is 3.14 today.", "好的", "新的一行"]


def test_truncate_pair():
    rng = np.random.default_rng(0)
    a, b = np.arange(50), np.arange(100, 110)
    ta, tb = truncate_pair(a, b, 20, rng, keep_junction=True)
    assert ta.size + tb.size == 20 and tb.size == 10 and ta[-1] == 49  # a's end kept
    ta, tb = truncate_pair(np.arange(30), np.arange(100, 130), 21, rng, keep_junction=True)
    assert (ta.size, tb.size) == (10, 11) and ta[-1] == 29 and tb[0] == 100
    ta, tb = truncate_pair(np.arange(3), np.arange(4), 20, rng)
    assert (ta.size, tb.size) == (3, 4)


def numbered_docs(n_docs=40, seed=0):
    """Document k holds ids 1000k + 0, 1, 2, ... in sentences of 3-8 tokens, so where a
    token came from (document, offset) can be read off it."""
    rng = np.random.default_rng(seed)
    docs = []
    for k in range(n_docs):
        n, sents, pos = int(rng.integers(10, 60)), [], 0
        while pos < n:
            ln = int(rng.integers(3, 9))
            sents.append(list(range(1000 * k + pos + 5, 1000 * k + min(pos + ln, n) + 5)))
            pos += ln
        docs.append(sents)
    return docs


def test_nsp_pairs_are_well_formed():
    docs = numbered_docs()
    m = Masker(mask_id=MASK, vocab_size=50_000, special_ids=SPECIALS)
    src = MLMBatchSource(docs, m, cls_id=CLS, sep_id=SEP, pad_id=PAD, batch_size=64,
                         max_len=24, nsp=True)
    labels_seen = []
    for step in range(8):
        b = src.batch(step, 0, np.random.default_rng([1, step]))
        orig = torch.where(b["labels"] != IGNORE_INDEX, b["labels"], b["input_ids"]).numpy()
        tt, am = b["token_type_ids"].numpy(), b["attention_mask"].numpy()
        assert orig.shape[1] <= 24
        for row, types, mask, label in zip(orig, tt, am, b["next_sentence_label"].tolist(),
                                           strict=True):
            row, types = row[mask == 1], types[mask == 1]
            assert row[0] == CLS and row[-1] == SEP and (row == SEP).sum() == 2
            cut = int(np.flatnonzero(row == SEP)[0])
            a, bb = row[1:cut], row[cut + 1:-1]
            assert len(a) >= 1 and len(bb) >= 1
            assert (types[:cut + 1] == 0).all() and (types[cut + 1:] == 1).all()
            assert np.all(np.diff(a) == 1) and np.all(np.diff(bb) == 1)  # contiguous text
            same_doc = a[0] // 1000 == bb[0] // 1000
            if label == 0:  # IsNext: B starts right after A in the same document
                assert same_doc and bb[0] == a[-1] + 1
            else:  # NotNext: B comes from another document
                assert not same_doc
            labels_seen.append(label)
    assert abs(np.mean(labels_seen) - 0.5) < 0.1
    # NotNext B starts at a sentence start, IsNext cuts at a sentence boundary
    assert b["input_ids"].shape[0] == 64


def test_nsp_needs_two_documents():
    m = masker()
    with pytest.raises(DataError, match="two documents"):
        MLMBatchSource([[[5, 6, 7], [8, 9]]], m, cls_id=CLS, sep_id=SEP, pad_id=PAD,
                       nsp=True)
    with pytest.raises(DataError, match="no documents"):
        MLMBatchSource([[], []], m, cls_id=CLS, sep_id=SEP, pad_id=PAD)


def test_mlm_windows_batches_and_eval_are_deterministic():
    docs = [[int(x) for x in np.arange(5, 95)]] * 5
    src = MLMBatchSource(docs, masker(), cls_id=CLS, sep_id=SEP, pad_id=PAD, batch_size=4,
                         max_len=16, max_eval_batches=3)
    b = src.batch(0, 0, np.random.default_rng([0, 0, 0]))
    assert b["input_ids"].shape == (4, 16) and b["attention_mask"].all()
    assert (b["input_ids"][:, 0] == CLS).all() and (b["input_ids"][:, -1] == SEP).all()
    assert (b["token_type_ids"] == 0).all()
    again = src.batch(0, 0, np.random.default_rng([0, 0, 0]))
    assert all(torch.equal(b[k], again[k]) for k in b)
    e1, e2 = list(src.eval_batches()), list(src.eval_batches())
    assert len(e1) == 3 and all(torch.equal(x[k], y[k]) for x, y in zip(e1, e2, strict=True)
                                for k in x)


@pytest.fixture(scope="module")
def wp_shards(tmp_path_factory):
    docs = [f"第{i}篇文章。今天天气很好，我们去公园散步。The unbelievable model number {i} "
            f"learns quickly. It predicts masked words! 机器学习很有趣。" for i in range(60)]
    out = tmp_path_factory.mktemp("wp") / "data"
    prepare_data(None, out, texts=docs, tokenizer_spec={"kind": "wordpiece", "vocab_size": 200,
                                                        "min_frequency": 1},
                 val_fraction=0.1, show_progress=False)
    return out


def test_batches_from_wordpiece_shards(wp_shards):
    src = MLMBatchSource.from_shards(wp_shards, "train", batch_size=8, max_len=32, nsp=True,
                                     whole_word=True)
    tok = src.masker
    b = src.batch(0, 0, np.random.default_rng(0))
    assert set(b) == {"input_ids", "attention_mask", "token_type_ids", "labels",
                      "next_sentence_label"}
    assert (b["input_ids"][:, 0] == src.cls_id).all()
    assert b["labels"][b["labels"] != IGNORE_INDEX].numel() > 0
    assert tok.whole_word
    mlm = MLMBatchSource.from_shards(wp_shards, "val", batch_size=4, max_len=16)
    assert mlm.batch(0, 0, np.random.default_rng(0))["input_ids"].shape == (4, 16)
    assert mlm.vocab_size == src.vocab_size


def test_from_texts(wordpiece):
    texts = ["今天天气很好。我们去公园散步。", "the unbelievable models are remarkable. "
             "tokenization splits words!", ""]
    src = MLMBatchSource.from_texts(texts, wordpiece, batch_size=4, max_len=16, nsp=True)
    assert len(src.corpus.spans) == 2
    assert len(src.corpus.sentences(0)) == 2
    src.batch(0, 0, np.random.default_rng(0))


# ------------------------------------------------------------------------------ objective

def tiny_bert(head="mlm", vocab=45, seed=0, **kw):
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=vocab, n_layer=2, n_head=4, d_model=32,
                                max_position=32, head=head, dropout=0.0, **kw))


def test_objective_loss_is_the_mean_over_masked_tokens():
    docs = [[int(x) for x in np.random.default_rng(i).integers(5, 45, 40)] for i in range(5)]
    src = MLMBatchSource(docs, masker(45), cls_id=CLS, sep_id=SEP, pad_id=PAD, batch_size=4,
                         max_len=24)
    b = src.batch(0, 0, np.random.default_rng(0))
    model = tiny_bert().eval()
    loss, metrics, n = MLMObjective()(model, b)
    logits = model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 45), b["labels"].reshape(-1))
    torch.testing.assert_close(loss, ref)
    assert n == int((b["labels"] != IGNORE_INDEX).sum())
    assert set(metrics) == {"mlm_loss", "mlm_acc"}
    with pytest.raises(ConfigError, match="pretraining"):
        MLMObjective(nsp=True)(model, {**b, "next_sentence_label": torch.zeros(4).long()})


def test_mlm_plus_nsp_objective_backprops():
    src = MLMBatchSource(numbered_docs(10), Masker(mask_id=MASK, vocab_size=10_000,
                                                   special_ids=SPECIALS),
                         cls_id=CLS, sep_id=SEP, pad_id=PAD, batch_size=4, max_len=24,
                         nsp=True)
    model = tiny_bert("pretraining", vocab=10_000)
    b = src.batch(0, 0, np.random.default_rng(0))
    loss, metrics, n = MLMObjective(nsp=True)(model, b)
    torch.testing.assert_close(loss, metrics["mlm_loss"] + metrics["nsp_loss"])
    loss.backward()
    assert model.nsp.linear.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="nsp=True"):
        MLMObjective()(model, b)


def topic_docs(n_docs=200, n_topics=8, per_topic=5, seed=0):
    """Each document draws its tokens from one topic's 5 ids: a masked token is
    predictable (to 1 of 5) from the rest of the document, not from unigram counts."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        t = rng.integers(n_topics)
        docs.append([int(5 + t * per_topic + rng.integers(per_topic))
                     for _ in range(int(rng.integers(30, 80)))])
    return docs


def test_tiny_bert_learns_mlm_below_the_unigram_baseline():
    torch.manual_seed(0)
    src = MLMBatchSource(topic_docs(), masker(45), cls_id=CLS, sep_id=SEP, pad_id=PAD,
                         batch_size=16, max_len=32, max_eval_batches=4)
    labels = np.concatenate([b["labels"][b["labels"] != IGNORE_INDEX].numpy()
                             for b in src.eval_batches()])
    p = np.bincount(labels) / labels.size
    unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())  # ~ log 40
    model = tiny_bert()
    obj = MLMObjective()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    for step in range(300):
        for g in opt.param_groups:
            g["lr"] = 3e-3 * min(1.0, (step + 1) / 20)
        loss, _, _ = obj(model, src.batch(step, 0, np.random.default_rng([0, step])))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        ev = [obj(model, b) for b in src.eval_batches()]
    val = sum(float(loss) * n for loss, _, n in ev) / sum(n for *_, n in ev)
    assert unigram > 3.4
    assert val < 0.65 * unigram, (val, unigram)  # the floor is log 5 = 1.61


def test_trainer_runs_mlm(tmp_path):
    from lmforge.config import TrainConfig
    from lmforge.train import Trainer, read_metrics

    n = torch.get_num_threads()
    try:
        mk = dict(cls_id=CLS, sep_id=SEP, pad_id=PAD, batch_size=4, max_len=24)
        train = MLMBatchSource(topic_docs(40), masker(45), **mk)
        val = MLMBatchSource(topic_docs(10, seed=1), masker(45), max_eval_batches=2, **mk)
        cfg = TrainConfig(max_steps=6, batch_size=4, block_size=24, lr=1e-3, warmup_steps=1,
                          log_every=2, eval_every=3, eval_batches=2, ckpt_every=6,
                          precision="fp32", device="cpu", threads=1)
        result = Trainer(tiny_bert(), cfg, train, val, tmp_path / "run", seed=0,
                         objective=MLMObjective(), show_progress=False).fit()
    finally:
        torch.set_num_threads(n)
    assert result.steps == 6 and math.isfinite(result.final_val_loss)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert any("val_mlm_acc" in r for r in rows)
    back = BertModel.from_pretrained(result.last_checkpoint)
    assert back.config.head == "mlm"
