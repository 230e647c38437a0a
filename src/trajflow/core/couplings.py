"""Couplings between two populations: which source cell is paired with which target cell.

Three kinds, as in conditional flow matching (Tong et al. 2023):

- ``independent``: source and target drawn independently (I-CFM);
- ``exact``: the exact optimal-transport plan for the squared Euclidean cost (OT-CFM);
- ``entropic``: the entropic OT plan with regularisation ``reg`` (SB-CFM, ``reg = 2 sigma^2``).

Two options model cells that divide and die between time points, which balanced OT gets wrong
(it must send every source cell's mass somewhere and fill every target cell):

- per-cell ``source_weights`` / ``target_weights`` (e.g. growth weights ``g_i ** dt``, as
  Waddington-OT does): the marginals of the plan become proportional to them;
- ``reg_m`` (unbalanced OT, Chizat et al. 2018): the marginal constraints are relaxed to a KL
  penalty of weight ``reg_m``, so mass may be created or destroyed. Solved by log-domain
  unbalanced Sinkhorn with the objective of POT's
  ``ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m)`` (``reg_type="kl"``).

For populations small enough, the plan between the *whole* populations is solved once and
index pairs are drawn from it on the device at every step (no per-step solver, no host round
trip). Larger populations are coupled by a bank of minibatch plans solved ahead
(:mod:`trajflow.core.bank`); ``strategy="minibatch"`` solves a fresh plan on every minibatch
instead, as TorchCFM does.
Multi-marginal methods draw *chains* of cells, one per time point, along consecutive exact
plans (:class:`ChainSampler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import ot
import torch
from torch import Tensor

CouplingKind = Literal["independent", "exact", "entropic"]
CouplingStrategy = Literal["auto", "full", "bank", "minibatch"]
#: Every coupling strategy a fit accepts (``coupling=``), defined once.
COUPLINGS: tuple[str, ...] = ("auto", "full", "bank", "minibatch")

#: Largest ``n_source * n_target`` for which ``strategy="auto"`` solves the full plan once
#: (about 1,000 cells per time point); above it the bank. 1M, not 4M: at 2,000 cells per time
#: point the bank gives the same held-out W1 (simulated course, 10 x 2,000 cells, 3 seeds:
#: 0.6051 vs 0.6050 for full plans) while a full 2,000 x 2,000 plan costs ~0.7 s and dominated
#: the set-up of many time points (40 x 2,000 cells: 17 of 24 s). No shared data set changes.
MAX_FULL_PLAN_ENTRIES = 1_000_000


class Coupling(Protocol):
    """Draws ``n`` (source index, target index) pairs."""

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...


def _sq_cost(x0: Tensor, x1: Tensor) -> Tensor:
    return torch.cdist(x0, x1).pow(2)


#: Entropic regularisation used for ``kind="exact"`` with ``reg_m`` (unbalanced OT has no fast
#: exact solver); small next to typical squared distances between standardised cells.
UNBALANCED_EXACT_REG = 0.1


def _as_weights(w: Tensor | np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    """Validate per-cell weights and normalise them to sum to one (``None`` stays ``None``)."""
    if w is None:
        return None
    w = w.detach().cpu().numpy() if isinstance(w, Tensor) else np.asarray(w)
    w = w.astype(np.float64).ravel()
    if w.shape != (n,):
        raise ValueError(f"{name} must have one weight per cell ({n}), got shape {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"{name} must be finite, non-negative and not all zero.")
    return w / w.sum()


def exact_ot_plan(
    x0: Tensor,
    x1: Tensor,
    *,
    num_iter_max: int = 10_000_000,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Exact OT plan (squared Euclidean cost), solved by POT's network simplex.

    ``a`` / ``b`` are optional source / target weights (default uniform; normalised to sum 1).
    The solver runs on the CPU in float64; the plan is returned on ``x0``'s device.
    """
    p = x0.detach().double().cpu().numpy()
    q = x1.detach().double().cpu().numpy()
    cost = ot.dist(p, q)  # squared Euclidean
    wa = _as_weights(a, len(p), "a")
    wb = _as_weights(b, len(q), "b")
    plan = ot.emd(
        ot.unif(len(p)) if wa is None else wa,
        ot.unif(len(q)) if wb is None else wb,
        cost,
        numItermax=num_iter_max,
    )
    return torch.as_tensor(plan, dtype=torch.float32, device=x0.device)


def _log_weights(w: Tensor | np.ndarray | None, n: int, name: str, like: Tensor) -> Tensor:
    wn = _as_weights(w, n, name)
    if wn is None:
        return torch.full((n,), -np.log(n), dtype=like.dtype, device=like.device)
    return torch.as_tensor(wn, dtype=like.dtype, device=like.device).log()


