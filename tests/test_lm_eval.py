"""LM scoring: NLL in bits, perplexity, sliding windows."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from fakes import ByteTokenizer

from lmforge.errors import LmforgeError
from lmforge.eval.lm import perplexity_of_texts, score_texts
from lmforge.models.gpt import GPT, GPTConfig

TOK = ByteTokenizer()
TEXTS = ["hello world", "", "你好，世界", "a longer sentence, with some more bytes in it."]


def tiny(style: str = "gpt2", max_seq_len: int = 64) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=TOK.vocab_size, style=style, n_layer=2, n_head=4, d_model=32,
                    max_seq_len=max_seq_len, init_std=0.2)
    return GPT(cfg).eval()


@torch.no_grad()
def manual_bits(model, text: str) -> float:
    seq = torch.tensor([[TOK.bos_id] + TOK.encode(text) + [TOK.eos_id]])
    logp = F.log_softmax(model(seq[:, :-1]).float(), dim=-1)[0]
    return -logp.gather(1, seq[0, 1:, None]).sum().item() / math.log(2)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_score_texts_equals_manual_computation(style):
    model = tiny(style)
    model.train()
    got = score_texts(model, TOK, TEXTS, batch_size=3)  # batches mix lengths (padding)
    assert got == pytest.approx([manual_bits(model, t) for t in TEXTS], rel=1e-5)
    assert model.training  # mode restored
    bf16 = score_texts(model, TOK, TEXTS, autocast_dtype=torch.bfloat16)
    assert bf16 == pytest.approx(got, rel=0.05)


def test_uniform_model_has_perplexity_vocab_size():
    model = tiny("llama")  # untied lm_head
    torch.nn.init.zeros_(model.lm_head.weight)  # logits are all 0: p = 1/V everywhere
    res = perplexity_of_texts(model, TOK, TEXTS)
    n = sum(len(t.encode()) + 1 for t in TEXTS)  # every byte and each eos is predicted
    assert res["tokens"] == n
    assert res["perplexity"] == pytest.approx(TOK.vocab_size, rel=1e-5)
    assert res["nll_per_token"] == pytest.approx(math.log(TOK.vocab_size), rel=1e-6)
    assert res["bits_per_char"] == pytest.approx(n * math.log2(TOK.vocab_size) /
                                                 sum(len(t) for t in TEXTS), rel=1e-6)
    bits = score_texts(model, TOK, TEXTS)
    assert bits == pytest.approx([(len(t.encode()) + 1) * math.log2(TOK.vocab_size)
                                  for t in TEXTS], rel=1e-6)
    assert res["bits_per_sentence"] == pytest.approx(sum(bits) / len(bits), rel=1e-6)


def test_sliding_window_scores_each_token_once_with_its_window():
    model = tiny("llama", max_seq_len=16)
    text = "sliding windows over a text longer than the context"  # 51 bytes + eos
    seq = [TOK.bos_id] + TOK.encode(text) + [TOK.eos_id]
    block = 8
    # stride 1: target seq[j+1] is predicted from the last `block` tokens up to seq[j]
    expected = 0.0
    with torch.no_grad():
        for j in range(len(seq) - 1):
            ctx = torch.tensor([seq[max(0, j + 1 - block):j + 1]])
            expected -= F.log_softmax(model(ctx)[0, -1], -1)[seq[j + 1]].item()
    got = score_texts(model, TOK, [text], block_size=block, stride=1)[0]
    assert got == pytest.approx(expected / math.log(2), rel=1e-5)
    # default window (max_seq_len, stride half of it) counts every token exactly once
    res = perplexity_of_texts(model, TOK, [text, "short"])
    assert res["tokens"] == len(seq) - 1 + 6


def test_scoring_errors_are_clear():
    model = tiny(max_seq_len=16)
    with pytest.raises(LmforgeError, match="block_size"):
        score_texts(model, TOK, ["x"], block_size=32)
    with pytest.raises(LmforgeError, match="at least one text"):
        perplexity_of_texts(model, TOK, [])
    assert score_texts(model, TOK, []) == []
