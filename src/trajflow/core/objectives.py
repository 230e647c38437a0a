"""The two flow-matching objectives, side by side: what one training step regresses on.

An objective holds the training populations, their (internal) times and how cells are paired,
and turns a random draw into a loss for the velocity network (and the score network, where the
path has one). The optimisation loop (:func:`trajflow.core.trainer.optimise`) is shared.

- :class:`PairwiseObjective`: conditional flow matching over the consecutive pairs of time
  points (I-CFM, OT-CFM, SB-CFM, OT-MFM): a coupling per pair, a straight or Brownian-bridge
  path per drawn pair, optionally bent (OT-MFM).
- :class:`ChainObjective`: multi-marginal flow matching (Rohbeck et al. 2024): chains of cells
  through every time point, a cubic spline through each chain, optionally bent per segment.

Both draw ``batch_size`` points per pair of consecutive time points per step, so every gap gets
the same weight, and regress on velocities per unit of internal time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from .bank import StreamingBank, start_streams
from .couplings import ChainSampler, Coupling, PlanCoupling
from .paths import (
    SplineKind,
    bend_term,
    bridge_path,
    spline_path,
    spline_tangent_matrix,
    straight_path,
)

PathKind = Literal["straight", "bridge"]


class Objective(Protocol):
    """One training step's loss, from a random draw with ``generator``."""

    def loss(
        self, velocity_net: nn.Module, generator: torch.Generator, score_net: nn.Module | None
    ) -> Tensor: ...


def _check_common(populations: Sequence[Tensor], times: Sequence[float], batch_size: int) -> None:
    if len(populations) != len(times) or len(populations) < 2:
        raise ValueError("Need at least two populations, one time each.")
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"times must be strictly increasing, got {list(times)}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


def within_spread(populations: Sequence[Tensor]) -> Tensor:
    """The cells' spread per dimension within their time points, scaled to mean square 1.

    ``sqrt(v_j / mean(v))`` for ``v_j`` the variance of dimension ``j`` within each population,
    averaged over the populations (each time point weighs the same). The restoring offset is
    drawn with this shape: a cell that drifts off a population does so along the directions the
    population itself spreads in, and an offset as wide in every dimension overshoots the
    narrow ones. Measured on EB-50 (restore 0.3, day 0 pushed to day 4, seeds 0-2): an
    isotropic offset left 0.7 / 1.1 / 1.8% of the cells off the data's support, this shape 0%
    on every seed, at the same held-out accuracy (benchmarks/README.md). A dimension that never
    varies within a time point gets no offset; all-constant populations get an isotropic one.
    """
    var = torch.stack([p.var(dim=0, correction=0) for p in populations]).mean(dim=0)
    mean = var.mean()
    if not mean > 0:
        return torch.ones_like(var)
    return (var / mean).sqrt()


