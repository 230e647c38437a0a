"""Where a prediction's cells come from: the trained time points pushed to a target time, and
in what shares.

A time strictly between two trained time points ``a < t < b`` is predicted from both: cells of
``a`` pushed forward and cells of ``b`` pushed backward (the ODE runs both ways), pooled. Each
push is exact at its own source and drifts from the truth the farther it travels, and the two
drift differently, so the pool is rarely worse than the better of the two and often better
than either (the unbiased energy distance is convex in the prediction). The share pushed
backward is validated on the training time points, as ``clock="auto"`` chooses a clock: at
every trained time point with trained neighbours on both sides, how far (unbiased energy
distance, relative to that population's own spread) the forward push from the previous one and
the backward push from the next one land from its observed cells. The share backward is the
forward error's share of the two (:func:`backward_share`), one number per model.

Measured on the shared sets (benchmarks/README.md, "Predictions from both neighbours"): on
EB-50, Klein-20 and EMT-10 the pushes backward land nearer the held-out cells than the
pushes forward, and the validated share follows that, without being told which set it is on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ._timecourse import same_time, time_tolerance
from .metrics import energy_distance

#: Cells per population in the validation pushes (bounded cost at any size).
VALIDATION_CELLS = 500
#: Errors below this (relative to the population's spread) count as this: both pushes
#: faithful gives an even share, not a division by zero.
_MIN_ERROR = 1e-6


@dataclass(frozen=True)
class SourcePlan:
    """The trained time points a prediction at ``time`` draws its cells from.

    Attributes
    ----------
    time
        The target time.
    forward
        The trained time point whose cells are pushed forward (or the only source: an
        explicit ``source_time``, a target outside the trained range or at a trained time
        point, an SDE).
    backward
        The next trained time point, whose cells are pushed backward; ``None`` when the
        prediction has one source.
    backward_share
        The share of the predicted cells pushed backward from ``backward`` (0 with one source).
    """

    time: float
    forward: float
    backward: float | None = None
    backward_share: float = 0.0

    def counts(self, n_forward: int, n_backward: int, n_cells: int | None) -> tuple[int, int]:
        """How many cells to draw from each source, given their population sizes.

        ``n_cells`` (default: the sources' sizes interpolated by the share,
        ``round((1 - w) n_forward + w n_backward)``) split as ``n - round(w n)`` forward and
        ``round(w n)`` backward.
        """
        w = self.backward_share if self.backward is not None else 0.0
        n = round((1 - w) * n_forward + w * n_backward) if n_cells is None else n_cells
        k_back = round(w * n)
        return n - k_back, k_back


def plan_sources(
    times: Sequence[float],
    time: float,
    *,
    source_time: float | None,
    sde: bool,
    share: Callable[[], float],
) -> SourcePlan:
    """The sources of a prediction at ``time`` from a model trained at ``times`` (sorted).

    Two sources (the trained time points around ``time``, the backward share from ``share()``,
    called only then) when ``time`` lies strictly between two trained time points, no
    ``source_time`` is given and the ODE is integrated; otherwise the one source ``predict``
    has always used: ``source_time``, else the nearest strictly earlier trained time point (the
    first one at or before it).
    """
    tol = time_tolerance(times)
    earlier = [t for t in times if t < time and not same_time(t, time, tol=tol)]
    later = [t for t in times if t > time and not same_time(t, time, tol=tol)]
    if source_time is not None:
        return SourcePlan(time=time, forward=float(source_time))
    if not earlier:
        return SourcePlan(time=time, forward=float(times[0]))
    if sde or not later or any(same_time(t, time, tol=tol) for t in times):
        return SourcePlan(time=time, forward=float(earlier[-1]))
    return SourcePlan(
        time=time, forward=float(earlier[-1]), backward=float(later[0]), backward_share=share()
    )


def backward_share(
    populations: Sequence[np.ndarray],
    times: Sequence[float],
    push: Callable[[np.ndarray, float, float], np.ndarray],
    *,
    seed: int = 0,
) -> float:
    """The share of a two-sided prediction pushed backward, validated on the training cells.

    At every trained time point with trained neighbours on both sides, the forward push of
    the previous population and the backward push of the next one are scored against its
    cells (unbiased energy distance over that population's mean pairwise distance, so every
    time point counts alike; at most :data:`VALIDATION_CELLS` cells each, drawn with
    ``seed``). With mean errors ``e_f`` and ``e_b``, the share backward is
    ``e_f / (e_f + e_b)``: the direction that reproduces the observed populations better
    gets the larger share. With fewer than three trained time points there is nothing to
    validate on: an even share.

    Parameters
    ----------
    populations, times
        The training populations (any consistent space) and their time points, sorted.
    push
        ``push(cells, from_time, to_time) -> cells`` through the model's flow.
    seed
        Seed of the subsamples.
    """
    rng = np.random.default_rng(seed)

    def sample(x: np.ndarray) -> np.ndarray:
        return x if len(x) <= VALIDATION_CELLS else x[rng.choice(len(x), VALIDATION_CELLS, False)]

    e_f, e_b = [], []
    for k in range(1, len(times) - 1):
        target = sample(populations[k])
        if len(target) < 2:
            continue
        spread = _pairwise_mean(target)
        fwd = push(sample(populations[k - 1]), times[k - 1], times[k])
        bwd = push(sample(populations[k + 1]), times[k + 1], times[k])
        e_f.append(max(energy_distance(fwd, target), 0.0) / spread)
        e_b.append(max(energy_distance(bwd, target), 0.0) / spread)
    if not e_f:
        return 0.5
    f = max(float(np.mean(e_f)), _MIN_ERROR)
    b = max(float(np.mean(e_b)), _MIN_ERROR)
    return f / (f + b)


def _pairwise_mean(x: np.ndarray) -> float:
    """Mean distance between distinct cells of ``x``."""
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    n = len(x)
    return float(np.sqrt(d2).sum() / (n * (n - 1)))
