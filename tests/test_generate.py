"""Generation: decoding rules, batching with left padding, stop strings, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import ByteTokenizer
from hypothesis import given
from hypothesis import strategies as st

from lmforge.errors import ConfigError, LmforgeError
from lmforge.generate import (
    GenerationConfig,
    IncrementalDetokenizer,
    PromptTooLongError,
    StopMatcher,
    apply_repetition_penalty,
    generate,
    generate_completions,
    generate_ids,
    sample_next,
    stream,
    top_k_filter,
    top_p_filter,
)
from lmforge.models.gpt import GPT, GPTConfig

TOK = ByteTokenizer()
SCRIPT = "你好，世界。Hello world.\n\nThe end."


class ScriptedGPT(GPT):
    """A GPT whose greedy continuation is known: after the token at position p it
    strongly prefers ``script[p]`` (``[bos] + script`` is its favourite text), then eos.
    Positions count real tokens only, so this also checks left padding and the cache."""

    def __init__(self, config: GPTConfig, script: list[int], eos: int):
        super().__init__(config)
        self.register_buffer("script", torch.tensor(script + [eos]), persistent=False)

    def forward(self, input_ids, attention_mask=None, cache=None, last_only=False):
        logits = super().forward(input_ids, attention_mask, cache, last_only)
        B, T = input_ids.shape
        if cache is not None:
            valid = cache.attention_mask[:, :cache.length]
        elif attention_mask is not None:
            valid = attention_mask.bool()
        else:
            valid = torch.ones(B, T, dtype=torch.bool)
        pos = (valid.long().cumsum(-1) - 1)[:, -logits.shape[1]:]
        nxt = self.script[pos.clamp(0, len(self.script) - 1)]
        return logits + 100.0 * torch.nn.functional.one_hot(nxt, logits.shape[-1])


def tiny(style: str = "gpt2", seed: int = 0, max_seq_len: int = 64, **kw) -> GPT:
    torch.manual_seed(seed)
    extra = {"n_kv_head": 2} if style == "llama" else {}
    cfg = GPTConfig(vocab_size=TOK.vocab_size, style=style, n_layer=2, n_head=4, d_model=32,
                    max_seq_len=max_seq_len, init_std=0.3, **extra, **kw)
    return GPT(cfg).eval()


@pytest.fixture(scope="module")
def scripted() -> ScriptedGPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=TOK.vocab_size, n_layer=2, n_head=4, d_model=32,
                    max_seq_len=96)
    return ScriptedGPT(cfg, TOK.encode(SCRIPT), TOK.eos_id).eval()


def continuation(prompt: str) -> str:
    """What ScriptedGPT writes after ``prompt`` (the prompt must be a prefix of SCRIPT)."""
    assert SCRIPT.startswith(prompt)
    return SCRIPT[len(prompt):]


# -- decoding rules ------------------------------------------------------------------------

def test_top_k_keeps_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = top_k_filter(logits, 2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]
    assert torch.equal(top_k_filter(logits, 10), logits)


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    logits = probs.log()
    assert torch.isfinite(top_p_filter(logits, 0.8)).tolist() == [[False, True, False, True]]
    assert torch.isfinite(top_p_filter(logits, 0.81)).tolist() == [[False, True, True, True]]
    # the top token always survives, even when it alone exceeds p
    assert torch.isfinite(top_p_filter(logits, 0.01)).tolist() == [[False, True, False, False]]


def test_repetition_penalty_is_ctrl_style():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_sampling_follows_filtered_distribution():
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0]).expand(20000, 4)
    g = torch.Generator().manual_seed(0)
    cfg = GenerationConfig(temperature=0.5, top_k=3)
    tokens = sample_next(logits, cfg, generator=g)
    freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
    expected = torch.softmax(torch.tensor([float("-inf"), 1.0, 2.0, 3.0]) / 0.5, -1)
    assert freq[0] == 0
    assert torch.allclose(freq, expected, atol=0.015)
    greedy = sample_next(logits[:2], GenerationConfig(temperature=0))
    assert greedy.tolist() == [3, 3]


def test_config_validation():
    with pytest.raises(ConfigError, match="top_p"):
        GenerationConfig(top_p=1.5)
    with pytest.raises(ConfigError, match="temperature"):
        GenerationConfig(temperature=-1)
    with pytest.raises(ConfigError, match="stop"):
        GenerationConfig(stop=[""])
    with pytest.raises(ConfigError, match="unknown generation option"):
        generate(tiny(), TOK, "x", max_tokens=3)
    # wrong types are ConfigErrors too, not TypeErrors from a comparison deep inside
    for bad, msg in ((dict(seed="a"), "seed must be an integer or None, got 'a'"),
                     (dict(max_new_tokens="5"), "max_new_tokens must be an integer"),
                     (dict(top_k=2.5), "top_k must be an integer or None"),
                     (dict(temperature="hot"), "temperature must be a number"),
                     (dict(batch_size=True), "batch_size must be an integer")):
        with pytest.raises(ConfigError, match=msg):
            GenerationConfig(**bad)
    GenerationConfig(seed=np.int64(3), temperature=np.float32(0.5))  # numpy scalars are fine


# -- batching, caching, seeds --------------------------------------------------------------

@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_greedy_batch_equals_each_prompt_alone(style):
    model = tiny(style)
    prompts = [[1, 40, 50, 60, 70, 80, 90], [1, 100], [1, 7, 8, 9]]
    cfg = GenerationConfig(max_new_tokens=12, temperature=0)
    batched = generate_ids(model, prompts, cfg)
    alone = [generate_ids(model, [p], cfg)[0] for p in prompts]
    assert batched == alone
    assert all(len(ids) == 12 for ids in batched)
    assert len({tuple(ids) for ids in batched}) == 3  # the model does not just repeat


def test_same_seed_same_sample_and_global_rng_untouched():
    model = tiny("llama")
    cfg = GenerationConfig(max_new_tokens=10, temperature=1.0, top_k=50, top_p=0.9,
                           repetition_penalty=1.2, seed=123)
    state = torch.get_rng_state()
    a = generate_ids(model, [[1, 5], [1, 6, 7]], cfg)
    b = generate_ids(model, [[1, 5], [1, 6, 7]], cfg)
    assert torch.equal(state, torch.get_rng_state())
    assert a == b
    c = generate_ids(model, [[1, 5], [1, 6, 7]], GenerationConfig(**{**cfg.__dict__, "seed": 7}))
    assert c != a


def test_repetition_penalty_in_generation_avoids_seen_tokens():
    model = tiny()
    prompt = [1, 20, 30, 40]
    out = generate_ids(model, [prompt], GenerationConfig(
        max_new_tokens=10, temperature=0, repetition_penalty=1e6))[0]
    assert len(set(out)) == len(out) and not set(out) & set(prompt)


def test_eos_stops_rows_and_is_excluded(scripted):
    prompt = [TOK.bos_id] + TOK.encode("你好，世界。Hello world.\n\nThe")
    short = [TOK.bos_id] + TOK.encode("你好")
    out = generate_ids(scripted, [prompt, short], GenerationConfig(max_new_tokens=40,
                                                                   temperature=0),
                       eos_id=TOK.eos_id)
    assert TOK.decode(out[0]) == " end."  # then eos, which is not returned
    assert out[1] == TOK.encode(continuation("你好"))[:40]  # stopped by length


def test_prompt_too_long_raises_clear_error():
    model = tiny(max_seq_len=16)
    with pytest.raises(PromptTooLongError, match="max_seq_len is 16"):
        generate_ids(model, [[1] * 10], GenerationConfig(max_new_tokens=7))
    with pytest.raises(ValueError):  # also a ValueError for library callers
        generate(model, TOK, "x" * 20, max_new_tokens=1)
    assert len(generate_ids(model, [[1] * 10], GenerationConfig(max_new_tokens=6))[0]) == 6
    with pytest.raises(LmforgeError, match="no tokens"):
        generate_ids(model, [[]], GenerationConfig(max_new_tokens=1))


def test_model_mode_restored_and_no_grad_leak():
    model = tiny()
    model.train()
    pieces = stream(model, TOK, "ab", max_new_tokens=5, temperature=0)
    for _ in pieces:
        assert not torch.is_inference_mode_enabled()
    assert model.training


def test_bf16_autocast_runs():
    model = tiny("llama")
    out = generate_ids(model, [[1, 2, 3], [1, 4]], GenerationConfig(
        max_new_tokens=5, temperature=0, autocast="bf16"))
    assert [len(o) for o in out] == [5, 5]


# -- text: prompts, stop strings, streaming -------------------------------------------------

def test_generate_text_batch_and_empty_prompt(scripted):
    prompts = ["你好，世界。", "", "你好，世界。Hello"]
    out = generate(scripted, TOK, prompts, max_new_tokens=60, temperature=0)
    assert out == [continuation(p) for p in prompts]
    assert generate(scripted, TOK, "你好", max_new_tokens=60, temperature=0) == \
        continuation("你好")
    details = generate_completions(scripted, TOK, ["", "你好"], max_new_tokens=3,
                                   temperature=0)
    assert details[0].finish_reason == "length" and details[0].text == "你"
    assert details[0].prompt_tokens == 1


def test_stop_strings_cut_text(scripted):
    cfg = GenerationConfig(max_new_tokens=60, temperature=0, stop=["\n\n", "world"])
    res = generate_completions(scripted, TOK, ["你好", "你好，世界。Hello world."], cfg)
    assert [r.text for r in res] == ["，世界。Hello ", ""]
    assert [r.finish_reason for r in res] == ["stop", "stop"]
    assert generate(scripted, TOK, "", cfg, stop=["。"]) == "你好，世界"
    assert generate(scripted, TOK, "你", cfg, stop=["not there"]) == continuation("你")


def test_stream_yields_whole_characters_and_never_a_stop_string(scripted):
    pieces = list(stream(scripted, TOK, "", max_new_tokens=60, temperature=0,
                         stop=["world", "好，世"]))
    assert "".join(pieces) == "你"
    pieces = list(stream(scripted, TOK, "你好", max_new_tokens=60, temperature=0,
                         stop=["world"]))
    text = "".join(pieces)
    assert text == "，世界。Hello "
    assert all("\ufffd" not in p for p in pieces)
    assert "，" in pieces and "世" in pieces  # one piece per character, as soon as whole
    assert not any("w" in p for p in pieces)  # a possible stop prefix was held back
    full = list(stream(scripted, TOK, "", max_new_tokens=60, temperature=0))
    assert "".join(full) == SCRIPT


def test_stream_matches_generate_when_sampling():
    model = tiny("llama")
    kw = dict(max_new_tokens=20, temperature=1.0, seed=3, stop=["e"])
    assert "".join(stream(model, TOK, "Hi", **kw)) == generate(model, TOK, "Hi", **kw)


def test_incremental_detokenizer_on_multibyte():
    ids = TOK.encode("a你b")
    detok = IncrementalDetokenizer(TOK, [TOK.bos_id])
    deltas = [detok.push(i) for i in ids]
    assert deltas == ["a", "", "", "你", "b"]
    detok = IncrementalDetokenizer(TOK)
    assert [detok.push(i) for i in ids[:2]] == ["a", ""]
    assert detok.flush() == "\ufffd"  # a cut-off character is released at the end


def test_stop_matcher_holds_possible_prefix():
    m = StopMatcher(["abc"])
    assert m.feed("xa") == ("x", False)
    assert m.feed("b") == ("", False)
    assert m.feed("d") == ("abd", False)
    assert m.feed("ab") == ("", False)
    assert m.feed("cz") == ("", True)
    assert m.text == "xabd"
    m = StopMatcher(["ab"])
    assert m.feed("a") == ("", False)
    assert m.flush() == "a"


def _first_stop_cut(text: str, stops: list[str]) -> str:
    """Reference: grow the text one character at a time; cut at the first stop seen."""
    for e in range(len(text) + 1):
        hits = [text.find(s) for s in stops if s in text[:e]]
        if hits:
            return text[:min(hits)]
    return text


@given(text=st.text(alphabet="ab\n", max_size=30),
       stops=st.lists(st.text(alphabet="ab\n", min_size=1, max_size=3), max_size=3),
       cuts=st.lists(st.integers(0, 30), max_size=6))
def test_stop_matcher_any_split(text, stops, cuts):
    bounds = sorted({0, len(text), *[c for c in cuts if c <= len(text)]})
    m = StopMatcher(stops)
    expected = _first_stop_cut(text, stops)
    out, stopped = "", False
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        piece, stopped = m.feed(text[lo:hi])
        out += piece
        assert expected.startswith(out)  # never past or into a stop string
        if stopped:
            break
    if not stopped:
        out += m.flush()
    assert out == expected


def test_top_level_generate_and_convert_are_the_functions():
    """``from lmforge import generate`` must give the function even after the subpackage
    ``lmforge.generate`` has been imported (the import system binds submodule names on
    the package, which shadowed the lazy export and broke the README snippet)."""
    import lmforge.convert
    import lmforge.generate.decode  # noqa: F401
    from lmforge import convert as top_convert
    from lmforge import generate as top_generate
    from lmforge.convert import convert
    from lmforge.generate import generate as gen_fn

    assert top_generate is gen_fn and top_convert is convert
    out = top_generate(tiny(), TOK, ["ab"], max_new_tokens=3, temperature=0)
    assert isinstance(out, list) and len(out) == 1


def test_logit_bias_is_added_to_the_logits_before_sampling():
    from lmforge.generate.sampling import apply_logit_bias, process_logits

    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    out = apply_logit_bias(logits, {0: 5.0, 2: -1.5})
    assert torch.equal(out, torch.tensor([[6.0, 2.0, 1.5], [5.0, 0.0, -1.5]]))
    cfg = GenerationConfig(temperature=0.5, logit_bias={1: 100.0})
    # the bias comes before the temperature: (z + b) / tau
    assert torch.allclose(process_logits(logits, cfg), (logits + torch.tensor(
        [0.0, 100.0, 0.0])) / 0.5)


def test_logit_bias_in_generation_forces_and_bans():
    model = tiny()
    prompt = [1, 20, 30, 40]
    greedy = generate_ids(model, [prompt], GenerationConfig(max_new_tokens=6, temperature=0))[0]
    banned = generate_ids(model, [prompt], GenerationConfig(
        max_new_tokens=6, temperature=0, logit_bias={t: -100.0 for t in set(greedy)}))[0]
    assert not set(banned) & set(greedy)
    forced = generate_ids(model, [prompt], GenerationConfig(
        max_new_tokens=6, temperature=1.0, seed=3, logit_bias={77: 100.0}))[0]
    assert forced == [77] * 6


@pytest.mark.parametrize("bias,msg", [({-1: 1.0}, "not a token id"), ({"3": 1.0}, "not a token id"),
                                      ({3: 101.0}, r"\[-100, 100\]"), ([3], "must map")])
def test_logit_bias_validation(bias, msg):
    with pytest.raises(ConfigError, match=msg):
        GenerationConfig(logit_bias=bias)
