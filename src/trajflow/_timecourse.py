"""A snapshot time course: one population of cells per observed time point (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Two times are the same time point when they agree to this relative / absolute tolerance
#: (float noise from parsing or arithmetic, never a real difference between time points).
TIME_RTOL = TIME_ATOL = 1e-9


def same_time(a: float | np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """Elementwise: is ``a`` the same time point as ``b`` (see :data:`TIME_RTOL`)?"""
    return np.isclose(a, b, rtol=TIME_RTOL, atol=TIME_ATOL)


def subsample_indices(n: int, max_n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``max_n`` of ``n`` items drawn without replacement by ``rng`` (in draw order),
    or all ``n`` in order when ``n <= max_n`` (then ``rng`` is not used)."""
    if n <= max_n:
        return np.arange(n)
    return rng.choice(n, max_n, replace=False)


def match_time(t: float, available: Sequence[float], *, what: str) -> float:
    """Return the entry of ``available`` equal to ``t`` (up to float noise) or raise."""
    arr = np.asarray(available, dtype=float)
    hits = np.flatnonzero(same_time(arr, float(t)))
    if hits.size == 0:
        raise ValueError(
            f"{what} {t!r} is not one of the observed time points {[float(a) for a in arr]}."
        )
    return float(arr[hits[0]])


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