class PairwiseObjective:
    """Conditional flow matching over the consecutive pairs ``(populations[k], populations[k+1])``.

    Every step draws ``batch_size`` pairs from each coupling, places them on their conditional
    path at a uniform pair time ``s``, maps that to the internal time
    ``times[k] + s * (times[k+1] - times[k])`` and regresses the network on the conditional
    velocity divided by the span (so velocities are per unit of internal time). All pairs go
    through the network in one batched call.

    Parameters
    ----------
    populations, times
        ``K >= 2`` tensors ``(n_k, d)`` on one device and their increasing internal times.
    couplings
        ``K - 1`` couplings, one per consecutive pair.
    path, sigma
        ``"straight"``: a Gaussian tube of width ``sigma``; ``"bridge"``: a Brownian bridge
        with diffusion ``sigma`` per unit of time (one Brownian motion overall: the noise of a
        pair grows with the square root of its span), which also trains the score network.
    batch_size
        Pairs drawn per coupling per step.
    bends
        Metric flow matching (OT-MFM): one ``(n_support, d)`` tensor per coupling, the
        correction ``c`` of every support pair of that coupling's fixed plan (a
        :class:`~trajflow.core.couplings.PlanCoupling`, in ``support_pairs()`` order); the
        straight paths then become ``(1 - s) x0 + s x1 + s (1 - s) c``.
    restore
        Straight paths only: the root-mean-square width of a Gaussian offset added to each
        pair's source cell and shed along its path (:func:`~trajflow.core.paths.straight_path`),
        so the field learns to bring cells that drift off the data back onto the next
        population (default 0: none, and nothing more is drawn). Its width per dimension
        follows the cells' spread within their time points (:func:`within_spread`).

    Couplings that are :class:`~trajflow.core.bank.StreamingBank` s start solving on a thread
    pool at the first step (or :meth:`skip_to`); :meth:`close` stops them.
    """

    def __init__(
        self,
        populations: Sequence[Tensor],
        times: Sequence[float],
        couplings: Sequence[Coupling],
        *,
        path: PathKind = "straight",
        sigma: float = 0.1,
        batch_size: int = 128,
        bends: Sequence[Tensor] | None = None,
        restore: float = 0.0,
    ):
        _check_common(populations, times, batch_size)
        if not restore >= 0 or (restore > 0 and path != "straight"):
            raise ValueError(
                f"restore must be >= 0, and 0 unless path='straight'; got {restore!r}."
            )
        if len(couplings) != len(times) - 1:
            raise ValueError("Need one coupling per consecutive pair of populations.")
        if path not in ("straight", "bridge"):
            raise ValueError(f"path must be 'straight' or 'bridge', got {path!r}.")
        if not sigma >= 0 or (path == "bridge" and not sigma > 0):
            raise ValueError(
                f"sigma must be {'> 0 for the Brownian bridge' if path == 'bridge' else '>= 0'}, "
                f"got {sigma!r}."
            )
        if bends is not None:
            if path != "straight" or len(bends) != len(couplings):
                raise ValueError("bends need straight paths and one tensor per coupling.")
            for coupling, bend in zip(couplings, bends, strict=True):
                if not isinstance(coupling, PlanCoupling) or len(bend) != coupling.n_support:
                    raise ValueError("bends need fixed plans, one correction per support pair.")
        self.populations, self.couplings, self.bends = list(populations), list(couplings), bends
        self.path, self.sigma, self.batch_size = path, float(sigma), batch_size
        self.restore = float(restore)
        # the offset's width per dimension (computed once: the populations never change)
        self._restore_width = (
            self.restore * within_spread(self.populations) if self.restore > 0 else None
        )
        self.learns_score = path == "bridge"
        self._banks = [c for c in self.couplings if isinstance(c, StreamingBank)]
        self._streams: Executor | None = None
        self._fused: tuple[Tensor, ...] | None = None  # built once every coupling is fixed
        # every coupling a balanced streaming bank: uniform draws among the pairs so far
        self._uniform = bends is None and all(
            isinstance(c, StreamingBank) and c.uniform for c in self.couplings
        )
        self._bank_draws: tuple[Tensor, ...] | None = None
        self._bank_bases: list[int] = []
        # where population k starts in the populations laid end to end (fused draws' cells)
        self._cell_starts = np.cumsum([0] + [len(p) for p in self.populations]).tolist()
        self._filled = [0] * len(self.couplings)
        device = populations[0].device
        bs = batch_size
        self._starts = torch.tensor(
            times[:-1], dtype=torch.float32, device=device
        ).repeat_interleave(bs)
        self._spans = torch.tensor(
            [b - a for a, b in itertools.pairwise(times)], dtype=torch.float32, device=device
        ).repeat_interleave(bs)[:, None]
        self._pair_sigma = sigma * self._spans.sqrt() if path == "bridge" else None

    def _draw_each(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
        """Source cells, target cells (and bends) of one step, coupling by coupling."""
        pops, bs = self.populations, self.batch_size
        x0s, x1s, cs = [], [], []
        for k, coupling in enumerate(self.couplings):
            if self.bends is None:
                i, j = coupling.sample(bs, generator)
            else:
                support = coupling.sample_support(bs, generator)
                rows, cols = coupling.support_pairs()
                i, j = rows.index_select(0, support), cols.index_select(0, support)
                cs.append(self.bends[k].index_select(0, support))
            x0s.append(pops[k].index_select(0, i))
            x1s.append(pops[k + 1].index_select(0, j))
        return torch.cat(x0s), torch.cat(x1s), torch.cat(cs) if cs else None

    def _fuse(self) -> tuple[Tensor, ...] | tuple[()]:
        """One table for every coupling's fixed pairs, so a step draws all its pairs with a
        handful of kernels instead of ~7 per coupling (~8% of a default CPU step, and fewer
        launches on a GPU); empty when a coupling has no fixed table (independent pairs,
        per-step minibatch plans). Coupling ``k``'s cumulative weights, scaled to end at 1,
        are shifted to ``(2k, 2k + 1]``, so ``u + 2k`` with ``u`` uniform in ``[0, 1)`` lands
        inside coupling ``k`` and pairs are drawn with the same probabilities as one by one."""
        tables = [getattr(c, "tables", lambda: None)() for c in self.couplings]
        if any(t is None for t in tables):
            return ()
        starts = self._cell_starts
        cumulative, rows, cols = [], [], []
        for k, (cum, r, c) in enumerate(tables):
            cumulative.append(cum / cum[-1] + 2 * k)
            rows.append(r + starts[k])
            cols.append(c + starts[k + 1])
        device = self.populations[0].device
        shift = 2 * torch.arange(len(tables), device=device, dtype=torch.float64)
        bends = torch.cat(list(self.bends)) if self.bends is not None else None
        return (
            torch.cat(cumulative),
            torch.cat(rows),
            torch.cat(cols),
            torch.cat(self.populations),
            shift.repeat_interleave(self.batch_size),
            *(() if bends is None else (bends,)),
        )

    def _draw_fused(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
        cumulative, rows, cols, cells, shift, *bends = self._fused
        u = torch.rand(len(shift), generator=generator, device=shift.device, dtype=torch.float64)
        k = torch.searchsorted(cumulative, u.add_(shift)).clamp_(max=len(cumulative) - 1)
        # index_select, not [], for these row gathers: 3.5x faster on the CPU, same values
        x0 = cells.index_select(0, rows.index_select(0, k))
        x1 = cells.index_select(0, cols.index_select(0, k))
        return x0, x1, bends[0].index_select(0, k) if bends else None

    def _draw_banks(self, generator: torch.Generator) -> tuple[Tensor, Tensor, None]:
        """Every coupling a balanced streaming bank, so all pairs a bank has solved weigh the
        same: each draw is a uniform index among them, for every bank at once in a handful of
        kernels, whether the banks are still growing or whole. No search over cumulative
        weights: the draws a bank makes itself (``floor(u n)`` is ``ceil(u n) - 1`` unless
        ``u n`` is a whole number; an entropic bank's minibatch totals are 1 to ~4e-9, so a few
        draws in millions pick a neighbouring pair). 100,000 cells x 10 time points: draws
        ~3x cheaper than bank by bank while the banks stream in."""
        if self._bank_draws is None:
            device = self.populations[0].device
            sizes = [len(bank.pairs()[0]) for bank in self._banks]
            self._bank_bases = np.cumsum([0] + sizes[:-1]).tolist()
            self._bank_draws = (
                torch.empty(sum(sizes), dtype=torch.long, device=device),
                torch.empty(sum(sizes), dtype=torch.long, device=device),
                torch.cat(self.populations),
                torch.tensor(self._bank_bases, device=device).repeat_interleave(self.batch_size),
                torch.zeros(len(sizes) * self.batch_size, dtype=torch.float64, device=device),
            )
        rows, cols, cells, base, count = self._bank_draws
        counts = [bank.advance() for bank in self._banks]
        if counts != self._filled:  # copy in the pairs solved since the last step
            starts = self._cell_starts
            for k, (bank, at) in enumerate(zip(self._banks, self._bank_bases, strict=True)):
                have, now = self._filled[k], counts[k]
                r, c = bank.pairs()
                rows[at + have : at + now] = r[have:now] + starts[k]
                cols[at + have : at + now] = c[have:now] + starts[k + 1]
            self._filled = counts
            # in place: a captured CUDA graph keeps reading this tensor
            per_draw = torch.tensor(counts, dtype=torch.float64).repeat_interleave(self.batch_size)
            count.copy_(per_draw)
        u = torch.rand(len(base), generator=generator, device=base.device, dtype=torch.float64)
        k = u.mul_(count).long().add_(base)
        x0 = cells.index_select(0, rows.index_select(0, k))
        x1 = cells.index_select(0, cols.index_select(0, k))
        return x0, x1, None

    @property
    def static(self) -> bool:
        """Whether every step from now on launches the same device work on the same tensors
        (what a CUDA graph replays): no bank is still growing and no coupling solves on the
        host per step."""
        return all(getattr(c, "complete", True) for c in self.couplings)

    def _start_streams(self) -> None:
        if self._banks and self._streams is None:
            self._streams = start_streams(self._banks)

    def skip_to(self, step: int) -> None:
        """Continue as if ``step`` steps had been taken (a resumed fit): streaming banks
        follow their schedule from there."""
        self._start_streams()
        for bank in self._banks:
            bank.skip_to(step)

    def close(self) -> None:
        """Stop solving streaming banks (after training; a later step solves what it needs on
        the calling thread)."""
        if self._streams is not None:
            self._streams.shutdown(wait=False, cancel_futures=True)

    def loss(
        self,
        velocity_net: nn.Module,
        generator: torch.Generator,
        score_net: nn.Module | None = None,
    ) -> Tensor:
        pops, bs = self.populations, self.batch_size
        device, dim = pops[0].device, pops[0].shape[1]
        n = len(self.couplings) * bs
        self._start_streams()
        if self._uniform:
            x0, x1, bend = self._draw_banks(generator)
        else:
            if self._fused is None and self.static:
                self._fused = self._fuse()
            x0, x1, bend = (self._draw_fused if self._fused else self._draw_each)(generator)
        s = torch.rand(n, 1, generator=generator, device=device)
        noise = torch.randn(n, dim, generator=generator, device=device)
        if self.path == "straight":
            offset = None
            if self.restore > 0:
                offset = self._restore_width * torch.randn(
                    n, dim, generator=generator, device=device
                )
            xs, us = straight_path(x0, x1, s, self.sigma, noise, bend, offset)
        else:
            xs, us, lam = bridge_path(x0, x1, s, self._pair_sigma, noise)
        t = self._starts[:, None] + s.clamp(0, 1) * self._spans
        loss = (velocity_net(xs, t) - us / self._spans).pow(2).mean()
        if score_net is not None:
            loss = loss + (lam * score_net(xs, t) + noise).pow(2).mean()
        return loss


class ChainObjective:
    """Multi-marginal conditional flow matching (Rohbeck et al. 2024) with exact OT chains.

    Every step draws ``batch_size`` chains per segment (pair of consecutive time points), places
    each on its spline at a uniform time within its segment and regresses the velocity network
    on the spline's velocity. With two populations the spline is the straight line and this is
    OT-CFM.

    Parameters
    ----------
    populations, times
        ``K >= 2`` tensors ``(n_k, d)`` on one device and their increasing internal times (the
        spline's knots).
    sampler
        Draws the chains (:func:`~trajflow.core.couplings.build_chain_sampler`).
    spline, sigma
        The tangent rule (``"natural"``, ``"hermite"``, or ``None`` for straight segments) and
        the width of the Gaussian tube around each spline.
    batch_size
        Chains drawn per segment per step.
    bends
        Metric flow matching: one ``(n_support, d)`` tensor per link ``k`` of the sampler, the
        correction of each support pair of plan ``k`` (``sampler.link_pairs(k)`` order), added
        to segment ``k`` of every chain that used that pair.
    """

    learns_score = False
    #: Chains are drawn on the device from fixed plans: every step does the same work.
    static = True

    def __init__(
        self,
        populations: Sequence[Tensor],
        times: Sequence[float],
        sampler: ChainSampler,
        *,
        spline: SplineKind | None = "natural",
        sigma: float = 0.1,
        batch_size: int = 128,
        bends: Sequence[Tensor] | None = None,
    ):
        _check_common(populations, times, batch_size)
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}.")
        if bends is not None and len(bends) != len(populations) - 1:
            raise ValueError("bends need one tensor per link of the chains.")
        self.populations, self.sampler = list(populations), sampler
        self.sigma, self.batch_size = float(sigma), batch_size
        device = populations[0].device
        n_seg = len(populations) - 1
        self._knots = torch.as_tensor(np.asarray(times, dtype=np.float64), device=device)
        self._tangents = (
            None if spline is None else spline_tangent_matrix(list(times), spline).to(device)
        )
        self._segment = torch.arange(n_seg, device=device).repeat_interleave(batch_size)
        self._starts = self._knots[self._segment].float()[:, None]
        self._spans = (self._knots[self._segment + 1] - self._knots[self._segment]).float()[:, None]
        self._bends, self._offsets = None, None
        if bends is not None:  # one flat table, indexed by link offset + support index
            sizes = torch.tensor([len(b) for b in bends], device=device)
            self._offsets = torch.cumsum(sizes, 0) - sizes
            self._bends = torch.cat(list(bends))

    def loss(
        self,
        velocity_net: nn.Module,
        generator: torch.Generator,
        score_net: nn.Module | None = None,
    ) -> Tensor:
        pops, segment = self.populations, self._segment
        n, dim = len(segment), pops[0].shape[1]
        idx, links = self.sampler.sample_links(n, generator)  # (n, K), (n, K - 1)
        chain = torch.stack([pops[k].index_select(0, idx[:, k]) for k in range(len(pops))], 1)
        s = torch.rand(n, 1, generator=generator, device=chain.device)
        noise = torch.randn(n, dim, generator=generator, device=chain.device)
        xt, ut = spline_path(chain, self._knots, self._tangents, segment, s, self.sigma, noise)
        if self._bends is not None:
            c = self._bends[self._offsets[segment] + links.gather(1, segment[:, None]).squeeze(1)]
            dx, du = bend_term(s, c)
            xt = xt + dx
            ut = ut + du / self._spans
        t = self._starts + s * self._spans
        return (velocity_net(xt, t) - ut).pow(2).mean()


class MixtureObjective:
    """Conditional flow matching on a mixture of probability paths: each step's loss is the
    weighted mean of several objectives' losses, each on its own draw.

    The flow-matching loss is linear in the distribution of conditional paths, so the field
    that minimises the mixture's loss is the one whose flow carries the mixture of the parts'
    marginal paths. Where the parts agree (at the training time points, which every part
    interpolates) it carries the data; between them it carries a population spread over what
    each kind of path predicts: one network for what pooling the predictions of separately
    fitted networks gives (issue 24, benchmarks/README.md).

    Parameters
    ----------
    parts
        Objectives over the same populations and times; none may learn a score (a mixture of
        scores would need the parts' densities).
    weights
        Each part's weight in the loss (positive; normalised to sum 1). Default: equal.
    """

    learns_score = False

    def __init__(self, parts: Sequence[Objective], weights: Sequence[float] | None = None):
        if len(parts) < 2:
            raise ValueError(f"A mixture needs at least two objectives, got {len(parts)}.")
        if any(getattr(p, "learns_score", False) for p in parts):
            raise ValueError("A mixture cannot train a score network; pass objectives without one.")
        weights = [1.0] * len(parts) if weights is None else [float(w) for w in weights]
        if len(weights) != len(parts) or not all(w > 0 for w in weights):
            raise ValueError(f"weights must be one positive number per part, got {weights}.")
        self.parts = list(parts)
        self.weights = [w / sum(weights) for w in weights]

    @property
    def static(self) -> bool:
        """Whether every part does the same device work at every step (see
        :attr:`PairwiseObjective.static`)."""
        return all(getattr(p, "static", True) for p in self.parts)

    def skip_to(self, step: int) -> None:
        """Continue every part as if ``step`` steps had been taken (a resumed fit)."""
        for part in self.parts:
            if hasattr(part, "skip_to"):
                part.skip_to(step)

    def close(self) -> None:
        """Stop every part's background solves."""
        for part in self.parts:
            if hasattr(part, "close"):
                part.close()

    def loss(
        self,
        velocity_net: nn.Module,
        generator: torch.Generator,
        score_net: nn.Module | None = None,
    ) -> Tensor:
        return sum(
            w * part.loss(velocity_net, generator, score_net)
            for w, part in zip(self.weights, self.parts, strict=True)
        )
