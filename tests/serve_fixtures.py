"""Tiny served models (a GPT, task runs trained for a few steps) and a real server on
loopback, for the serving tests."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from pathlib import Path

import httpx
import torch

from lmforge.chat import ChatTemplate
from lmforge.chat.template import save_chat_template
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tokenize.train import train_tokenizer

TEXTS = ["Alice lives in Paris. She works for Acme.", "小明住在北京，他在学校工作。",
         "The weather is sunny today, and the match starts at noon.",
         "今天天气很好，我们去公园散步吧。", "Bob asked: where does Alice live?"] * 20


def make_model_folder(folder: Path, template: bool = True, seed: int = 0,
                      max_seq_len: int = 128) -> Path:
    """A random 2-layer GPT with a small BPE (ChatML specials) and, when asked, lmforge's
    default chat template."""
    tok = train_tokenizer("bpe", texts=TEXTS, vocab_size=400, show_progress=False,
                          special_tokens=["<|im_start|>", "<|im_end|>"])
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, d_model=64,
                          max_seq_len=max_seq_len))
    model.save_pretrained(folder)
    tok.save(folder)
    if template:
        save_chat_template(folder, ChatTemplate.default())
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, ready_timeout: float = 120.0, **uvicorn_options):
    """Serve ``app`` with uvicorn on a loopback port in a thread until the block ends;
    yields the base URL once ``/ready`` answers 200."""
    import uvicorn

    port = free_port()
    scheme = "https" if uvicorn_options.get("ssl_certfile") else "http"
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            **uvicorn_options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            try:
                if httpx.get(url + "/ready", timeout=5, verify=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not become ready")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


# ------------------------------------------------------------------ tiny task runs

QUIET = {"show_progress": False, "log": lambda m: None}
NAMES = ["Anna", "Bob", "Carl", "安娜", "王磊"]
CITIES = ["Paris", "Rome", "北京", "上海"]
ENCODER_STEPS, SEQ2SEQ_STEPS = 100, 300  # enough to make the outputs differ by input


def people() -> list[tuple[str, str]]:
    return [(p, c) for p in NAMES for c in CITIES]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


def _train(steps: int) -> dict:
    return {"max_steps": steps, "batch_size": 8, "lr": 3e-3, "min_lr": 0.0,
            "warmup_steps": 0, "eval_every": steps, "ckpt_every": steps, "keep_last": 1,
            "log_every": steps, "threads": 1}


@contextlib.contextmanager
def same_torch_threads():
    """Put torch's thread count back after a training run: the Trainer applies
    ``train.threads`` (1 here) to the whole process, and the tests that run after these
    fixtures in the same process (the slow quality runs) must keep their own count."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def task_run(out: Path, train: str, encoder: str = "bilstm", **sections) -> Path:
    """A small encoder with a task head trained on ``train`` (validated on it too)."""
    from lmforge.tasks.config import build_finetune_recipe
    from lmforge.tasks.finetune import finetune

    raw = {"run": {"name": out.name, "out_dir": str(out), "seed": 0},
           "data": {"train": train, "val": train, "max_length": 32},
           "backbone": {"encoder": encoder, "encoder_config": {"d_emb": 16, "hidden": 16}},
           "train": _train(ENCODER_STEPS)}
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    with same_torch_threads():
        return finetune(build_finetune_recipe(raw), **QUIET).run_dir


def seq2seq_run(out: Path, task: str, train: str, langs: list[str], **sections) -> Path:
    """A tiny Transformer encoder-decoder trained on ``train``."""
    from lmforge.tasks.seq2seq import finetune_seq2seq
    from lmforge.tasks.seq2seq_config import build_seq2seq_recipe

    raw = {"task": task, "run": {"name": out.name, "out_dir": str(out), "seed": 0},
           "data": {"train": train, "langs": langs, "max_length": 32, "val_decode": 4},
           "tokenizer": {"kind": "bpe", "vocab_size": 300},
           "model": {"arch": "transformer", "d_model": 16, "n_head": 2, "n_encoder_layers": 1,
                     "n_decoder_layers": 1, "d_ff": 32, "dropout": 0.0, "norm_first": True,
                     "max_seq_len": 48, "share_embeddings": True},
           "decode": {"beams": 2, "max_new_tokens": 8}, "label_smoothing": 0.0,
           "train": _train(SEQ2SEQ_STEPS), **sections}
    with same_torch_threads():
        return finetune_seq2seq(build_seq2seq_recipe(raw), **QUIET).run_dir


def sentiment_run(d: Path) -> Path:
    """A TextCNN sentiment classifier (pos/neg, English and Chinese words) at ``d/sent``,
    trained on ``d/sent.jsonl``, which it writes."""
    rng = random.Random(0)
    rows = [{"text": f"the {rng.choice(['food', 'film', '饭菜'])} was {word}", "label": label}
            for label, word in [("pos", "great"), ("neg", "awful"), ("pos", "好"),
                                ("neg", "差")] * 6]
    return task_run(d / "sent", write_jsonl(d / "sent.jsonl", rows), "textcnn",
                    backbone={"encoder_config": {"d_emb": 16}}, head={"pooling": "max"})


def ner_run(d: Path) -> Path:
    """A BiLSTM tagger of people (PER) and cities (LOC) at ``d/ner``, trained on
    ``d/ner.conll``, which it writes."""
    conll = []
    for p, c in people():
        conll += [f"{t} NN O {'B-PER' if t == p else 'B-LOC' if t == c else 'O'}"
                  for t in (p, "lives", "in", c, ".")] + [""]
    (d / "ner.conll").write_text("\n".join(conll) + "\n", encoding="utf-8")
    return task_run(d / "ner", str(d / "ner.conll"))


def translate_run(d: Path) -> Path:
    """An English-to-Chinese translator at ``d/mt``, trained on ``d/mt.tsv``, which it
    writes."""
    (d / "mt.tsv").write_text("".join(f"{p} lives in {c}\t{p}住在{c}\n"
                                      for p, c in people()), encoding="utf-8")
    return seq2seq_run(d / "mt", "translate", str(d / "mt.tsv"), ["en", "zh"])
