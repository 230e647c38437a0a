"""Distances between two populations of cells (numpy in, float out).

- :func:`wasserstein`: exact W1/W2 with a Euclidean ground cost (POT ``emd2``);
- :func:`mmd`: maximum mean discrepancy with a sum of RBF kernels;
- :func:`energy_distance`: the energy distance.

Each takes two arrays of shape ``(n, d)`` and ``(m, d)`` (1-D arrays are one dimension) and
raises a clear error for empty, mismatched or non-finite input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.distance import cdist

from ._timecourse import subsample_indices
from .core.parallel import parallel_map
from .core.plans import exact_ot_cost, pot

__all__ = ["energy_distance", "mmd", "wasserstein"]

#: RBF bandwidths (in units of the data) summed by :func:`~trajflow.metrics.mmd`; a spread of
#: scales, as in TorchCFM's evaluation code, so no single bandwidth dominates.
DEFAULT_BANDWIDTHS: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0)


def _as_points(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 1-D or 2-D array of points, got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty; need at least one point.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_points(a, "a"), _as_points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must have the same number of dimensions, got {a.shape[1]} and {b.shape[1]}."
        )
    return a, b


#: Populations larger than this (per side) are scored by :func:`wasserstein` on subsamples:
#: the exact solver's time grows roughly cubically with size (measured in benchmarks/README.md).
MAX_EXACT_SIZE = 5_000


def wasserstein(
    a: np.ndarray,
    b: np.ndarray,
    p: int = 1,
    *,
    max_size: int | None = MAX_EXACT_SIZE,
    n_repeats: int = 5,
    seed: int = 0,
    return_spread: bool = False,
) -> float | tuple[float, float]:
    """p-Wasserstein distance between the empirical distributions of ``a`` and ``b``.

    Uniform weights, Euclidean ground distance, solved exactly by POT's network simplex
    (``ot.emd2``). ``p=1`` gives W1 (the benchmark's score), ``p=2`` gives W2.

    When a side has more than ``max_size`` points, the exact distance is too slow; it is then
    estimated as the mean over ``n_repeats`` exact distances between random subsamples of
    ``max_size`` points per side (drawn with ``seed``). The estimate is biased upwards by the
    sampling noise of ``max_size`` points: negligible between populations far apart, but for
    near-identical populations it can exceed the exact value by 20-60% (measured in
    ``benchmarks/metrics_size.py``), and the spread over repeats does not show that bias. Compare
    estimates only at the same ``max_size`` (and compute noise floors at that size too).
    ``max_size=None`` always solves exactly.

    Parameters
    ----------
    a, b
        The two populations, shapes ``(n, d)`` and ``(m, d)`` (1-D arrays are one dimension).
    p
        1 (default) for W1, 2 for W2.
    max_size
        Largest side solved exactly (at least 2); larger sides are subsampled to this size.
        ``None``: always solve exactly.
    n_repeats
        Subsample pairs averaged when a side exceeds ``max_size``.
    seed
        Seed of the subsamples.
    return_spread
        Also return the spread over the repeats.

    Returns
    -------
    float or tuple[float, float]
        The distance, in the units of ``a`` and ``b``; with ``return_spread=True``
        ``(distance, spread)``, where the spread is the standard deviation over the repeats
        (0 when solved exactly).

    Raises
    ------
    ValueError
        When ``p`` is not 1 or 2, ``max_size`` or ``n_repeats`` is invalid, or ``a`` or ``b``
        is empty, not finite, not 1-D or 2-D, or of a different width than the other.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}.")
    a, b = _pair(a, b)
    if max_size is not None and (not isinstance(max_size, int) or max_size < 2):
        raise ValueError(f"max_size must be an integer >= 2 or None, got {max_size!r}.")
    if max_size is None or max(len(a), len(b)) <= max_size:
        value = _exact_wasserstein(a, b, p)
        return (value, 0.0) if return_spread else value
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats!r}.")
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n_repeats):
        # Not subsample_indices: a side within max_size is still drawn here (a permutation that
        # uses rng), and switching would change every subsampled score published so far.
        sa = a[rng.choice(len(a), size=min(len(a), max_size), replace=False)]
        sb = b[rng.choice(len(b), size=min(len(b), max_size), replace=False)]
        pairs.append((sa, sb, p))
    # Drawn in order above, solved side by side (each cost matrix is max_size^2 floats: at
    # most 4 at once).
    values = parallel_map(_exact_wasserstein, pairs, cap=4)
    value, spread = float(np.mean(values)), float(np.std(values))
    return (value, spread) if return_spread else value


def _exact_wasserstein(a: np.ndarray, b: np.ndarray, p: int) -> float:
    # scipy's direct cdist, not the |a|^2 + |b|^2 - 2ab expansion, which loses precision near 0.
    cost = cdist(a, b, "sqeuclidean" if p == 2 else "euclidean")
    value = exact_ot_cost(pot().unif(len(a)), pot().unif(len(b)), cost)
    return float(value) ** (1.0 / p)


def _subsample(x: np.ndarray, max_size: int | None, rng: np.random.Generator) -> np.ndarray:
    return x if max_size is None else x[subsample_indices(len(x), max_size, rng)]


#: :func:`mmd` and :func:`energy_distance` build full distance matrices; above this many points
#: per side they use a random subsample of this size (seeded), so memory stays bounded.
MAX_KERNEL_SIZE = 5_000


