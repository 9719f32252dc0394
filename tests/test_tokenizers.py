"""Tokenizers: training the three kinds, exact round-trips, special tokens, HF folders."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.tokenize import SPECIAL_ROLES, Tokenizer, train_tokenizer

CORPUS = [
    "机器学习是人工智能的一个分支。",
    "今天天气很好，我们去公园散步吧！",
    "The quick brown fox jumps over the lazy dog.",
    "Language models predict the next token; 语言模型预测下一个词。",
    "Tabs\tand  spaces, emoji 😀👍 and numbers 12345.",
    "深度学习 deep learning 🤖 transformers 注意力机制",
] * 20


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return train_tokenizer("bpe", texts=CORPUS, vocab_size=400, show_progress=False)


@pytest.fixture(scope="module")
def char() -> Tokenizer:
    return train_tokenizer("char", texts=CORPUS, vocab_size=1000, min_frequency=1,
                           show_progress=False)


def test_bpe_specials_and_roles(bpe):
    assert SPECIAL_ROLES == ("bos", "eos", "pad", "unk", "mask")
    assert [bpe.bos_id, bpe.eos_id, bpe.pad_id, bpe.unk_id, bpe.mask_id] == [0, 1, 2, 3, 4]
    assert bpe.id_to_token(0) == "<|bos|>" and bpe.token_to_id("<|mask|>") == 4
    assert bpe.special_ids == {0, 1, 2, 3, 4}
    assert bpe.kind == "bpe" and bpe.vocab_size == 400 and len(bpe) == 400
    ids = bpe.encode("你好 world")
    assert bpe.bos_id not in ids and bpe.eos_id not in ids  # never adds special tokens
    assert bpe.encode_batch(["你好", "world"]) == [bpe.encode("你好"), bpe.encode("world")]
    assert bpe.token_to_id("no-such-token") is None and bpe.id_to_token(10**6) is None


def test_bpe_special_strings_in_text_are_text(bpe):
    s = "a<|eos|>b"
    assert bpe.eos_id not in bpe.encode(s)
    assert bpe.decode(bpe.encode(s)) == s
    assert bpe.encode(s, allow_special=True) == bpe.encode("a") + [bpe.eos_id] + bpe.encode("b")
    ids = [bpe.bos_id] + bpe.encode("x") + [bpe.eos_id]
    assert bpe.decode(ids) == "x"
    assert bpe.decode(ids, skip_special_tokens=False) == "<|bos|>x<|eos|>"


_ALPHABET = st.one_of(
    st.characters(blacklist_categories=["Cs"]),                  # any code point
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),   # CJK ideographs
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
    st.characters(min_codepoint=0x0300, max_codepoint=0x036F),   # combining marks
    st.sampled_from([" ", "\t", "\n", "\r", "\u3000", "\u200d", "\ufe0f", "\x00", "\u2028"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=_ALPHABET, max_size=80))
def test_bpe_round_trips_any_text(bpe, s):
    ids = bpe.encode(s)
    assert bpe.unk_id not in ids
    assert bpe.decode(ids) == s


def test_bpe_round_trip_batch(bpe):
    texts = ["", " leading", "trailing ", "  多  空格  ", "\n\n", "é" * 50, "🤖" * 7]
    assert [bpe.decode(x) for x in bpe.encode_batch(texts)] == texts


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_char_round_trips_in_vocab_text(char, data):
    vocab = sorted(set("".join(CORPUS)))
    s = data.draw(st.text(alphabet=st.sampled_from(vocab), max_size=60))
    ids = char.encode(s)
    assert len(ids) == len(s)
    assert char.decode(ids) == s


def test_char_unknown_and_cap(char):
    assert char.encode("机龘") == [char.token_to_id("机"), char.unk_id]
    assert char.decode(char.encode("机龘")) == "机"
    capped = train_tokenizer("char", texts=["aaaa bbb cc d"], vocab_size=8, min_frequency=1,
                             show_progress=False)
    assert capped.vocab_size == 8  # 5 specials + the 3 most frequent characters
    assert [capped.id_to_token(i) for i in range(5, 8)] == ["a", " ", "b"]
    assert capped.encode("d") == [capped.unk_id]


def test_wordpiece_bert_style():
    tok = train_tokenizer("wordpiece", texts=CORPUS, vocab_size=300, min_frequency=1,
                          show_progress=False)
    assert tok.kind == "wordpiece"
    assert tok.pad_id == 0 and tok.unk_id == 1 and tok.mask_id == 4
    assert tok.id_to_token(tok.bos_id) == "[CLS]" and tok.id_to_token(tok.eos_id) == "[SEP]"
    ids = tok.encode("机器学习 The quick fox")
    assert [tok.id_to_token(i) for i in ids[:4]] == ["机", "器", "学", "习"]  # CJK split
    assert tok.decode(ids) == "机器学习 The quick fox"  # case kept, no spaces in Chinese


def test_extra_special_tokens_and_vocab_errors():
    tok = train_tokenizer("bpe", texts=CORPUS, vocab_size=300,
                          special_tokens=["<|user|>", "<|bos|>"], show_progress=False)
    assert tok.token_to_id("<|user|>") == 5 and 5 in tok.special_ids
    with pytest.raises(ConfigError) as e:
        train_tokenizer("bpe", texts=CORPUS, vocab_size=3)
    assert str(e.value) == ("tokenizer.vocab_size=3 is too small: the 5 special tokens and "
                            "256 byte symbols need at least 261")
    with pytest.raises(ConfigError, match="need at least 6"):
        train_tokenizer("char", texts=CORPUS, vocab_size=5)
    with pytest.raises(ConfigError, match="kind='unigram'"):
        train_tokenizer("unigram", texts=CORPUS)
    with pytest.raises(ConfigError, match="exactly one"):
        train_tokenizer("bpe")
    with pytest.raises(DataError, match="no text"):
        train_tokenizer("bpe", texts=["", ""], vocab_size=300, show_progress=False)


def test_train_from_files(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(CORPUS), encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "额外的 jsonl 文本"}) + "\n",
                                      encoding="utf-8")
    tok = train_tokenizer("char", files=[tmp_path / "a.txt", tmp_path / "b.jsonl"],
                          vocab_size=2000, min_frequency=1, show_progress=False)
    assert tok.token_to_id("额") is not None
    with pytest.raises(DataError, match="input not found"):
        train_tokenizer("bpe", files=[tmp_path / "missing.txt"])


def test_save_and_load(bpe, tmp_path):
    bpe.save(tmp_path / "tok")
    cfg = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["bos_token"] == "<|bos|>" and cfg["eos_token"] == "<|eos|>"
    assert cfg["mask_token"] == "<|mask|>" and cfg["lmforge_kind"] == "bpe"
    for path in (tmp_path / "tok", tmp_path / "tok" / "tokenizer.json"):
        tok = Tokenizer.load(path)
        assert tok.kind == "bpe" and tok.vocab_size == bpe.vocab_size
        assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)
        assert tok.encode("你好, world 😀") == bpe.encode("你好, world 😀")
    import pickle

    clone = pickle.loads(pickle.dumps(bpe))
    assert clone.encode("a<|eos|>") == bpe.encode("a<|eos|>") and clone.eos_id == 1


def test_load_hugging_face_folder(tmp_path):
    from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer

    # a RoBERTa-like folder: tokenizer.json + tokenizer_config.json naming the roles
    hf = ByteLevelBPETokenizer()
    hf.train_from_iterator(CORPUS, vocab_size=320, min_frequency=1, show_progress=False,
                           special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder = tmp_path / "roberta"
    folder.mkdir()
    hf.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "pad_token": "<pad>", "unk_token": "<unk>",
        "eos_token": {"content": "</s>", "lstrip": False, "special": True},
        "model_max_length": 512}), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({"mask_token": "<mask>"}),
                                                    encoding="utf-8")
    tok = Tokenizer.load(folder)
    assert tok.kind == "hf"
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.decode(tok.encode("你好 world")) == "你好 world"
    tok.save(tmp_path / "copy")  # keeps the HF fields
    cfg = json.loads((tmp_path / "copy" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["model_max_length"] == 512 and cfg["eos_token"] == "</s>"

    # a BERT-like folder: roles from cls/sep; and one with only vocab.txt
    bert = BertWordPieceTokenizer(lowercase=True)
    bert.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, show_progress=False)
    b = tmp_path / "bert"
    b.mkdir()
    bert.save(str(b / "tokenizer.json"))
    (b / "tokenizer_config.json").write_text(json.dumps({
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
        "mask_token": "[MASK]", "do_lower_case": True}), encoding="utf-8")
    tok = Tokenizer.load(b)
    assert tok.id_to_token(tok.bos_id) == "[CLS]" and tok.id_to_token(tok.eos_id) == "[SEP]"
    assert tok.encode("THE FOX") == tok.encode("the fox")
    v = tmp_path / "bert-vocab"
    v.mkdir()
    bert.save_model(str(v))  # writes vocab.txt only
    tok2 = Tokenizer.load(v)
    assert tok2.encode("the quick fox") == tok.encode("the quick fox")
    assert tok2.id_to_token(tok2.bos_id) == "[CLS]"


def test_load_errors(tmp_path):
    with pytest.raises(DataError) as e:
        Tokenizer.load(tmp_path / "nope")
    assert "\n" not in str(e.value) and "tokenizer not found" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no tokenizer.json"):
        Tokenizer.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text('{"model": ', encoding="utf-8")
    with pytest.raises(CheckpointError) as e:
        Tokenizer.load(bad)
    assert "\n" not in str(e.value) and "not a valid tokenizer.json" in str(e.value)
    (bad / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nope"}}',
                                        encoding="utf-8")
    with pytest.raises(CheckpointError):
        Tokenizer.load(bad / "tokenizer.json")
    (bad / "tokenizer.json").unlink()
    (bad / "tokenizer_config.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(CheckpointError, match="tokenizer_config.json is corrupt"):
        Tokenizer.load(bad)


def test_loading_a_checkpoint_tokenizer_drops_its_padding_and_truncation(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    hf = HFTokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3},
                                      unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.enable_padding(length=8, pad_id=0, pad_token="[PAD]")
    hf.enable_truncation(max_length=8)
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = Tokenizer.load(tmp_path)
    assert tok.encode("hello world") == [2, 3]
    assert len(tok.encode("hello " * 20)) == 20


def test_wordpiece_training_is_the_same_in_every_process(tmp_path):
    """The Rust trainer's ``##`` tokens used to get ids in hash-map order, so two processes
    trained different vocabularies from the same text (huggingface/tokenizers#1794)."""
    import subprocess
    import sys

    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"the quick brown fox jumps over the lazy dog {i} 你好世界\n"
                              f"tokenizers learn subwords from words like training {i}\n"
                              for i in range(40)) * 2, encoding="utf-8")
    script = ("import sys, hashlib\nfrom lmforge.tokenize import train_tokenizer\n"
              f"tok = train_tokenizer('wordpiece', files=[{str(corpus)!r}], vocab_size=120, "
              "min_frequency=2, show_progress=False)\n"
              "print(hashlib.sha256(tok.hf.to_str().encode()).hexdigest())\n"
              "print(sorted(a.content for a in tok.hf.get_added_tokens_decoder().values()))\n")
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout for _ in range(3)}
    assert len(outs) == 1, outs
    added = next(iter(outs)).splitlines()[1]
    assert "##" not in added  # the declared continuations are ordinary vocabulary entries
