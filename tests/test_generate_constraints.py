"""Decode-time constraints and beam search for GPT: bans equal to ``transformers``'
processors and greedy ``generate``, words spelled as every token sequence, constrained
beam search that meets every forced word and, with a wide beam, finds the exact optimum
of a brute-force enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch
from fakes import assert_user_error, hf_gpt2_pair, one_line_error, run_cli, tiny_gpt_folder
from tokenizers import Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from lmforge.errors import ConfigError
from lmforge.generate import (
    GenerationConfig,
    TokenBans,
    UnencodableWordError,
    beam_search_ids,
    build_constraints,
    complete_ids,
    constrain_logits,
    generate,
    generate_completions,
    generate_ids,
    stream,
    word_sequences,
)
from lmforge.generate.text import encode_prompt
from lmforge.models.beam import beam_search, length_penalty
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tokenize import Tokenizer, train_tokenizer

transformers = pytest.importorskip("transformers")
lp = pytest.importorskip("transformers.generation.logits_process")

TEXTS = ["the cat sat on the mat. hello world, the dog ran. 你好世界，小猫坐在垫子上。"] * 30


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return train_tokenizer("bpe", texts=TEXTS, vocab_size=320, show_progress=False)


@pytest.fixture(scope="module")
def char() -> Tokenizer:
    return train_tokenizer("char", texts=TEXTS, vocab_size=80, show_progress=False)


def tiny_gpt(vocab_size: int, seed: int = 0, max_seq_len: int = 64) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, n_layer=2, n_head=2, d_model=32,
                         max_seq_len=max_seq_len, init_std=0.3)).eval()


# -- the bans equal transformers' processors --------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_bans_equal_transformers_processors(seed):
    g = torch.Generator().manual_seed(seed)
    B, T, V, eos, prompt_len = 4, 12, 30, 7, 5
    ids = torch.randint(0, 6, (B, T), generator=g)  # few symbols: n-grams and prefixes recur
    ids[0, -1], ids[1, -2:] = 1, torch.tensor([3, 4])  # (1, 2) and (3, 4, 1) are half-written
    logits = torch.randn(B, V, generator=g)
    bad = [(5,), (1, 2), (3, 4, 1), (2, 2), (0, 1, 2), (4, 9)]
    hist = ids.tolist()
    for n in (1, 2, 3):
        for min_new in (0, T - prompt_len, T - prompt_len + 1):
            for sequences in ((), tuple(bad)):
                bans = TokenBans(eos, min_new, n, sequences)
                ours = constrain_logits(logits, GenerationConfig(), None,
                                        bans.banned(hist, T - prompt_len, B))
                ref = lp.NoRepeatNGramLogitsProcessor(n)(ids, logits.clone())
                if sequences:
                    ref = lp.NoBadWordsLogitsProcessor([list(s) for s in sequences],
                                                       eos)(ids, ref)
                ref = lp.MinNewTokensLengthLogitsProcessor(prompt_len, min_new, eos)(ids, ref)
                assert torch.equal(ours, ref), (n, min_new, sequences)
    # each rule bans something here, so the comparison above is not vacuous
    assert bool(torch.isinf(lp.NoRepeatNGramLogitsProcessor(2)(ids, logits.clone())).any())
    multi = lp.NoBadWordsLogitsProcessor([list(s) for s in bad if len(s) > 1], eos)
    assert torch.isinf(multi(ids, logits.clone())[:2]).sum() >= 2  # rows 0 and 1 end in a prefix


def test_repetition_penalty_comes_before_the_bans():
    logits = torch.tensor([[2.0, -1.0, 3.0]])
    seen = torch.tensor([[True, True, False]])
    out = constrain_logits(logits, GenerationConfig(repetition_penalty=2.0), seen, [[2]])
    assert out.tolist() == [[1.0, -2.0, float("-inf")]]


# -- greedy generation equals transformers' generate ------------------------------------

@pytest.fixture(scope="module")
def hf_pair(bpe, tmp_path_factory):
    return hf_gpt2_pair(tmp_path_factory.mktemp("gpt2"), bpe.vocab_size, n_layer=2,
                        pad_token_id=bpe.pad_id)


def _hf_greedy(hf, prompt: list[int], n_new: int, eos: int | None, **kw) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=n_new, eos_token_id=eos, **kw)[0, len(prompt):]
    out = out.tolist()
    return out[:out.index(eos)] if eos in out else out


def _clean_word(tok, path: list[int], avoid: int) -> str:
    """A two-token stretch of ``path`` that decodes to whole characters (a bad word the
    model would write)."""
    for i in range(len(path) - 1):
        word = tok.decode(path[i:i + 2])
        if avoid not in path[i:i + 2] and "\ufffd" not in word and word.strip() == word \
                and word and (avoid,) not in word_sequences(tok, word):
            return word
    raise AssertionError("no clean two-token word on the path")


@pytest.mark.parametrize("rules", ["no_repeat", "bad_words", "min_new", "all"])
def test_greedy_constraints_equal_transformers_generate(bpe, hf_pair, rules):
    hf, model = hf_pair
    n_new = 16
    prompts = [encode_prompt(bpe, p) for p in ("the cat", "你好", "hello world, the dog")]
    free = [_hf_greedy(hf, p, n_new, None) for p in prompts]
    # an eos that ends the outputs early, but not at once
    eos = next(t for t in free[0][4:] if all(t not in f[:3] for f in free))
    words = [_clean_word(bpe, free[1], eos), _clean_word(bpe, free[2][4:], eos)]
    kw = {"no_repeat": dict(no_repeat_ngram_size=2), "bad_words": dict(bad_words=words),
          "min_new": dict(min_new_tokens=6),
          "all": dict(no_repeat_ngram_size=2, bad_words=words, min_new_tokens=6)}[rules]
    hf_kw = {k: v for k, v in kw.items() if k != "bad_words"}
    if "bad_words" in kw:
        hf_kw["bad_words_ids"] = [list(s) for w in words for s in word_sequences(bpe, w)]
    ours = complete_ids(model, bpe, prompts, temperature=0, max_new_tokens=n_new,
                        eos_id=eos, **kw)
    refs = [_hf_greedy(hf, p, n_new, eos, **hf_kw) for p in prompts]
    assert [c.token_ids for c in ours] == refs
    unconstrained = complete_ids(model, bpe, prompts, temperature=0, max_new_tokens=n_new,
                                 eos_id=eos)
    assert [c.token_ids for c in unconstrained] != refs  # the rules changed the output


# -- words as token sequences ------------------------------------------------------------

def _brute_force_sequences(tok, target: str) -> set[tuple[int, ...]]:
    """Every split of the target's bytes into vocabulary tokens (transformers' GPT-2
    byte table gives each token's bytes), checked by decoding."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table, data = bytes_to_unicode(), target.encode()
    special = tok.special_ids
    found = set()
    for cuts in itertools.product([False, True], repeat=len(data) - 1):
        bounds = [0, *[i + 1 for i, c in enumerate(cuts) if c], len(data)]
        chunks = ["".join(table[b] for b in data[a:z]) for a, z in itertools.pairwise(bounds)]
        ids = [tok.token_to_id(c) for c in chunks]
        if None not in ids and not special & set(ids) and tok.decode(ids) == target:
            found.add(tuple(ids))
    return found


