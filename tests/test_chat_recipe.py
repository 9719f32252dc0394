"""The chat fine-tuning recipe (``task: chat``) end to end at a tiny size: world dialogues
scored against the world beside their ceilings, chat JSONL files scored by the loss on the
assistant's tokens, and recipe mistakes refused in one line."""

from __future__ import annotations

import json

import pytest
from fakes import assert_user_error, run_cli

from lmforge.chat import DEFAULT_TEMPLATE, load_chat_template, write_chat_jsonl
from lmforge.chat.finetune import finetune_chat
from lmforge.corpora.tasks import render_task_set
from lmforge.errors import ConfigError, DataError
from lmforge.tasks.config import load_finetune_recipe

TINY = ["model={arch: gpt, n_layer: 1, n_head: 2, d_model: 32, max_seq_len: 256}",
        "tokenizer.vocab_size=400", "train.max_steps=20", "train.eval_every=20",
        "train.ckpt_every=20", "train.batch_size=8", "train.threads=1",
        "train.warmup_steps=2", "decode.max_new_tokens=20"]


def _run(tmp_path, *sets):
    r = load_finetune_recipe("chat-world", [f"run.out_dir={tmp_path / 'run'}", *TINY, *sets])
    return finetune_chat(r, show_progress=False, log=lambda m: None)


def test_world_dialogues_are_scored_beside_their_ceilings(tmp_path, capsys):
    sizes = {"train": 60, "val": 8, "test": 10, "test_unseen": 6}
    res = _run(tmp_path, f"data.world_sizes={json.dumps(sizes)}", "data.langs=[en]",
               "data.val_dialogues=4")
    card = render_task_set("dialogue", seed=0, sizes=sizes, langs=["en"]).card
    splits = res.results["splits"]
    assert set(splits) == {"val", "test", "test_unseen"}
    ts = render_task_set("dialogue", seed=0, sizes=sizes, langs=["en"])
    for name, s in splits.items():
        assert s["n"] == sum(len(d["turns"]) for d in ts.splits[name])
        assert s["ceiling"] == 1.0
        assert s["closed_book_ceiling"] == card["closed_book_ceiling"][name]
        assert 0 <= s["accuracy"] <= 1
    errors = (res.run_dir / "errors.jsonl").read_text().splitlines()
    assert len(errors) == round(splits["test"]["n"] * (1 - splits["test"]["accuracy"]))
    assert load_chat_template(res.run_dir).template == DEFAULT_TEMPLATE
    # lmforge evaluate on the run: the same answers on the same file, and a plain chat file
    test, plain = tmp_path / "test.jsonl", tmp_path / "plain.jsonl"
    write_chat_jsonl(ts.splits["test"], test)
    write_chat_jsonl([{"messages": d["messages"]} for d in ts.splits["test"]], plain)
    code, out, err = run_cli(["evaluate", str(res.run_dir), "--data", str(test), "--data",
                              str(plain), "--out", str(tmp_path / "ev")], capsys)
    assert code == 0, err
    assert f"factual accuracy {splits['test']['accuracy']:.4f}" in out
    assert "loss on the assistant's tokens" in out
    saved = json.loads((tmp_path / "ev" / "test" / "metrics.json").read_text())
    assert saved["accuracy"] == splits["test"]["accuracy"]


def test_chat_jsonl_files_are_scored_by_the_assistant_loss(tmp_path):
    ts = render_task_set("dialogue", seed=1, sizes={"train": 40, "val": 6, "test": 6,
                                                    "test_unseen": 0}, langs=["zh"])
    paths = {}
    for split in ("train", "val", "test"):
        paths[split] = tmp_path / f"{split}.jsonl"
        write_chat_jsonl([{"messages": d["messages"]} for d in ts.splits[split]],
                         paths[split])
    res = _run(tmp_path, "data.world=null", f"data.train={paths['train']}",
               f"data.val={paths['val']}", f"data.test=[{paths['test']}]", "data.packing=true")
    s = res.results["splits"]
    assert set(s) == {"val", "test"} and s["test"]["n"] == 6
    assert 0 < s["test"]["assistant_loss"] < 10


def test_bad_recipes_and_files_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="lora needs a pretrained backbone"):
        load_finetune_recipe("chat-world", ["finetune.strategy=lora"])
    with pytest.raises(ConfigError, match="model.arch must be one of gpt .got .bert..; a chat model is a decoder"):
        load_finetune_recipe("chat-world", ["model.arch=bert"])
    with pytest.raises(ConfigError, match="exactly one of data.world"):
        load_finetune_recipe("chat-world", ["data.train=x.jsonl"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                   '{"role": "assistant", "content": "hello"}]}\n'
                   '{"messages": [{"role": "bot", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{bad}:line 2: messages\[0\]: unknown role 'bot'"):
        _run(tmp_path, "data.world=null", f"data.train={bad}")
    assert_user_error(["finetune", "chat-world", "--out", str(tmp_path / "cli"), "--set",
                       "data.world=null", "--set", f"data.train={bad}"], capsys,
                      f"{bad}:line 2", "unknown role 'bot'")


def test_lora_trains_adapters_only_and_saves_a_merged_model(tmp_path):
    import torch

    from lmforge.chat import ChatTemplate
    from lmforge.chat.generate import chat
    from lmforge.hub import load_pretrained
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.tokenize.train import train_tokenizer

    ts = render_task_set("dialogue", seed=2, sizes={"train": 30, "val": 4, "test": 0,
                                                    "test_unseen": 0}, langs=["en"])
    template = ChatTemplate.default()
    tok = train_tokenizer("bpe", texts=[template.render(d["messages"]).text
                                        for d in ts.splits["train"]], vocab_size=400,
                          special_tokens=["<|im_start|>", "<|im_end|>"], show_progress=False)
    torch.manual_seed(0)
    base = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32,
                         max_seq_len=256))
    base.save_pretrained(tmp_path / "base")
    tok.save(tmp_path / "base")
    train = tmp_path / "train.jsonl"
    write_chat_jsonl([{"messages": d["messages"]} for d in ts.splits["train"]], train)
    res = _run(tmp_path, "model=null", f"backbone={{path: {tmp_path / 'base'}}}",
               "finetune.strategy=lora", "data.world=null", f"data.train={train}",
               "train.lr=1e-2")
    trainable, total = res.trainable
    assert 0 < trainable < 0.2 * total
    merged, tok2 = load_pretrained(res.run_dir / "model")
    # the adapters moved the adapted layers; the embeddings were frozen
    assert torch.equal(merged.state_dict()["wte.weight"], base.state_dict()["wte.weight"])
    assert not torch.equal(merged.state_dict()["blocks.0.attn.qkv.weight"],
                           base.state_dict()["blocks.0.attn.qkv.weight"])
    msgs = [m for m in ts.splits["val"][0]["messages"] if m["role"] != "system"][:1]
    assert isinstance(chat(merged, tok2, msgs, temperature=0, max_new_tokens=8), str)
