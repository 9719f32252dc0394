r"""Low-rank factorisation of linear layers: ``W ≈ U_r Σ_r V_r^T``, and ``factorize(model)``.

A weight ``W (N, K)`` (``y = x W^T + b``) has the singular value decomposition
``W = U Σ V^T``, ``σ_1 >= σ_2 >= ... >= 0``. Keeping the ``r`` largest gives the best
rank-``r`` approximation in the Frobenius norm (Eckart-Young)::

    W_r = U_r Σ_r V_r^T,      ||W - W_r||_F^2 = sum_{i > r} σ_i^2

and the layer becomes two thin ones, ``r (K + N)`` weights instead of ``K N``::

    x (K) -> A x (r) -> B (A x) + b (N),     A = Σ_r^{1/2} V_r^T (r, K),  B = U_r Σ_r^{1/2} (N, r)

(``Σ^{1/2}`` goes into both factors so they have the same scale, which keeps fine-tuning
them afterwards balanced). It saves parameters only when ``r (K + N) < K N``; a layer
where it would not is left alone, and the report says so.

The rank is given (one for every layer, or by layer-name pattern), or chosen per layer as
the smallest ``r`` that keeps a share ``energy`` of the squared singular values::

    sum_{i <= r} σ_i^2 / sum_i σ_i^2 >= energy     (the relative error is then sqrt(1 - energy))

The SVD runs in float64 (``torch.linalg.svd``), once, when the model is factorised; saved
folders record the two-layer modules (:mod:`lmforge.compress.structure`), so loading needs
no SVD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .select import first_match, matches, named_layers


class LowRankLinear(nn.Module):
    """``forward(x (..., K)) -> (..., N)`` through rank ``r``: ``second(first(x))``, with
    ``first`` = ``A`` (r, K), no bias, and ``second`` = ``B`` (N, r) with the bias.
    ``LowRankLinear(K, N, r, bias)`` has random factors; :meth:`from_linear` factorises."""

    kind = "lowrank"

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        if not 1 <= rank <= min(in_features, out_features):
            raise ValueError(f"rank must be in [1, {min(in_features, out_features)}], "
                             f"got {rank}")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int,
                    factors: tuple[Tensor, Tensor, Tensor] | None = None) -> LowRankLinear:
        """The rank-``rank`` truncated SVD of ``linear`` (see the module doc);
        ``factors``: its :func:`svd`, when already computed."""
        u, s, vh = svd(linear.weight) if factors is None else factors
        root = s[:rank].sqrt()
        layer = cls(linear.in_features, linear.out_features, rank, linear.bias is not None)
        dtype = linear.weight.dtype
        with torch.no_grad():
            layer.first.weight.copy_((root[:, None] * vh[:rank]).to(dtype))
            layer.second.weight.copy_((u[:, :rank] * root[None, :]).to(dtype))
            if linear.bias is not None:
                layer.second.bias.copy_(linear.bias)
        return layer.to(linear.weight.device)

    def spec(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "rank": self.rank, "bias": self.second.bias is not None}

    @classmethod
    def from_spec(cls, spec: dict) -> LowRankLinear:
        return cls(**spec)

    def weight_product(self) -> Tensor:
        """``B A`` (N, K): the rank-``r`` weight this layer applies."""
        return self.second.weight @ self.first.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}")


def svd(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``U (N, m), σ (m,), V^T (m, K)`` of ``weight`` in float64, ``m = min(N, K)``."""
    return torch.linalg.svd(weight.detach().double(), full_matrices=False)


def energy_rank(singular_values: Tensor, energy: float) -> int:
    """The smallest ``r`` with ``sum_{i<=r} σ_i^2 / sum σ_i^2 >= energy``."""
    power = singular_values.double() ** 2
    total = float(power.sum())
    if total == 0.0:
        return 1
    kept = torch.cumsum(power, 0) / total
    # a tolerance for the cumulative sum's rounding, so energy=1.0 is reachable
    return int((kept < energy - 1e-12).sum()) + 1


