r"""Beam search for decoder-only models (GPT), with forced words.

Written by hand (generation is what lmforge teaches).

**Layout.** A batch of B prompts is left-padded and run once (prefill, B rows), then
every row is copied K times (``cache.reorder``): rows ``b*K .. b*K + K-1`` of one KV
cache are the K beams of prompt ``b``. Each step feeds one token per row and reorders
the cache to the parents of the new beams; a prompt whose search is done leaves the
cache, so it costs nothing afterwards.

**Scores and rules** are those of :mod:`lmforge.models.beam` (the translation models'):
``score(Y) = log P(Y | prompt) / ((5 + |Y|) / 6) ** alpha`` (GNMT; ``|Y|`` counts ``eos``),
the ``2K`` best one-token extensions of a prompt's beams are ranked, an ``eos`` among the
first ``K`` ends a hypothesis, the other extensions refill the ``K`` live beams, a prompt
is done when ``K`` hypotheses have ended or no live beam is left, and at
``max_new_tokens`` the live beams count, unfinished. Before ranking, each row's
log-probabilities :math:`\log\mathrm{softmax}(z)` get the repetition penalty and the bans
of :class:`~lmforge.generate.constraints.TokenBans` (bad words, ``min_new_tokens``, no
repeated n-gram over prompt + new tokens), as Hugging Face applies its processors to
beam scores, so every hypothesis obeys them. Without forced words this is exactly
:func:`lmforge.models.beam.beam_search` (with the prompt in the n-gram history), and
``K = 1`` is greedy search. Beam search is deterministic: ``temperature``, ``top_k``,
``top_p`` and ``seed`` do not apply.

**Ends other than eos.** ``ends`` gives each prompt a rule over a hypothesis's new
tokens (the candidate extension included): ``True`` ends the hypothesis there as ``eos``
would (the token stays in it; :class:`lmforge.code.metrics.BodyEnd` ends a function body at
the first line indented no deeper than its ``def``, as a stop sequence ends HumanEval
samples), ``None`` drops the extension, ``False`` keeps it live. Only the ``2K``
ranked extensions are asked.

**Forced words** (constrained beam search with dynamic beam allocation, Post & Vilar
2018; what Hugging Face's ``ConstrainedBeamSearchScorer`` did). Each hypothesis carries a
:class:`~lmforge.generate.constraints.ForceState`: the constraints it has met and its
progress inside the word sequences it is partway through.

1. ``eos`` is banned until every constraint is met.
2. The candidates of a prompt are the ``2K`` best extensions plus, for every live beam,
   its best next token and its best token other than ``eos`` (so no beam is lost only
   because others score better, nor because its best move was to end where ending
   does not rank) and each token that starts or continues a sequence of an unmet
   constraint (:meth:`~lmforge.generate.constraints.ForcedWords.next_tokens`), however
   unlikely.
3. The candidates go into **banks** by (constraints met, whether partway through a
   forced word) after the step and are dealt round-robin from the highest bank: the
   first of each bank, then the second of each, and so on; a bank of partial words
   puts the hypothesis furthest into its word first (so a word, once begun, is
   finished however unlikely its tokens), the others the best score first. A bank
   therefore keeps a share of the beam however badly its hypotheses score, slots a
   bank cannot fill go to the others, and with ``K >= 3`` the best unconstrained
   hypothesis always survives, so a forced word can still come where the model would
   put it ("... The battery was ...") rather than as early as possible. (One bank per
   depth, as in Post & Vilar, would give a word with many spellings more banks than
   there are beams.)
4. In that order, ``eos`` extensions among the first ``K`` end hypotheses and the other
   extensions refill the ``K`` live beams (the rule above, with the dealt order in place
   of the score order). ``eos`` is only allowed once every constraint is met, so such
   a hypothesis sits in the highest bank and can end although unconstrained beams
   score better.
5. A prompt is done when ``K`` hypotheses have ended and no live beam's score now is
   better than the ``K``-th best of them (Hugging Face's stopping rule): an early
   placement of a forced word ends soon but badly, and a later, natural one ("... The
   battery was ...") may still beat it.
6. The result is the hypothesis first by (constraints met, score) among the ended ones
   and, at ``max_new_tokens``, the live ones: one that meets every constraint whenever the
   search found any. If none does by ``max_new_tokens``, the one with the most
   constraints met is returned, unfinished, with ``missing > 0`` (its
   :class:`~lmforge.generate.Completion` has ``finish_reason="length"`` and lacks a
   forced word).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..models.beam import Candidate, Hypothesis, length_penalty, split_candidates
from .config import GenerationConfig
from .constraints import ForcedWords, ForceState, TokenBans
from .decode import SequenceBatch, check_prompts, length_sorted_batches
from .sampling import constrain_logits

NEG_INF = float("-inf")

BeamEnd = Callable[[list[int]], "bool | None"]  # new tokens -> ends / dropped (None) / live


@dataclass
class BeamHypothesis(Hypothesis):
    """A GPT beam-search result: ``tokens`` are the new tokens (ending with ``eos`` when
    ``finished``); ``missing`` counts the forced-word constraints they do not meet."""

    finished: bool = False
    missing: int = 0


def deal_by_bank(candidates: Sequence[Candidate],
                 banks_of: Sequence[tuple[int, int, int]]) -> list[Candidate]:
    """``candidates`` (best first), with ``banks_of`` their ``(constraints met, partway
    through a word, tokens into it)``, dealt round-robin over the banks (the first two
    numbers), highest bank first: the first of every bank, then the second of every
    bank, ...; within a bank, the furthest into a word first, then the best."""
    banks: dict[tuple[int, int], list[tuple[int, int, Candidate]]] = {}
    for rank, (cand, (met, partial, depth)) in enumerate(zip(candidates, banks_of,
                                                              strict=True)):
        banks.setdefault((met, partial), []).append((-depth, rank, cand))
    order = [[c for *_, c in sorted(banks[b])] for b in sorted(banks, reverse=True)]
    return [group[i] for i in range(max(map(len, order), default=0)) for group in order
            if i < len(group)]


class _Search:
    """The beam search of one batch of prompts (rules in the module docstring)."""

    def __init__(self, model: torch.nn.Module, prompts: list[list[int]],
                 config: GenerationConfig, eos_id: int | None, pad_id: int,
                 bans: TokenBans, forced: ForcedWords, ends: Sequence[BeamEnd] | None = None):
        self.config, self.eos_id, self.pad_id, self.ends = config, eos_id, pad_id, ends
        self.bans, self.forced, self.K = bans, forced, config.num_beams
        self.seqs = SequenceBatch(model, prompts, config, pad_id,
                                  histories=bans.needs_history)
        self.ended: list[list[BeamHypothesis]] = [[] for _ in prompts]
        # the live beams, row by row: prompt group, then beam
        self.sources = list(range(len(prompts)))  # the prompt of each group of K rows
        self.tokens: list[list[int]] = [[] for _ in range(len(prompts) * self.K)]
        self.states = [ForceState()] * len(self.tokens)
        self.scores = [0.0 if j == 0 else NEG_INF for _ in prompts for j in range(self.K)]

    def _hypothesis(self, tokens: list[int], log_prob: float, state: ForceState,
                    finished: bool) -> BeamHypothesis:
        return BeamHypothesis(tokens, log_prob / length_penalty(len(tokens), self.config.alpha),
                              log_prob, finished, self.forced.count - self.forced.n_met(state))

    def _log_probs(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Each row's constrained log-probabilities (N, V)."""
        logp = torch.log_softmax(logits, dim=-1)
        banned = self.bans.banned(self.seqs.histories, step, len(logp)) \
            if self.bans.active else [[] for _ in range(len(logp))]
        if self.forced.count and self.eos_id is not None:
            banned = [ban + [self.eos_id] if not self.forced.done(state) else ban
                      for ban, state in zip(banned, self.states, strict=True)]
        return constrain_logits(logp, self.config, self.seqs.seen, banned)

    def _beam_candidates(self, logp: torch.Tensor) -> list[list[Candidate]]:
        """Per group, every live beam extended by its best token, its best token other
        than ``eos``, and each token that starts or continues an unmet constraint."""
        best = logp.argmax(dim=-1).tolist()
        if self.eos_id is not None:  # the best token that continues the beam, too
            cont = logp.clone()
            cont[:, self.eos_id] = NEG_INF
            cont_best = cont.argmax(dim=-1).tolist()
        else:
            cont_best = best
        pairs = [(row, tok) for row, (state, s) in enumerate(zip(self.states, self.scores,
                                                                 strict=True))
                 if s != NEG_INF
                 for tok in sorted(self.forced.next_tokens(state) | {best[row], cont_best[row]})]
        out: list[list[Candidate]] = [[] for _ in self.sources]
        if pairs:
            rows, toks = zip(*pairs, strict=True)
            index = torch.tensor(rows, device=logp.device), torch.tensor(toks, device=logp.device)
            for (row, tok), lp in zip(pairs, logp[index].tolist(), strict=True):
                out[row // self.K].append((self.scores[row] + lp, row, tok))
        return out

    def _done(self, b: int, live: list[Candidate]) -> bool:
        """Whether prompt ``b``'s search is over: ``K`` hypotheses have ended and, with
        forced words, no live beam scores better now than the ``K``-th best of them."""
        if len(self.ended[b]) < self.K:
            return False
        if not self.forced.count:
            return True
        kth = sorted((h.score for h in self.ended[b]), reverse=True)[self.K - 1]
        length = len(self.tokens[live[0][1]]) + 1
        return max(c[0] for c in live) / length_penalty(length, self.config.alpha) <= kth

    def _step(self, logits: torch.Tensor, step: int) -> list[int]:
        """Extend every group by one token; return the parent row of each new live row
        (the groups still searching, K rows each)."""
        K, logp = self.K, self._log_probs(logits, step)
        V = logp.shape[-1]
        scores = torch.tensor(self.scores, device=logp.device)
        cand = (scores[:, None] + logp).view(len(self.sources), K * V)
        top_s, top_i = (x.tolist() for x in cand.topk(min(2 * K, K * V), dim=1))
        extra = self._beam_candidates(logp) if self.forced.count else None
        parents, sources, tokens, states, new_scores = [], [], [], [], []
        for g, b in enumerate(self.sources):
            ranked = [(s, g * K + i // V, i % V) for s, i in zip(top_s[g], top_i[g],
                                                                   strict=True)]
            nxt: dict[tuple[int, int], ForceState] = {}
            if extra is not None:
                have = {(row, tok) for _, row, tok in ranked}
                ranked += [c for c in extra[g] if (c[1], c[2]) not in have]
                ranked = sorted((c for c in ranked if c[0] != NEG_INF),
                                key=lambda c: -c[0])  # stable: ties keep top-k's order
                nxt = {(row, tok): self.forced.advance(self.states[row], tok)
                       for _, row, tok in ranked}
                ranked = deal_by_bank(ranked, [self.forced.bank(nxt[row, tok])
                                               for _, row, tok in ranked])
            ending: set[tuple[int, int]] = set()
            if self.ends is not None:
                verdict = {(row, tok): self.ends[b](self.tokens[row] + [tok])
                           for _, row, tok in ranked}
                ranked = [c for c in ranked if verdict[c[1], c[2]] is not None]
                ending = {key for key, v in verdict.items() if v}
            ended, live = split_candidates(ranked, K, self.eos_id, ending)
            self.ended[b] += [self._hypothesis(self.tokens[row] + [tok], s,
                                               self.states[row], True)
                              for s, row, tok in ended]
            if not live or self._done(b, live):
                continue
            live = live[:K] + [(NEG_INF, g * K, self.pad_id)] * (K - len(live))
            sources.append(b)
            for s, row, tok in live:
                parents.append(row)
                tokens.append(self.tokens[row] + [tok])
                states.append(nxt.get((row, tok), self.states[row]))
                new_scores.append(s)
        self.sources, self.tokens, self.states = sources, tokens, states
        self.scores = new_scores
        return parents

    @torch.inference_mode()
    def run(self) -> list[BeamHypothesis]:
        n_new = self.config.max_new_tokens
        logits = self.seqs.prefill()
        first = [b for b in self.sources for _ in range(self.K)]
        self.seqs.select(first)
        logits = logits[torch.tensor(first, device=logits.device)]
        for step in range(n_new):
            parents = self._step(logits, step)
            if not self.sources or step == n_new - 1:
                break
            self.seqs.select(parents)
            new = torch.tensor([t[-1] for t in self.tokens], device=logits.device)
            logits = self.seqs.append(new)
        for row, (tokens, s) in enumerate(zip(self.tokens, self.scores, strict=True)):
            if s != NEG_INF:  # max_new_tokens reached: the live beams count, unfinished
                hyp = self._hypothesis(tokens, s, self.states[row], False)
                self.ended[self.sources[row // self.K]].append(hyp)
        none = BeamHypothesis([], NEG_INF, NEG_INF, False, self.forced.count)  # all banned
        return [max(hyps, key=lambda h: (-h.missing, h.score), default=none)
                for hyps in self.ended]


def beam_search_ids(model: torch.nn.Module, prompts_ids: Sequence[Sequence[int]],
                    config: GenerationConfig, eos_id: int | None = None, pad_id: int = 0,
                    *, bans: TokenBans | None = None,
                    forced: ForcedWords | None = None,
                    ends: Sequence[BeamEnd] | None = None) -> list[BeamHypothesis]:
    """The best hypothesis for each prompt (rules in the module docstring).

    ``config.num_beams`` beams per prompt, ``config.batch_size`` prompts per forward
    pass (grouped by length). ``bans`` and ``forced`` default to those of ``config``
    that need no tokenizer (:func:`~lmforge.generate.constraints.build_constraints`
    spells ``bad_words`` and ``force_words``). ``ends``: one end rule per prompt.
    """
    prompts = [[int(t) for t in p] for p in prompts_ids]
    check_prompts(prompts, config.max_new_tokens, model.config.max_seq_len,
                  model.config.vocab_size)
    bans = bans if bans is not None else TokenBans.from_config(config, eos_id)
    forced = forced if forced is not None else ForcedWords.from_config(config, None)
    if config.max_new_tokens == 0:
        return [BeamHypothesis([], 0.0, 0.0, False, forced.count) for _ in prompts]
    out: list[BeamHypothesis] = [BeamHypothesis([], 0.0, 0.0) for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        for batch in length_sorted_batches([len(p) for p in prompts], config.batch_size):
            search = _Search(model, [prompts[i] for i in batch], config, eos_id, pad_id,
                             bans, forced, None if ends is None else [ends[i] for i in batch])
            for i, hyp in zip(batch, search.run(), strict=True):
                out[i] = hyp
    finally:
        model.train(was_training)
    return out
