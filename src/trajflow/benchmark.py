"""Leave-one-timepoint-out benchmarking.

For every interior time point ``t``: train on all other time points (the pair around the gap
covers its whole span), push every cell of the previous time point to ``t`` and score the
prediction against the observed cells at ``t``, calibrated: the observed cells are split into a
random half ``A`` and the rest ``B`` (5 seeded splits), every prediction and baseline is
subsampled to ``|A|`` cells and scored against ``B``, and ``A`` itself is scored as the floor a
perfect prediction reaches (``"perfect-half"``). Each table says which share of static OT's
distance to that floor a method closes (``closed``). Two protocols (:data:`PROTOCOLS`):

- ``"user"``: the representation as stored, fitted with :func:`~trajflow.fit_trajectories`'s
  defaults (all dimensions up to its cap, one global scale) and scored in the representation's
  own units: the numbers a user gets on their own data. Headline: the unbiased energy
  distance (at 10-50 dims W1 between finite populations rewards tight, under-dispersed
  predictions: a perfect half beats static OT by only ~8% in W1 on EB).
- ``"paper"``: the TorchCFM / [SF]2M single-cell protocol: the first 5 dimensions, each
  standardised over *all* cells (fits whiten per dimension, ``scaling="per-dimension"``), scored in
  that standardised space, so numbers are comparable with the published ones. Headline: W1.
"""

from __future__ import annotations

import platform
import time as _time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from tqdm.auto import tqdm

from ._anndata import (
    Standardizer,
    check_anndata,
    default_representation,
    get_representation,
    parse_times,
)
from ._baselines import (
    ENTROPIC_SUBSAMPLE,
    MAX_ENTROPIC_ENTRIES,
    entropic_interpolation,
    ot_interpolation,
)
from ._config import check_option_names
from ._fit import fit_trajectories
from ._methods import get_method
from ._ot import entropic_plan
from ._protocol import PROTOCOLS, get_protocol
from ._scoring import (
    FLOOR,
    METRICS,
    STATIC_OT,
    HalfSplits,
    Support,
    check_metrics,
    closed_share,
)
from ._scoring import scoring_space as _scoring_space
from ._timecourse import TimeCourse, match_time
from ._validate import check_bool, check_optional_int, check_seeds, check_times
from ._version import __version__
from .core import resolve_device
from .metrics import wasserstein

__all__ = [
    "BASELINES",
    "METRICS",
    "PROTOCOLS",
    "entropic_interpolation",
    "held_out_table",
    "leave_one_out",
    "noise_floor",
    "ot_interpolation",
    "score_prediction",
    "scoring_space",
    "summarize",
]

#: Model-free reference predictions scored beside every method; the previous time point unmoved,
#: and static OT interpolation between the two neighbours along the exact plan and along the
#: entropic plan moscot's temporal problem solves.
BASELINES = ("previous", "ot-interpolation", "entropic-interpolation")


def scoring_space(
    reference: np.ndarray, *, protocol: Literal["user", "paper"] = "user"
) -> Standardizer:
    """The space predictions are scored in, as a standardisation to apply to cells.

    The representation's own units (``"user"``), or the representation standardised per
    dimension over ``reference`` (``"paper"``: all cells of the AnnData, as in the published
    protocol).

    Parameters
    ----------
    reference
        The cells to standardise over, shape ``(n_obs, n_dims)`` (for ``"user"`` only its
        width is used).
    protocol
        ``"user"`` (default) or ``"paper"`` (:data:`PROTOCOLS`).

    Returns
    -------
    ``Standardizer``
        A map ``(x - mean) / scale`` (its ``transform``) with, per dimension, ``mean`` 0 and
        ``scale`` 1 for ``"user"``, the mean and standard deviation of ``reference`` for
        ``"paper"`` (a constant dimension keeps scale 1).

    Raises
    ------
    ValueError
        When ``protocol`` is not one of :data:`PROTOCOLS`.
    """
    return _scoring_space(reference, standardised=get_protocol(protocol).standardised)


