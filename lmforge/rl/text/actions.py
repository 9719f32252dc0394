r"""How the text learners read a model as a policy: the model adapter and the action set.

**Model adapter.** A state is the decoder's prefix ``tokens[:, :t + 1]`` (``[bos]`` plus the
actions so far) and, for an encoder-decoder, the source sentence ``src``. One causal forward
pass gives the logits of every state of a batch at once (:func:`state_logits`): ``model(tokens)``
for a GPT, the teacher-forced ``model(src, tokens)`` for the translation Transformer / RNN
encoder-decoder. :class:`Stepper` gives the same logits one action at a time with the model's
KV cache (GPT) or decoder state (encoder-decoder), for sampling.

**Action set.** By default every token is an action. With ``top_k`` the action set at ``s`` is
``A_k(s)``, the ``k`` most likely tokens of the reference ``π_ref(·|s)``, and every
distribution is taken on it, renormalised:

    π_k(a|s) = exp z(s,a) / Σ_{b∈A_k(s)} exp z(s,b)      for a ∈ A_k(s), 0 elsewhere,

for the policy's logits ``z_φ`` and the reference's ``z_ref`` alike (so ``π_ref,k`` is
``π_ref`` renormalised on ``A_k(s)``). :func:`restrict` does it on the logits: outside
``A_k(s)`` they become :data:`MASKED` (``−10⁴``: ``exp`` underflows to exactly 0 in fp32,
and unlike ``−∞`` the log-ratios there stay finite, so ``0 · (log π − log π_ref) = 0`` in
the KL and no NaN reaches a gradient). The soft values, KL and log-probabilities of the
learners are then the restricted ones without any other change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ConfigError

MASKED = -1.0e4


def is_translation_model(model: nn.Module) -> bool:
    """True for the encoder-decoders the text RL drives (Transformer, RNN Seq2Seq)."""
    from ...models.rnn import Seq2Seq
    from ...models.transformer import Transformer

    return isinstance(model, (Transformer, Seq2Seq))


def action_vocab(model: nn.Module) -> int:
    """The number of tokens the decoder can emit."""
    cfg = model.config
    for name in ("vocab_size", "tgt_vocab_size", "tgt_vocab"):
        if getattr(cfg, name, None):
            return int(getattr(cfg, name))
    raise ConfigError(f"{type(model).__name__}: no output vocabulary size in its config")


def state_logits(model: nn.Module, tokens: Tensor, src: Tensor | None = None) -> Tensor:
    """(B, L, V) fp32 logits of ``π(·|s_t)`` for the ``L`` prefixes ``tokens[:, :t + 1]``
    (B, L), given the source ids ``src`` (B, S) (right-padded) of an encoder-decoder."""
    if src is None:
        return model(tokens).float()
    from ...models.rnn import Seq2Seq

    if isinstance(model, Seq2Seq):
        return model(src, None, tokens).float()  # lengths from src != pad
    return model(src, tokens, src != model.config.pad_id).float()


def topk_keep(ref_logits: Tensor, k: int | None) -> Tensor | None:
    """(…, V) bool, True on ``A_k(s)`` (the ``k`` largest reference logits); None for the
    whole vocabulary."""
    if k is None or k >= ref_logits.shape[-1]:
        return None
    idx = ref_logits.topk(k, dim=-1).indices
    return torch.zeros_like(ref_logits, dtype=torch.bool).scatter_(-1, idx, True)


def restrict(logits: Tensor, keep: Tensor | None) -> Tensor:
    """``logits`` with :data:`MASKED` outside ``keep`` (unchanged when ``keep`` is None)."""
    return logits if keep is None else logits.masked_fill(~keep, MASKED)


class Stepper:
    """Next-token logits (N, V) of ``N`` growing prefixes: :meth:`start` for ``[bos]``,
    then :meth:`advance` with the tokens just appended (the GPT's KV cache, the
    Transformer's decoder cache, the RNN's decoder state)."""

    def __init__(self, model: nn.Module, n: int, max_new_tokens: int, bos_id: int,
                 src: Tensor | None = None):
        self.model, self.n, self.bos_id = model, n, bos_id
        self._step = self._make(model, n, max_new_tokens, bos_id, src)

    @staticmethod
    def _make(model: nn.Module, n: int, max_new_tokens: int, bos_id: int,
              src: Tensor | None) -> Any:
        if src is None:
            from ...generate import GenerationConfig
            from ...generate.decode import SequenceBatch

            seqs = SequenceBatch(model, [[bos_id]] * n,
                                 GenerationConfig(max_new_tokens=max_new_tokens))
            return lambda y: seqs.prefill() if y is None else seqs.append(y)
        from ...models.rnn import Seq2Seq

        if isinstance(model, Seq2Seq):
            step, _ = model._stepper(model.encode(src))
            return lambda y: step(torch.full((n,), bos_id) if y is None else y)
        cache = model._start(src, src != model.config.pad_id, max_new_tokens + 1)
        return lambda y: model.decode_step(
            (torch.full((n,), bos_id) if y is None else y)[:, None], cache)[:, -1]

    @torch.inference_mode()
    def start(self) -> Tensor:
        return self._step(None).float()

    @torch.inference_mode()
    def advance(self, tokens: Tensor) -> Tensor:
        return self._step(tokens).float()
