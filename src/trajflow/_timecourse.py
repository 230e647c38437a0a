"""A snapshot time course: one population of cells per observed time point (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Two times are the same time point when they differ by at most this fraction of the span of
#: the observed time points (never a real difference: float noise from parsing, arithmetic or
#: float32 storage). Relative to the spacing, not to a value's size, so epoch seconds
#: (1e9 + 0, 1, 2) stay distinct and float32 thirds still match ``1 / 3``.
TIME_RTOL = 1e-6
#: ... and always when they are this many float64 steps apart (a course of one time point).
_TIME_ULPS = 16


def time_tolerance(times: Sequence[float] | np.ndarray) -> float:
    """How far apart two times may be and still be one time point, for a course observed at
    ``times`` (see :data:`TIME_RTOL`)."""
    arr = np.asarray(times, dtype=float).ravel()
    if arr.size == 0:
        return 0.0
    span = float(arr.max() - arr.min())
    return TIME_RTOL * span + _TIME_ULPS * float(np.spacing(np.abs(arr).max()))


def same_time(
    a: float | np.ndarray, b: float | np.ndarray, *, tol: float | None = None
) -> np.ndarray:
    """Elementwise: is ``a`` the same time point as ``b``? The tolerance is
    :func:`time_tolerance` of every value given (pass ``tol`` to fix it)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if tol is None:
        tol = time_tolerance(np.concatenate([a_arr.ravel(), b_arr.ravel()]))
    return np.abs(a_arr - b_arr) <= tol


def merge_noisy_times(values: np.ndarray) -> tuple[np.ndarray, list[tuple[float, list[float]]]]:
    """``values`` with the labels of each time point made one: values within
    :func:`time_tolerance` of a neighbour are chained into a group and replaced by the group's
    most common value. Returns the values and, per merged group, ``(kept, [merged labels])``."""
    values = np.asarray(values, dtype=float)
    labels, counts = np.unique(values, return_counts=True)
    if labels.size < 2:
        return values, []
    tol = time_tolerance(labels)
    starts = np.flatnonzero(np.r_[True, np.diff(labels) > tol])
    if starts.size == labels.size:
        return values, []
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, labels.size]))
    kept = np.array([labels[g == group][np.argmax(counts[g == group])] for g in range(starts.size)])
    merged = [
        (float(kept[g]), [float(v) for v in labels[group == g]])
        for g in range(starts.size)
        if (group == g).sum() > 1
    ]
    return kept[group[np.searchsorted(labels, values)]], merged


def subsample_indices(n: int, max_n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``max_n`` of ``n`` items drawn without replacement by ``rng`` (in draw order),
    or all ``n`` in order when ``n <= max_n`` (then ``rng`` is not used)."""
    if n <= max_n:
        return np.arange(n)
    return rng.choice(n, max_n, replace=False)


def match_time(t: float, available: Sequence[float], *, what: str) -> float:
    """Return the entry of ``available`` that is the same time point as ``t`` or raise.

    The nearest entry, and only when it lies within :func:`time_tolerance` of ``available``:
    a time is never matched to a time point that another is closer to.
    """
    arr = np.asarray(available, dtype=float)
    if arr.size:
        k = int(np.argmin(np.abs(arr - float(t))))
        if abs(arr[k] - float(t)) <= time_tolerance(arr):
            return float(arr[k])
    raise ValueError(
        f"{what} {t!r} is not one of the observed time points {[float(a) for a in arr]}."
    )


@dataclass
class TimeCourse:
    """Cells grouped by time point, sorted by time.

    Attributes
    ----------
    times
        Sorted unique time points.
    populations
        ``populations[k]`` holds the cells of ``times[k]``, shape ``(n_k, n_dims)``.
    cell_names
        ``cell_names[k]`` holds the ``obs_names`` of those cells.
    """

    times: list[float]
    populations: list[np.ndarray]
    cell_names: list[np.ndarray]

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        t: np.ndarray,
        names: np.ndarray | None = None,
        *,
        time_key: str = "time",
    ) -> TimeCourse:
        if names is None:
            names = np.arange(len(x)).astype(str)
        # labels within float noise are merged once, by the AnnData layer (parse_times)
        times = sorted(float(v) for v in np.unique(t))
        if len(times) < 2:
            raise ValueError(
                f"Found {len(times)} time point(s) in obs[{time_key!r}] ({times}); at least 2 are "
                "needed to learn a flow between them. Check time_key."
            )
        pops, labels = [], []
        for tp in times:
            mask = t == tp
            if mask.sum() < 2:
                raise ValueError(
                    f"Time point {tp:g} has {int(mask.sum())} cell; at least 2 cells per time point "
                    "are needed. Drop that time point or merge it with a neighbour."
                )
            pops.append(x[mask])
            labels.append(np.asarray(names)[mask])
        return cls(times=times, populations=pops, cell_names=labels)

    @property
    def n_dims(self) -> int:
        return int(self.populations[0].shape[1])

    def population(self, time: float) -> np.ndarray:
        return self.populations[self.times.index(match_time(time, self.times, what="Time"))]

    def without(self, holdout: Sequence[float]) -> TimeCourse:
        """The time course with the held-out time points removed."""
        drop = {match_time(t, self.times, what="Held-out time") for t in holdout}
        keep = [k for k, tp in enumerate(self.times) if tp not in drop]
        if len(keep) < 2:
            raise ValueError(
                f"Holding out {sorted(drop)} leaves {len(keep)} time point(s); at least 2 must "
                "remain for training."
            )
        return TimeCourse(
            times=[self.times[k] for k in keep],
            populations=[self.populations[k] for k in keep],
            cell_names=[self.cell_names[k] for k in keep],
        )