def score_prediction(
    predicted: np.ndarray,
    observed: np.ndarray,
    *,
    reference: np.ndarray,
    protocol: Literal["user", "paper"] = "user",
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
) -> dict[str, float]:
    """Score predicted cells against observed ones exactly as :func:`.leave_one_out` does.

    Both populations are put in the ``protocol``'s scoring space (:func:`scoring_space`) and
    scored calibrated (``trajflow._scoring``): the observed cells are split
    :data:`~trajflow._scoring.N_SPLITS` times into a half ``A`` and the rest ``B``, the
    prediction is subsampled to ``|A|`` cells and compared with ``B`` by each metric:
    ``"energy"`` (unbiased energy distance, :func:`~trajflow.metrics.energy_distance`),
    ``"mmd"`` (unbiased MMD with bandwidths scaled to the observed cells' median distance),
    ``"w1"`` / ``"w2"`` (exact Wasserstein at matched size). Plots quote scores through this
    function, so a figure never disagrees with the benchmark table. The floor a perfect
    prediction reaches is ``"perfect-half"`` of :func:`held_out_table`.

    Parameters
    ----------
    predicted, observed
        Cells in the representation's units, shapes ``(n, n_dims)`` and ``(m, n_dims)``
        (``m >= 4``, ``n >= 2``).
    reference
        The cells the paper protocol standardises over: every cell of the AnnData
        (``obsm[use_rep][:, :n_dims]``), shape ``(n_obs, n_dims)``.
    protocol
        ``"user"`` (own units) or ``"paper"``, as in :func:`leave_one_out`.
    metrics
        Which of :data:`METRICS` to compute.
    seed
        Seed of the splits and subsamples.

    Returns
    -------
    dict[str, float]
        ``{metric: value}`` in the order of ``metrics``, each the mean over the splits in the
        scoring space's units (lower is better; unbiased energy and MMD can be slightly
        negative for a prediction as good as the truth).

    Raises
    ------
    ValueError
        When ``protocol`` or a metric is unknown, or the populations are empty, too small,
        non-finite or of different widths.
    """
    return held_out_table(
        {"prediction": predicted}, observed, reference=reference, protocol=protocol,
        metrics=metrics, seed=seed,
    ).loc["prediction", list(metrics)].astype(float).to_dict()  # fmt: skip


