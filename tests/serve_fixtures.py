"""A tiny served model and a real server on loopback, for the serving tests."""

from __future__ import annotations

import contextlib
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
