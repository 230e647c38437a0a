"""How a prediction of held-out cells is scored, calibrated (the one owner of held-out scores).

At the 10-50 dimensions users work in, a distance between two finite populations is biased
toward tight, under-dispersed predictions (W1 most, V-statistic energy and MMD too): a
perfect sample of the truth beats static OT by only a few percent in W1 on EB. So every
candidate is scored the same calibrated way:

- the held-out cells are split at random into a half ``A`` and the rest ``B`` (``n_splits``
  times, seeded);
- every candidate (a method's prediction, a baseline) is subsampled to ``|A|`` cells and
  scored against ``B``; ``A`` itself is scored too: the **floor** a perfect prediction reaches;
- the scores are the means over the splits; unbiased (U-statistic) energy distance and MMD
  have an expected floor of 0, matched-size W1 / W2 a positive one.

``closed_share`` then says how much of static OT's distance to the floor a method closes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.spatial.distance import pdist

from ._anndata import Standardizer
from ._neighbors import kneighbors, nearest_distances
from ._timecourse import subsample_indices
from .metrics import energy_distance, mmd, wasserstein

#: What every prediction is scored with (columns of :func:`~trajflow.benchmark.leave_one_out`).
METRICS = ("energy", "mmd", "w1", "w2")
#: The name the floor (a random half of the held-out cells) gets in tables.
FLOOR = "perfect-half"
#: The static-OT reference the closed share is measured from.
STATIC_OT = "ot-interpolation"
#: MMD bandwidths as multiples of the held-out cells' median pairwise distance: the kernel
#: then sees the data's scale in any units (fixed widths saturate at the scale of 50 PCs).
MMD_BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Largest half scored (cells): bounds time and memory on large held-out populations; the
#: floor is computed at the same size, so the comparison stays fair.
MAX_HALF = 1_000
#: Random splits of the held-out cells averaged over.
N_SPLITS = 5


def scoring_space(reference: np.ndarray, *, standardised: bool) -> Standardizer:
    """The space predictions are scored in: the representation's own units, or standardised
    per dimension over ``reference`` (every cell of the AnnData: the paper protocol)."""
    reference = np.asarray(reference, dtype=np.float64)
    if standardised:
        return Standardizer.fit(reference)
    d = reference.shape[1]
    return Standardizer(mean=np.zeros(d), scale=np.ones(d))


def _mmd_bandwidths(observed: np.ndarray) -> list[float]:
    sample = observed[: min(len(observed), 2_000)]
    median = float(np.median(pdist(sample))) if len(sample) > 1 else 1.0
    return [f * (median if median > 0 else 1.0) for f in MMD_BANDWIDTH_FACTORS]


def _metric_functions(
    bandwidths: Sequence[float],
) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    return {
        "energy": energy_distance,
        "mmd": partial(mmd, bandwidths=bandwidths),
        "w1": partial(wasserstein, p=1),
        "w2": partial(wasserstein, p=2),
    }


def check_metrics(metrics: Sequence[str]) -> list[str]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}; choose from {list(METRICS)}.")
    return list(metrics)


@dataclass(frozen=True)
class HalfSplits:
    """Random splits of the held-out cells into a half ``A`` (the floor, and the size every
    candidate is subsampled to) and the rest ``B`` (what everything is scored against), drawn
    once so every candidate of a held-out time is scored on the same splits.

    Attributes
    ----------
    halves, rests
        Per split, the cells of ``A`` and of ``B`` (``B`` subsampled to at most ``max_half``).
    n_half
        ``|A|``.
    seed
        Seed of the candidates' subsamples.
    mmd_bandwidths
        The MMD's kernel widths, from the first split's cells (one set for every candidate).
    """

    halves: list[np.ndarray]
    rests: list[np.ndarray]
    n_half: int
    seed: int
    mmd_bandwidths: list[float]

    @classmethod
    def draw(
        cls,
        observed: np.ndarray,
        *,
        min_candidate: int | None = None,
        n_splits: int = N_SPLITS,
        max_half: int = MAX_HALF,
        seed: int = 0,
    ) -> HalfSplits:
        """Split ``observed`` ``n_splits`` times; ``|A|`` is half of it, at most ``max_half``
        and at most ``min_candidate`` (the smallest candidate to be scored)."""
        observed = np.asarray(observed, dtype=np.float64)
        n_half = min(len(observed) // 2, max_half, min_candidate or len(observed))
        if n_half < 2:
            raise ValueError(
                f"Calibrated scoring needs at least 4 held-out cells and 2 cells per candidate, "
                f"got {len(observed)} held-out cells and {min_candidate} in a candidate."
            )
        rng = np.random.default_rng(seed)
        halves, rests = [], []
        for _ in range(n_splits):
            perm = rng.permutation(len(observed))
            rest = observed[perm[n_half:]]
            halves.append(observed[perm[:n_half]])
            rests.append(rest[subsample_indices(len(rest), max(max_half, n_half), rng)])
        bandwidths = _mmd_bandwidths(np.concatenate([halves[0], rests[0]]))
        return cls(halves=halves, rests=rests, n_half=n_half, seed=seed, mmd_bandwidths=bandwidths)

    @property
    def n_reference(self) -> int:
        return len(self.rests[0])

    def score(
        self, cells: np.ndarray | None, metrics: Sequence[str] = METRICS
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Mean and standard deviation over the splits of each metric for ``cells``
        subsampled to ``|A|`` (``None``: the floor, ``A`` itself)."""
        metrics = check_metrics(metrics)
        functions = _metric_functions(self.mmd_bandwidths)
        rng = np.random.default_rng([self.seed, 1])  # the same subsamples for any call order
        values: dict[str, list[float]] = {m: [] for m in metrics}
        for half, rest in zip(self.halves, self.rests, strict=True):
            if cells is None:
                drawn = half
            else:
                cells = np.asarray(cells, dtype=np.float64)
                if len(cells) < self.n_half:
                    raise ValueError(
                        f"A candidate has {len(cells)} cells, fewer than the {self.n_half} "
                        "it is scored at; draw more cells."
                    )
                drawn = cells[rng.choice(len(cells), self.n_half, replace=False)]
            for m in metrics:
                values[m].append(functions[m](drawn, rest))
        return (
            {m: float(np.mean(v)) for m, v in values.items()},
            {m: float(np.std(v)) for m, v in values.items()},
        )