def _sinkhorn_inputs(
    x0: Tensor,
    x1: Tensor,
    a: Tensor | np.ndarray | None,
    b: Tensor | np.ndarray | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Squared Euclidean cost (float64) and log source / target weights of a Sinkhorn solve."""
    cost = _sq_cost(x0.double(), x1.double())
    n, m = cost.shape[-2:]
    return cost, _log_weights(a, n, "a", cost), _log_weights(b, m, "b", cost)


def entropic_ot_plan(
    x0: Tensor,
    x1: Tensor,
    reg: float,
    *,
    n_iter: int = 2000,
    tol: float = 1e-6,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Entropic OT plan by log-domain Sinkhorn in torch, on ``x0``'s device.

    ``reg`` is the entropic regularisation in units of the squared Euclidean cost. ``a`` / ``b``
    are optional source / target weights (default uniform; normalised to sum 1). Batched:
    ``x0`` ``(..., n, d)`` and ``x1`` ``(..., m, d)`` give ``(..., n, m)`` plans, solved together
    (the weights are shared by every batch).
    """
    if reg <= 0:
        raise ValueError(f"Entropic regularisation must be positive, got {reg}.")
    cost, log_a, log_b = _sinkhorn_inputs(x0, x1, a, b)
    n = len(log_a)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    k = -cost / reg
    for it in range(n_iter):
        f = reg * (log_a - torch.logsumexp(k + g[..., None, :] / reg, dim=-1))
        g = reg * (log_b - torch.logsumexp(k + f[..., :, None] / reg, dim=-2))
        if it % 20 == 0:
            row = torch.logsumexp(k + (f[..., :, None] + g[..., None, :]) / reg, dim=-1).exp()
            if torch.max(torch.abs(row - log_a.exp())) < tol / n:
                break
    plan = torch.exp(k + (f[..., :, None] + g[..., None, :]) / reg)
    return plan.float()


def unbalanced_ot_plan(
    x0: Tensor,
    x1: Tensor,
    reg: float,
    reg_m: float,
    *,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
    n_iter: int = 3000,
    tol: float = 1e-4,
) -> Tensor:
    """Unbalanced entropic OT plan by log-domain Sinkhorn in torch, on ``x0``'s device.

    Minimises ``<P, C> + reg KL(P | a b^T) + reg_m KL(P 1 | a) + reg_m KL(P^T 1 | b)`` for the
    squared Euclidean cost ``C``: the objective of POT's
    ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg, reg_m)`` (``reg_type="kl"``), solved in
    the log domain so that small ``reg`` does not underflow, with epsilon scaling (the
    regularisation is halved from the largest cost down to ``reg``, warm-starting the potentials)
    so that small ``reg`` converges in a few hundred iterations. Each stage stops when the
    potentials move by less than ``tol * reg`` over an iteration, or after ``n_iter`` iterations.

    ``reg_m`` is the mass-relaxation parameter, in units of the cost: large values enforce the
    marginals (``reg_m -> inf`` is balanced entropic OT); small values let the plan create and
    destroy mass where moving it would cost more than about ``reg_m``.
    ``a`` / ``b`` are optional source / target weights (default uniform; normalised to sum 1).
    Batched like :func:`entropic_ot_plan`.
    """
    if not reg > 0:
        raise ValueError(f"Entropic regularisation must be positive, got {reg}.")
    if not reg_m > 0:
        raise ValueError(f"The mass relaxation reg_m must be positive, got {reg_m}.")
    cost, log_a, log_b = _sinkhorn_inputs(x0, x1, a, b)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    eps = max(float(reg), float(cost.max()))
    while True:
        fi = 1.0 if np.isinf(reg_m) else reg_m / (reg_m + eps)
        k = -cost / eps
        for it in range(n_iter):
            f_prev = f
            f = -fi * eps * torch.logsumexp(k + (log_b + g / eps)[..., None, :], dim=-1)
            g = -fi * eps * torch.logsumexp(k + (log_a + f / eps)[..., :, None], dim=-2)
            if it % 10 == 0 and torch.max(torch.abs(f - f_prev)) < tol * eps:
                break
        if eps <= reg:
            break
        eps = max(float(reg), eps / 2)
    plan = torch.exp(k + (log_a + f / eps)[..., :, None] + (log_b + g / eps)[..., None, :])
    return plan.float()


class IndependentCoupling:
    """Independent pairs (the I-CFM coupling): uniform, or drawn in proportion to optional
    per-cell ``source_weights`` / ``target_weights``."""

    def __init__(
        self,
        n_source: int,
        n_target: int,
        device: torch.device,
        *,
        source_weights: Tensor | np.ndarray | None = None,
        target_weights: Tensor | np.ndarray | None = None,
    ):
        self.n_source, self.n_target, self.device = n_source, n_target, device
        wa = _as_weights(source_weights, n_source, "source_weights")
        wb = _as_weights(target_weights, n_target, "target_weights")
        self._wa = None if wa is None else torch.as_tensor(wa, device=device)
        self._wb = None if wb is None else torch.as_tensor(wb, device=device)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self._wa is None:
            i = torch.randint(self.n_source, (n,), generator=generator, device=self.device)
        else:
            i = torch.multinomial(self._wa, n, replacement=True, generator=generator)
        if self._wb is None:
            j = torch.randint(self.n_target, (n,), generator=generator, device=self.device)
        else:
            j = torch.multinomial(self._wb, n, replacement=True, generator=generator)
        return i, j


class PlanCoupling:
    """Pairs drawn from a fixed transport plan, on the plan's device.

    Only the support of the plan is kept (an exact plan has at most ``n + m - 1`` non-zeros), in
    row-major order, and pairs are drawn by inverting the cumulative weights with
    ``searchsorted``: either whole pairs (:meth:`sample`) or the partner of given source cells
    (:meth:`sample_given_rows`, which chains of cells through several plans need).
    """

    def __init__(self, plan: Tensor, *, min_weight: float = 1e-12):
        weights = plan.flatten()
        support = torch.nonzero(weights > min_weight * weights.max()).squeeze(1)
        self._set_support(support, weights[support].double(), tuple(plan.shape))

    @classmethod
    def from_pairs(
        cls, rows: Tensor, cols: Tensor, weights: Tensor, shape: tuple[int, int]
    ) -> PlanCoupling:
        """A sparse plan: mass ``weights[k]`` on the pair ``(rows[k], cols[k])`` (repeated pairs
        add up as separate support entries)."""
        coupling = cls.__new__(cls)
        key = rows.long() * shape[1] + cols.long()
        order = torch.argsort(key, stable=True)  # row-major, as a dense plan's support
        coupling._set_support(key[order], weights[order].double(), shape)
        return coupling

    def _set_support(self, support: Tensor, w: Tensor, shape: tuple[int, int]) -> None:
        self._cumulative = torch.cumsum(w / w.sum(), dim=0)
        self._cumulative[-1] = 1.0
        self._rows = torch.div(support, shape[1], rounding_mode="floor")
        self._cols = support % shape[1]
        self.shape = shape
        self.device = support.device
        self.n_support = int(support.numel())
        self._row_bounds: tuple[Tensor, Tensor] | None = None

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        k = self.sample_support(n, generator)
        return self._rows.index_select(0, k), self._cols.index_select(0, k)

    def sample_support(self, n: int, generator: torch.Generator) -> Tensor:
        """Indices into the support (see :meth:`support_pairs`) of ``n`` pairs drawn from the plan."""
        u = torch.rand(n, generator=generator, device=self.device, dtype=torch.float64)
        return torch.searchsorted(self._cumulative, u).clamp_(max=self.n_support - 1)

    def sample_given_rows(self, rows: Tensor, generator: torch.Generator) -> Tensor:
        """Support index of one pair drawn from each given row, in proportion to the row's mass
        (the conditional plan); the partner of ``rows[i]`` is ``support_pairs()[1][k[i]]``."""
        if self._row_bounds is None:  # where each row's support starts and ends, built once
            counts = torch.bincount(self._rows, minlength=self.shape[0])
            if bool((counts == 0).any()):
                raise ValueError("Every source cell must carry mass in the plan.")
            ends = torch.cumsum(counts, dim=0)
            zero = torch.zeros(1, dtype=self._cumulative.dtype, device=self.device)
            padded = torch.cat([zero, self._cumulative])
            self._row_bounds = (padded[ends - counts], padded[ends])
        lo, hi = self._row_bounds[0][rows], self._row_bounds[1][rows]
        u = torch.rand(len(rows), generator=generator, device=rows.device, dtype=torch.float64)
        return torch.searchsorted(self._cumulative, lo + u * (hi - lo)).clamp_(
            max=self.n_support - 1
        )

    def support_pairs(self) -> tuple[Tensor, Tensor]:
        """(source, target) cell index of every support pair, in support order."""
        return self._rows, self._cols

    def tables(self) -> tuple[Tensor, Tensor, Tensor]:
        """Cumulative weights (float64, ending at the total), source and target cell of every
        support pair: what drawing a pair needs (objectives fuse them across couplings)."""
        return self._cumulative, self._rows, self._cols


class MinibatchOTCoupling:
    """A fresh OT plan on every minibatch (TorchCFM's approach); for populations too large for
    one full plan. Draws ``n`` cells from each side (in proportion to the optional weights),
    solves the plan between them (unbalanced when ``reg_m`` is set) and draws ``n`` pairs."""

    #: Its pairs are never fixed: every step solves a plan on the host (no fused draws, no CUDA
    #: graph). Fixed couplings have no such attribute, or set it once their pairs are all in.
    complete = False

    def __init__(
        self,
        x0: Tensor,
        x1: Tensor,
        kind: CouplingKind,
        reg: float | None = None,
        *,
        reg_m: float | None = None,
        source_weights: Tensor | np.ndarray | None = None,
        target_weights: Tensor | np.ndarray | None = None,
    ):
        self.x0, self.x1, self.kind, self.reg, self.reg_m = x0, x1, kind, reg, reg_m
        self.device = x0.device
        self._draw = IndependentCoupling(
            len(x0),
            len(x1),
            x0.device,
            source_weights=source_weights,
            target_weights=target_weights,
        )

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        i, j = self._draw.sample(n, generator)
        if self.reg_m is not None:
            reg = UNBALANCED_EXACT_REG if self.kind == "exact" else float(self.reg)
            plan = unbalanced_ot_plan(self.x0[i], self.x1[j], reg, float(self.reg_m))
        elif self.kind == "exact":
            plan = exact_ot_plan(self.x0[i], self.x1[j])
        else:
            plan = entropic_ot_plan(self.x0[i], self.x1[j], float(self.reg))
        a, b = PlanCoupling(plan).sample(n, generator)
        return i[a], j[b]


def resolve_strategy(
    strategy: CouplingStrategy, n0: int, n1: int, max_full_entries: int = MAX_FULL_PLAN_ENTRIES
) -> CouplingStrategy:
    """What ``strategy="auto"`` means for populations of ``n0`` and ``n1`` cells."""
    if strategy == "auto":
        return "full" if n0 * n1 <= max_full_entries else "bank"
    return strategy


def build_coupling(
    kind: CouplingKind,
    x0: Tensor,
    x1: Tensor,
    *,
    reg: float | None = None,
    strategy: CouplingStrategy = "auto",
    max_full_entries: int = MAX_FULL_PLAN_ENTRIES,
    generator: torch.Generator | None = None,
    reg_m: float | None = None,
    source_weights: Tensor | np.ndarray | None = None,
    target_weights: Tensor | np.ndarray | None = None,
    stream_steps: int | None = None,
) -> Coupling:
    """Make the coupling of ``kind`` between ``x0`` and ``x1``.

    ``strategy="auto"`` solves the full plan once when ``len(x0) * len(x1) <= max_full_entries``
    and a bank of minibatch plans solved ahead above that
    (:func:`~trajflow.core.bank.bank_coupling`, which needs ``generator``); ``"full"`` /
    ``"bank"`` force one; ``"minibatch"`` solves a fresh plan on every minibatch at every step
    (TorchCFM's way; a CPU solver in the training loop). With ``stream_steps`` a bank is a
    :class:`~trajflow.core.bank.StreamingBank` instead, solved while training runs and complete
    by that step (a :class:`~trajflow.core.objectives.PairwiseObjective` starts it at its first
    step).

    ``reg_m`` (default ``None``: balanced) makes the OT coupling unbalanced with mass relaxation
    ``reg_m`` (see :func:`unbalanced_ot_plan`); ``kind="exact"`` then uses the small entropic
    regularisation :data:`UNBALANCED_EXACT_REG`, ``kind="entropic"`` its own ``reg``.
    ``source_weights`` / ``target_weights`` (one non-negative weight per cell, e.g. growth
    weights; default uniform) set the marginals the plan targets, or the sampling weights of
    the independent coupling.
    """
    if reg_m is not None and (
        isinstance(reg_m, bool) or not isinstance(reg_m, int | float) or not reg_m > 0
    ):
        raise ValueError(f"reg_m must be a positive number or None (balanced), got {reg_m!r}.")
    if kind == "independent":
        if reg_m is not None:
            raise ValueError(
                "reg_m (unbalanced OT) needs an OT coupling ('exact' or 'entropic'); the "
                "independent coupling has no transport plan to relax."
            )
        return IndependentCoupling(
            len(x0),
            len(x1),
            x0.device,
            source_weights=source_weights,
            target_weights=target_weights,
        )
    if kind not in ("exact", "entropic"):
        raise ValueError(
            f"Unknown coupling kind {kind!r}; use 'independent', 'exact' or 'entropic'."
        )
    if kind == "entropic" and (reg is None or reg <= 0):
        raise ValueError(f"The entropic coupling needs a positive reg, got {reg!r}.")
    if strategy not in COUPLINGS:
        raise ValueError(
            f"Unknown coupling strategy {strategy!r}; use 'auto', 'full', 'bank' or 'minibatch'."
        )
    strategy = resolve_strategy(strategy, len(x0), len(x1), max_full_entries)
    if strategy == "bank":
        from .bank import StreamingBank, bank_coupling  # the bank builds on this module

        if generator is None:
            raise ValueError("The bank coupling draws its minibatches: pass a generator.")
        make = bank_coupling if stream_steps is None else StreamingBank
        extra = {} if stream_steps is None else {"ramp_steps": stream_steps}
        return make(
            kind, x0, x1, generator=generator, reg=reg, reg_m=reg_m,
            source_weights=source_weights, target_weights=target_weights, **extra,
        )  # fmt: skip
    if strategy == "minibatch":
        return MinibatchOTCoupling(
            x0,
            x1,
            kind,
            reg,
            reg_m=reg_m,
            source_weights=source_weights,
            target_weights=target_weights,
        )
    if reg_m is not None:
        ureg = UNBALANCED_EXACT_REG if kind == "exact" else float(reg)
        plan = unbalanced_ot_plan(x0, x1, ureg, float(reg_m), a=source_weights, b=target_weights)
    elif kind == "exact":
        plan = exact_ot_plan(x0, x1, a=source_weights, b=target_weights)
    else:
        plan = entropic_ot_plan(x0, x1, float(reg), a=source_weights, b=target_weights)
    return PlanCoupling(plan)


class ChainSampler:
    """Draws chains of cell indices, one per population, along consecutive OT plans
    (multi-marginal flow matching).

    The first index is uniform over the first (possibly subsampled) population; each next index
    is drawn from the plan's row of the previous one. As each plan has uniform marginals, every
    link ``(i_k, i_{k+1})`` of the chain is distributed as the OT plan ``k``.
    """

    def __init__(self, plans: Sequence[Tensor | PlanCoupling], subsets: Sequence[Tensor]):
        if len(subsets) != len(plans) + 1:
            raise ValueError("Need one index subset per population (one more than plans).")
        self._links = [p if isinstance(p, PlanCoupling) else PlanCoupling(p) for p in plans]
        self._subsets = list(subsets)
        self.device = subsets[0].device

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, K)`` long tensor of indices into the populations."""
        return self.sample_links(n, generator)[0]

    def sample_links(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(n, K)`` indices into the populations and ``(n, K - 1)`` support indices of the
        links (the pair of plan ``k`` each chain used)."""
        local = torch.randint(len(self._subsets[0]), (n,), generator=generator, device=self.device)
        out, links = [self._subsets[0][local]], []
        for k, link in enumerate(self._links):
            support = link.sample_given_rows(local, generator)
            local = link.support_pairs()[1][support]
            out.append(self._subsets[k + 1][local])
            links.append(support)
        empty = torch.zeros(n, 0, dtype=torch.long, device=self.device)
        return torch.stack(out, dim=1), torch.stack(links, dim=1) if links else empty

    def link_pairs(self, k: int) -> tuple[Tensor, Tensor]:
        """Population indices ``(i, j)`` of every support pair of plan ``k``."""
        rows, cols = self._links[k].support_pairs()
        return self._subsets[k][rows], self._subsets[k + 1][cols]


def build_chain_sampler(
    populations: Sequence[Tensor],
    *,
    generator: torch.Generator,
    max_full_entries: int = MAX_FULL_PLAN_ENTRIES,
) -> ChainSampler:
    """Couple consecutive populations exactly and return a :class:`ChainSampler` over every cell.

    Each link is the full exact plan when ``n_k * n_{k+1} <= max_full_entries``, else a bank
    plan (:func:`bank_coupling`, drawn with ``generator``), in which every cell has partners.
    """
    links = [
        build_coupling(
            "exact",
            populations[k],
            populations[k + 1],
            max_full_entries=max_full_entries,
            generator=generator,
        )
        for k in range(len(populations) - 1)
    ]
    subsets = [torch.arange(len(p), device=p.device) for p in populations]
    return ChainSampler(links, subsets)
