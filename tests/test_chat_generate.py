"""Chat end to end at a tiny size: supervised fine-tuning with the loss on the assistant's
tokens teaches a small GPT the world's dialogues, and ``chat`` answers follow-up questions
through the chat template, stopping at its end of turn."""

from __future__ import annotations

import json

import pytest
import torch
from fakes import assert_user_error

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
    # 150 steps: with seeds 0, 1 and 2 (torch and the trainer) all 22 replies are right,
    # as at 200 steps (120 steps: 21 or 22; 100 steps: 20 or 21, at the 0.9 bar)
    cfg = TrainConfig(max_steps=150, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=20,
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


def test_batched_replies_equal_single_chats(trained):
    from lmforge.chat.generate import replies

    model, tok, dialogues = trained
    convs = [d["messages"][:k] for d in dialogues[:4] for k, m in enumerate(d["messages"])
             if m["role"] == "assistant"]
    assert replies(model, tok, convs, temperature=0, max_new_tokens=40, batch_size=3) == \
        [chat(model, tok, c, temperature=0, max_new_tokens=40) for c in convs]


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


def test_a_conversation_must_end_on_a_user_turn_and_the_model_be_causal(trained):
    from lmforge.models.bert import BertConfig, BertModel

    model, tok, dialogues = trained
    with pytest.raises(DataError, match="ends on the assistant's turn"):
        chat(model, tok, dialogues[0]["messages"])
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=16))
    with pytest.raises(DataError, match="is a BertModel; chat needs a causal language model"):
        chat(bert, tok, [{"role": "user", "content": "Where was Anna born?"}])


def _session(trained, **kw):
    from lmforge.chat.repl import ChatSession
    from lmforge.generate import GenerationConfig

    model, tok, _ = trained
    cfg = GenerationConfig(temperature=0, max_new_tokens=kw.pop("max_new_tokens", 40))
    return ChatSession(model, tok, config=cfg, **kw)


def test_repl_answers_follow_ups_saves_and_resets(trained, tmp_path):
    from lmforge.chat import read_chat_jsonl
    from lmforge.chat.repl import run_repl

    _, _, dialogues = trained
    d = next(x for x in dialogues if len(x["turns"]) >= 2 and x["messages"][0]["role"] == "user")
    questions = [m["content"] for m in d["messages"] if m["role"] == "user"][:2]
    answers = [m["content"] for m in d["messages"] if m["role"] == "assistant"][:2]
    out: list[str] = []
    session = _session(trained)
    save = tmp_path / "saved.jsonl"
    run_repl(session, [questions[0], "", questions[1], f"/save {save}", "/bogus", "/reset",
                       "/system Be brief.", "/exit", "never read"], out.append)
    text = "".join(out)
    assert f"{answers[0]}\n" in text and f"{answers[1]}\n" in text
    assert "unknown command /bogus" in text and "(conversation reset)" in text
    saved = read_chat_jsonl(save)
    assert [m["content"] for m in saved[0]["messages"]] == \
        [questions[0], answers[0], questions[1], answers[1]]
    assert session.messages == [{"role": "system", "content": "Be brief."}]


def test_repl_saves_encrypted_with_a_key_and_bad_saves_lose_nothing(trained, tmp_path):
    from test_privacy_encrypted_load import KEY

    from lmforge.chat.repl import run_repl
    from lmforge.privacy.crypto import is_encrypted
    from lmforge.privacy.encrypted_io import read_text, using_key

    _, _, dialogues = trained
    question = next(m["content"] for d in dialogues for m in d["messages"]
                    if m["role"] == "user")
    save, out = tmp_path / "saved.jsonl", []
    session = _session(trained)
    with using_key(KEY):
        run_repl(session, [question, f"/save {save}", f"/save {save}"], out.append)
    assert is_encrypted(save) and question.encode() not in save.read_bytes()
    lines = read_text(save, KEY).splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]
    assert json.loads(lines[0])["messages"][0]["content"] == question
    before = save.read_bytes()
    out.clear()
    run_repl(session, [f"/save {save}", f"/save {tmp_path}/no/such/dir/x.jsonl",
                       "/system Be brief."], out.append)  # no key; a missing folder
    text = "".join(out)
    assert "is encrypted" in text and "no/such/dir does not exist" in text
    assert "(system message set)" in text and save.read_bytes() == before


def test_repl_drops_the_oldest_turns_and_says_so_once(trained):
    from lmforge.chat.repl import DROPPED_NOTE, run_repl

    _, _, dialogues = trained
    questions = [m["content"] for d in dialogues for m in d["messages"] if m["role"] == "user"]
    out: list[str] = []
    session = _session(trained, max_new_tokens=100)  # 60 of the 160 positions for history
    run_repl(session, questions[:6], out.append)
    assert "".join(out).count(DROPPED_NOTE) == 1
    assert session.history[0]["role"] == "user" and len(session.history) < 12


def test_cli_chat_reads_stdin_and_refuses_bad_options(trained, tmp_path, capsys):
    import subprocess
    import sys

    from lmforge.chat import save_chat_template

    model, tok, dialogues = trained
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tok.save(folder)
    save_chat_template(folder, ChatTemplate.default())
    d = dialogues[0]
    first = next(m["content"] for m in d["messages"] if m["role"] == "user")
    answer = next(m["content"] for m in d["messages"] if m["role"] == "assistant")
    cli = [sys.executable, "-m", "lmforge.cli", "chat", str(folder)]
    r = subprocess.run([*cli, "--temperature", "0", "--max-new-tokens", "40"],
                       input=f"{first}\n/exit\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == answer
    # the bad option in-process (the real entry point read stdin above)
    assert_user_error(["chat", str(folder), "--template", str(tmp_path / "none.jinja")],
                      capsys, "none.jinja does not exist")