@pytest.mark.parametrize("word", ["cat", "mat.", "你好", "狗", "the dog"])
def test_word_sequences_equal_brute_force_on_a_small_bpe(bpe, word):
    seqs = word_sequences(bpe, word)
    targets = [word, " " + word] if word[0].isalnum() else [word]
    expected = set().union(*(_brute_force_sequences(bpe, t) for t in targets))
    assert len(expected) <= 64 and set(seqs) == expected
    assert all(bpe.decode(list(s)) in targets for s in seqs)
    assert [len(s) for s in seqs] == sorted(len(s) for s in seqs)
    if word == "狗":  # not in the training text: split across byte tokens
        assert min(map(len, seqs)) == 3


def test_word_sequences_are_capped_at_the_shortest(bpe):
    seqs = word_sequences(bpe, "hello world, the dog")
    assert len(seqs) == 64 and len(word_sequences(bpe, "the dog", limit=5)) == 5
    assert all(bpe.decode(list(s)) in ("hello world, the dog", " hello world, the dog")
               for s in seqs)
    assert min(map(len, seqs)) == len(bpe.encode(" hello world, the dog"))


def test_word_sequences_of_char_and_wordpiece_tokenizers(char):
    assert word_sequences(char, "cat") == [tuple(char.encode("cat")),
                                           tuple(char.encode(" cat"))]
    wp = train_tokenizer("wordpiece", texts=TEXTS, vocab_size=120, show_progress=False)
    seqs = word_sequences(wp, "cat")
    assert seqs and all(wp.decode(list(s)) == "cat" for s in seqs)


