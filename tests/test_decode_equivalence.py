"""Decode equivalence with ``transformers``: along its greedy path, lmforge's next-token
logits (prefill, then one token at a time through the KV cache) agree within 1e-4 in
fp32. Logits are compared, not tokens, so a near-tie cannot hide a drift. The same check
runs at GPT-2-small size inside ``bench/decode.py``."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fakes import hf_gpt2_pair  # noqa: E402

from lmforge.generate import GenerationConfig, generate_ids  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return hf_gpt2_pair(tmp_path_factory.mktemp("gpt2"))


def _hf_greedy(hf, prompt: torch.Tensor, n_new: int):
    with torch.inference_mode():
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                          max_new_tokens=n_new, min_new_tokens=n_new, output_logits=True,
                          return_dict_in_generate=True)
    return out.sequences[:, prompt.shape[1]:], torch.stack(out.logits, 1)  # (B,N) (B,N,V)


@pytest.mark.parametrize("batch", [1, 3])
def test_cached_logits_follow_transformers_greedy_path(models, batch):
    hf, model = models
    n_new = 24
    prompt = torch.randint(0, 257, (batch, 9), generator=torch.Generator().manual_seed(batch))
    path, hf_logits = _hf_greedy(hf, prompt, n_new)
    with torch.inference_mode():
        cache = model.new_cache(batch, max_len=prompt.shape[1] + n_new)
        ours = [model(prompt, cache=cache, last_only=True)[:, -1]]
        for t in range(n_new - 1):
            ours.append(model(path[:, t:t + 1], cache=cache, last_only=True)[:, -1])
    ours = torch.stack(ours, 1)
    assert ours.shape == hf_logits.shape
    diff = (ours - hf_logits).abs().max().item()
    assert diff <= TOL, f"max |logit diff| {diff:.3e} along transformers' greedy path"
    assert len(set(path[0].tolist())) > 3  # a varied path, not one token repeated


def test_generate_ids_follows_the_same_path(models):
    hf, model = models
    prompt = torch.randint(0, 257, (2, 7), generator=torch.Generator().manual_seed(7))
    path, _ = _hf_greedy(hf, prompt, 16)
    ours = generate_ids(model, prompt.tolist(),
                        GenerationConfig(max_new_tokens=16, temperature=0), eos_id=None)
    assert ours == path.tolist()
