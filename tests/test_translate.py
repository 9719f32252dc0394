"""``lmforge.generate.seq2seq.translate`` and ``lmforge generate`` on encoder-decoders.

The reference is each model's own ``greedy_decode`` / ``beam_search`` on the same ids:
``translate`` must add only the text round trip (encoding, padding, stripping, decoding).
"""

from __future__ import annotations

import pytest
import torch
from fakes import run_cli

from lmforge.errors import LmforgeError
from lmforge.generate.seq2seq import translate
from lmforge.models.rnn import Seq2Seq, Seq2SeqConfig, collate_pairs, strip_ids
from lmforge.models.transformer import Transformer, TransformerConfig
from lmforge.tokenize import train_tokenizer

TEXTS = ["the cat sat on the mat", "猫坐在垫子上", "a dog ran"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("bpe", texts=TEXTS * 10, vocab_size=300, show_progress=False)


def models(tok):
    torch.manual_seed(0)
    ids = dict(pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    V = tok.vocab_size
    return [Transformer(TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, d_model=32,
                                          n_head=2, n_encoder_layers=1, n_decoder_layers=1,
                                          d_ff=64, max_seq_len=64, **ids)).eval(),
            Seq2Seq(Seq2SeqConfig(src_vocab=V, tgt_vocab=V, d_embed=16, d_hidden=16,
                                  **ids)).eval()]


@pytest.mark.parametrize("which", [0, 1], ids=["transformer", "seq2seq_rnn"])
def test_translate_equals_the_models_own_search(tok, which):
    model = models(tok)[which]
    cfg = model.config
    b = collate_pairs(tok.encode_batch(TEXTS), pad_id=cfg.pad_id, bos_id=cfg.bos_id,
                      eos_id=cfg.eos_id)
    pad = b["src_lengths"] if which else b["src"] != cfg.pad_id
    with torch.no_grad():
        greedy = model.greedy_decode(b["src"], pad, max_len=13)
        beam = model.beam_search(b["src"], pad, beam_size=3, max_len=13)
    want = [tok.decode(strip_ids(r, cfg.eos_id, cfg.pad_id)) for r in greedy.tolist()]
    assert translate(model, tok, TEXTS, max_new_tokens=12, batch_size=2) == want
    want_beam = [tok.decode(strip_ids(h[0].tokens, cfg.eos_id, cfg.pad_id)) for h in beam]
    assert translate(model, tok, TEXTS, beams=3, max_new_tokens=12) == want_beam


def test_translate_errors(tok):
    model = models(tok)[0]
    with pytest.raises(LmforgeError, match="at least one token"):
        translate(model, tok, [""])
    with pytest.raises(LmforgeError, match="beams"):
        translate(model, tok, TEXTS, beams=0)
    with pytest.raises(LmforgeError, match="not an encoder-decoder"):
        translate(torch.nn.Linear(2, 2), tok, TEXTS)


def test_cli_generate_translates(tok, tmp_path, capsys):
    model = models(tok)[1]
    model.save_pretrained(tmp_path / "m")
    tok.save(tmp_path / "m")
    code, stdout, _ = run_cli(["generate", str(tmp_path / "m"), "--prompt", TEXTS[0],
                               "--prompt", TEXTS[1], "--max-new-tokens", "12"], capsys)
    assert code == 0
    out = stdout.splitlines()
    assert out == translate(model, tok, TEXTS[:2], max_new_tokens=12)