def test_unencodable_words_are_one_line_errors(char):
    msg = one_line_error(UnencodableWordError, word_sequences, char, "c☃", "force word")
    assert msg == "force word 'c☃': the tokenizer cannot encode '☃'"
    assert isinstance(UnencodableWordError("x"), ConfigError)


@pytest.mark.parametrize("bad,field", [
    (dict(bad_words=[""]), "bad_words"), (dict(force_words=[" "]), "force_words"),
    (dict(force_words=[[]]), "force_words"), (dict(bad_words=[3]), "bad_words"),
    (dict(min_new_tokens=9, max_new_tokens=4), "min_new_tokens"),
    (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    (dict(num_beams=0), "num_beams"), (dict(alpha=-1.0), "alpha")])
def test_constraint_fields_are_validated(bad, field):
    assert field in one_line_error(ConfigError, GenerationConfig, **bad)


def test_one_word_is_a_list_of_one():
    cfg = GenerationConfig(bad_words="cat", force_words=("dog", ("a", "b")))
    assert cfg.bad_words == ["cat"] and cfg.force_words == ["dog", ["a", "b"]]
    assert cfg.beam_search and not GenerationConfig(bad_words=["cat"]).beam_search


# -- beam search ---------------------------------------------------------------------------

def _met(text: str, entry: str | list[str]) -> bool:
    return any(w in text for w in ([entry] if isinstance(entry, str) else entry))


@pytest.mark.parametrize("force", [["cat"], ["你好", "mat"], [["dog", "猫"], "世界", "the"],
                                   ["狗"]])
def test_constrained_beam_search_meets_every_forced_word(bpe, force):
    model = tiny_gpt(bpe.vocab_size)
    cs = generate_completions(model, bpe, ["the", "你", "hello world"], max_new_tokens=20,
                              num_beams=3, force_words=force, no_repeat_ngram_size=3)
    for c in cs:
        assert all(_met(c.text, entry) for entry in force), (c.text, force)
        assert c.finish_reason in ("eos", "length")


def test_forced_words_not_met_by_max_new_tokens_give_length(bpe):
    model = tiny_gpt(bpe.vocab_size)
    c = generate_completions(model, bpe, ["the"], max_new_tokens=2, num_beams=2,
                             force_words=["cat", "你好世界"])[0]
    assert c.finish_reason == "length" and "你好世界" not in c.text


def _eos_tokenizer() -> Tokenizer:
    """Three characters and eos: a vocabulary small enough to enumerate."""
    hf = HFTokenizer(models.WordLevel({"<|eos|>": 0, "a": 1, "b": 2, "c": 3},
                                      unk_token="<|unk|>"))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens(["<|eos|>"])
    return Tokenizer(hf, "char", {"eos": "<|eos|>"})


def _brute_force_best(model, tok, prompt: list[int], L: int, force, alpha: float,
                      may_end=lambda seq: True):
    """(score, tokens) of the best output by enumeration: ``n < L`` tokens then eos
    (where ``may_end`` accepts those tokens), or ``L`` tokens without eos, whose text
    (before eos) meets every constraint; score = log P / lp(length)."""
    seqs = torch.tensor(list(itertools.product(range(4), repeat=L)))
    with torch.no_grad():
        logits = model(torch.cat([torch.tensor(prompt).expand(len(seqs), -1), seqs], 1))
    logp = torch.log_softmax(logits[:, len(prompt) - 1:], -1).tolist()  # (N, L+1, V)
    best: tuple[float, tuple[int, ...]] = (float("-inf"), ())
    for row, seq in enumerate(seqs.tolist()):
        total = 0.0
        for n in range(L + 1):
            if all(_met(tok.decode(seq[:n]), e) for e in force):
                if n < L:
                    if may_end(seq[:n]):
                        score = (total + logp[row][n][0]) / length_penalty(n + 1, alpha)
                        best = max(best, (score, (*seq[:n], 0)))
                else:
                    best = max(best, (total / length_penalty(L, alpha), tuple(seq)))
            if n == L or seq[n] == 0:
                break
            total += logp[row][n][seq[n]]
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("force", [[], ["cb"], [["ab", "ba"], "c"], ["bb", "ca"]])
def test_wide_constrained_beam_search_is_the_exact_optimum(force, alpha):
    # seed 4: the optimum ends with eos in some cases and runs to L tokens in others
    tok, L, K, prompt = _eos_tokenizer(), 5, 330, [1, 3]  # K keeps every partial output
    model = tiny_gpt(4, seed=4, max_seq_len=8)
    score, best = _brute_force_best(model, tok, prompt, L, force, alpha)
    cfg = GenerationConfig(max_new_tokens=L, num_beams=K, alpha=alpha, force_words=force)
    _, forced = build_constraints(cfg, tok, 0)
    hyp = beam_search_ids(model, [prompt], cfg, eos_id=0, forced=forced)[0]
    assert tuple(hyp.tokens) == best and hyp.score == pytest.approx(score, abs=1e-5)
    assert hyp.missing == 0 and hyp.finished == (best[-1] == 0)
    narrow = GenerationConfig(max_new_tokens=L, num_beams=2, alpha=alpha, force_words=force)
    text = tok.decode(beam_search_ids(model, [prompt], narrow, eos_id=0, forced=forced)[0].tokens)
    assert all(_met(text, e) for e in force)  # a narrow beam meets them too


@pytest.mark.parametrize("K", [330, 3])
def test_an_end_rule_ends_hypotheses_as_eos_does(K):
    # eos given as a rule instead of an id: the same search, token for token
    L, prompt = 5, [1, 3]
    model = tiny_gpt(4, seed=4, max_seq_len=8)
    cfg = GenerationConfig(max_new_tokens=L, num_beams=K)
    by_id = beam_search_ids(model, [prompt], cfg, eos_id=0)[0]
    by_rule = beam_search_ids(model, [prompt], cfg, ends=[lambda t: t[-1] == 0])[0]
    assert (by_rule.tokens, by_rule.finished) == (by_id.tokens, by_id.finished)
    assert by_rule.score == pytest.approx(by_id.score, abs=1e-6)


def test_end_rules_without_beam_search_are_a_config_error(bpe):
    model = tiny_gpt(bpe.vocab_size, seed=2)
    with pytest.raises(ConfigError, match="need beam search"):
        complete_ids(model, bpe, [[bpe.bos_id]], max_new_tokens=4, temperature=0,
                     ends=[lambda t: False])


def test_an_end_rule_drops_the_extensions_it_answers_none():
    # ending before any "a" (id 1) is not allowed: the wide search is the optimum of
    # the outputs that obey it, and the optimum of all outputs does not
    tok, L, prompt = _eos_tokenizer(), 5, [1, 3]
    model = tiny_gpt(4, seed=4, max_seq_len=8)
    free = _brute_force_best(model, tok, prompt, L, [], 0.6)
    assert 1 not in free[1]  # the unconstrained optimum ends without an "a"

    def rule(t):
        return t[-1] == 0 if 1 in t[:-1] or t[-1] != 0 else None

    score, best = _brute_force_best(model, tok, prompt, L, [], 0.6, lambda seq: 1 in seq)
    hyp = beam_search_ids(model, [prompt], GenerationConfig(max_new_tokens=L, num_beams=330),
                          ends=[rule])[0]
    assert tuple(hyp.tokens) == best and hyp.score == pytest.approx(score, abs=1e-5)


def _gpt_beam_callbacks(model, prompt: list[int], K: int, max_len: int):
    """``models.beam``'s step/reorder over a GPT's KV cache: the first step is the
    prompt's prefill (K identical rows)."""
    cache = model.new_cache(K, max_len=len(prompt) + max_len - 1)
    fed = []

    def step(y):
        ids = torch.tensor([prompt] * K) if not fed else y[:, None]
        fed.append(1)
        return model(ids, cache=cache, last_only=True)[:, -1]

    return step, cache.reorder


@pytest.mark.parametrize("K,no_repeat,alpha", [(1, 0, 0.6), (3, 0, 0.6), (4, 2, 0.0),
                                               (5, 1, 1.0)])
def test_gpt_beam_search_equals_the_translation_beam_search(K, no_repeat, alpha):
    model = tiny_gpt(40, seed=1)
    bos, eos, n_new = 1, 2, 12
    step, reorder = _gpt_beam_callbacks(model, [bos], K, n_new)
    with torch.inference_mode():
        ref = beam_search(step, reorder, 1, beam_size=K, max_len=n_new, bos_id=bos,
                          eos_id=eos, alpha=alpha, no_repeat_ngram_size=no_repeat)[0][0]
    cfg = GenerationConfig(max_new_tokens=n_new, num_beams=K, alpha=alpha,
                           no_repeat_ngram_size=no_repeat)
    ours = beam_search_ids(model, [[bos]], cfg, eos_id=eos)[0]
    assert ours.tokens == ref.tokens
    assert ours.score == pytest.approx(ref.score, abs=1e-5)
    if K == 1:  # one beam is greedy search
        greedy = generate_ids(model, [[bos]], GenerationConfig(
            max_new_tokens=n_new, temperature=0, no_repeat_ngram_size=no_repeat), eos_id=eos)
        assert greedy[0] == [t for t in ours.tokens if t != eos]


def test_batched_beams_equal_each_prompt_alone(bpe):
    model = tiny_gpt(bpe.vocab_size, seed=2)
    prompts = ["the cat", "你好世界，小猫", "hello"]
    kw = dict(max_new_tokens=10, num_beams=3, force_words=[["dog", "狗"]],
              bad_words=["the"], min_new_tokens=4, batch_size=3)
    together = generate_completions(model, bpe, prompts, **kw)
    alone = [generate_completions(model, bpe, [p], **kw)[0] for p in prompts]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert all(len(c.token_ids) >= 4 for c in together)
    recomputed = generate_completions(model, bpe, prompts, use_cache=False, **kw)
    assert [c.token_ids for c in recomputed] == [c.token_ids for c in together]
    assert generate_ids(model, [encode_prompt(bpe, p) for p in prompts],
                        GenerationConfig(max_new_tokens=10, num_beams=3),
                        eos_id=bpe.eos_id) == [c.token_ids for c in generate_completions(
                            model, bpe, prompts, max_new_tokens=10, num_beams=3)]


def test_bad_words_never_appear_in_the_text(char):
    model = tiny_gpt(char.vocab_size, seed=4)
    prompts = ["the cat", "你好", "dog"]
    for kw in (dict(temperature=0), dict(num_beams=3), dict(temperature=1.0, seed=0),
               dict(num_beams=2, force_words=["at"])):
        free = generate(model, char, prompts, max_new_tokens=24, **kw)
        words = sorted({t[i:i + 2] for t in free for i in range(0, len(t) - 1, 3)
                        if t[i:i + 2].strip() == t[i:i + 2]})[:6]
        assert words
        for text in generate(model, char, prompts, max_new_tokens=24, bad_words=words, **kw):
            assert not any(w in text for w in words), (text, words, kw)


def test_unspaced_bad_words_are_banned_as_text_whatever_the_tokens():
    """Chinese has no word boundaries: BPE merges ``的医生`` and ``球迷们`` into tokens,
    which a ban of the word's own spellings would let through. A token is banned exactly
    when it would complete the word in the text (brute force over every token and random
    histories); generation never writes it."""
    import random

    texts = ["医院的医生治疗了患者。球迷们在街头庆祝。医生说球迷很多。"] * 40
    tok = train_tokenizer("bpe", texts=texts, vocab_size=330, show_progress=False)
    words = ["医生", "球迷"]
    bans, _ = build_constraints(GenerationConfig(bad_words=words), tok, tok.eos_id)
    assert any(w in tok.decode([i]) and tok.decode([i]) != w for w in words
               for i in range(tok.vocab_size))  # some token holds more than the word
    by_id = {i: tok.decode([i]).encode() for i in range(tok.vocab_size)
             if i not in tok.special_ids and "\ufffd" not in tok.decode([i])}
    rng = random.Random(0)
    ids = sorted(by_id)
    for _ in range(40):
        history = [rng.choice(ids) for _ in range(rng.randint(0, 4))]
        text = b"".join(by_id[t] for t in history)
        if any(w.encode() in text for w in words):
            continue
        banned = set(bans.banned([history], 0, 1)[0])
        for t in ids:
            completes = any(w.encode() in text + by_id[t] for w in words)
            assert (t in banned) == completes, (tok.decode(history), tok.decode([t]))
    model = tiny_gpt(tok.vocab_size, seed=2)
    for kw in (dict(temperature=1.0, seed=0), dict(num_beams=3)):
        for text in generate(model, tok, ["医院的", "球", ""] * 3, max_new_tokens=24,
                             bad_words=words, **kw):
            assert not any(w in text for w in words), text


def test_stop_strings_cut_the_beam_text_and_streaming_beams_is_refused(bpe):
    model = tiny_gpt(bpe.vocab_size)
    full = generate_completions(model, bpe, ["the"], max_new_tokens=12, num_beams=3,
                                force_words=["cat"])[0]
    stop = full.text[full.text.index("cat") + 1:][:1] or "t"
    cut = generate_completions(model, bpe, ["the"], max_new_tokens=12, num_beams=3,
                               force_words=["cat"], stop=[stop])[0]
    assert cut.token_ids == full.token_ids and cut.finish_reason == "stop"
    assert cut.text == full.text[:full.text.index(stop)]
    for kw in (dict(num_beams=2), dict(force_words=["cat"])):
        msg = one_line_error(ConfigError, stream, model, bpe, "the", max_new_tokens=8, **kw)
        assert "beam" in msg
    with pytest.raises(ConfigError, match="tokenizer"):
        generate_ids(model, [[1]], GenerationConfig(max_new_tokens=4, bad_words=["cat"]))


# -- the command line ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt_folder(tmp_path_factory):
    return tiny_gpt_folder(tmp_path_factory.mktemp("gpt"))


def test_cli_constraint_flags(gpt_folder, capsys):
    from lmforge.hub import load_pretrained

    model, tok = load_pretrained(gpt_folder)
    args = ["generate", str(gpt_folder), "--prompt", "hello", "--max-new-tokens", "12"]
    code, out, _ = run_cli(args + ["--force-word", "world|你好", "--force-word", "is",
                                   "--beams", "3"], capsys)
    completion = out.rstrip("\n")[len("hello"):]
    assert code == 0 and ("world" in completion or "你好" in completion)
    assert "is" in completion
    assert completion == generate(model, tok, "hello", max_new_tokens=12, num_beams=3,
                                  force_words=[["world", "你好"], "is"])
    flags = ["--temperature", "0", "--bad-word", "ll", "--bad-word", "o", "--min-new-tokens",
             "5", "--no-repeat-ngram-size", "2"]
    code, out, _ = run_cli(args + flags, capsys)
    assert code == 0 and out.rstrip("\n") == "hello" + generate(
        model, tok, "hello", max_new_tokens=12, temperature=0, bad_words=["ll", "o"],
        min_new_tokens=5, no_repeat_ngram_size=2)


@pytest.mark.parametrize("flags,fragment", [
    (["--beams", "0"], "num_beams must be >= 1"),
    (["--min-new-tokens", "9", "--max-new-tokens", "4"], "min_new_tokens"),
    (["--no-repeat-ngram-size", "-1"], "no_repeat_ngram_size"),
    (["--bad-word", " "], "bad_words"),
    (["--force-word", "a||b"], "force_words"),
    (["--force-word", "x☃"], "force word 'x☃': the tokenizer cannot encode '☃'"),
    (["--stream", "--beams", "2"], "streaming cannot run beam search"),
])
def test_cli_bad_constraint_options_exit_2(gpt_folder, capsys, flags, fragment):
    out, _ = assert_user_error(["generate", str(gpt_folder), "--prompt", "hello"] + flags,
                               capsys, fragment)
    assert out == ""
