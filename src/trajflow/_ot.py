"""Exact optimal transport between two point clouds: W2, the plan's support, and displacement
interpolation along it.

The one place that solves these plans for the model-free references: the clock's leave-one-out
check (:mod:`trajflow._clock`) and the benchmark's ``ot-interpolation`` baseline
(:func:`trajflow.benchmark.ot_interpolation`). Uniform weights, squared Euclidean cost, POT's
exact network simplex. Only numpy and POT: no torch, no AnnData.
"""

from __future__ import annotations

import numpy as np
import ot

#: Iteration cap of the network simplex: generous, so plans between a few thousand cells finish.
MAX_ITER = 10_000_000
#: Plan entries at or below this mass are solver round-off, not transported pairs.
SUPPORT_THRESHOLD = 1e-12


def w2(a: np.ndarray, b: np.ndarray) -> float:
    """Exact 2-Wasserstein distance between the point clouds ``a`` and ``b`` (uniform weights)."""
    cost = ot.dist(a, b)
    return float(np.sqrt(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=MAX_ITER)))


def exact_plan_support(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs the exact OT plan between ``a`` and ``b`` moves mass along.

    Parameters
    ----------
    a, b
        Point clouds, shapes ``(n, d)`` and ``(m, d)``, uniform weights.

    Returns
    -------
    ``(i, j, weights)``: indices into ``a`` and ``b`` of every pair with mass, and that mass
    normalised to sum to 1.
    """
    plan = ot.emd(ot.unif(len(a)), ot.unif(len(b)), ot.dist(a, b), numItermax=MAX_ITER)
    i, j = np.nonzero(plan > SUPPORT_THRESHOLD)
    weights = plan[i, j] / plan[i, j].sum()
    return i, j, weights


def plan_w2(
    a: np.ndarray, b: np.ndarray, support: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> float:
    """:func:`w2` read off an already solved plan's support (no second solve)."""
    i, j, weights = support
    return float(np.sqrt(np.sum(weights * np.sum((a[i] - b[j]) ** 2, axis=1))))


def displacement_interpolation(
    a: np.ndarray,
    b: np.ndarray,
    fraction: float,
    *,
    support: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Displacement (McCann) interpolation at ``fraction`` of the way from ``a`` to ``b``.

    Every pair ``(i, j)`` of the exact OT plan is placed at ``(1 - fraction) a[i] + fraction
    b[j]``, weighted by its mass.

    Parameters
    ----------
    a, b
        Point clouds, shapes ``(n, d)`` and ``(m, d)``.
    fraction
        0 gives ``a``'s points, 1 gives ``b``'s.
    support
        The plan's support from :func:`exact_plan_support` when already solved (to interpolate
        one plan at several fractions); solved here otherwise.

    Returns
    -------
    ``(points, weights)``: one point per support pair, shape ``(n_pairs, d)``, and the pairs'
    masses (summing to 1).
    """
    i, j, weights = exact_plan_support(a, b) if support is None else support
    return (1 - fraction) * a[i] + fraction * b[j], weights
