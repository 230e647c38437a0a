"""Static optimal transport between two point clouds: W2, the exact plan's support, the
entropic plan moscot solves, and displacement interpolation along either.

The one place that solves these plans for the model-free references: the clock's leave-one-out
check (:mod:`trajflow._clock`) and the benchmark's ``ot-interpolation`` and
``entropic-interpolation`` baselines (:mod:`trajflow.benchmark`). Uniform weights, squared
Euclidean cost, POT's exact network simplex and epsilon-scaling Sinkhorn (both through
:mod:`trajflow.core.plans`). Numpy in and out: no torch here, no AnnData.
"""

from __future__ import annotations

import numpy as np

from .core.plans import entropic_plan_np, exact_ot_cost, exact_plan_np, pot

#: Plan entries at or below this mass are solver round-off, not transported pairs.
SUPPORT_THRESHOLD = 1e-12
#: moscot's ``TemporalProblem.solve()`` default: entropic regularisation relative to the mean cost.
MOSCOT_EPSILON = 1e-3


def w2(a: np.ndarray, b: np.ndarray) -> float:
    """Exact 2-Wasserstein distance between the point clouds ``a`` and ``b`` (uniform weights)."""
    cost = pot().dist(a, b)
    return float(np.sqrt(exact_ot_cost(pot().unif(len(a)), pot().unif(len(b)), cost)))


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
    plan = exact_plan_np(pot().unif(len(a)), pot().unif(len(b)), pot().dist(a, b))
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


def entropic_plan(a: np.ndarray, b: np.ndarray, *, epsilon: float = MOSCOT_EPSILON) -> np.ndarray:
    """Entropic OT plan between ``a`` and ``b`` as moscot's temporal problem solves it: squared
    Euclidean cost divided by its mean, regularisation ``epsilon`` in those units, balanced,
    solved until the marginals are met to 1e-3 (L1; ott-jax's default threshold).

    Solved by :func:`~trajflow.core.plans.scaled_sinkhorn_plan` (epsilon scaling, stabilised):
    at moscot's epsilon = 1e-3 plain Sinkhorn needs thousands of iterations, and POT's
    epsilon-scaling solver did not finish a 1,000 x 1,000 pair in 200 s; this one takes a few
    seconds. Returns the dense ``(n, m)`` plan (mass sums to 1).
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon!r}.")
    cost = pot().dist(a, b)
    cost /= max(float(cost.mean()), np.finfo(float).tiny)
    return entropic_plan_np(None, None, cost, epsilon)


def plan_partners(plan: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One partner column per row of ``plan``, drawn in proportion to the row (moscot's
    ``push`` of every source cell)."""
    rows = plan / plan.sum(axis=1, keepdims=True)
    cdf = np.cumsum(rows, axis=1)
    u = rng.random((len(rows), 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), plan.shape[1] - 1)
