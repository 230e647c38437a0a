"""Bends: the metric flow matching corrections that pull paths toward dense regions of the cells.

Metric flow matching (OT-MFM; Kapusniak, Potaptchik, Reu, Zhang, Tong, Bronstein, Bose & Di
Giovanni 2024, "Metric Flow Matching for Smooth Interpolations on the Data Manifold", NeurIPS)
replaces the straight conditional path between OT-coupled cells by
``x_s = (1 - s) x0 + s x1 + s (1 - s) c`` and chooses the correction ``c`` to minimise the path's
kinetic energy under a data-dependent Riemannian metric ``G(x) = I / (h(x) + eps)``, where ``h`` is
high where cells are dense. Paths then prefer to run through populated regions of expression
space rather than cutting across empty ones.

OT-MFM learns ``c`` with a network ``phi(x0, x1, s)``. Here the couplings are full exact OT plans
with a finite support (at most ``n + m - 1`` pairs), so ``c`` is simply optimised once *per support
pair* before flow matching starts (30 vectorised Adam steps), and ``h`` is a Gaussian
kernel density of the training cells (all training time points), normalised to mean 1 on them,
with a bandwidth set from nearest-neighbour distances. Everything is in standardised units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["kde_metric", "optimise_bends", "support_bends"]

#: Reference cells of the density (subsampled uniformly beyond this). 1,000 rather than 400:
#: a denser, sharper density (its bandwidth is a nearest-neighbour distance among them) lowered
#: ot-mfm's held-out W1 on all four shared sets (5 seeds, time clock: Weinreb 0.524 -> 0.502,
#: Klein 2.619 -> 2.602, EB 0.867 -> 0.863, EMT 1.158 -> 1.158) and mmfm-metric's too, for about
#: twice the bends' cost (benchmarks/README.md, Accuracy).
MAX_REFERENCE = 1000
#: Cells of one time point that may enter the density's reference (as the 2,000-cell
#: subsample ot-mfm trained on before it trained on every cell: measured on Weinreb, drawing
#: from all 5,788 day-6 cells lost 0.01 W1; an equal share per time point lost 0.009 on EMT).
MAX_REFERENCE_PER_TIME = 2000
#: Largest squared distance, in units of twice the squared bandwidth, that a kernel tells apart.
EXPONENT_FLOOR = 80.0


class _KernelMean(torch.autograd.Function):
    """``mean_j exp(-|x - r_j|^2 / bw2)`` for every row ``x``, and its gradient in ``x``.

    Written out because autograd's version of the same expression made ~25 passes over the
    ``(points, reference)`` kernel matrix (forward and backward: sub, div, neg, clamp, where,
    ...); here the forward makes it in one ``addmm`` and three in-place passes and the backward
    reuses it in one matmul (``grad_x = -2 / bw2 * (x * sum_j K - K @ r) / n``): OT-MFM's bends,
    which evaluate it ~100 times on ~30,000 points, took ~4x longer before. Logits are held in
    ``[-EXPONENT_FLOOR, 0]``: ``sq >= 0`` despite rounding, and no subnormal results (exp of a
    large negative argument underflows to subnormals, which the CPU computes several times
    slower); a kernel under ``exp(-80)`` is ~1e-35, far below the metric's floor ``eps``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, ref: Tensor, ref_bias: Tensor, bw2: float) -> Tensor:  # type: ignore[override]
        kernel = torch.addmm(ref_bias, x, ref.T, alpha=2.0 / bw2)
        kernel.sub_(x.pow(2).sum(1, keepdim=True).div_(bw2))
        kernel.clamp_(-EXPONENT_FLOOR, 0.0).exp_()
        total = kernel.sum(1)
        ctx.save_for_backward(x, ref, kernel, total)
        ctx.bw2 = bw2
        return total / ref.shape[0]

    @staticmethod
    @once_differentiable  # its backward is not itself differentiable: say so if asked
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        x, ref, kernel, total = ctx.saved_tensors
        pulled = x * total[:, None] - kernel @ ref
        scale = grad[:, None] * (-2.0 / (ctx.bw2 * ref.shape[0]))
        return pulled * scale, None, None, None