def closed_share(score: float, static_ot: float, floor: float) -> float:
    """The share of static OT's distance to the floor a score closes: 1 reaches the floor,
    0 is static OT's score, negative is worse than static OT (NaN when static OT is at the
    floor already)."""
    gap = static_ot - floor
    return float((static_ot - score) / gap) if gap > 0 else float("nan")


#: How each metric is named in titles and verdicts.
METRIC_LABELS = {"energy": "energy", "mmd": "MMD", "w1": "W1", "w2": "W2", "w1_all": "W1"}


def verdict(
    score: float, *, floor: float, static_ot: float | None = None, previous: float | None = None
) -> str:
    """One sentence a biologist can read: how a prediction's score compares with leaving the
    previous cells unmoved, with static OT interpolation and with a perfect prediction."""
    if previous is not None and score >= previous:
        return "no better than leaving the previous cells unmoved"
    if static_ot is None:
        return f"a perfect prediction would score {floor:.3g}"
    share = closed_share(score, static_ot, floor)
    if np.isnan(share):
        return "static OT interpolation is already as good as a perfect prediction"
    if share < 0:
        return "worse than static OT interpolation between the neighbouring time points"
    return f"closes {share:.0%} of static OT's distance to a perfect prediction"


# ----------------------------------------------------------------------------------- support
#: A predicted cell is off the data's support when it lies farther from every observed cell of
#: the nearest time points than this many times the observed cells' own nearest-neighbour
#: distance at :data:`SUPPORT_QUANTILE` (calibrated on the observed cells themselves).
SUPPORT_FACTOR = 2.0
SUPPORT_QUANTILE = 0.99
#: Reference cells searched at most (a seeded subsample above; the calibration uses the same).
MAX_SUPPORT_REFERENCE = 20_000


@dataclass(frozen=True)
class Support:
    """The observed cells a prediction is measured against, and their calibrated threshold.

    Attributes
    ----------
    reference
        The observed cells ``(n, d)`` (subsampled to :data:`MAX_SUPPORT_REFERENCE`).
    threshold
        :data:`SUPPORT_FACTOR` x the :data:`SUPPORT_QUANTILE` quantile of the reference cells'
        distances to their nearest other reference cell, in the cells' units.
    """

    reference: np.ndarray
    threshold: float

    @classmethod
    def fit(
        cls, reference: np.ndarray, *, seed: int = 0, factor: float = SUPPORT_FACTOR
    ) -> Support:
        """Calibrate on ``reference``; ``factor`` times the quantile is the threshold (the
        plots' kNN embedding map uses ``factor=1``: it places only points as near to the
        cells as 99% of the cells are to each other)."""
        reference = np.asarray(reference, dtype=np.float64)
        rng = np.random.default_rng(seed)
        reference = reference[subsample_indices(len(reference), MAX_SUPPORT_REFERENCE, rng)]
        if len(reference) < 2:
            return cls(reference=reference, threshold=float("inf"))
        own = kneighbors(reference, reference, 2)[0][:, 1]  # the nearest *other* cell
        scale = float(np.quantile(own, SUPPORT_QUANTILE))
        return cls(reference=reference, threshold=factor * max(scale, 1e-12))

    def distance(self, cells: np.ndarray) -> np.ndarray:
        """Each cell's distance to the nearest reference cell over :attr:`threshold`: above 1
        is off the support."""
        cells = np.asarray(cells, dtype=np.float64)
        if not np.isfinite(self.threshold):
            return np.zeros(len(cells))
        return nearest_distances(cells, self.reference) / self.threshold
