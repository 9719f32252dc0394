"""Chat end to end at a tiny size: supervised fine-tuning with the loss on the assistant's
tokens teaches a small GPT the world's dialogues, and ``chat`` answers follow-up questions
through the chat template, stopping at its end of turn."""

from __future__ import annotations

import pytest
import torch

from lmforge.chat import ChatTemplate
from lmforge.chat.generate import chat, chat_stream, end_of_turn, fit_history, prompt_ids
from lmforge.chat.sft import ChatBatches, encode_chat
from lmforge.corpora.tasks import render_task_set
from lmforge.errors import DataError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tokenize.train import train_tokenizer
from lmforge.train import Trainer
from lmforge.train.config import TrainConfig

ZEPHYR = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content']"
          " + eos_token + '\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|assistant|>\n' }}{% endif %}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ts = render_task_set("dialogue", seed=0, sizes={"train": 8, "val": 0, "test": 0,
                                                    "test_unseen": 0}, langs=["en"])
    dialogues = ts.splits["train"]
    template = ChatTemplate.default()
    texts = [template.render(d["messages"]).text for d in dialogues] * 10
    tok = train_tokenizer("bpe", texts=texts, vocab_size=600, show_progress=False,
                          special_tokens=["<|im_start|>", "<|im_end|>"])
    examples = [encode_chat(template, tok, d["messages"]) for d in dialogues]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, d_model=64,
                          max_seq_len=160))
    cfg = TrainConfig(max_steps=300, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                      eval_every=300, ckpt_every=300, keep_last=1, threads=1)
    Trainer(model, cfg, ChatBatches(examples, 8, tok.pad_id), ChatBatches(examples, 8,
            tok.pad_id), tmp_path_factory.mktemp("sft"), seed=0, show_progress=False).fit()
    model.eval()
    return model, tok, dialogues


def test_sft_model_answers_follow_ups_and_stops_at_end_of_turn(trained):
    model, tok, dialogues = trained
    right = total = 0
    for d in dialogues:
        msgs = d["messages"]
        for k, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            reply = chat(model, tok, msgs[:k], temperature=0, max_new_tokens=40)
            right += reply == m["content"]  # stopped at <|im_end|>: nothing after it
            total += 1
    assert right / total >= 0.9, (right, total)


def test_lmforge_chat_is_the_function(trained):
    import lmforge
    from lmforge.chat import ChatTemplate as again  # the package stays importable

    model, tok, dialogues = trained
    msgs = dialogues[0]["messages"][:-1]
    assert again is ChatTemplate
    assert lmforge.chat(model, tok, msgs, temperature=0, max_new_tokens=40) == \
        chat(model, tok, msgs, temperature=0, max_new_tokens=40)


def test_stream_joins_to_the_reply(trained):
    model, tok, dialogues = trained
    msgs = dialogues[0]["messages"][:-1]
    pieces = list(chat_stream(model, tok, msgs, temperature=0, max_new_tokens=40))
    assert len(pieces) > 1 and "".join(pieces) == chat(model, tok, msgs, temperature=0,
                                                       max_new_tokens=40)


def test_end_of_turn_of_common_templates():
    assert end_of_turn(ChatTemplate.default()) == "<|im_end|>"
    assert end_of_turn(ChatTemplate(ZEPHYR), eos_token="</s>") == "</s>"


def test_history_drops_the_oldest_exchanges_and_keeps_the_system_message(trained):
    _, tok, dialogues = trained
    template = ChatTemplate.default()
    msgs = [{"role": "system", "content": "Be brief."}]
    for d in dialogues[:3]:
        msgs += [m for m in d["messages"] if m["role"] != "system"]
    msgs = msgs[:-1]  # end on a user turn
    full = len(prompt_ids(template, tok, msgs))
    kept, dropped = fit_history(template, tok, msgs, full - 1)
    assert dropped >= 2 and kept[0] == msgs[0] and kept[1]["role"] == "user"
    assert kept[1:] == msgs[1 + dropped:]
    assert len(prompt_ids(template, tok, kept)) <= full - 1


def test_a_conversation_must_end_on_a_user_turn(trained):
    model, tok, dialogues = trained
    with pytest.raises(DataError, match="ends on the assistant's turn"):
        chat(model, tok, dialogues[0]["messages"])