@dataclass
class FactorizeReport:
    """What :func:`factorize` did, one row per considered layer, and the parameter counts
    of the whole model before and after."""

    layers: list[dict] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0

    def table(self) -> str:
        """The rows as an aligned text table, then the totals."""
        head = f"{'layer':<32} {'shape':>11} {'rank':>5} {'energy':>7} {'rel.err':>7}  result"
        lines = [head, "-" * len(head)]
        for row in self.layers:
            shape = f"{row['out_features']}x{row['in_features']}"
            lines.append(f"{row['layer']:<32} {shape:>11} {row['rank']:>5} "
                         f"{row['energy']:>7.4f} {row['relative_error']:>7.4f}  {row['result']}")
        saved = self.params_before - self.params_after
        share = saved / self.params_before if self.params_before else 0.0
        lines.append(f"parameters: {self.params_before:,} -> {self.params_after:,} "
                     f"({saved:,} fewer, {share:.1%})")
        return "\n".join(lines)


def factorize(model: nn.Module, rank: int | dict[str, int] | None = None,
              energy: float | None = None, include: Sequence[str] | None = None,
              skip: Sequence[str] = ()) -> FactorizeReport:
    """Replace ``nn.Linear`` layers of ``model`` by :class:`LowRankLinear` (in place).

    Give exactly one of ``rank`` (an int for every layer, or ``{name pattern: rank}``,
    first matching pattern wins, layers no pattern names are left alone) and ``energy``
    (in (0, 1]: per layer, the smallest rank keeping that share of ``sum σ^2``).
    ``include`` / ``skip`` are name patterns (:mod:`lmforge.compress.select`).

    A layer is left alone, and its row says why, when ``r (K + N) >= K N`` (no saving) or
    when its weight is shared with another module (a tied output head: factorising it
    would add parameters). Raises :class:`ConfigError`, before changing anything, for a
    rank outside ``[1, min(K, N)]`` (naming the layer) or an ``energy`` outside (0, 1].
    """
    if (rank is None) == (energy is None):
        raise ConfigError("factorize: give exactly one of rank (an int, or a map of layer "
                          "name patterns to ranks) and energy (in (0, 1])")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise ConfigError(f"factorize: energy must be in (0, 1], got {energy}")
    layers = named_layers(model, nn.Linear, include, skip)
    if isinstance(rank, dict):
        unused = [p for p in rank if not any(matches(n, p) for n, _ in layers)]
        if unused:
            names = [n for n, _ in layers]
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            raise ConfigError(f"factorize: rank pattern {unused[0]!r} names no linear layer "
                              f"(layers: {shown or 'none'})")
        layers = [(n, m) for n, m in layers if first_match(n, rank) is not None]
    if energy is None:
        for name, lin in layers:
            _check_rank(name, lin, _given_rank(name, rank))
    report = FactorizeReport(params_before=_count_parameters(model))
    shared = _shared_weights(model)
    for name, lin in layers:
        u, s, vh = svd(lin.weight)
        r = energy_rank(s, energy) if energy is not None else _given_rank(name, rank)
        n, k = lin.out_features, lin.in_features
        power = s ** 2
        kept = float(power[:r].sum() / power.sum()) if float(power.sum()) > 0 else 1.0
        row = {"layer": name, "in_features": k, "out_features": n, "rank": r,
               "energy": kept, "relative_error": max(0.0, 1.0 - kept) ** 0.5,
               "params_before": n * k, "params_after": n * k}
        if id(lin.weight) in shared:
            row["result"] = "kept: its weight is shared with another module (tied)"
        elif r * (k + n) >= k * n:
            row["result"] = f"kept: r(K+N) = {r * (k + n):,} >= KN = {k * n:,}"
        else:
            model.set_submodule(name, LowRankLinear.from_linear(lin, r, (u, s, vh)))
            row["params_after"] = r * (k + n)
            row["result"] = "factorized"
        report.layers.append(row)
    report.params_after = _count_parameters(model)
    return report


def _given_rank(name: str, rank: int | dict[str, int]) -> int:
    return rank[first_match(name, rank)] if isinstance(rank, dict) else rank


def _check_rank(name: str, linear: nn.Linear, r: object) -> None:
    limit = min(linear.in_features, linear.out_features)
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= limit:
        raise ConfigError(f"factorize: rank {r!r} for layer {name!r} is outside [1, {limit}] "
                          f"(min(in_features, out_features) = {limit})")


def _count_parameters(model: nn.Module) -> int:
    """Distinct parameters (a tied weight counts once)."""
    return sum(p.numel() for p in model.parameters())


def _shared_weights(model: nn.Module) -> set[int]:
    """``id`` of every parameter that more than one module holds."""
    holders: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            holders[id(p)] = holders.get(id(p), 0) + 1
    return {i for i, count in holders.items() if count > 1}
