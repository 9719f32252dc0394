"""Fit the learned name recognizer (:mod:`.name_model`) and write ``name_model.json``.

    python -m lmforge.privacy.pii.name_training [--docs 600] [--seed 100] [--out FILE]

**Training documents.** The PII documents of the ``dev``, ``heldout`` and ``heldout2``
templates (:func:`.evalset.render_pii_set`, seeds the benchmark does not use) and the
world's NER sentences (:mod:`lmforge.corpora.tasks.ner`), in Chinese and English, with
every gold person name replaced by one drawn from the training names:

- Chinese: built from jieba's dictionary words tagged ``nr`` that are a surname and one
  or two characters, the quarter held out of the character statistics
  (``crc32(word) % 4 == 0``): :func:`zh_name_drawer`;
- English: the first and last names of :data:`.name_model.EN_NAME_LOCALES` (never
  Faker's ``en_GB`` or ``en_IN``, the evaluation's sources), a one-word name kept one
  word.

So neither the statistics nor the training names contain the evaluation's name lists,
and the ``heldout3`` templates are never seen.

**Fit.** Every candidate is an example, positive when it is exactly a gold name's span;
:func:`fit` trains a 16-unit tanh network on them (seeded, float64, so the fit is
deterministic on one machine).
"""

from __future__ import annotations

import argparse
import importlib
import random
import re
from pathlib import Path

from ...io import atomic_write_json
from .evalset import render_pii_set
from .name_model import (
    EN_FEATURES,
    EN_NAME_LOCALES,
    MODEL_FILE,
    ZH_FEATURES,
    dictionary_names,
    en_candidates,
    en_features,
    held_out_name,
    zh_candidates,
    zh_features,
)
from .names import ZH_COMPOUND, jieba_words

LAMBDA = 1e-4
HIDDEN = 16
STEPS = 1500


def zh_training_names() -> list[str]:
    return [w for w, _, n in dictionary_names() if n and held_out_name(w)]


def zh_name_drawer(rng: random.Random):
    """A function drawing a training name: one of :func:`zh_training_names` (a fifth of
    the time), else a surname and one or two given characters drawn independently from
    those names' own (jieba's dictionary does not hold most people's names, and a name it
    holds is cut as one word: training only on those would teach the model to trust
    jieba's segmentation); one or two given characters with equal probability."""
    from .name_model import _jieba_freq

    known = zh_training_names()
    surnames = [w[:2] if w[:2] in ZH_COMPOUND else w[:1] for w in known]
    given = [c for w, s in zip(known, surnames, strict=True) for c in w[len(s):]]
    freq = _jieba_freq()

    def draw(_old: str) -> str:
        if rng.random() < 0.2:
            return rng.choice(known)
        while True:
            name = rng.choice(surnames) + "".join(rng.choices(given, k=rng.choice((1, 2))))
            if name not in freq:
                return name

    return draw


def en_training_names() -> tuple[list[str], list[str]]:
    first, last = set(), set()
    for loc in EN_NAME_LOCALES:
        p = importlib.import_module(f"faker.providers.person.{loc}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female"):
            first.update(getattr(p, attr, ()))
        last.update(getattr(p, "last_names", ()))
    keep = lambda names: sorted(n for n in names if re.fullmatch(r"[A-Z][a-z]+", n)  # noqa: E731
                                and held_out_name(n))
    return keep(first), keep(last)


def _swap(text: str, spans: list[tuple[int, int]], draw) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with each span replaced by ``draw(old)``, and the new spans."""
    out, new, pos = [], [], 0
    for s, e in sorted(spans):
        out.append(text[pos:s])
        start = sum(map(len, out))
        name = draw(text[s:e])
        out.append(name)
        new.append((start, start + len(name)))
        pos = e
    out.append(text[pos:])
    return "".join(out), new


def training_docs(lang: str, n: int, seed: int) -> list[tuple[str, list[tuple[int, int]]]]:
    """(text, gold name spans) of the training documents of the module docstring."""
    from ...corpora.tasks import ner

    rng = random.Random(f"names-{lang}-{seed}")
    if lang == "zh":
        draw = zh_name_drawer(rng)
    else:
        first, last = en_training_names()
        draw = lambda old: rng.choice(first) if " " not in old else \
            f"{rng.choice(first)} {rng.choice(last)}"  # noqa: E731
    docs = []
    for templates in ("dev", "heldout", "heldout2"):
        for d in render_pii_set(lang, n, seed, templates):
            docs.append(_swap(d.text, [(s.start, s.end) for s in d.spans if s.type == "PERSON"],
                              draw))
    for r in ner.render(seed, {"train": 3 * n}, (lang,)).splits["train"]:
        docs.append(_swap(r["text"], [(s["start"], s["end"]) for s in r["spans"]
                                      if s["label"] == "PER"], draw))
    return docs


def examples(lang: str, docs) -> tuple[list[list[float]], list[float]]:
    """Every candidate's features, and 1.0 where it is exactly a gold name."""
    xs, ys = [], []
    for text, gold in docs:
        gold = set(gold)
        if lang == "zh":
            words = jieba_words(text)
            for c in zh_candidates(text):
                xs.append(zh_features(text, words, c))
                ys.append(float((c[0], c[0] + c[1] + c[2]) in gold))
        else:
            for c in en_candidates(text):
                xs.append(en_features(text, c))
                ys.append(float((c[0], c[1]) in gold))
    return xs, ys


def fit(xs: list[list[float]], ys: list[float], hidden: int = HIDDEN, steps: int = STEPS,
        seed: int = 0) -> dict:
    """The network of :func:`.name_model.probabilities`, minimising the mean logistic loss
    plus ``λ/2 ‖W‖²`` (λ = 1e-4 on both weight matrices) by full-batch Adam (lr 0.02) from a
    seeded start, in float64."""
    import torch

    x = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    gen = torch.Generator().manual_seed(seed)
    w1 = (torch.randn(hidden, x.shape[1], generator=gen, dtype=torch.float64)
          / x.shape[1] ** 0.5).requires_grad_()
    b1 = torch.zeros(hidden, dtype=torch.float64, requires_grad=True)
    w2 = (torch.randn(hidden, generator=gen, dtype=torch.float64) / hidden ** 0.5).requires_grad_()
    b2 = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w1, b1, w2, b2], lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        logits = torch.tanh(z @ w1.T + b1) @ w2 + b2
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) \
            + LAMBDA / 2 * (w1.square().sum() + w2.square().sum())
        loss.backward()
        opt.step()
    return {"mean": mean.tolist(), "std": std.tolist(), "w1": w1.detach().tolist(),
            "b1": b1.detach().tolist(), "w2": w2.detach().tolist(), "b2": float(b2.detach()),
            "loss": float(loss.detach())}


def train(n: int = 600, seed: int = 100) -> dict:
    """The fitted model for both languages (see :func:`.name_model.load_model`)."""
    model = {}
    for lang, names in (("zh", ZH_FEATURES), ("en", EN_FEATURES)):
        xs, ys = examples(lang, training_docs(lang, n, seed))
        model[lang] = {"features": list(names), **fit(xs, ys), "examples": len(ys),
                       "positives": int(sum(ys))}
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=600, help="documents per template set")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--out", type=Path, default=MODEL_FILE)
    args = ap.parse_args(argv)
    model = train(args.docs, args.seed)
    atomic_write_json(args.out, model)
    for lang in ("zh", "en"):
        m = model[lang]
        print(f"{lang}: {m['examples']} candidates, {m['positives']} names, "
              f"training loss {m['loss']:.4f}")

if __name__ == "__main__":
    main()