def held_out_table(
    candidates: Mapping[str, np.ndarray],
    observed: np.ndarray,
    *,
    reference: np.ndarray,
    protocol: Literal["user", "paper"] = "user",
    metrics: Sequence[str] = METRICS,
    static_ot: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Calibrated scores of several predictions of one held-out population, with the floor.

    Every candidate is scored on the same splits as :func:`score_prediction` scores one; the
    row ``"perfect-half"`` is the floor (a random half of the observed cells against the
    rest), and ``closed`` is the share of ``static_ot``'s distance to that floor each candidate
    closes in the protocol's headline metric (unbiased energy for ``"user"``, W1 for
    ``"paper"``): 1 is a perfect prediction, 0 static OT, negative worse than static OT.

    Parameters
    ----------
    candidates
        ``{name: cells}`` in the representation's units.
    observed, reference, protocol, metrics, seed
        As in :func:`score_prediction`.
    static_ot
        The candidate the closed share is measured from (e.g. ``"ot-interpolation"``, a
        prediction by :func:`ot_interpolation`). Default: that name when it is a candidate.

    Returns
    -------
    pandas.DataFrame
        One row per candidate and the floor; columns ``metrics``, ``<metric>_std`` (over
        splits), ``w1_all`` (W1 against every observed cell, the literature's number; NaN for
        the floor), ``closed`` (NaN without a static-OT candidate), ``n_scored`` (``|A|``) and
        ``n_reference`` (``|B|``).
    """
    spec = get_protocol(protocol)
    metrics = check_metrics(metrics)
    space = scoring_space(reference, protocol=protocol)
    z = {name: space.transform(np.asarray(c, dtype=np.float64)) for name, c in candidates.items()}
    splits = HalfSplits.draw(
        space.transform(np.asarray(observed, dtype=np.float64)),
        min_candidate=min(len(c) for c in z.values()), seed=seed,
    )  # fmt: skip
    rows = {}
    for name, cells in {FLOOR: None, **z}.items():
        mean, std = splits.score(cells, metrics)
        rows[name] = {**mean, **{f"{m}_std": v for m, v in std.items()}}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    static_ot = static_ot or (STATIC_OT if STATIC_OT in z else None)
    head = spec.gap_metric
    z_obs = space.transform(np.asarray(observed, dtype=np.float64))
    frame["w1_all"] = [np.nan] + [wasserstein(c, z_obs) for c in z.values()]
    if static_ot is not None and head in metrics:
        ref, floor = frame.loc[static_ot, head], frame.loc[FLOOR, head]
        frame["closed"] = [closed_share(v, ref, floor) for v in frame[head]]
    else:
        frame["closed"] = np.nan
    frame["n_scored"], frame["n_reference"] = splits.n_half, splits.n_reference
    return frame


def noise_floor(x: np.ndarray, *, n_repeats: int = 10, seed: int = 0) -> tuple[float, float]:
    """W1 between two random halves of one population.

    The best score a perfect predictor could expect at this sample size: the distance that
    sampling alone puts between two sets of cells from the same distribution.

    Parameters
    ----------
    x
        The population, shape ``(n, d)`` (at least 2 cells), in the units it is scored in.
    n_repeats
        Number of random splits into halves.
    seed
        Seed of the splits.

    Returns
    -------
    tuple[float, float]
        ``(mean, std)`` of W1 (:func:`~trajflow.metrics.wasserstein`, ``p=1``) over the
        splits, in the units of ``x``.
    """
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_repeats):
        perm = rng.permutation(len(x))
        half = len(x) // 2
        values.append(wasserstein(x[perm[:half]], x[perm[half:]]))
    return float(np.mean(values)), float(np.std(values))


def holdout_predict_args(
    trained_times: Sequence[float], time: float, n_previous: int, *, protocol: str = "user"
) -> dict[str, Any]:
    """The ``predict`` arguments of the prediction :func:`leave_one_out` scores at ``time``.

    ``protocol="paper"``: every cell of the previous trained time point pushed forward (as
    published); ``"user"``: ``predict``'s default (both neighbours), drawing as many cells as the
    previous time point has (``n_previous``), so every candidate meets the same matched size.
    :func:`trajflow.pl.holdout` predicts with the same arguments, so its title and the
    benchmark's table give the same scores for the same model.
    """
    before = [t for t in trained_times if t < time]
    if get_protocol(protocol).from_previous and before:
        return {"source_time": before[-1]}
    return {"n_cells": n_previous}


def _interior_times(times: Sequence[float]) -> list[float]:
    return list(times[1:-1])


#: The options of fit_trajectories that leave_one_out sets itself (refused in ``fit_kwargs``).
_OWN_FIT_OPTIONS = frozenset(
    {"holdout", "time_key", "use_rep", "n_dims", "method", "seed", "device", "progress"}
)


def leave_one_out(
    adata: AnnData,
    *,
    time_key: str = "time",
    methods: Sequence[str] = ("ot-cfm", "sb-cfm", "i-cfm"),
    seeds: Sequence[int] = (0, 1, 2),
    protocol: Literal["user", "paper"] = "user",
    n_dims: int | None = None,
    holdout_times: float | Sequence[float] | None = None,
    use_rep: str = "X_pca",
    baselines: bool = True,
    fit_kwargs: Mapping[str, Any] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Leave-one-timepoint-out benchmark of flow methods and model-free baselines.

    Parameters
    ----------
    adata
        Time course with ``obs[time_key]`` and ``obsm[use_rep]``. Not modified (a missing
        ``X_pca`` is computed on a shallow copy).
    time_key, use_rep
        As in :func:`~trajflow.fit_trajectories`.
    methods
        ``method=`` values of :func:`~trajflow.fit_trajectories` to compare. Under
        ``"user"`` each fit predicts the held-out time as
        :meth:`~trajflow.TrajectoryModel.predict` does by default (from both neighbouring time
        points, the next one's share pushed backward; see there), as many cells as the
        previous time point has; under ``"paper"`` from the previous time point alone, as
        published.
    seeds
        One fit per method, seed and held-out time.
    protocol
        ``"user"`` (default): the representation as stored, fitted with the defaults of
        :func:`~trajflow.fit_trajectories` (all dimensions up to its cap, one global scale) and
        scored in the representation's own units. ``"paper"``: the TorchCFM / [SF]2M protocol:
        the first 5 dimensions, fits whitened per dimension (``scaling="per-dimension"``), scored
        after standardising each dimension over all cells. ``fit_kwargs`` may still set
        ``scaling`` to compare scalings under either protocol's scoring.
    n_dims
        Dimensions to use. Default: the protocol's (all up to 50 for ``"user"``, the first 5
        for ``"paper"``; all of a narrower representation).
    holdout_times
        Time points to hold out, one at a time. Default: every interior time point (each needs a
        neighbour on both sides).
    baselines
        Also score the model-free :data:`BASELINES`: ``previous`` (the previous time point,
        unmoved), ``ot-interpolation`` (displacement interpolation along the exact OT plan
        between the two neighbours) and ``entropic-interpolation`` (along moscot's default
        entropic plan, every previous cell pushed to a partner drawn from its plan row;
        :func:`entropic_interpolation`).
    fit_kwargs
        Extra keyword arguments for every :func:`~trajflow.fit_trajectories` call; a name that
        is not one of its options is refused up front (with the closest option).
    device, progress
        Device for training; progress bar over runs.

    Returns
    -------
    pandas.DataFrame
        One row per (method, seed, held-out time), the floor ``"perfect-half"`` included, with
        columns ``method, seed, holdout_time, energy, mmd, w1, w2, w1_all, closed, off_support,
        fit_seconds, clock,
        n_predicted, n_scored, n_observed, trajflow_version, torch_version, device``: the
        calibrated scores (means over the splits; unbiased energy and MMD, matched-size W1 and
        W2), ``w1_all`` W1 against every held-out cell (the paper protocol's headline, computed
        as published), ``closed`` the share of ``ot-interpolation``'s distance to the floor
        closed in the protocol's ``gap_metric`` (energy; matched-size W1 for ``"paper"``) (NaN with ``baselines=False``), ``off_support`` the share of the predicted cells
        farther from every held-out cell than twice those cells' own 99th-percentile
        nearest-neighbour distance, in the scoring space (:class:`trajflow._scoring.Support`,
        the measure ``predict`` writes; NaN for the floor), ``n_scored`` the cells each candidate is
        scored at (``|A|``). ``clock`` is the clock the fit used (``model.clock.kind``; what
        ``clock="auto"`` chose). Baselines have ``fit_seconds = 0`` and an empty ``clock``.
        ``frame.attrs`` records the protocol, its ``headline`` metric, ``n_dims``,
        ``time_key`` and the platform.

    Raises
    ------
    KeyError
        When ``obs[time_key]`` or ``obsm[use_rep]`` is missing (a missing ``X_pca`` is
        computed instead).
    TypeError
        For a ``fit_kwargs`` name that is not an option of :func:`~trajflow.fit_trajectories`.
    ValueError
        For an unknown method or protocol, ``fit_kwargs`` that set an argument of this
        function, a held-out time that is not an interior time point, or fewer than 3 time
        points.
    """
    check_anndata(adata)
    if isinstance(methods, str):
        methods = [methods]
    for m in methods:
        get_method(m)
    seeds = check_seeds(seeds)
    spec = get_protocol(protocol)
    n_dims = check_optional_int("n_dims", n_dims)
    baselines, progress = check_bool("baselines", baselines), check_bool("progress", progress)
    fit_kwargs = dict(fit_kwargs or {})
    check_option_names(fit_kwargs, where="fit_kwargs")
    clash = _OWN_FIT_OPTIONS & fit_kwargs.keys()
    if clash:
        raise ValueError(f"fit_kwargs may not set {sorted(clash)}; use the arguments.")
    if spec.scaling is not None:
        fit_kwargs.setdefault("scaling", spec.scaling)
    if use_rep not in adata.obsm and use_rep != "X":
        adata = adata.copy()  # a computed PCA must not land in the caller's object
    times = parse_times(adata, time_key)
    if n_dims is not None:
        rep = get_representation(adata, use_rep, n_dims)
    elif spec.n_dims is not None:  # the first 5 dims, or all of a narrower representation
        rep = get_representation(adata, use_rep, None)[:, : spec.n_dims]
    else:
        rep = default_representation(adata, use_rep, stacklevel=3)  # leave_one_out's caller
    n_dims = rep.shape[1]
    course = TimeCourse.from_arrays(rep, times, np.asarray(adata.obs_names), time_key=time_key)
    interior = _interior_times(course.times)
    if holdout_times is None:
        holdouts = interior
    else:
        holdouts = [
            match_time(t, course.times, what="holdout_times entry")
            for t in check_times("holdout_times", holdout_times)
        ]
    not_interior = [t for t in holdouts if t not in interior]
    if not_interior:
        raise ValueError(
            f"Held-out time(s) {not_interior} are not interior time points {interior}: leave-one-out "
            "needs an observed time point on both sides of the one it holds out."
        )
    if not holdouts:
        raise ValueError(
            f"No interior time point to hold out among {course.times}; the benchmark needs at "
            "least 3 time points."
        )
    # Every prediction is scored in one space, fitted once: what score_prediction does per call.
    space = scoring_space(rep, protocol=protocol)
    dev = resolve_device(device)
    meta = {"trajflow_version": __version__, "torch_version": torch.__version__, "device": str(dev)}

    rows: list[dict[str, Any]] = []
    n_runs = len(holdouts) * len(seeds) * (len(methods) + (len(BASELINES) if baselines else 0))
    bar = tqdm(total=n_runs, disable=not progress, desc="leave-one-out")
    try:
        for hold in holdouts:
            k = course.times.index(hold)
            t_prev, t_next = course.times[k - 1], course.times[k + 1]
            observed = course.populations[k]
            z_obs = space.transform(observed)
            z_prev = space.transform(course.populations[k - 1])
            z_next = space.transform(course.populations[k + 1])
            base = {"holdout_time": hold, "n_observed": len(observed)}
            # off the support: farther from every held-out cell than twice their own
            # 99th-percentile neighbour distance, in the scoring space (one owner: Support)
            support = Support.fit(z_obs)
            frac = (hold - t_prev) / (t_next - t_prev)
            # The entropic plan does not depend on the seed (only its partner draws do): solve
            # it once per held-out time unless it is subsampled, which is per seed.
            shared_plan = (
                entropic_plan(z_prev, z_next)
                if baselines and len(z_prev) * len(z_next) <= MAX_ENTROPIC_ENTRIES
                else None
            )
            for seed in seeds:
                # one set of splits per held-out time and seed: every candidate scored alike
                entropic_size = len(z_prev) if shared_plan is not None else ENTROPIC_SUBSAMPLE
                splits = HalfSplits.draw(
                    z_obs, min_candidate=min(len(z_prev), entropic_size), seed=seed
                )
                scored = {"seed": seed, **base, "n_scored": splits.n_half, **meta}
                add = partial(_add_row, rows, splits, z_obs, support, scored)
                add(FLOOR, None, fit_seconds=0.0, clock="", n_predicted=splits.n_half)
                if baselines:
                    for name, pred in (
                        ("previous", z_prev),
                        ("ot-interpolation", ot_interpolation(z_prev, z_next, frac, seed=seed)),
                        (
                            "entropic-interpolation",
                            entropic_interpolation(
                                z_prev, z_next, frac, seed=seed, plan=shared_plan
                            ),
                        ),
                    ):
                        add(name, pred, fit_seconds=0.0, clock="", n_predicted=len(pred))
                        bar.update(1)
                for method in methods:
                    bar.set_postfix(method=method, holdout=hold, seed=seed)
                    t0 = _time.perf_counter()
                    model = fit_trajectories(
                        adata,
                        time_key=time_key,
                        use_rep=use_rep,
                        n_dims=n_dims,
                        method=method,
                        holdout=hold,
                        seed=seed,
                        device=dev,
                        progress=False,
                        **fit_kwargs,
                    )
                    fit_seconds = _time.perf_counter() - t0
                    pred = model.predict(
                        hold,
                        **holdout_predict_args(model.times, hold, len(z_prev), protocol=protocol),
                    )
                    predicted = model.representation(pred)
                    add(
                        method, space.transform(predicted), fit_seconds=fit_seconds,
                        clock=model.clock.kind, n_predicted=len(predicted),
                    )  # fmt: skip
                    bar.update(1)
    finally:
        bar.close()
    columns = [
        "method",
        "seed",
        "holdout_time",
        *METRICS,
        "w1_all",
        "closed",
        "off_support",
        "fit_seconds",
        "clock",
        "n_predicted",
        "n_scored",
        "n_observed",
        "trajflow_version",
        "torch_version",
        "device",
    ]
    frame = _with_closed_share(pd.DataFrame(rows), spec.gap_metric).reindex(columns=columns)
    frame.attrs.update(
        {
            "platform": platform.platform(),
            "protocol": protocol,
            "headline": spec.headline,
            "gap_metric": spec.gap_metric,
            "n_dims": n_dims,
            "time_key": time_key,
        }
    )
    return frame