def kde_metric(
    reference: Tensor,
    *,
    bandwidth: float | None = None,
    k: int = 10,
    max_reference: int | None = None,
    generator: torch.Generator | None = None,
) -> Callable[[Tensor], Tensor]:
    """A density ``h(x)`` of the reference cells: a Gaussian kernel density normalised so that
    its mean over the reference cells is 1.

    Parameters
    ----------
    reference
        ``(n, d)`` cells (all training time points).
    bandwidth
        Kernel width; default: the median distance of a reference cell to its ``k``-th nearest
        neighbour among the (subsampled) reference cells.
    k
        Neighbour rank for the default bandwidth.
    max_reference
        Reference cells are subsampled uniformly to at most this many.
    generator
        For the subsample.

    Returns
    -------
    A function ``h`` from ``(m, d)`` points to ``(m,)`` densities.
    """
    max_reference = MAX_REFERENCE if max_reference is None else max_reference
    if len(reference) > max_reference:
        idx = torch.randperm(len(reference), generator=generator, device=reference.device)
        reference = reference[idx[:max_reference]]
    ref = reference.float()
    if bandwidth is None:
        dist = torch.cdist(ref, ref)
        kk = min(k, len(ref) - 1)
        bandwidth = float(dist.topk(kk + 1, largest=False).values[:, kk].median())
    bw2 = 2 * max(bandwidth, 1e-6) ** 2

    # -|r_j|^2 / bw2 per reference cell: the kernel's logits are one addmm away
    ref_bias = ref.pow(2).sum(1).div(-bw2)

    def raw(x: Tensor) -> Tensor:
        return _KernelMean.apply(x, ref, ref_bias, bw2)

    scale = float(raw(ref).mean())

    def h(x: Tensor) -> Tensor:
        return raw(x) / scale

    h.bandwidth = bandwidth  # type: ignore[attr-defined]
    return h


def optimise_bends(
    x0: Tensor,
    x1: Tensor,
    h: Callable[[Tensor], Tensor],
    *,
    eps: float = 0.1,
    n_iter: int = 30,
    n_times: int = 8,
    lr: float = 0.2,
    chunk: int = 4096,
) -> Tensor:
    """Per-pair corrections ``c`` of the OT-MFM interpolant ``(1 - s) x0 + s x1 + s (1 - s) c``.

    Minimises the discretised metric energy ``mean_s |dx/ds|^2 / (h(x_s) + eps)`` over ``c`` for
    every pair independently (Kapusniak et al. 2024, with an RBF/KDE metric), starting at ``c = 0``
    (the straight line).

    Parameters
    ----------
    x0, x1
        ``(n, d)`` paired end points.
    h
        Density from :func:`kde_metric`.
    eps
        Floor of the metric's denominator: the largest penalty factor on empty space is ``1/eps``.
    n_iter, n_times, lr
        Adam steps, interior quadrature times, and step size.
    chunk
        Pairs optimised at once.

    Returns
    -------
    ``(n, d)`` corrections ``c``.
    """
    s = ((torch.arange(n_times, device=x0.device, dtype=torch.float32) + 0.5) / n_times)[
        None, :, None
    ]
    out = []
    for start in range(0, len(x0), chunk):
        a, b = x0[start : start + chunk].float(), x1[start : start + chunk].float()
        c = torch.zeros_like(a, requires_grad=True)
        opt = torch.optim.Adam([c], lr=lr)
        for _ in range(n_iter):
            xs = (1 - s) * a[:, None] + s * b[:, None] + s * (1 - s) * c[:, None]
            vs = (b - a)[:, None] + (1 - 2 * s) * c[:, None]
            dens = h(xs.reshape(-1, a.shape[1])).reshape(len(a), n_times)
            energy = (vs.pow(2).sum(-1) / (dens + eps)).mean()
            opt.zero_grad(set_to_none=True)
            (energy * len(a)).backward()
            opt.step()
        out.append(c.detach())
    return torch.cat(out)


def support_bends(
    populations: Sequence[Tensor],
    pairs: Sequence[tuple[Tensor, Tensor]],
    *,
    eps: float = 0.1,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """OT-MFM corrections for paired cells of consecutive ``populations``, under one density of
    all the populations. ``pairs[k]`` holds the indices ``(i, j)`` into ``populations[k]`` and
    ``populations[k + 1]`` of link ``k``'s pairs (e.g. the support of a fixed OT plan); returns
    one ``(len(i), d)`` tensor per link."""
    # At most MAX_REFERENCE_PER_TIME cells from each time point, so one very large population
    # does not pull every bend toward itself (Weinreb: 5,788 cells at day 6, 1,429 at day 2).
    reference = []
    for pop in populations:
        if len(pop) > MAX_REFERENCE_PER_TIME:
            keep = torch.randperm(len(pop), generator=generator, device=pop.device)
            pop = pop[keep[:MAX_REFERENCE_PER_TIME]]
        reference.append(pop)
    h = kde_metric(torch.cat(reference), generator=generator)
    return [
        optimise_bends(populations[k][i], populations[k + 1][j], h, eps=eps)
        for k, (i, j) in enumerate(pairs)
    ]
