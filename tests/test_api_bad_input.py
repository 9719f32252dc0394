"""Bad input to the models' and the tokenizer's Python API: a clear LmforgeError naming
the argument, instead of an IndexError deep in torch or a silently wrong result."""

import pytest
import torch

from lmforge.errors import DataError, LmforgeError
from lmforge.models.bert import BertConfig, BertModel
from lmforge.models.deberta import DebertaV2, DebertaV2Config
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.rnn import RNNLM, RNNLMConfig
from lmforge.models.t5 import T5, T5Config
from lmforge.tokenize import train_tokenizer

V = 20


def _models():
    return {
        "gpt": GPT(GPTConfig(vocab_size=V, n_layer=1, n_head=2, d_model=16, max_seq_len=8)),
        "bert": BertModel(BertConfig(vocab_size=V, n_layer=1, n_head=2, d_model=16, d_ff=32,
                                     max_position=8)),
        "deberta": DebertaV2(DebertaV2Config(vocab_size=V, n_layer=1, n_head=2, d_model=16,
                                             d_ff=32, max_seq_len=8, position_buckets=4)),
        "rnn": RNNLM(RNNLMConfig(vocab_size=V, n_layer=1, d_embed=16, d_hidden=16)),
    }


MODELS = _models()
OK = torch.randint(0, V, (2, 4))


@pytest.mark.parametrize("arch", MODELS)
@pytest.mark.parametrize("ids, fragment", [
    (torch.tensor([[1, V]]), f"must lie in \\[0, {V}\\)"),
    (torch.tensor([[1, -1]]), "\\[-1, 1\\]"),
    (OK.float(), "integer token ids"),
    (OK[0], "ids\\[None\\]"),
    (OK[None], "shape \\(batch, seq_len\\)"),
    ([[1, 2]], "torch.Tensor"),
], ids=["too-big", "negative", "float", "1-D", "3-D", "list"])
def test_bad_input_ids(arch, ids, fragment):
    with pytest.raises(LmforgeError, match=f"input_ids.*{fragment}"):
        MODELS[arch].eval()(ids)


@pytest.mark.parametrize("arch", ["gpt", "bert", "deberta"])
@pytest.mark.parametrize("shape", [(2, 3), (1, 4), (4,)])
def test_attention_mask_of_wrong_shape(arch, shape):
    mask = torch.ones(shape)
    mask.view(-1)[0] = 0
    with pytest.raises(LmforgeError, match=r"attention_mask must have the shape .*\(2, 4\)"):
        MODELS[arch].eval()(OK, mask)


def test_gpt_too_long_and_cache_batch_mismatch():
    m = MODELS["gpt"].eval()
    with pytest.raises(LmforgeError, match="exceeds max_seq_len 8"):
        m(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(LmforgeError, match="batch size 3 but the cache holds 2"):
        m(torch.zeros(3, 2, dtype=torch.long), cache=m.new_cache(2, 8))


def test_rnn_empty_input():
    with pytest.raises(LmforgeError, match="no time steps"):
        MODELS["rnn"](torch.zeros(2, 0, dtype=torch.long))


def test_t5_ids_outside_vocab():
    m = T5(T5Config(vocab_size=V, n_layer=1, n_head=2, d_model=16, d_kv=8, d_ff=32)).eval()
    with pytest.raises(LmforgeError, match="decoder_input_ids holds token ids"):
        m(OK, decoder_input_ids=torch.tensor([[0, V + 3]]).expand(2, 2))


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("char", texts=["hello world"] * 3, vocab_size=100,
                           show_progress=False)


@pytest.mark.parametrize("text", [None, b"hi", ["hi"]])
def test_tokenizer_encode_non_str(tok, text):
    with pytest.raises(DataError, match="text must be a str"):
        tok.encode(text)
    with pytest.raises(DataError, match=r"texts\[1\] must be a str"):
        tok.encode_batch(["ok", text])


@pytest.mark.parametrize("bad", [-1, 10_000])
def test_tokenizer_decode_outside_vocab(tok, bad):
    with pytest.raises(DataError, match=f"id {bad} is outside the vocabulary"):
        tok.decode([5, bad])
    assert tok.decode(tok.encode("hello")) == "hello"  # valid ids still decode
