"""``suffix`` on ``/v1/completions``: a fill-in-the-middle prompt for models trained with
FIM sentinels, equal to ``lmforge complete --fim``'s prompt; a 400 for other models."""

from __future__ import annotations

import openai
import pytest
import torch
from serve_fixtures import TEXTS, make_model_folder, running

from lmforge.code.fim import FIM_TOKENS, FimIds, fim_prompt
from lmforge.generate import complete_ids
from lmforge.hub import load_pretrained
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.models import ModelSpec
from lmforge.tokenize import train_tokenizer


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("fim")
    fim = root / "fim"
    tok = train_tokenizer("bpe", texts=TEXTS, vocab_size=400, show_progress=False,
                          special_tokens=list(FIM_TOKENS))
    torch.manual_seed(0)
    GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, d_model=64,
                  max_seq_len=128)).save_pretrained(fim)
    tok.save(fim)
    plain = make_model_folder(root / "plain")
    app = build_app([ModelSpec("fim", str(fim)), ModelSpec("plain", str(plain))],
                    ServerOptions())
    with running(app) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0), fim


@pytest.mark.parametrize("options", [{"temperature": 0}, {"temperature": 0.9, "seed": 4}])
def test_suffix_is_a_fim_prompt(served, options):
    client, folder = served
    model, tok = load_pretrained(folder, require_tokenizer=True)
    before, after = "def area(r):\n    return ", "\n\nprint(area(2))\n"
    r = client.completions.create(model="fim", prompt=before, suffix=after, max_tokens=10,
                                  **options)
    prompt = fim_prompt(tok, FimIds.of(tok), tok.encode(before), tok.encode(after))
    ref = complete_ids(model, tok, [prompt], max_new_tokens=10, **options)[0]
    assert r.choices[0].text == ref.text
    assert r.usage.prompt_tokens == len(prompt)


def test_suffix_needs_a_fim_model_and_no_echo(served):
    client, _ = served
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="plain", prompt="x", suffix="y")
    assert e.value.body["param"] == "suffix" and "fill-in-the-middle" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="fim", prompt="x", suffix="y", echo=True)
    assert e.value.body["param"] == "suffix"
