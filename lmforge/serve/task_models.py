"""Fine-tuned task runs as served models: each serves the route of its task.

``lmforge serve sent=runs/classify-sentiment mt=runs/translate-transformer-en-zh`` serves
task runs beside language models and encoders. :func:`load_task` tells a task run from
the rest by what the task loaders read, without loading anything else:

- a run (or checkpoint) whose ``config.yaml`` names ``task: translate``, ``summarize`` or
  ``answer`` is an encoder-decoder (:func:`lmforge.tasks.seq2seq_predictor.load_seq2seq`);
- a model folder, or a run's best checkpoint, whose ``config.json`` says ``arch: task``
  (:func:`lmforge.tasks.is_task_model`), or a scikit-learn baseline run (``classical.json``),
  is an encoder with a task head (:func:`lmforge.tasks.load_task_model`).

The served model's ``task`` names its route (:data:`TASK_OF`): ``classify``, ``ner``,
``relations``, ``qa`` (extractive and generative alike), ``translate``, ``summarize``.
"""

from __future__ import annotations

from pathlib import Path

from .models import MINILM, ModelSpec, ServedModel

#: the task of a predictor (``TaskPredictor.task`` or a seq2seq recipe's ``task``) -> the
#: served task, which names its route ``/v1/<task>``
TASK_OF = {"classify": "classify", "tag": "ner", "relate": "relations", "extract": "qa",
           "translate": "translate", "summarize": "summarize", "answer": "qa"}


def _is_classical(path: Path) -> bool:
    """Is ``path`` a scikit-learn baseline run (what :func:`load_task_model` reads)?"""
    from ..tasks.predictor import CLASSICAL_DIR

    return any((folder / "classical.json").is_file() for folder in (path, path / CLASSICAL_DIR))


def load_task(spec: ModelSpec) -> ServedModel | None:
    """``spec``'s task run as a served model with its predictor (module docstring); None
    when ``spec.path`` is not a task run, so the caller loads it as a language model or an
    encoder."""
    from ..tasks import is_task_model, load_task_model
    from ..tasks.seq2seq_predictor import load_seq2seq, seq2seq_task_of

    if spec.path == MINILM:
        return None
    seq2seq = seq2seq_task_of(spec.path)
    if seq2seq is not None:
        predictor = load_seq2seq(spec.path)
        task = seq2seq
    elif is_task_model(spec.path) or _is_classical(Path(spec.path)):
        predictor = load_task_model(spec.path)
        task = predictor.task
    else:
        return None
    return ServedModel(spec.name, spec.path, task=TASK_OF[task], predictor=predictor,
                       tokenizer=getattr(predictor, "tokenizer", None))
