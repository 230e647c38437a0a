"""Model-free predictions of a held-out population: static OT interpolation between its two
observed neighbours, along the exact plan and along moscot's default entropic plan (numpy)."""

from __future__ import annotations

import numpy as np

from ._ot import displacement_interpolation, entropic_plan, plan_partners
from ._timecourse import subsample_indices


def ot_interpolation(
    x_prev: np.ndarray,
    x_next: np.ndarray,
    fraction: float,
    *,
    n_cells: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Displacement (McCann) interpolation along the exact OT plan between two populations.

    Pairs ``(i, j)`` are drawn from the plan (squared Euclidean cost, uniform weights) in
    proportion to their mass and placed at ``(1 - fraction) x_prev[i] + fraction x_next[j]``.

    Parameters
    ----------
    x_prev, x_next
        The two populations, shapes ``(n, d)`` and ``(m, d)``, in any common units.
    fraction
        Where between them, in ``[0, 1]``: 0 gives ``x_prev``'s points, 1 ``x_next``'s (for a
        held-out time ``t`` between ``t_prev`` and ``t_next``: ``(t - t_prev) / (t_next -
        t_prev)``).
    n_cells
        Number of points to draw. Default: as many as ``x_prev``.
    seed
        Seed of the draw of pairs.

    Returns
    -------
    numpy.ndarray
        The interpolated points, shape ``(n_cells, d)``, in the units of the input.

    Raises
    ------
    ValueError
        When ``fraction`` is outside ``[0, 1]``.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    points, weights = displacement_interpolation(x_prev, x_next, fraction)
    rng = np.random.default_rng(seed)
    k = rng.choice(len(points), size=n_cells or len(x_prev), p=weights)
    return points[k]


#: Largest entropic plan the baseline solves (entries); larger populations are subsampled.
MAX_ENTROPIC_ENTRIES = 4_000_000
#: Cells per side the entropic baseline subsamples to above that.
ENTROPIC_SUBSAMPLE = 2_000


def entropic_interpolation(
    x_prev: np.ndarray,
    x_next: np.ndarray,
    fraction: float,
    *,
    epsilon: float = 1e-3,
    seed: int = 0,
    plan: np.ndarray | None = None,
) -> np.ndarray:
    """Static interpolation along an entropic OT plan, as moscot's temporal problem gives it.

    The plan (squared Euclidean cost over its mean, regularisation ``epsilon``, balanced,
    uniform weights, marginals met to 1e-3 in L1; moscot's ``solve()`` defaults; solved by
    epsilon-scaling Sinkhorn, :func:`~trajflow.core.plans.scaled_sinkhorn_plan`, in seconds
    for 1,000 x 1,000) is solved between the two populations; every cell of ``x_prev`` is used
    once, its partner drawn from its plan row, and placed at ``(1 - fraction) x_prev[i] +
    fraction x_next[j]``. Above 4,000,000 plan entries (``MAX_ENTROPIC_ENTRIES``), both
    populations are subsampled (``seed``) to at most 2,000 cells each, so fewer points come
    back and the dense plan's time and memory stay bounded.

    Parameters
    ----------
    x_prev, x_next
        The two populations, shapes ``(n, d)`` and ``(m, d)``, in any common units.
    fraction
        Where between them, in ``[0, 1]``: 0 gives ``x_prev``'s points, 1 their partners in
        ``x_next``.
    epsilon
        Entropic regularisation, relative to the mean cost (moscot's default ``1e-3``).
    seed
        Seed of the subsamples and of the draw of partners.
    plan
        The plan of these two populations, already solved (``len(x_prev) x len(x_next)``,
        below the subsampling limit): reused instead of solving it again, with the same
        result (:func:`leave_one_out` solves it once per held-out time, not once per seed).

    Returns
    -------
    numpy.ndarray
        One interpolated point per cell of ``x_prev`` (of its subsample, when subsampled),
        shape ``(n, d)``, in the units of the input.

    Raises
    ------
    ValueError
        When ``fraction`` is outside ``[0, 1]`` or ``epsilon`` is not positive.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    rng = np.random.default_rng(seed)
    if len(x_prev) * len(x_next) > MAX_ENTROPIC_ENTRIES:
        if plan is not None:
            raise ValueError(
                f"plan= cannot be reused above {MAX_ENTROPIC_ENTRIES} entries, where the "
                "populations are subsampled per seed; leave plan=None."
            )
        x_prev = x_prev[subsample_indices(len(x_prev), ENTROPIC_SUBSAMPLE, rng)]
        x_next = x_next[subsample_indices(len(x_next), ENTROPIC_SUBSAMPLE, rng)]
    if plan is None:
        plan = entropic_plan(x_prev, x_next, epsilon=epsilon)
    elif plan.shape != (len(x_prev), len(x_next)):
        raise ValueError(
            f"plan has shape {plan.shape}, expected {(len(x_prev), len(x_next))} "
            "(x_prev cells x x_next cells)."
        )
    partners = plan_partners(plan, rng)
    return (1 - fraction) * x_prev + fraction * x_next[partners]
