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
import torch
from torch import Tensor

from .plans import (
    UNBALANCED_EXACT_REG,
    as_weights,
    entropic_ot_plan,
    exact_ot_plan,
    unbalanced_ot_plan,
)

CouplingKind = Literal["independent", "exact", "entropic"]


class Coupling(Protocol):
    """Draws ``n`` (source index, target index) pairs."""

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...


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
        wa = as_weights(source_weights, n_source, "source_weights")
        wb = as_weights(target_weights, n_target, "target_weights")
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

    @property
    def couplings(self) -> list[PlanCoupling]:
        """The links as couplings of consecutive populations: what a pairwise objective on the
        same exact plans draws from (when every subset is its whole population, as
        :func:`~trajflow.core.strategy.build_chain_sampler` builds them)."""
        return list(self._links)

    def link_pairs(self, k: int) -> tuple[Tensor, Tensor]:
        """Population indices ``(i, j)`` of every support pair of plan ``k``."""
        rows, cols = self._links[k].support_pairs()
        return self._subsets[k][rows], self._subsets[k + 1][cols]
