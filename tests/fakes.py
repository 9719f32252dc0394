"""Test doubles and helpers shared by several test files."""

import pytest

from lmforge.cli import main

TEXT = "hello world this is a test\nanother line of text 你好\n"


def run_cli(args, capsys=None):
    """Run ``lmforge ARGS`` in-process: ``(exit code, stdout, stderr)`` (the outputs are
    empty strings without ``capsys``)."""
    with pytest.raises(SystemExit) as e:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr() if capsys is not None else None
    return e.value.code, out.out if out else "", out.err if out else ""


def assert_user_error(args, capsys, *fragments, not_in=()):
    """``lmforge ARGS`` fails with exit code 2, no traceback and one ``error:`` line that
    holds every fragment and none of ``not_in``; returns ``(stdout, that line)``."""
    code, out, err = run_cli(args, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]
    for f in not_in:
        assert f not in lines[0], lines[0]
    return out, lines[0]


def perturbed_copy(model, scale: float = 0.5, seed: int = 1):
    """A copy of ``model`` whose output layer is moved by Gaussian noise: a policy that
    differs from its reference by a known amount."""
    import copy

    import torch

    policy = copy.deepcopy(model)
    torch.manual_seed(seed)
    with torch.no_grad():
        policy.lm_head.weight.add_(scale * torch.randn_like(policy.lm_head.weight))
    return policy


def tiny_gpt_folder(folder):
    """Save an untrained 1-layer GPT with a char tokenizer (trained on ``TEXT``) as an
    lmforge model folder: config.json, model.safetensors, lmforge.json, tokenizer.json."""
    import torch

    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.tokenize import train_tokenizer

    tok = train_tokenizer("char", texts=TEXT.splitlines() * 3, vocab_size=60,
                          show_progress=False)
    torch.manual_seed(0)
    GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=16,
                  max_seq_len=32)).save_pretrained(folder)
    tok.save(folder)
    return folder


def hf_gpt2_pair(folder, vocab_size: int = 257, seed: int = 0, **config):
    """A random ``transformers`` GPT-2 (``initializer_range`` 0.3: logits that vary
    strongly from token to token) saved to ``folder`` and loaded back into lmforge:
    ``(hf, model)``, the same weights, both in eval mode. ``config`` overrides the
    ``GPT2Config`` fields."""
    import torch
    import transformers

    from lmforge.hub import load_pretrained

    fields = dict(vocab_size=vocab_size, n_positions=64, n_embd=48, n_layer=3, n_head=4,
                  initializer_range=0.3, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**fields, **config})).eval()
    hf.save_pretrained(folder)
    model, _ = load_pretrained(folder)
    return hf, model


class ByteTokenizer:
    """A byte-level tokenizer with the lmforge tokenizer interface (3 specials + bytes)."""

    pad_id, bos_id, eos_id = 0, 1, 2
    vocab_size = 259

    def encode(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")


def one_line_error(kind: type[Exception], fn, *args, **kw) -> str:
    """``fn(*args, **kw)`` raises ``kind`` with a one-line message; returns the message."""
    with pytest.raises(kind) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def tiny_train(steps: int) -> dict:
    """The ``train`` section of the small text-to-text test recipes: ``steps`` steps on one
    thread, one evaluation and one checkpoint at the end."""
    return {"max_steps": steps, "batch_size": 32, "lr": 3e-3, "min_lr": 1e-4,
            "warmup_steps": 20, "eval_every": steps, "ckpt_every": steps, "keep_last": 1,
            "threads": 1}