def _within_mean(d: np.ndarray, unbiased: bool, diagonal: float) -> float:
    """Mean of a square within-sample matrix: over every pair (V-statistic) or over the pairs of
    distinct points (U-statistic; ``diagonal`` is the value each point has with itself)."""
    n = len(d)
    if not unbiased:
        return float(d.mean())
    return float((d.sum() - n * diagonal) / (n * (n - 1)))


def _check_sizes(a: np.ndarray, b: np.ndarray, unbiased: bool) -> None:
    if unbiased and min(len(a), len(b)) < 2:
        raise ValueError(
            f"The unbiased estimate needs at least 2 points per side, got {len(a)} and {len(b)}; "
            "pass unbiased=False for the V-statistic."
        )


def mmd(
    a: np.ndarray,
    b: np.ndarray,
    *,
    bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
    unbiased: bool = True,
    max_size: int | None = MAX_KERNEL_SIZE,
    seed: int = 0,
) -> float:
    """Squared maximum mean discrepancy with the kernel ``sum_h exp(-|x - y|^2 / (2 h^2))``.

    By default the unbiased estimate (U-statistic: within-sample means over pairs of distinct
    points), whose expectation is 0 when ``a`` and ``b`` are drawn from the same distribution
    and which can be slightly negative; a tight, under-dispersed prediction is not rewarded
    for its small within-sample term. ``unbiased=False`` gives the V-statistic (>= 0, exactly 0
    for identical samples, biased upward by ~1/n for the spread-out side). Sides larger than
    ``max_size`` are subsampled to ``max_size`` points (``None``: never).

    Parameters
    ----------
    a, b
        The two populations, shapes ``(n, d)`` and ``(m, d)`` (1-D arrays are one dimension).
    bandwidths
        The RBF widths ``h`` summed in the kernel, in the units of the data (all positive).
        Default: :data:`DEFAULT_BANDWIDTHS`.
    unbiased
        The U-statistic (default) or the V-statistic.
    max_size
        Largest side used whole; larger sides are subsampled to this size. ``None``: never.
    seed
        Seed of the subsamples.

    Returns
    -------
    float
        The squared MMD (unitless; at most twice the number of bandwidths).

    Raises
    ------
    ValueError
        When ``bandwidths`` is empty or not positive, or ``a`` or ``b`` is empty (or has one
        point, for the unbiased estimate), not finite, not 1-D or 2-D, or of a different width
        than the other.
    """
    a, b = _pair(a, b)
    _check_sizes(a, b, unbiased)
    bandwidths = np.asarray(bandwidths, dtype=float)
    if bandwidths.size == 0 or np.any(bandwidths <= 0):
        raise ValueError(f"bandwidths must be positive, got {bandwidths.tolist()}.")
    rng = np.random.default_rng(seed)
    a, b = _subsample(a, max_size, rng), _subsample(b, max_size, rng)

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d2 = cdist(x, y, "sqeuclidean")
        return sum(np.exp(-d2 / (2 * h**2)) for h in bandwidths)

    k = float(bandwidths.size)  # the kernel of a point with itself
    value = (
        _within_mean(kernel(a, a), unbiased, k)
        + _within_mean(kernel(b, b), unbiased, k)
        - 2 * float(kernel(a, b).mean())
    )
    return value if unbiased else max(value, 0.0)


def energy_distance(
    a: np.ndarray,
    b: np.ndarray,
    *,
    unbiased: bool = True,
    max_size: int | None = MAX_KERNEL_SIZE,
    seed: int = 0,
) -> float:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``.

    By default the unbiased estimate (U-statistic: ``E|X - X'|`` over pairs of distinct
    points), whose expectation is 0 when ``a`` and ``b`` are drawn from the same distribution
    and which can be slightly negative. The V-statistic (``unbiased=False``, >= 0) averages
    in each point's zero distance to itself, which shrinks the within-sample terms by a
    factor ``(n - 1) / n`` and so rewards tight, under-dispersed predictions: at 20-50
    dimensions that bias is of the size of the differences between methods. Sides larger than
    ``max_size`` are subsampled to ``max_size`` points (``None``: never).

    Parameters
    ----------
    a, b
        The two populations, shapes ``(n, d)`` and ``(m, d)`` (1-D arrays are one dimension).
    unbiased
        The U-statistic (default) or the V-statistic.
    max_size
        Largest side used whole; larger sides are subsampled to this size. ``None``: never.
    seed
        Seed of the subsamples.

    Returns
    -------
    float
        The energy distance (Euclidean distances, in the units of ``a`` and ``b``).

    Raises
    ------
    ValueError
        When ``a`` or ``b`` is empty (or has one point, for the unbiased estimate), not
        finite, not 1-D or 2-D, or of a different width than the other.
    """
    a, b = _pair(a, b)
    _check_sizes(a, b, unbiased)
    rng = np.random.default_rng(seed)
    a, b = _subsample(a, max_size, rng), _subsample(b, max_size, rng)
    value = (
        2 * float(cdist(a, b).mean())
        - _within_mean(cdist(a, a), unbiased, 0.0)
        - _within_mean(cdist(b, b), unbiased, 0.0)
    )
    return value if unbiased else max(value, 0.0)
