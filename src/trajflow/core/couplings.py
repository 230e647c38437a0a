"""Couplings between two populations: which source cell is paired with which target cell.

Three kinds, as in conditional flow matching (Tong et al. 2023):

- ``independent``: source and target drawn independently (I-CFM);
- ``exact``: the exact optimal-transport plan for the squared Euclidean cost (OT-CFM);
- ``entropic``: the entropic OT plan with regularisation ``reg`` (SB-CFM, ``reg = 2 sigma^2``).

For populations small enough, the plan between the *whole* populations is solved once and
index pairs are drawn from it on the device at every step (no per-step solver, no host round
trip). For large populations a fresh plan is solved on every minibatch instead, as TorchCFM does.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import ot
import torch
from torch import Tensor

CouplingKind = Literal["independent", "exact", "entropic"]
CouplingStrategy = Literal["auto", "full", "minibatch"]

#: Largest ``n_source * n_target`` for which ``strategy="auto"`` solves the full plan once.
MAX_FULL_PLAN_ENTRIES = 4_000_000


class Coupling(Protocol):
    """Draws ``n`` (source index, target index) pairs."""

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...


def _sq_cost(x0: Tensor, x1: Tensor) -> Tensor:
    return torch.cdist(x0, x1).pow(2)


def exact_ot_plan(x0: Tensor, x1: Tensor, *, num_iter_max: int = 10_000_000) -> Tensor:
    """Exact OT plan (uniform weights, squared Euclidean cost), solved by POT's network simplex.

    The solver runs on the CPU in float64; the plan is returned on ``x0``'s device.
    """
    a = x0.detach().double().cpu().numpy()
    b = x1.detach().double().cpu().numpy()
    cost = ot.dist(a, b)  # squared Euclidean
    plan = ot.emd(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=num_iter_max)
    return torch.as_tensor(plan, dtype=torch.float32, device=x0.device)


def entropic_ot_plan(
    x0: Tensor, x1: Tensor, reg: float, *, n_iter: int = 2000, tol: float = 1e-6
) -> Tensor:
    """Entropic OT plan by log-domain Sinkhorn in torch, on ``x0``'s device.

    ``reg`` is the entropic regularisation in units of the squared Euclidean cost.
    """
    if reg <= 0:
        raise ValueError(f"Entropic regularisation must be positive, got {reg}.")
    cost = _sq_cost(x0.double(), x1.double())
    n, m = cost.shape
    log_a = torch.full((n,), -np.log(n), dtype=cost.dtype, device=cost.device)
    log_b = torch.full((m,), -np.log(m), dtype=cost.dtype, device=cost.device)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    k = -cost / reg
    for it in range(n_iter):
        f = reg * (log_a - torch.logsumexp(k + g[None, :] / reg, dim=1))
        g = reg * (log_b - torch.logsumexp(k + f[:, None] / reg, dim=0))
        if it % 20 == 0:
            row = torch.logsumexp(k + (f[:, None] + g[None, :]) / reg, dim=1).exp()
            if torch.max(torch.abs(row - log_a.exp())) < tol / n:
                break
    plan = torch.exp(k + (f[:, None] + g[None, :]) / reg)
    return plan.float()


class IndependentCoupling:
    """Uniform, independent pairs (the I-CFM coupling)."""

    def __init__(self, n_source: int, n_target: int, device: torch.device):
        self.n_source, self.n_target, self.device = n_source, n_target, device

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        i = torch.randint(self.n_source, (n,), generator=generator, device=self.device)
        j = torch.randint(self.n_target, (n,), generator=generator, device=self.device)
        return i, j


class PlanCoupling:
    """Pairs drawn from a fixed transport plan, on the plan's device.

    Only the support of the plan is kept (an exact plan has at most ``n + m - 1`` non-zeros),
    and pairs are drawn by inverting the cumulative weights with ``searchsorted``.
    """

    def __init__(self, plan: Tensor, *, min_weight: float = 1e-12):
        weights = plan.flatten()
        support = torch.nonzero(weights > min_weight * weights.max()).squeeze(1)
        w = weights[support].double()
        self._cumulative = torch.cumsum(w / w.sum(), dim=0)
        self._cumulative[-1] = 1.0
        self._rows = torch.div(support, plan.shape[1], rounding_mode="floor")
        self._cols = support % plan.shape[1]
        self.device = plan.device
        self.n_support = int(support.numel())

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        u = torch.rand(n, generator=generator, device=self.device, dtype=torch.float64)
        k = torch.searchsorted(self._cumulative, u).clamp_(max=self.n_support - 1)
        return self._rows[k], self._cols[k]


class MinibatchOTCoupling:
    """A fresh OT plan on every minibatch (TorchCFM's approach); for populations too large for
    one full plan. Draws ``n`` cells from each side, solves the plan between them and draws
    ``n`` pairs from it."""

    def __init__(self, x0: Tensor, x1: Tensor, kind: CouplingKind, reg: float | None = None):
        self.x0, self.x1, self.kind, self.reg = x0, x1, kind, reg
        self.device = x0.device

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        i = torch.randint(len(self.x0), (n,), generator=generator, device=self.device)
        j = torch.randint(len(self.x1), (n,), generator=generator, device=self.device)
        if self.kind == "exact":
            plan = exact_ot_plan(self.x0[i], self.x1[j])
        else:
            plan = entropic_ot_plan(self.x0[i], self.x1[j], float(self.reg))
        a, b = PlanCoupling(plan).sample(n, generator)
        return i[a], j[b]


def build_coupling(
    kind: CouplingKind,
    x0: Tensor,
    x1: Tensor,
    *,
    reg: float | None = None,
    strategy: CouplingStrategy = "auto",
    max_full_entries: int = MAX_FULL_PLAN_ENTRIES,
) -> Coupling:
    """Make the coupling of ``kind`` between ``x0`` and ``x1``.

    ``strategy="auto"`` solves the full plan once when ``len(x0) * len(x1) <= max_full_entries``
    and falls back to per-minibatch plans above that; ``"full"`` / ``"minibatch"`` force one.
    """
    if kind == "independent":
        return IndependentCoupling(len(x0), len(x1), x0.device)
    if kind not in ("exact", "entropic"):
        raise ValueError(f"Unknown coupling kind {kind!r}; use 'independent', 'exact' or 'entropic'.")
    if kind == "entropic" and (reg is None or reg <= 0):
        raise ValueError(f"The entropic coupling needs a positive reg, got {reg!r}.")
    if strategy not in ("auto", "full", "minibatch"):
        raise ValueError(f"Unknown coupling strategy {strategy!r}; use 'auto', 'full' or 'minibatch'.")
    full = strategy == "full" or (strategy == "auto" and len(x0) * len(x1) <= max_full_entries)
    if not full:
        return MinibatchOTCoupling(x0, x1, kind, reg)
    plan = exact_ot_plan(x0, x1) if kind == "exact" else entropic_ot_plan(x0, x1, float(reg))
    return PlanCoupling(plan)
