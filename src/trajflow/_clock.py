"""The model's clock: a monotone map from observed time to the flow's internal time.

Flow matching assumes each cell moves at constant speed between two consecutive training time
points, so a held-out time is predicted at its *time* fraction of the gap. Real time courses
are not sampled evenly in progress: EMT after TGF-b (days 0, 1/3, 1, 3, 7) moves fast early and
slowly later. A ``"distance"`` clock instead places the training time points at their
cumulative W2 distance (how far the population has travelled) and interpolates between them
with a monotone cubic (PCHIP, Fritsch & Carlson 1980), so an unobserved time is placed by the
*trend* of the population's speed around it (a time warp, as in dynamic time warping of
pseudotime). ``"auto"`` keeps whichever clock predicts the training time points best when each
is held out in turn (model-free: displacement interpolation along the exact OT plan of its
neighbours), preferring the plain time clock unless the distance clock is clearly better.

Only numpy, scipy and POT: no torch, no AnnData. The OT plans are solved in :mod:`trajflow._ot`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator

from ._ot import displacement_interpolation, exact_plan_support, plan_w2, w2
from ._timecourse import subsample_indices
from .core.parallel import parallel_map
from .core.plans import exact_ot_cost, pot

#: ``clock=`` values of :func:`~trajflow.fit_trajectories`.
CLOCKS = ("auto", "time", "distance")
#: Cells per population used to measure the distances of the distance clock (exact OT on these).
MAX_CLOCK_CELLS = 1000
#: Cells per population of the ``clock="auto"`` check (about 3 exact plans per interior time
#: point): 500 makes it ~4x cheaper than at 1,000 and picks the same clock on EB (5 and 50 dims),
#: EMT, Klein and Weinreb, global or per-dimension scaling, with the distance/time score ratio
#: within 0.003 (benchmarks/README.md, Couplings at scale).
CHECK_CELLS = 500
#: "auto" takes the distance clock only when its leave-one-out W1 is this much lower (relative).
AUTO_MARGIN = 0.01


@dataclass
class Clock:
    """Piecewise-cubic monotone map ``tau(t)`` through knots ``(times[k], taus[k])``.

    Between the first and last knot it is the PCHIP interpolant (linear for two knots); outside,
    it continues linearly with the slope of the nearest end segment.
    """

    kind: str
    times: list[float]
    taus: list[float]
    #: Leave-one-out W1 of each candidate clock when ``clock="auto"`` chose it (else empty).
    scores: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t, tau = np.asarray(self.times, dtype=float), np.asarray(self.taus, dtype=float)
        if len(t) < 2 or len(t) != len(tau) or np.any(np.diff(t) <= 0) or np.any(np.diff(tau) <= 0):
            raise ValueError(
                f"A clock needs >= 2 knots with increasing times and taus; got {self.times} -> "
                f"{self.taus}."
            )
        self._interp = PchipInterpolator(t, tau) if len(t) > 2 else None
        self._derivative = self._interp.derivative() if self._interp is not None else None
        self._slopes = ((tau[1] - tau[0]) / (t[1] - t[0]), (tau[-1] - tau[-2]) / (t[-1] - t[-2]))

    def __call__(self, t: float | np.ndarray) -> np.ndarray:
        """Internal time of observed time(s) ``t``."""
        t = np.asarray(t, dtype=float)
        lo, hi = self.times[0], self.times[-1]
        inside = np.clip(t, lo, hi)
        if self._interp is not None:
            tau = self._interp(inside)
        else:
            tau = np.interp(inside, self.times, self.taus)
        tau = tau + np.where(t < lo, (t - lo) * self._slopes[0], 0.0)
        return tau + np.where(t > hi, (t - hi) * self._slopes[1], 0.0)

    def rate(self, t: float | np.ndarray) -> np.ndarray:
        """``d tau / d t`` at ``t`` (to turn internal velocities into per-unit-of-time ones)."""
        t = np.asarray(t, dtype=float)
        lo, hi = self.times[0], self.times[-1]
        if self._derivative is not None:
            inside = self._derivative(np.clip(t, lo, hi))
        else:
            inside = np.full(t.shape, self._slopes[0])
        return np.where(t < lo, self._slopes[0], np.where(t > hi, self._slopes[1], inside))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.times, "taus": self.taus, "scores": self.scores}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Clock:
        return cls(d["kind"], list(d["times"]), list(d["taus"]), dict(d.get("scores", {})))


def time_clock(times: Sequence[float], *, origin: float, unit: float) -> Clock:
    """``tau = (t - origin) / unit`` through the training ``times``."""
    lo, hi = float(times[0]), float(times[-1])
    return Clock("time", [lo, hi], [(lo - origin) / unit, (hi - origin) / unit])


def _subsample(x: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    return np.asarray(x[subsample_indices(len(x), size, rng)], dtype=np.float64)


def _clock_from_steps(
    times: Sequence[float], steps: Sequence[float], origin: float, unit: float
) -> Clock:
    """Distance clock from the distances ``steps`` between consecutive time points."""
    # A population that did not move at all still needs an increasing clock.
    steps = np.maximum(steps, 1e-6 * max(max(steps), 1e-12))
    cum = np.concatenate([[0.0], np.cumsum(steps)])
    span = (times[-1] - times[0]) / unit
    taus = (times[0] - origin) / unit + cum / cum[-1] * span
    return Clock("distance", [float(t) for t in times], [float(x) for x in taus])


def _subsampled(pops: Sequence[np.ndarray], size: int | None = None) -> list[np.ndarray]:
    """Each population subsampled to ``size`` cells (default :data:`MAX_CLOCK_CELLS`)."""
    size = MAX_CLOCK_CELLS if size is None else size
    rng = np.random.default_rng(0)  # a property of the data: the same for every seed
    return [_subsample(p, rng, size) for p in pops]


def _steps(pops: Sequence[np.ndarray]) -> list[float]:
    """W2 between consecutive populations."""
    return parallel_map(w2, pairwise(pops))


def distance_clock(
    times: Sequence[float], pops: Sequence[np.ndarray], *, origin: float, unit: float
) -> Clock:
    """Knots at the cumulative W2 distance between consecutive populations ``pops`` (at
    ``times``), scaled so the first and last knots agree with :func:`time_clock`."""
    return _clock_from_steps(times, _steps(_subsampled(pops)), origin, unit)


def leave_one_out_scores(
    times: Sequence[float],
    pops: Sequence[np.ndarray],
    *,
    kinds: Sequence[str] = ("time", "distance"),
) -> dict[str, float]:
    """Mean W1 with which each clock in ``kinds`` places every interior time point when it is
    held out: the clock is rebuilt from the other time points and the held-out population is
    predicted model-free, by displacement interpolation along the exact OT plan of its
    neighbours (every support pair, weighted by its mass) at the clock's fraction of the gap."""
    pops = _subsampled(pops, CHECK_CELLS)
    return _scores(times, pops, _steps(pops), kinds)


