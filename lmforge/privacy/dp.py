r"""Differentially private training (DP-SGD, Abadi et al. 2016) through **Opacus**.

One update of DP-SGD over a training set of :math:`N` examples, with sampling rate
:math:`q`, clipping norm :math:`C` (``max_grad_norm``) and noise multiplier
:math:`\sigma`::

    B_t  = {i : u_i < q},  u_i ~ U(0, 1) i.i.d.        Poisson sampling: each example
                                                       joins the batch independently
    g_i  = grad of loss(x_i)                            per-example gradients (Opacus)
    ĝ_i  = g_i · min(1, C / ||g_i||_2)                  per-example clipping
    g    = (Σ_{i ∈ B_t} ĝ_i + N(0, σ² C² I)) / (q N)    Gaussian noise, std σ·C, divided
                                                       by the expected batch size q·N
    θ   ← AdamW(θ, g)

Adding or removing one example changes :math:`Σ ĝ_i` by at most :math:`C`, so each step
is a subsampled Gaussian mechanism; the **accountant** composes the ``steps`` of them into
one :math:`(\varepsilon, \delta)` guarantee: ``rdp`` bounds the Rényi divergence of the
subsampled Gaussian at several orders and converts it (Mironov 2017; Mironov et al.
2019), ``prv`` composes the privacy-loss random variables numerically (Gopi et al. 2021;
tighter). With ``target_epsilon``, Opacus searches the :math:`\sigma` whose guarantee after
``max_steps`` updates is that budget (``make_private_with_epsilon``); with
``noise_multiplier`` it takes :math:`\sigma` as given (``make_private``). Everything done
with the noisy gradients afterwards (AdamW, the learning-rate schedule) is
post-processing and spends nothing more.

What Opacus does here: :class:`opacus.PrivacyEngine` wraps the model in its
``GradSampleModule`` (hooks that compute every :math:`g_i`), the optimizer in its
``DPOptimizer`` (clip, noise, divide by :math:`qN`) and attaches the accountant.
The sampling rate is Opacus' own: ``make_private`` turns a ``DataLoader`` of ``N``
indices with ``batch_size`` into a ``DPDataLoader`` with :math:`q = 1/\lceil N/B \rceil`
(:math:`\approx B/N`). **The batches themselves are drawn by lmforge**
(:class:`PoissonSource`) with that same :math:`q`, from the trainer's generator
``default_rng([seed, step, 0])``, so that a resumed run draws what an uninterrupted one
would; it is the draw Opacus' ``UniformWithReplacementSampler`` makes (``rand(N) < q``).

The privacy unit is one example of the source: a record (fine-tuning) or a window of
``block_size + 1`` tokens of the token shards (pretraining; a document longer than one
window is protected at the window level only). The guarantee assumes each per-example
gradient depends on its example alone, which holds for losses that are a mean over
examples (classification, relations, the CRF tagger's NLL per sentence) or over
equal-length windows (causal LM).

lmforge's layers under Opacus: ``nn.Linear``, ``nn.Conv1d`` and ``nn.RMSNorm`` use Opacus'
grad samplers; tied embeddings (a GPT's ``lm_head`` sharing ``wte``) accumulate both
uses. :func:`register_lmforge_samplers` adds lmforge's own recurrent layers
(:mod:`lmforge.nn.recurrent`; ``torch.func`` over each example's output sequence), the
CRF (:mod:`lmforge.nn.crf`: its ``forward``, which ``CRF.nll`` calls, is each sentence's
NLL; ``torch.func`` over sentences gives the gradients of its start, end and transition
scores), ``nn.Embedding`` with its ``padding_idx`` row at zero (Opacus 1.6 gives that row
a gradient) and ``nn.LayerNorm`` without a bias (Opacus 1.6 fails on it). A parameter
used outside its module's ``forward`` gets no per-example gradient: that is an error
naming it.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..train.privacy_config import PrivacyConfig
from ..train.sources import LMBatchSource
from .encrypted_io import read_json, write_json

RUN_FILE = "lmforge.json"


def require_opacus() -> None:
    """Raise a one-line :class:`ConfigError` naming the extra when Opacus is missing."""
    try:
        import opacus  # noqa: F401
    except ImportError as e:
        raise ConfigError("train.privacy needs Opacus, in the 'privacy' extra: pip install "
                          "'lmforge[privacy]'") from e


# ---------------------------------------------------------------------- batches

class PoissonSource:
    """Poisson-sampled training batches over ``n`` fixed examples.

    ``batch(step, micro, rng)`` keeps example ``i`` when ``u_i < sample_rate`` with
    ``u = rng.random(n)``, and ``fetch(indices)`` turns the kept indices into a batch.
    ``sample_rate`` is set by :class:`DPTraining` (Opacus' rate for this ``n``)."""

    def __init__(self, n: int, fetch: Callable[[np.ndarray], Any]):
        if n < 1:
            raise ConfigError("train.privacy: the training set is empty")
        self.n, self.fetch = int(n), fetch
        self.sample_rate: float | None = None

    @classmethod
    def over(cls, examples: Sequence, collate: Callable[[list], Any]) -> PoissonSource:
        """A source over a list of examples, batched by ``collate(list of examples)``."""
        return cls(len(examples), lambda idx: collate([examples[i] for i in idx]))

    def indices(self, rng: np.random.Generator) -> np.ndarray:
        if self.sample_rate is None:
            raise ConfigError("PoissonSource: no sampling rate (attach it with DPTraining)")
        return np.flatnonzero(rng.random(self.n) < self.sample_rate)

    def batch(self, step: int, micro: int, rng: np.random.Generator) -> Any:
        return self.fetch(self.indices(rng))


def lm_window_source(src: LMBatchSource) -> PoissonSource:
    """The non-overlapping windows of ``block_size + 1`` tokens of ``src``'s shards (those
    :meth:`~lmforge.data.shards.TokenShards.sequential` reads), as a Poisson source of
    ``{"input_ids", "labels"}`` batches."""
    shards, T = src.shards, src.block_size
    table = np.concatenate([  # (shard, offset) of every window
        np.stack([np.full(len(offs), s), offs], axis=1)
        for s, arr in enumerate(shards.arrays)
        for offs in [np.arange(0, max(arr.size - T, 0), T, dtype=np.int64)]])

    def fetch(idx: np.ndarray) -> dict:
        w = torch.from_numpy(np.stack([np.asarray(shards.arrays[s][o: o + T + 1],
                                                  dtype=np.int64) for s, o in table[idx]]))
        return {"input_ids": w[:, :-1], "labels": w[:, 1:]}

    return PoissonSource(len(table), fetch)


def as_poisson(source: Any) -> PoissonSource:
    """The trainer's training source as a Poisson source (LM shards are cut into
    windows); other sources must come as a :class:`PoissonSource` already."""
    if isinstance(source, PoissonSource):
        return source
    if type(source) is LMBatchSource:  # a subclass may change what a batch holds
        return lm_window_source(source)
    raise ConfigError(f"train.privacy needs a training set of fixed examples to sample "
                      f"(causal-LM token shards or task records); {type(source).__name__} "
                      "cannot be Poisson-sampled")


# ---------------------------------------------------------------------- layers

def _vmap_grad_sample(layer: nn.Module, call: Callable[..., Any], inputs: Sequence[Tensor],
                      backprops: Tensor) -> dict[nn.Parameter, Tensor]:
    """``vmap`` over examples of ``grad_θ <y_i, ∂L/∂y_i>`` (``torch.func``), where
    ``y_i = call(params by name, *inputs of example i as a batch of one)`` (its first
    output if a tuple) and θ the layer's trainable parameters (the frozen ones passed
    as they are)."""
    from torch.func import grad, vmap

    named = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    frozen = {n: p for n, p in layer.named_parameters() if not p.requires_grad}

    def inner(values, bp, *xs):
        out = call({**frozen, **dict(zip(names, values, strict=True))},
                   *(x.unsqueeze(0) for x in xs))
        out = out[0] if isinstance(out, tuple) else out
        return (out * bp.unsqueeze(0)).sum()

    values = tuple(p.detach() for _, p in named)
    per = vmap(grad(inner), in_dims=(None, 0, *([0] * len(inputs))))(
        values, backprops, *inputs)
    return {p: g for (_, p), g in zip(named, per, strict=True)}


def _first_output_grad_sampler(layer: nn.Module, activations: list[Tensor],
                               backprops: Tensor) -> dict[nn.Parameter, Tensor]:
    """Per-example gradients of a layer whose first output (B, ...) is what the model
    reads: ``vmap`` over examples of ``grad_θ <f_θ(x_i)[0], ∂L/∂y_i>`` (``torch.func``)."""
    from torch.func import functional_call

    # the layer's own forward again, without Opacus' hooks (they would record it)
    hooks = layer._forward_hooks, layer._backward_hooks
    layer._forward_hooks, layer._backward_hooks = OrderedDict(), OrderedDict()
    try:
        return _vmap_grad_sample(layer, lambda params, *xs: functional_call(layer, params, xs),
                                 activations, backprops)
    finally:
        layer._forward_hooks, layer._backward_hooks = hooks


def _crf_grad_sampler(layer: nn.Module, activations: list[Tensor],
                      backprops: Tensor) -> dict[nn.Parameter, Tensor]:
    """Per-sentence gradients of a :class:`~lmforge.nn.crf.CRF` called as
    ``crf(emissions, tags[, mask])``: ``vmap`` over sentences of ``grad_θ nll_θ(E_i, y_i,
    m_i) · ∂L/∂nll_i`` for θ = (start, end, transition scores), by
    :func:`~lmforge.nn.crf.crf_nll` on the inputs as the forward checked them (each
    sentence keeps its padding, which the mask makes inert). The emissions' gradient
    reaches the encoder through autograd as usual."""
    from ..nn.crf import crf_nll

    if not layer.batch_first:  # Opacus reads the batch size off the last input's dim 0
        raise ValueError("DP-SGD needs a batch_first CRF")
    return _vmap_grad_sample(layer, lambda params, *xs: crf_nll(*xs, **params),
                             layer._prepare(*activations), backprops)


def _embedding_grad_sampler(layer: nn.Embedding, activations: list[Tensor],
                            backprops: Tensor) -> dict[nn.Parameter, Tensor]:
    """Opacus' ``nn.Embedding`` sampler with the ``padding_idx`` row zeroed, as autograd
    leaves it (Opacus 1.6 gives the padding row a gradient wherever padding is read)."""
    from opacus.grad_sample.embedding import compute_embedding_grad_sample

    out = compute_embedding_grad_sample(layer, activations, backprops)
    if layer.padding_idx is not None and layer.weight in out:
        out[layer.weight][:, layer.padding_idx] = 0
    return out


def _layer_norm_grad_sampler(layer: nn.LayerNorm, activations: list[Tensor],
                             backprops: Tensor) -> dict[nn.Parameter, Tensor]:
    """``nn.LayerNorm``: ``dγ_i = Σ LN(x_i) ⊙ δ_i``, ``dβ_i = Σ δ_i`` over the positions of
    example i; also without a bias (Opacus 1.6's sampler assumes one)."""
    import torch.nn.functional as F
    from opacus.utils.tensor_utils import sum_over_all_but_batch_and_last_n

    out = {}
    w, b = layer.weight, layer.bias
    if w is not None and w.requires_grad:
        normed = F.layer_norm(activations[0], layer.normalized_shape, eps=layer.eps)
        out[w] = sum_over_all_but_batch_and_last_n(normed * backprops, w.dim())
    if b is not None and b.requires_grad:
        out[b] = sum_over_all_but_batch_and_last_n(backprops, b.dim())
    return out


def register_lmforge_samplers() -> None:
    """Register with Opacus (idempotent) the per-example gradients of lmforge's
    ``RNN``/``LSTM``/``GRU`` layers, exact when the model reads their output sequence as
    the task encoders do (the final states ``h_n``/``c_n`` must not feed the loss), of
    its ``CRF`` (the loss through its forward: ``crf(...)`` or ``crf.nll(...)``), of
    ``nn.Embedding`` with its ``padding_idx`` row kept at zero and of ``nn.LayerNorm``
    without a bias."""
    from opacus.grad_sample import GradSampleModule, register_grad_sampler

    from ..nn.crf import CRF
    from ..nn.recurrent import GRU, LSTM, RNN

    todo = [c for c in (RNN, LSTM, GRU) if c not in GradSampleModule.GRAD_SAMPLERS]
    if todo:
        register_grad_sampler(todo)(_first_output_grad_sampler)
    register_grad_sampler(CRF)(_crf_grad_sampler)
    register_grad_sampler(nn.Embedding)(_embedding_grad_sampler)
    register_grad_sampler(nn.LayerNorm)(_layer_norm_grad_sampler)


def check_supported(model: nn.Module) -> None:
    """Opacus' ``ModuleValidator`` on ``model`` (in training mode): a one-line error
    naming every layer it cannot train privately (e.g. BatchNorm, whose statistics mix
    examples)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError("train.privacy: Opacus cannot train these layers privately: "
                          + "; ".join(" ".join(str(e).split()) for e in errors))


def missing_per_sample(model: nn.Module) -> list[str]:
    """The trainable parameters that have a gradient but no per-example gradient after a
    backward pass (``module.param (Type)``): parameters used outside their module's
    ``forward``."""
    owner = {id(p): (f"{m_name}.{p_name}".lstrip("."), type(m).__name__)
             for m_name, m in model.named_modules()
             for p_name, p in m.named_parameters(recurse=False)}
    return [f"{owner[id(p)][0]} ({owner[id(p)][1]})" for p in model.parameters()
            if p.requires_grad and p.grad is not None
            and getattr(p, "grad_sample", None) is None]


# ---------------------------------------------------------------------- training

class DPTraining:
    """DP-SGD for a :class:`~lmforge.train.Trainer`: Opacus' ``PrivacyEngine`` over the
    trainer's model and AdamW, Poisson batches from ``source`` and the privacy report."""

    def __init__(self, cfg: PrivacyConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                 source: Any, batch_size: int, max_steps: int, objective: Any = None):
        require_opacus()
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        if any(callable(getattr(objective, m, None)) for m in ("extra_parameters",
                                                                "state_dict")):
            raise ConfigError(f"train.privacy: the {type(objective).__name__} objective "
                              "keeps parameters or state of its own outside the model; "
                              "Opacus cannot clip its per-example gradients")
        register_lmforge_samplers()
        model.train()  # as the trainer trains it; Opacus validates modules in this mode
        check_supported(model)
        self.cfg, self.source = cfg, as_poisson(source)
        n = self.source.n
        if batch_size > n:
            raise ConfigError(f"train.batch_size={batch_size} exceeds the {n} training "
                              "examples that train.privacy samples from")
        if cfg.delta >= 1.0 / n:
            warnings.warn(f"train.privacy.delta={cfg.delta:g} is not below 1/N = {1.0 / n:g} "
                          f"(N = {n} training examples): a guarantee that lets one record "
                          "in N leak whole is weak; choose delta < 1/N", stacklevel=3)
        # the N indices in batches of B: Opacus' DPDataLoader gives q = 1/len(loader)
        indices = DataLoader(TensorDataset(torch.arange(n)), batch_size=batch_size)
        kw = dict(module=model, optimizer=optimizer, data_loader=indices,
                  max_grad_norm=cfg.max_grad_norm, poisson_sampling=True)
        with warnings.catch_warnings():  # Opacus' advice on secure_mode and accountants
            warnings.simplefilter("ignore")
            self.engine = PrivacyEngine(accountant=cfg.accountant)
            try:
                self.module, self.optimizer, loader = self._make_private(cfg, kw, max_steps)
            except (NotImplementedError, ValueError) as e:
                raise ConfigError(f"train.privacy: Opacus refused the model: "
                                  f"{' '.join(str(e).split())[:300]}") from None
        self.model = model
        self.sample_rate = float(loader.sample_rate)
        self.source.sample_rate = self.sample_rate
        self.noise_multiplier = float(self.optimizer.noise_multiplier)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def _make_private(self, cfg: PrivacyConfig, kw: dict, max_steps: int) -> tuple:
        """Opacus' ``make_private`` (σ given) or ``make_private_with_epsilon`` (σ for
        ``target_epsilon`` after ``max_steps`` updates)."""
        if cfg.noise_multiplier is not None:
            return self.engine.make_private(noise_multiplier=cfg.noise_multiplier, **kw)
        q = 1.0 / len(kw["data_loader"])
        epochs = max_steps * q
        while int(epochs / q) < max_steps:  # Opacus counts steps as int(epochs / q)
            epochs = math.nextafter(epochs, math.inf)
        return self.engine.make_private_with_epsilon(
            target_epsilon=cfg.target_epsilon, target_delta=cfg.delta, epochs=epochs, **kw)

    @property
    def steps(self) -> int:
        return sum(int(s) for _, _, s in self.engine.accountant.history)

    def restore(self, steps: int) -> None:
        """The accountant of a run resumed after ``steps`` private updates."""
        self.engine.accountant.history = [(self.noise_multiplier, self.sample_rate, steps)] \
            if steps else []

    def epsilon(self) -> float:
        """The ε spent so far at ``delta`` (0 before the first update)."""
        if not self.engine.accountant.history:
            return 0.0
        with warnings.catch_warnings():  # PRV bounds its domain with RDP, which warns
            if self.cfg.accountant == "prv":
                warnings.filterwarnings("ignore", message="Optimal order is the largest")
            return float(self.engine.get_epsilon(self.cfg.delta))

    def forward_backward(self, trainer: Any, step: int) -> tuple[Tensor, Any, dict]:
        """One Poisson batch through the Opacus-wrapped model: per-example gradients in
        ``p.grad_sample``; ``trainer.optimizer.step()`` (the ``DPOptimizer``) clips, adds
        the noise and steps. An empty draw (probability ``(1 - q)^N``) leaves zero
        per-example gradients, so that update is noise alone."""
        rng = np.random.default_rng([trainer.seed, step, 0])
        idx = self.source.indices(rng)
        if idx.size == 0:
            for p in self.params:
                p.grad_sample = p.new_zeros((0, *p.shape))
                p.grad = torch.zeros_like(p)
            return torch.zeros((), device=trainer.device), 0, {}
        from ..train.trainer import _to_device

        batch = _to_device(self.source.fetch(idx), trainer.device)
        loss, metrics, n = trainer._run_objective(batch)
        with warnings.catch_warnings():  # integer ids reach the embedding: nothing to warn
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.float().backward()
        missing = missing_per_sample(self.model)
        if missing:
            raise ConfigError("train.privacy: Opacus computed no per-example gradient for "
                              f"{', '.join(missing)}: the parameter is used outside its "
                              "module's forward(); freeze it")
        mean = {k: v.detach().float() if isinstance(v, Tensor) else float(v)
                for k, v in (metrics or {}).items()}
        return loss.detach().float(), n, mean

    def report(self) -> dict:
        """What the run has spent, for ``metrics.jsonl``, ``lmforge.json`` and results."""
        c = self.cfg
        return {"epsilon": self.epsilon(), "delta": c.delta, "accountant": c.accountant,
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": c.max_grad_norm,
                "sample_rate": self.sample_rate, "n_examples": self.source.n,
                "expected_batch_size": self.sample_rate * self.source.n,
                "steps": self.steps, "target_epsilon": c.target_epsilon,
                "sampling": "poisson"}

    def write_report(self, run_dir: Path) -> None:
        """Merge the report into ``run_dir/lmforge.json`` as ``privacy`` (read with the
        active key and written encrypted when one is active, as the run's other files)."""
        path = Path(run_dir) / RUN_FILE
        info = read_json(path) if path.is_file() else {}
        info["privacy"] = self.report()
        write_json(path, info)



__all__ = ["DPTraining", "PoissonSource", "lm_window_source", "as_poisson",
           "register_lmforge_samplers", "check_supported", "missing_per_sample",
           "require_opacus"]