def _add_row(
    rows: list[dict[str, Any]],
    splits: HalfSplits,
    observed: np.ndarray,
    support: Support,
    common: dict[str, Any],
    name: str,
    cells: np.ndarray | None,
    **extra: Any,
) -> None:
    """Append the calibrated scores of ``cells`` (``None``: the floor) as a table row, with
    the share of them off the held-out cells' support."""
    mean, _ = splits.score(cells)
    # the literature's number: W1 against every held-out cell (NaN for the floor)
    w1_all = np.nan if cells is None else wasserstein(cells, observed)
    off = np.nan if cells is None else float(np.mean(support.distance(cells) > 1))
    rows.append({"method": name, **common, **mean, "w1_all": w1_all, "off_support": off, **extra})


def _with_closed_share(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``frame`` with ``closed``: per held-out time and seed, the share of static OT's distance
    to the floor each row closes in ``metric`` (NaN without the static-OT baseline)."""
    if frame.empty:
        return frame.assign(closed=np.nan)
    key = ["holdout_time", "seed"]
    ref = frame[frame["method"] == STATIC_OT].set_index(key)[metric]
    floor = frame[frame["method"] == FLOOR].set_index(key)[metric]
    at = pd.MultiIndex.from_frame(frame[key])
    frame["closed"] = [
        closed_share(v, ref.get(k, np.nan), floor.get(k, np.nan))
        for v, k in zip(frame[metric], at, strict=True)
    ]
    return frame


def summarize(results: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Mean ± std of ``metric`` per method (rows) and held-out time (columns).

    Methods are ordered by their overall mean, best first; the floor (``"perfect-half"``)
    comes first, as the row nothing can beat.

    Parameters
    ----------
    results
        The table :func:`leave_one_out` returns.
    metric
        The column to summarise: one of :data:`METRICS`. Default: the protocol's headline
        (``results.attrs["headline"]``: unbiased energy for ``"user"``, ``w1_all`` for
        ``"paper"``).

    Returns
    -------
    pandas.DataFrame
        Index ``method``; one column ``t=<time>`` per held-out time with ``"mean ± std"`` over
        seeds (just the mean for one seed), as strings with 3 decimals; ``mean`` (the mean
        over held-out times, ± the std over seeds of that mean); ``closed`` (the mean share of
        static OT's distance to the floor closed, in the headline metric, as a percentage
        string); ``off_support`` (the mean share of predicted cells off the held-out cells'
        support, as a percentage string; empty for the floor); ``fit_s`` (mean fit seconds, rounded to 0.01).

    Raises
    ------
    KeyError
        When ``metric`` is not a column of ``results``.
    """
    if metric is None:
        metric = results.attrs.get("headline", "w1")
    if metric not in results.columns:
        raise KeyError(
            f"metric {metric!r} is not a column of the results ({list(results.columns)})."
        )
    # rows without this metric (the floor has no w1_all) are left out, not printed as nan
    results = results[results[metric].notna()]
    table: dict[str, dict[str, str]] = {}
    per_seed = results.groupby(["method", "seed"])[metric].mean()
    overall = per_seed.groupby("method").agg(["mean", "std", "count"])

    def cell(values: pd.Series | np.ndarray, mean: float, std: float) -> str:
        # One seed has no spread to report: "0.883", not a misleading "0.883 ± 0.000".
        return f"{mean:.3f}" if len(values) < 2 else f"{mean:.3f} ± {std:.3f}"

    for (method, hold), g in results.groupby(["method", "holdout_time"]):
        values = g[metric].to_numpy()
        table.setdefault(method, {})[f"t={hold:g}"] = cell(
            values, values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0
        )
    out = pd.DataFrame.from_dict(table, orient="index")
    out["mean"] = [
        cell(per_seed.loc[m], overall.loc[m, "mean"], overall.loc[m, "std"]) for m in out.index
    ]
    if "closed" in results.columns:
        closed = results.groupby("method")["closed"].mean().reindex(out.index)
        out["closed"] = [("" if np.isnan(v) else f"{100 * v:.0f}%") for v in closed]
    if "off_support" in results.columns:
        off = results.groupby("method")["off_support"].mean().reindex(out.index)
        out["off_support"] = [("" if np.isnan(v) else f"{100 * v:.1f}%") for v in off]
    out["fit_s"] = results.groupby("method")["fit_seconds"].mean().reindex(out.index).round(2)
    order = overall["mean"].reindex(out.index).sort_values().index.tolist()
    if FLOOR in order:
        order.remove(FLOOR)
        order.insert(0, FLOOR)
    out = out.loc[order]
    out.index.name = "method"
    return out
