"""The transition kernel of :func:`trajflow.tl.fate_probabilities`: calibrated, not falsely certain.

A pushed cell is spread over the observed cells of the later time point with Gaussian weights.
How wide that spread is decides how certain the fates come out, and it must not depend on how
many cells were sequenced. The couplings' kernel (:func:`~._transitions.soft_assign`: the
median distance to the 30 nearest cells, weights on those 30 only) shrinks as cells are added:
on :func:`trajflow.datasets.simulate` with 2,000 instead of 400 cells per time point the share
of cells with a fate above 0.99 at time 2 went from 8% to 30% against a true 3%
(``benchmarks/fate_calibration.py``). Here the bandwidth is the distance that holds a fixed
*share* of the later time point's cells (:data:`KERNEL_SHARE`, at least ``n_neighbors`` cells),
and the weights reach :data:`SUPPORT_FACTOR` times as many cells, so the kernel covers the same
part of the population at any sampling depth. The weights are then balanced (Sinkhorn) so
every observed cell of the later time point receives the same mass, as a balanced flow carries
the earlier population onto the later one: an entropic transport plan on the kernel's support.

The flow (ODE) gives each cell one deterministic path, so pushing a cell straight across several
time points (``through="direct"``) loses the spread a stochastic process gains on the way. The
kernel then widens as the square root of the number of observed gaps crossed, as a diffusion's
spread grows with the square root of time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from .._neighbors import kneighbors
from .._timecourse import same_time
from ._carry import carry

if TYPE_CHECKING:
    from .._model import TrajectoryModel

#: Default share of the later time point's cells within a pushed cell's kernel bandwidth.
KERNEL_SHARE = 0.05
#: The weights reach this many times the cells inside the bandwidth.
SUPPORT_FACTOR = 3
#: Later time points with more cells are represented by a seeded random subset of this size:
#: a Monte Carlo estimate of the same kernel, so its cost stays bounded at any size.
MAX_REFERENCE = 2000


def kernel_sizes(m: int, n_neighbors: int, share: float, widen: float = 1.0) -> tuple[int, int]:
    """``(cells inside the bandwidth, cells the weights reach)`` for ``m`` reference cells."""
    inside = min(m, max(n_neighbors, int(np.ceil(share * m))))
    reach = min(m, int(np.ceil(SUPPORT_FACTOR * inside * widen**2)))
    return inside, max(reach, inside)


def calibrated_assign(
    ends: np.ndarray,
    targets: np.ndarray,
    *,
    n_neighbors: int,
    share: float,
    widen: float = 1.0,
    balanced: bool = True,
    seed: int = 0,
    device: Any = None,
) -> sparse.csr_matrix:
    """Row-stochastic ``(len(ends), len(targets))``: each end point spread over the targets.

    Parameters
    ----------
    ends
        Pushed cells, standardised space, ``(n, d)``.
    targets
        Observed cells of the later time point, same space, ``(m, d)``.
    n_neighbors
        The fewest cells inside a bandwidth.
    share
        Share of the (reference) targets inside each end point's bandwidth: the bandwidth is
        the median distance to its ``max(n_neighbors, share * m)`` nearest targets (adaptive,
        so a cell pushed off the data gets a wide, uncertain kernel).
    widen
        Factor on the bandwidth (``sqrt`` of the gaps crossed by a direct push).
    balanced
        Scale the weights so every reached target receives the same mass (:func:`balance`),
        for a flow fitted without growth; else each row is only normalised.
    seed
        Seed of the reference subset when ``m > MAX_REFERENCE``.
    device
        Where the neighbours are searched (the model's device; on CUDA, by torch there).

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(n, m)``, rows summing to 1.
    """
    m = len(targets)
    ref = np.arange(m)
    if m > MAX_REFERENCE:
        ref = np.sort(np.random.default_rng(seed).choice(m, size=MAX_REFERENCE, replace=False))
    inside, reach = kernel_sizes(len(ref), n_neighbors, share, widen)
    dist, idx = kneighbors(ends, targets[ref], reach, device=device)
    h = widen * np.median(dist[:, :inside], axis=1, keepdims=True)
    h = np.where(h > 1e-12, h, 1.0)
    w = np.exp(-0.5 * (dist / h) ** 2)
    if balanced:
        w = balance(w, idx, len(ref))
    w /= w.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(len(ends)), reach)
    return sparse.csr_matrix((w.ravel(), (rows, ref[idx].ravel())), shape=(len(ends), m))


def balance(
    w: np.ndarray, idx: np.ndarray, m: int, n_iter: int = 100, tol: float = 1e-2
) -> np.ndarray:
    """Sinkhorn scaling of the sparse kernel ``w`` (row ``i``'s weights on the columns
    ``idx[i]``, shape ``(n, reach)``) so that each row sums to 1 and every column that any row
    reaches receives the same mass, within ``tol`` (relative) or after ``n_iter`` sweeps.

    An entropic transport plan on the kernel's support, as moscot and Waddington-OT build
    between time points: every observed cell of the later time point is reached as often as it
    was sampled, so a small lineage keeps its share instead of being drowned by the large one
    next to it (row-normalised kernels alone gave a 9% day-7 cluster of Klein 2% of the day-0
    fate mass).
    """
    n, reach = w.shape
    # the kernel as a sparse (n, m) matrix: a sweep is two sparse products, a third of the
    # time of gathering w * v[idx] per sweep (50,000 x 300 entries: 3.6 s against 10.4 s)
    kernel = sparse.csr_matrix(
        (w.ravel(), idx.ravel(), np.arange(0, n * reach + 1, reach)), shape=(n, m)
    )
    kernel_t = kernel.T.tocsr()
    v = np.ones(m)
    reached = np.bincount(idx.ravel(), minlength=m) > 0
    target = n / reached.sum()
    for _ in range(n_iter):
        u = 1.0 / (kernel @ v)  # each row's scaling to sum 1
        col = v * (kernel_t @ u)  # the mass each column receives
        if np.max(np.abs(col[reached] / target - 1)) < tol:
            break
        v[reached] *= target / col[reached]
    return w * v[idx]


def gaps_crossed(fitted: np.ndarray, src: float, tgt: float) -> int:
    """Observed gaps a direct push from ``src`` to ``tgt`` crosses: the time points the model
    was fitted on in ``(src, tgt]``, at least one."""
    after = (fitted > src) & ~same_time(fitted, src)
    upto = (fitted < tgt) | same_time(fitted, tgt)
    return max(1, int(np.sum(after & upto)))


def is_balanced(model: TrajectoryModel) -> bool:
    """Whether the model carries each population onto the next whole (no growth, not
    ``unbalanced``), so the kernel is balanced."""
    config = getattr(model, "config", {})
    return config.get("growth_key") is None and config.get("unbalanced") is None


def fate_transitions(
    model: TrajectoryModel,
    x_from: np.ndarray,
    t_from: float,
    x_to: np.ndarray,
    t_to: float,
    *,
    n_neighbors: int,
    share: float,
    widen: float,
    sde: bool,
    n_samples: int,
    seed: int,
) -> sparse.csr_matrix:
    """Where each cell of ``x_from`` at ``t_from`` is at ``t_to``, as weights over ``x_to``.

    The cells are pushed by the flow (``n_samples`` SDE draws averaged with ``sde``) and spread
    over ``x_to`` by :func:`calibrated_assign`, in the model's standardised space, balanced
    unless the model was fitted with growth (``growth_key``) or ``unbalanced``, where the
    later population is not the earlier one moved.
    """
    balanced = is_balanced(model)
    targets = model.scaler.transform(x_to)
    out = sparse.csr_matrix((len(x_from), len(x_to)))
    for s in range(n_samples):
        # tl's bulk integrator (solver "auto": rk4, closer to the exact flow than Euler in a
        # third of the evaluations); the kernel's calibration holds with it (benchmarks/README.md)
        ends = carry(model, x_from, source_time=t_from, times=t_to, sde=sde, seed=seed + s)
        out = out + calibrated_assign(
            model.scaler.transform(ends),
            targets,
            n_neighbors=n_neighbors,
            share=share,
            widen=widen,
            balanced=balanced,
            seed=seed,
            device=model.device,
        )
    return (out / n_samples).tocsr()
