"""Multi-marginal flow matching: smooth conditional paths through chains of OT-coupled cells.

Straight conditional paths (OT-CFM) only see the two time points around each gap. Multi-marginal
flow matching (Rohbeck, De Brouwer, Bunne, Huetter, Biton, Chen, Theis & Richmond 2024,
"Modeling Complex System Dynamics with Flow Matching Across Time and Conditions", ICLR 2025)
instead draws a *chain* of cells ``x_0, x_1, ..., x_{K-1}``, one per training time point, by
composing the exact OT plans between consecutive populations, and regresses the velocity field
on the time derivative of a smooth cubic spline through the chain. A gap left by a held-out time
point is then bridged along a curve whose bend is informed by the time points beyond the gap.

Every spline here is a cubic Hermite spline through the chain at the internal times ``taus``,
with tangents that are a fixed linear map of the chain points; so a point on the path and its
velocity are both *linear* in the chain, with weights that depend only on the time. Two tangent
rules:

``"natural"``
    The C2 natural cubic spline (zero curvature at both ends); every tangent depends on the whole
    chain.
``"hermite"``
    Local quadratic tangents (the derivative of the parabola through three consecutive points;
    one-sided parabolas at the ends), as in a non-uniform Catmull-Rom spline: a segment only
    depends on the two points before and after it.

The trainer optionally keeps an exponential moving average (EMA) of the weights, which is copied
into the returned network. The result is a plain :class:`~trajflow.core.VelocityNet`, so models
trained here predict, save and load exactly like any other.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from .couplings import exact_ot_plan
from .trainer import TrainResult, optimise

SplineKind = Literal["natural", "hermite", "linear"]

__all__ = [
    "ChainSampler",
    "MultiMarginalConfig",
    "MultiMarginalResult",
    "build_chain_sampler",
    "spline_path",
    "spline_tangent_matrix",
    "spline_weights",
    "train_multimarginal",
]

#: Populations larger than this are subsampled (uniformly, once) before their OT plans are solved.
MAX_CHAIN_CELLS = 2500


# --------------------------------------------------------------------------------------- splines
def spline_tangent_matrix(knots: Sequence[float], kind: SplineKind = "natural") -> Tensor:
    """The ``(K, K)`` matrix ``A`` with tangents ``m = A @ y`` of the cubic spline through
    values ``y`` at increasing ``knots``.

    Parameters
    ----------
    knots
        ``K >= 2`` strictly increasing times.
    kind
        ``"natural"`` (C2 natural cubic spline) or ``"hermite"`` (local three-point parabola
        tangents). With two knots both are the straight line.

    Returns
    -------
    A float64 tensor ``A`` of shape ``(K, K)``.
    """
    t = np.asarray(knots, dtype=np.float64)
    k = len(t)
    if k < 2 or np.any(np.diff(t) <= 0):
        raise ValueError(f"knots must be at least 2 strictly increasing times, got {list(knots)}.")
    if kind not in ("natural", "hermite"):
        raise ValueError(f"Unknown spline kind {kind!r}; use 'natural' or 'hermite'.")
    h = np.diff(t)
    # secant slopes d_j = (y_{j+1} - y_j) / h_j as a (K-1, K) linear map of y
    secant = np.zeros((k - 1, k))
    for j in range(k - 1):
        secant[j, j], secant[j, j + 1] = -1 / h[j], 1 / h[j]
    if k == 2:
        return torch.as_tensor(np.repeat(secant, 2, axis=0))
    if kind == "hermite":
        a = np.zeros((k, k))
        for j in range(1, k - 1):
            a[j] = (h[j] * secant[j - 1] + h[j - 1] * secant[j]) / (h[j - 1] + h[j])
        c0 = (secant[1] - secant[0]) / (h[0] + h[1])
        a[0] = secant[0] - h[0] * c0
        cn = (secant[-1] - secant[-2]) / (h[-2] + h[-1])
        a[-1] = secant[-1] + h[-1] * cn
        return torch.as_tensor(a)
    # natural cubic spline in Hermite form: T m = R y
    tmat = np.zeros((k, k))
    rmat = np.zeros((k, k))
    tmat[0, 0], tmat[0, 1] = 2.0, 1.0
    rmat[0] = 3 * secant[0]
    tmat[-1, -2], tmat[-1, -1] = 1.0, 2.0
    rmat[-1] = 3 * secant[-1]
    for j in range(1, k - 1):
        tmat[j, j - 1] = 1 / h[j - 1]
        tmat[j, j] = 2 * (1 / h[j - 1] + 1 / h[j])
        tmat[j, j + 1] = 1 / h[j]
        rmat[j] = 3 * (secant[j - 1] / h[j - 1] + secant[j] / h[j])
    return torch.as_tensor(np.linalg.solve(tmat, rmat))


def spline_weights(
    knots: Tensor, tangents: Tensor | None, segment: Tensor, s: Tensor
) -> tuple[Tensor, Tensor]:
    """Weights of the chain points in the spline's position and velocity.

    Parameters
    ----------
    knots
        ``(K,)`` knot times.
    tangents
        ``(K, K)`` tangent matrix from :func:`spline_tangent_matrix` (same dtype as ``knots``),
        or None for piecewise straight segments (OT-CFM's paths).
    segment
        ``(n,)`` long tensor: the segment ``j`` (between knots ``j`` and ``j + 1``) of each point.
    s
        ``(n,)`` or ``(n, 1)`` fraction of the way through the segment, in ``[0, 1]``.

    Returns
    -------
    ``(w, dw)``, each ``(n, K)``: the point is ``w @ chain`` and its velocity (per unit of knot
    time) is ``dw @ chain``.
    """
    s = s.reshape(-1, 1).to(knots.dtype)
    h = (knots[segment + 1] - knots[segment]).reshape(-1, 1)
    n_knots = len(knots)
    left = torch.nn.functional.one_hot(segment, n_knots).to(knots.dtype)
    right = torch.nn.functional.one_hot(segment + 1, n_knots).to(knots.dtype)
    if tangents is None:
        return (1 - s) * left + s * right, (right - left) / h
    s2, s3 = s * s, s * s * s
    h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
    d00, d10, d01, d11 = 6 * s2 - 6 * s, 3 * s2 - 4 * s + 1, -6 * s2 + 6 * s, 3 * s2 - 2 * s
    m_left, m_right = tangents[segment], tangents[segment + 1]
    w = h00 * left + h01 * right + h * (h10 * m_left + h11 * m_right)
    dw = (d00 * left + d01 * right) / h + d10 * m_left + d11 * m_right
    return w, dw


def spline_path(
    chain: Tensor,
    knots: Tensor,
    tangents: Tensor | None,
    segment: Tensor,
    s: Tensor,
    sigma: float,
    noise: Tensor,
) -> tuple[Tensor, Tensor]:
    """A Gaussian tube of width ``sigma`` around the cubic spline through each chain.

    Parameters
    ----------
    chain
        ``(n, K, d)``: one cell per knot for each of ``n`` chains.
    knots, tangents, segment, s
        As in :func:`spline_weights`.
    sigma, noise
        Tube width and ``(n, d)`` standard normal noise.

    Returns
    -------
    ``(x_t, u_t)``: points on the paths and their conditional velocities (per unit of knot
    time), each ``(n, d)``.
    """
    w, dw = spline_weights(knots, tangents, segment, s)
    w, dw = w.to(chain.dtype), dw.to(chain.dtype)
    xt = torch.einsum("nk,nkd->nd", w, chain) + sigma * noise
    ut = torch.einsum("nk,nkd->nd", dw, chain)
    return xt, ut


# ---------------------------------------------------------------------------------------- chains
class _ConditionalPlan:
    """Draws a column of an OT plan given its row, by inverse CDF over the plan's support."""

    def __init__(self, plan: Tensor, *, min_weight: float = 1e-12):
        weights = plan.flatten().double()
        support = torch.nonzero(weights > min_weight * weights.max()).squeeze(1)  # row-major order
        w = weights[support]
        self._cumulative = torch.cumsum(w, dim=0)
        rows = torch.div(support, plan.shape[1], rounding_mode="floor")
        self._cols = support % plan.shape[1]
        self._rows = rows
        counts = torch.bincount(rows, minlength=plan.shape[0])
        ends = torch.cumsum(counts, dim=0)
        zero = torch.zeros(1, dtype=self._cumulative.dtype, device=plan.device)
        padded = torch.cat([zero, self._cumulative])
        self._lo = padded[ends - counts]
        self._hi = padded[ends]
        self._n = int(support.numel())
        if bool((counts == 0).any()):
            raise ValueError("Every source cell must carry mass in the plan.")

    def sample(self, rows: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Columns drawn given ``rows``, and the index of each drawn pair in the support."""
        u = torch.rand(len(rows), generator=generator, device=rows.device, dtype=torch.float64)
        lo, hi = self._lo[rows], self._hi[rows]
        k = torch.searchsorted(self._cumulative, lo + u * (hi - lo)).clamp_(max=self._n - 1)
        return self._cols[k], k

    def support_pairs(self) -> tuple[Tensor, Tensor]:
        """(row, column) of every support pair, in support order."""
        return self._rows, self._cols


class ChainSampler:
    """Draws chains of cell indices, one per population, along consecutive OT plans.

    The first index is uniform over the first (possibly subsampled) population; each next index
    is drawn from the plan's row of the previous one. As each plan has uniform marginals, every
    link ``(i_k, i_{k+1})`` of the chain is distributed as the OT plan ``k``.
    """

    def __init__(self, plans: Sequence[Tensor], subsets: Sequence[Tensor]):
        if len(subsets) != len(plans) + 1:
            raise ValueError("Need one index subset per population (one more than plans).")
        self._links = [_ConditionalPlan(p) for p in plans]
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
            local, support = link.sample(local, generator)
            out.append(self._subsets[k + 1][local])
            links.append(support)
        empty = torch.zeros(n, 0, dtype=torch.long, device=self.device)
        return torch.stack(out, dim=1), torch.stack(links, dim=1) if links else empty

    def link_pairs(self, k: int) -> tuple[Tensor, Tensor]:
        """Population indices ``(i, j)`` of every support pair of plan ``k``."""
        rows, cols = self._links[k].support_pairs()
        return self._subsets[k][rows], self._subsets[k + 1][cols]


def build_chain_sampler(
    populations: Sequence[Tensor], *, max_cells: int = MAX_CHAIN_CELLS, generator: torch.Generator
) -> ChainSampler:
    """Solve exact OT plans between consecutive populations and return a :class:`ChainSampler`.

    Populations with more than ``max_cells`` cells are subsampled uniformly (once) first, so the
    network-simplex solver stays fast.
    """
    subsets = []
    for pop in populations:
        n = len(pop)
        if n > max_cells:
            idx = torch.randperm(n, generator=generator, device=pop.device)[:max_cells]
        else:
            idx = torch.arange(n, device=pop.device)
        subsets.append(idx)
    plans = [
        exact_ot_plan(populations[k][subsets[k]], populations[k + 1][subsets[k + 1]])
        for k in range(len(populations) - 1)
    ]
    return ChainSampler(plans, subsets)


# --------------------------------------------------------------------------------------- trainer
@dataclass
class MultiMarginalConfig:
    """Settings of :func:`train_multimarginal`.

    ``batch_size`` counts points per segment (pair of consecutive time points) per step, as in
    :class:`~trajflow.core.TrainConfig`; ``sigma`` is the width of the Gaussian tube around each
    spline; ``spline`` is ``"natural"``, ``"hermite"`` or ``"linear"`` (straight segments);
    ``ema`` the decay of the exponential moving average of the weights (0 disables it).
    ``bend`` adds the metric (OT-MFM) correction ``s (1 - s) c`` of
    :func:`~trajflow.core.manifold.optimise_bends` to every segment, with metric floor
    ``bend_eps``.
    """

    n_steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    sigma: float = 0.1
    spline: SplineKind = "natural"
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    ema: float = 0.0
    bend: bool = False
    bend_eps: float = 0.1
    check_every: int = 50

    def __post_init__(self) -> None:
        for name in ("n_steps", "batch_size", "check_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        if self.weight_decay < 0 or not self.sigma >= 0:
            raise ValueError("weight_decay and sigma must be >= 0.")
        if self.spline not in ("natural", "hermite", "linear"):
            raise ValueError(
                f"spline must be 'natural', 'hermite' or 'linear', got {self.spline!r}."
            )
        if not self.bend_eps > 0:
            raise ValueError(f"bend_eps must be > 0, got {self.bend_eps!r}.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}."
            )
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}.")


#: Training record of :func:`train_multimarginal`: the same as the pairwise trainer's.
MultiMarginalResult = TrainResult


def train_multimarginal(
    populations: Sequence[Tensor],
    times: Sequence[float],
    velocity_net: nn.Module,
    config: MultiMarginalConfig,
    *,
    generator: torch.Generator,
    sampler: ChainSampler | None = None,
    progress: bool = True,
) -> MultiMarginalResult:
    """Multi-marginal conditional flow matching (Rohbeck et al. 2024) with exact OT chains.

    Every step draws ``config.batch_size`` chains per segment, places each on its spline at a
    uniform time within its segment (so every pair of consecutive time points gets the same
    weight, as in OT-CFM) and regresses ``velocity_net`` on the spline's velocity. With two
    populations the spline is the straight line and this is OT-CFM.

    Parameters
    ----------
    populations
        ``K >= 2`` tensors ``(n_k, d)`` on one device, in time order.
    times
        Their ``K`` strictly increasing (internal) times.
    velocity_net
        Trained in place; with ``config.ema > 0`` it ends up holding the averaged weights.
    config
        Optimisation settings.
    generator
        Seeds chain and path sampling.
    sampler
        Chains to draw from; default: :func:`build_chain_sampler` on ``populations``.
    progress
        Show a progress bar.

    Returns
    -------
    A :class:`MultiMarginalResult` with the loss history.
    """
    if len(populations) != len(times) or len(populations) < 2:
        raise ValueError("Need at least two populations, one time each.")
    device = populations[0].device
    dim = populations[0].shape[1]
    n_seg = len(populations) - 1
    bs = config.batch_size
    if sampler is None:
        sampler = build_chain_sampler(populations, generator=generator)
    knots = torch.as_tensor(np.asarray(times, dtype=np.float64), device=device)
    tangents = None
    if config.spline != "linear":
        tangents = spline_tangent_matrix(list(times), config.spline).to(device)
    segment = torch.arange(n_seg, device=device).repeat_interleave(bs)
    starts = knots[segment].float()[:, None]
    spans = (knots[segment + 1] - knots[segment]).float()[:, None]
    stacked = list(populations)
    bends, offsets = None, None
    if config.bend:
        from .manifold import support_bends

        links = [sampler.link_pairs(k) for k in range(n_seg)]
        per_link = support_bends(stacked, links, eps=config.bend_eps, generator=generator)
        sizes = torch.tensor([len(b) for b in per_link], device=device)
        offsets = torch.cumsum(sizes, 0) - sizes
        bends = torch.cat(per_link)

    ema_net = copy.deepcopy(velocity_net) if config.ema > 0 else None

    def update_ema() -> None:
        with torch.no_grad():
            for pe, p in zip(ema_net.parameters(), velocity_net.parameters(), strict=True):
                pe.lerp_(p, 1 - config.ema)

    def step_loss(step: int) -> Tensor:
        idx, links = sampler.sample_links(n_seg * bs, generator)  # (n, K), (n, K - 1)
        chain = torch.stack([stacked[k][idx[:, k]] for k in range(len(stacked))], dim=1)
        s = torch.rand(n_seg * bs, 1, generator=generator, device=device)
        noise = torch.randn(n_seg * bs, dim, generator=generator, device=device)
        xt, ut = spline_path(chain, knots, tangents, segment, s, config.sigma, noise)
        if bends is not None:
            c = bends[offsets[segment] + links.gather(1, segment[:, None]).squeeze(1)]
            xt = xt + s * (1 - s) * c
            ut = ut + (1 - 2 * s) * c / spans
        t = starts + s * spans
        return (velocity_net(xt, t) - ut).pow(2).mean()

    result = optimise(
        step_loss,
        [velocity_net],
        config,
        progress=progress,
        after_step=update_ema if ema_net is not None else None,
    )
    if ema_net is not None and result.steps_done > 0:
        velocity_net.load_state_dict(ema_net.state_dict())
    return result