def _scores(
    times: Sequence[float],
    pops: Sequence[np.ndarray],
    steps: Sequence[float],
    kinds: Sequence[str],
) -> dict[str, float]:
    """:func:`leave_one_out_scores` on subsampled ``pops`` whose consecutive ``steps`` are known."""

    def held_out(j: int) -> dict[str, float]:
        a, b, target = pops[j - 1], pops[j + 1], pops[j]
        rest_t = [t for k, t in enumerate(times) if k != j]
        # without j, the pairs (j-1, j) and (j, j+1) become the single pair (j-1, j+1)
        # one exact plan per held-out time: its W2 and its interpolation at each clock's fraction
        support = exact_plan_support(a, b)
        rest_steps = [*steps[: j - 1], plan_w2(a, b, support), *steps[j + 1 :]]
        out = {}
        for kind in kinds:
            if kind == "time":
                clock = time_clock(rest_t, origin=0.0, unit=1.0)
            else:
                clock = _clock_from_steps(rest_t, rest_steps, 0.0, 1.0)
            lo, mid, hi = clock([times[j - 1], times[j], times[j + 1]])
            s = float((mid - lo) / (hi - lo))
            points, weights = displacement_interpolation(a, b, s, support=support)
            cost = pot().dist(points, target, metric="euclidean")
            w1 = exact_ot_cost(weights, pot().unif(len(target)), cost)
            out[kind] = float(w1)
        return out

    per_time = parallel_map(held_out, [(j,) for j in range(1, len(times) - 1)])
    scores = {k: [r[k] for r in per_time] for k in kinds}
    return {k: float(np.mean(v)) for k, v in scores.items()}


def check_clock(kind: str) -> None:
    """Raise a ValueError naming the choices unless ``kind`` is one of :data:`CLOCKS`."""
    if kind not in CLOCKS:
        raise ValueError(f"Unknown clock {kind!r}; choose one of {list(CLOCKS)}.")


def auto_clock_reason(clock: Any) -> str:
    """Why ``clock="auto"`` chose ``clock``, for the log: the rule and the scores it compared."""
    scores = getattr(clock, "scores", None) or {}
    if not scores:
        return "fewer than 4 training time points: the clocks cannot be compared"
    time_w1, distance_w1 = scores["time"], scores["distance"]
    return (
        f"held-out W1 in training units, time {time_w1:.4g} vs distance {distance_w1:.4g}; the "
        f"distance clock is chosen only when it is more than {AUTO_MARGIN:.0%} lower"
    )


def fit_clock(
    kind: str,
    times: Sequence[float],
    pops: Sequence[np.ndarray],
    *,
    origin: float,
    unit: float,
) -> Clock:
    """The clock ``kind`` (``"auto"``, ``"time"`` or ``"distance"``) for training populations
    ``pops`` at ``times``, in internal units where ``unit`` of time is one unit of ``tau``.

    ``"auto"`` needs 4 or more time points to compare the clocks (holding one out of 3 leaves 2,
    through which both clocks are the same straight line); with fewer it is ``"time"``.
    """
    check_clock(kind)
    if kind == "time" or (kind == "auto" and len(times) < 4):
        return time_clock(times, origin=origin, unit=unit)
    if kind == "distance":
        return distance_clock(times, pops, origin=origin, unit=unit)
    # The check runs on smaller subsamples (CHECK_CELLS) with their own distances; the clock
    # it picks is built from full-size (MAX_CLOCK_CELLS) distances, measured only when the
    # distance clock wins (the time clock needs none: ~0.6 s of a 10-time-point fit).
    check = _subsampled(pops, CHECK_CELLS)
    scores = _scores(times, check, _steps(check), ("time", "distance"))
    if scores["distance"] < (1 - AUTO_MARGIN) * scores["time"]:
        clock = distance_clock(times, pops, origin=origin, unit=unit)
    else:
        clock = time_clock(times, origin=origin, unit=unit)
    clock.scores = scores
    return clock
