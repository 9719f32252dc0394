"""SFT examples: the loss mask covers exactly the assistant's tokens, the same tokens as
transformers' assistant mask, and packing keeps every label once."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from lmforge.chat import ChatTemplate
from lmforge.chat.sft import IGNORE, encode_chat, pack
from lmforge.errors import DataError
from lmforge.tokenize.train import train_tokenizer

CONVERSATIONS = [
    [{"role": "system", "content": "Answer from the world's facts."},
     {"role": "user", "content": "Where was Anna born?"},
     {"role": "assistant", "content": "Anna was born in Lyon."},
     {"role": "user", "content": "And where does she live?"},
     {"role": "assistant", "content": "She lives in Madrid."}],
    [{"role": "user", "content": "安娜出生在哪里?"},
     {"role": "assistant", "content": "安娜出生在里昂。"}],
]
# Zephyr without generation blocks: the assistant's turns are found by rendering prefixes.
ZEPHYR = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content']"
          " + eos_token + '\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|assistant|>\n' }}{% endif %}")


def _trained(ids, trained) -> list[int]:
    return [t for t, k in zip(ids, trained, strict=True) if k]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    texts = [m["content"] for c in CONVERSATIONS for m in c] * 20
    tok = train_tokenizer("bpe", texts=texts, vocab_size=400, show_progress=False,
                          special_tokens=["<|im_start|>", "<|im_end|>"])
    folder = tmp_path_factory.mktemp("tok")
    tok.save(folder)
    hf = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    return tok, hf


@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
def test_mask_is_transformers_assistant_mask(tokenizers, conv):
    tok, hf = tokenizers
    template = ChatTemplate.default()
    ex = encode_chat(template, tok, CONVERSATIONS[conv])
    ref = hf.apply_chat_template(CONVERSATIONS[conv], chat_template=template.template,
                                 tokenize=True, return_dict=True,
                                 return_assistant_tokens_mask=True)
    assert ex.ids == ref["input_ids"]
    assert [int(x) for x in ex.trained] == ref["assistant_masks"]
    assert tok.token_to_id("<|im_start|>") in ex.ids  # the template's tokens are special
    want = "".join(m["content"] + "<|im_end|>" for m in CONVERSATIONS[conv]
                   if m["role"] == "assistant")
    assert tok.decode(_trained(ex.ids, ex.trained), skip_special_tokens=False) == want


def test_prefix_spans_without_generation_blocks(tokenizers):
    tok, _ = tokenizers
    ex = encode_chat(ChatTemplate(ZEPHYR), tok, CONVERSATIONS[0], eos_token="</s>")
    trained = tok.decode(_trained(ex.ids, ex.trained))
    assert trained == "Anna was born in Lyon.</s>\nShe lives in Madrid.</s>\n"


def test_labels_shift_and_ignore(tokenizers):
    tok, _ = tokenizers
    ex = encode_chat(ChatTemplate.default(), tok, CONVERSATIONS[1])
    x, y = ex.inputs_and_labels()
    assert len(x) == len(y) == len(ex.ids) - 1
    assert [t for t in y if t != IGNORE] == _trained(ex.ids[1:], ex.trained[1:])


def test_packing_keeps_every_label_once(tokenizers):
    tok, _ = tokenizers
    exs = [encode_chat(ChatTemplate.default(), tok, c) for c in CONVERSATIONS * 3]
    blocks = pack(exs, 16)
    assert all(len(b.ids) == 17 for b in blocks[:-1])
    labels = [t for b in blocks for t in b.inputs_and_labels()[1] if t != IGNORE]
    joined = [t for e in exs for t in e.ids]
    trained = [k for e in exs for k in e.trained]
    assert labels == _trained(joined[1:], trained[1:])


def test_nothing_to_learn_is_refused(tokenizers):
    tok, _ = tokenizers
    with pytest.raises(DataError, match="no assistant tokens to learn from .*no assistant"):
        encode_chat(ChatTemplate.default(), tok, CONVERSATIONS[0][:2], where="x.jsonl:line 4")
    with pytest.raises(DataError, match=r"^x: no assistant tokens .* first 5 tokens"):
        encode_chat(ChatTemplate.default(), tok, CONVERSATIONS[0], max_length=5, where="x")
    with pytest.raises(DataError, match=r"unknown role 'bot'"):
        encode_chat(ChatTemplate.default(), tok, [{"role": "bot", "content": "hi"}])
