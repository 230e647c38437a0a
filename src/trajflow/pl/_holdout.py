"""Predicted populations: on their own over the observed cells, or against a held-out time point."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from scipy.stats import gaussian_kde, wasserstein_distance

from .._anndata import get_representation, parse_times
from .._consumers import adata_first
from .._outputs import SOURCE_TIME_KEY, prediction_positions
from .._scoring import METRIC_LABELS, METRICS, STATIC_OT, verdict
from .._timecourse import same_time
from ..benchmark import (
    get_protocol,
    held_out_table,
    holdout_predict_args,
    ot_interpolation,
    scoring_space,
)
from ._arguments import check_unplaceable, prediction_keys
from ._arguments import model_or_prediction as split_model_or_prediction
from ._axes import finish, new_axes, point_size, style_embedding_axes
from ._background import scatter_background
from ._colors import (
    BACKGROUND_COLOR,
    FADED_COLOR,
    OBSERVED_COLOR,
    PREDICTED_COLOR,
    TimeColors,
    add_legend,
    faded_handle,
    format_time,
)
from ._embedding import EmbeddingMap, basis_label
from ._support import (
    extrapolation_note,
    off_support_handle,
    off_support_title,
    prediction_off_support,
    title_with_notes,
)

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def _model_time(model: TrajectoryModel, time: float | None, default_to_holdout: bool) -> float:
    """The time a model predicts: ``time``, else (``default_to_holdout``) its first held-out
    time point."""
    if time is not None:
        return time
    if default_to_holdout and model.holdout:
        return model.holdout[0]
    raise ValueError(
        "Pass time=: the time point to predict"
        + (" (the model has no held-out time point to default to)." if default_to_holdout else ".")
    )


def _resolve_prediction(
    obj: TrajectoryModel | AnnData,
    *,
    time: float | None,
    source_time: float | None,
    n_cells: int | None,
    seed: int,
    time_key: str | None,
    use_rep: str | None,
    default_to_holdout: bool,
) -> tuple[AnnData, float, str, str, list[float] | None, TrajectoryModel | None]:
    """``(prediction, time, time_key, use_rep, trained_times, model)`` from a model or a
    prediction AnnData."""
    model, pred = split_model_or_prediction(obj)
    if model is not None:
        time = _model_time(model, time, default_to_holdout)
        pred = model.predict(float(time), source_time=source_time, n_cells=n_cells, seed=seed)
        return pred, float(time), model.time_key, model.use_rep, model.times, model
    time_key, use_rep = prediction_keys(pred, time_key, use_rep)
    if use_rep not in pred.obsm:
        raise KeyError(f"The prediction has no obsm[{use_rep!r}].")
    pred_times = np.asarray(pred.obs[time_key], dtype=float)
    values = np.unique(pred_times)
    if time is None:
        if len(values) != 1:
            raise ValueError(f"The prediction holds several times {values.tolist()}; pass time=.")
        time = float(values[0])
    at = same_time(pred_times, float(time))
    if not at.any():
        raise ValueError(
            f"The prediction holds no cells at {time_key}={format_time(float(time))} (it holds "
            f"{[format_time(v) for v in values]}); pass one of those as time=."
        )
    # only the cells predicted at that time: a prediction of several times is not one population
    return pred[at], float(time), time_key, use_rep, None, None


def prediction(
    adata: AnnData,
    model_or_prediction: TrajectoryModel | AnnData,
    *,
    time: float | None = None,
    basis: str | None = None,
    components: Sequence[int] = (1, 2),
    source_time: float | None = None,
    n_cells: int | None = None,
    seed: int = 0,
    time_key: str | None = None,
    use_rep: str | None = None,
    n_neighbors: int = 15,
    unplaceable: Literal["fade", "hide", "show"] = "fade",
    cmap: str | Colormap | None = None,
    lightness: float = 0.55,
    size: float | None = None,
    color: str = PREDICTED_COLOR,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes:
    """Predicted cells at one time, drawn over the observed cells of every time point.

    Use it for times that were never measured. Observed cells are a light background coloured by
    time (a legend with one entry per time point, or a colour bar for more than 12); predicted
    cells are drawn on top in ``color``.

    The default basis is the model's representation, where predicted cells are drawn exactly
    where they are. On a UMAP they are placed by the kNN map
    (:class:`~trajflow.pl.EmbeddingMap`), which cannot place points far from every observed
    cell or between clusters; those predicted cells are drawn **faded** (hollow grey circles,
    "faded: the UMAP cannot place these points (far from any observed cell, or between
    clusters)" in the legend, with their number) instead of being pulled onto a cluster they
    do not belong to.

    Predicted cells the model carried off the data (``obs['off_support']``, written by
    :meth:`~trajflow.TrajectoryModel.predict`: farther from every observed cell of the nearest
    trained time points than twice their own 99th-percentile neighbour distance) are drawn
    **hollow** in ``color``, counted in the legend, and the title gets a line such as "12% of
    the predicted cells off the observed cells' support". A time outside the model's trained
    range (or, for a prediction AnnData, outside the observed time points) gets a title line
    "extrapolated: past the last trained time point (day 4)". On the representation basis the
    axes carry their scale (tick labels), so a prediction far from the data shows how far.

    Parameters
    ----------
    adata
        The observed cells, with the time column and ``obsm[use_rep]``. Not modified.
    model_or_prediction
        A fitted :class:`~trajflow.TrajectoryModel` (``model.predict(time)`` is called), or the
        AnnData that :meth:`~trajflow.TrajectoryModel.predict` returned.
    time
        Time to predict (required with a model; read from a prediction).
    basis, components, n_neighbors
        As in :func:`trajflow.pl.trajectories`: the model's representation (exact), or any 2-D
        ``obsm`` embedding such as ``'umap'``, onto which predicted cells are placed by a kNN
        regression from the representation fitted on ``adata``'s cells
        (:class:`~trajflow.pl.EmbeddingMap`).
    source_time, n_cells, seed
        Passed to :meth:`~trajflow.TrajectoryModel.predict` (with a model).
    time_key, use_rep
        With a prediction AnnData: its time column and ``obsm`` key (inferred by default).
    cmap, lightness, size
        Background colours (time colour map, blend towards white, marker area).
    unplaceable
        Non-linear bases only: ``"fade"`` (default), ``"hide"`` (predicted cells the map cannot
        place are not drawn; the legend counts them) or ``"show"`` (drawn like the others).
    color
        Colour of predicted cells.
    title, ax, show, save
        As in :func:`trajflow.pl.trajectories`.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into.
    """
    adata, model_or_prediction = adata_first(
        adata, model_or_prediction, "trajflow.pl.prediction", prediction=True
    )
    check_unplaceable(unplaceable)
    pred, time, time_key, use_rep, trained, _ = _resolve_prediction(
        model_or_prediction,
        time=time,
        source_time=source_time,
        n_cells=n_cells,
        seed=seed,
        time_key=time_key,
        use_rep=use_rep,
        default_to_holdout=False,
    )
    x_pred = prediction_positions(pred, use_rep)
    emap = EmbeddingMap.fit(
        adata,
        use_rep=use_rep,
        n_dims=x_pred.shape[1],
        basis=basis,
        components=components,
        n_neighbors=n_neighbors,
    )
    times = parse_times(adata, time_key)
    tc = TimeColors.make(np.unique(times), time_key, cmap)
    ax = new_axes(ax)
    scatter_background(
        ax,
        adata,
        emap,
        tc,
        times,
        color=time_key,
        time_key=time_key,
        lightness=lightness,
        size=size,
        seed=seed,
    )
    xy, ok = emap.place(x_pred)
    if unplaceable == "show":
        ok[:] = True
    off = prediction_off_support(pred)
    on = ok & ~off
    ax.scatter(
        xy[on, 0],
        xy[on, 1],
        s=point_size(len(xy), 0.45),
        c=color,
        edgecolors="black",
        linewidths=0.2,
        alpha=0.75,
        zorder=3,
        rasterized=True,
    )
    # Off the support: hollow, in the prediction's colour (the map could place them; the
    # model put them where no observed cell is).
    ax.scatter(
        xy[ok & off, 0],
        xy[ok & off, 1],
        s=point_size(len(xy), 0.45),
        facecolors="none",
        edgecolors=color,
        linewidths=0.7,
        alpha=0.9,
        zorder=2.8,
        rasterized=True,
    )
    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            color=color,
            alpha=0.75,
            markeredgecolor="black",
            markeredgewidth=0.4,
            label=f"predicted, {time_key} {format_time(time)} (n={len(xy)})",
        )
    ]
    if off.any():
        handles.append(off_support_handle(color, int(off.sum()), len(off)))
    n_bad = int((~ok).sum())
    if n_bad:
        if unplaceable == "fade":
            ax.scatter(
                xy[~ok, 0],
                xy[~ok, 1],
                s=point_size(len(xy), 0.45),
                facecolors="none",
                edgecolors=FADED_COLOR,
                linewidths=0.6,
                alpha=0.8,
                zorder=2.5,
                rasterized=True,
            )
        verb = "faded" if unplaceable == "fade" else "not drawn"
        share = f":\n{n_bad} of the {len(xy)} predicted cells"
        handles.append(faded_handle(emap, verb=verb, share=share))
    add_legend(ax, handles, where="below")
    style_embedding_axes(ax, emap.axis_labels, ticks=emap.linear)
    if title is None:
        where = "" if emap.linear else " (kNN-mapped)"
        # The model's trained range where it is known, else the observed time points.
        known, which = (np.unique(times), "observed") if trained is None else (trained, "trained")
        notes = [extrapolation_note(time, known, time_key, which=which)]
        if off.any():
            notes.append(off_support_title(int(off.sum()), len(off)) + " (hollow)")
        title_with_notes(ax, f"predicted cells at {time_key} {format_time(time)}{where}", notes)
    else:
        ax.set_title(title)
    return finish(ax, show=show, save=save)


#: The references a held-out title quotes beside the prediction, with their labels.
_REFERENCES = {STATIC_OT: "static OT", "previous": "unmoved"}


def _scores_with_references(
    x_pred: np.ndarray, rep: np.ndarray, times: np.ndarray, time: float, protocol: str
) -> dict[str, dict[str, float]]:
    """``{metric: {candidate: score}}`` of the prediction, the floor, the previous observed
    cells unmoved and static OT between the observed neighbours (where they exist), as
    :func:`trajflow.benchmark.held_out_table` scores them."""
    hit = same_time(times, time)
    observed_times = np.unique(times[~hit])
    before, after = observed_times[observed_times < time], observed_times[observed_times > time]
    candidates = {"prediction": x_pred}
    if before.size:
        prev = rep[same_time(times, before[-1])]
        candidates["previous"] = prev
        if after.size:
            nxt = rep[same_time(times, after[0])]
            frac = (time - before[-1]) / (after[0] - before[-1])
            candidates[STATIC_OT] = ot_interpolation(prev, nxt, frac, seed=0)
    table = held_out_table(candidates, rep[hit], reference=rep, protocol=protocol)
    return {m: table[m].to_dict() for m in (*METRICS, "w1_all")}


def holdout(
    adata: AnnData,
    model_or_prediction: TrajectoryModel | AnnData,
    *,
    time: float | None = None,
    basis: str | None = None,
    components: Sequence[int] = (1, 2),
    dims: Sequence[int] | None = None,
    source_time: float | None = None,
    seed: int = 0,
    time_key: str | None = None,
    use_rep: str | None = None,
    n_neighbors: int = 15,
    unplaceable: Literal["fade", "hide", "show"] = "fade",
    protocol: Literal["user", "paper"] = "user",
    fig: Figure | SubFigure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Figure | SubFigure:
    """Predicted vs observed population at a held-out time point.

    Left: a 2-D overlay of the observed cells at ``time`` and the predicted ones (all other cells
    light grey for context). Right: per-dimension marginal densities (Gaussian KDE), observed
    filled, predicted as a line, each with its 1-D W1. The title gives the protocol's headline
    score (unbiased energy distance for ``"user"``, W1 for ``"paper"``) of the prediction,
    scored calibrated as :func:`trajflow.benchmark.leave_one_out` scores
    (:func:`trajflow.benchmark.held_out_table`: matched size against half of the observed
    cells, on the model's ``n_dims`` dimensions in the ``protocol``'s space), beside the floor
    a perfect prediction reaches, static OT interpolation between the observed neighbours and
    the previous cells unmoved, and a second line says in words how the prediction compares
    (e.g. "closes 5% of static OT's distance to a perfect prediction", or "no better than
    leaving the previous cells unmoved"). The marginals are drawn in the same space.
    Predicted cells off the observed cells' support (``obs['off_support']``) are drawn hollow
    in the overlay, counted in its legend and in a third title line; a held-out time past the
    model's trained range says "extrapolated" in the title.

    Parameters
    ----------
    adata
        The observed cells, including those at ``time``. Not modified.
    model_or_prediction
        A fitted :class:`~trajflow.TrajectoryModel` (predicting ``time`` as
        :func:`trajflow.benchmark.leave_one_out` does for the ``protocol``: ``predict``'s default
        from both neighbours with as many cells as the previous time point has, or, for
        ``"paper"``, every cell of the previous time point pushed forward; so the title's scores
        are the benchmark's), or the AnnData that :meth:`~trajflow.TrajectoryModel.predict`
        returned.
    time
        Held-out time. Default: the model's first held-out time point.
    basis, components, n_neighbors
        The 2-D overlay's basis, as in :func:`trajflow.pl.trajectories`: by default the
        model's representation (exact); kNN-mapped for a non-linear embedding such as
        ``'umap'`` (observed cells keep their own embedding positions).
    unplaceable
        Non-linear bases only: predicted cells the kNN map cannot place (far from any observed
        cell, or between clusters; see :class:`~trajflow.pl.EmbeddingMap`) are drawn faded
        (``"fade"``, default: hollow grey circles, counted in the legend), left out
        (``"hide"``) or drawn like the others (``"show"``). The scores and marginals always use
        every predicted cell.
    dims
        0-based representation dimensions for the marginal panels. Default: the first
        ``min(n_dims, 6)``.
    source_time, seed
        Passed to :meth:`~trajflow.TrajectoryModel.predict` (with a model); a ``source_time``
        pushes every cell of that time point instead of the benchmark's prediction.
    protocol
        The scoring space of :func:`trajflow.benchmark.leave_one_out`'s ``protocol``.
    time_key, use_rep
        With a prediction AnnData: its time column and ``obsm`` key (inferred by default).
    fig
        Draw into this Figure or SubFigure (must be empty); a new figure is made otherwise.
    figsize
        Size of a new figure.
    title, show, save
        Suptitle (default: time, scores and the verdict), ``plt.show()``, path to save to.

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The figure drawn into: ``fig.axes[0]`` is the overlay, then one Axes per marginal.
    """
    adata, model_or_prediction = adata_first(
        adata, model_or_prediction, "trajflow.pl.holdout", prediction=True
    )
    check_unplaceable(unplaceable)
    n_cells = None
    model, _ = split_model_or_prediction(model_or_prediction)
    if model is not None and source_time is None:
        # the prediction leave_one_out scores, so the title and its table agree
        time = _model_time(model, time, default_to_holdout=True)
        before = [t for t in model.times if t < float(time)]
        observed = parse_times(adata, model.time_key)
        n_previous = int(same_time(observed, before[-1]).sum()) if before else 0
        if n_previous:
            predict_args = holdout_predict_args(
                model.times, float(time), n_previous, protocol=protocol
            )
            source_time, n_cells = predict_args.get("source_time"), predict_args.get("n_cells")
    pred, time, time_key, use_rep, trained, _ = _resolve_prediction(
        model_or_prediction,
        time=time,
        source_time=source_time,
        n_cells=n_cells,
        seed=seed,
        time_key=time_key,
        use_rep=use_rep,
        default_to_holdout=True,
    )
    x_pred = prediction_positions(pred, use_rep)
    n_dims = x_pred.shape[1]
    times = parse_times(adata, time_key)
    hit = same_time(times, time)
    if not hit.any():
        raise ValueError(
            f"adata has no cells at {time_key}={format_time(time)} to compare with (observed: "
            f"{[format_time(t) for t in np.unique(times)]}). Use trajflow.pl.prediction to show "
            "predicted cells at an unmeasured time."
        )
    rep = get_representation(adata, use_rep, n_dims, allow_pca=False)
    # The benchmark's own scores (and space, for the marginals), so the title matches its table.
    scores = _scores_with_references(x_pred, rep, times, time, protocol)
    space = scoring_space(rep, protocol=protocol)
    z_obs, z_pred = space.transform(rep[hit]), space.transform(x_pred)
    dims = list(range(min(n_dims, 6))) if dims is None else [int(d) for d in dims]
    if not dims or min(dims) < 0 or max(dims) >= n_dims:
        raise ValueError(f"dims must be 0-based dimensions below n_dims={n_dims}, got {dims}.")

    if fig is None:
        fig = plt.figure(figsize=figsize or (10.5, 4.8), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1.0])
    ax = left.subplots()
    emap = EmbeddingMap.fit(
        adata,
        use_rep=use_rep,
        n_dims=n_dims,
        basis=basis,
        components=components,
        n_neighbors=n_neighbors,
    )
    others = emap.coords[~hit]
    ax.scatter(
        others[:, 0],
        others[:, 1],
        s=point_size(adata.n_obs),
        c=BACKGROUND_COLOR,
        linewidths=0,
        rasterized=True,
        zorder=1,
    )
    xy_obs, (xy_pred, ok) = emap.coords[hit], emap.place(x_pred)
    if unplaceable == "show":
        ok[:] = True
    off = prediction_off_support(pred)
    on = ok & ~off
    both = np.concatenate([xy_obs, xy_pred[on]])
    cols = np.array([OBSERVED_COLOR] * len(xy_obs) + [PREDICTED_COLOR] * int(on.sum()))
    order = np.random.default_rng(seed).permutation(len(both))  # neither hides the other
    s_pts = point_size(len(xy_obs) + len(xy_pred), 1.2)
    ax.scatter(
        both[order, 0],
        both[order, 1],
        c=cols[order],
        s=s_pts,
        linewidths=0,
        alpha=0.55,
        rasterized=True,
        zorder=2,
    )
    ax.scatter(
        *xy_pred[ok & off].T,
        s=s_pts,
        facecolors="none",
        edgecolors=PREDICTED_COLOR,
        linewidths=0.7,
        alpha=0.9,
        rasterized=True,
        zorder=2.5,
    )
    srcs = sorted(pred.obs[SOURCE_TIME_KEY].unique()) if SOURCE_TIME_KEY in pred.obs else []
    from_txt = f" from {' and '.join(format_time(s) for s in srcs)}" if srcs else ""
    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            color=OBSERVED_COLOR,
            alpha=0.55,
            label=f"observed (n={len(xy_obs)})",
        ),
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            color=PREDICTED_COLOR,
            alpha=0.55,
            label=f"predicted{from_txt} (n={len(xy_pred)})",
        ),
        Line2D([], [], ls="", marker="o", color=BACKGROUND_COLOR, label="other time points"),
    ]
    n_bad = int((~ok).sum())
    if n_bad:
        if unplaceable == "fade":
            ax.scatter(
                *xy_pred[~ok].T,
                s=s_pts,
                facecolors="none",
                edgecolors=FADED_COLOR,
                linewidths=0.6,
                alpha=0.8,
                rasterized=True,
                zorder=1.5,
            )
        verb = "faded" if unplaceable == "fade" else "not drawn"
    add_legend(ax, handles[:3], where="inside")
    below = []
    if off.any():
        below.append(off_support_handle(PREDICTED_COLOR, int(off.sum()), len(off)))
    if n_bad:
        share = f":\n{n_bad} of the {len(xy_pred)} predicted cells"
        below.append(faded_handle(emap, verb=verb, share=share))
    if below:
        add_legend(ax, below, where="below")
    style_embedding_axes(ax, emap.axis_labels, ticks=emap.linear)
    ax.set_title("kNN-mapped overlay" if not emap.linear else "overlay", fontsize="medium")
    ax.set_gid("overlay")

    ncols = 2 if len(dims) > 2 else 1
    nrows = math.ceil(len(dims) / ncols)
    axes = np.atleast_1d(right.subplots(nrows, ncols)).ravel()
    prefix = basis_label(use_rep)
    space_note = " (standardised)" if get_protocol(protocol).standardised else ""
    for a, d in zip(axes, dims, strict=False):
        o, p = z_obs[:, d], z_pred[:, d]
        lo, hi = np.percentile(np.concatenate([o, p]), [0.5, 99.5])
        span = hi - lo or 1.0
        grid = np.linspace(lo - 0.1 * span, hi + 0.1 * span, 200)
        for values, col, filled in ((o, OBSERVED_COLOR, True), (p, PREDICTED_COLOR, False)):
            dens = gaussian_kde(values)(grid) if np.std(values) > 0 else np.zeros_like(grid)
            if filled:
                a.fill_between(grid, dens, color=col, alpha=0.3, linewidth=0)
            a.plot(grid, dens, color=col, lw=1.5 if not filled else 1.0)
        a.set_xlabel(f"{prefix}{d + 1}{space_note}", fontsize="small")
        a.set_yticks([])
        a.tick_params(labelsize="x-small")
        for side in ("top", "right", "left"):
            a.spines[side].set_visible(False)
        a.text(
            0.98,
            0.95,
            f"W1 {wasserstein_distance(p, o):.2f}",
            transform=a.transAxes,
            ha="right",
            va="top",
            fontsize="x-small",
        )
    for a in axes[len(dims) :]:
        a.axis("off")
    if len(axes) > len(dims):
        axes[-1].legend(
            handles=handles[:2],
            loc="center",
            fontsize="small",
            frameon=False,
            title="marginal densities",
            title_fontsize="small",
        )
    if title is None:
        in_training = trained is not None and bool(same_time(trained, time).any())
        what = (
            f"{time_key} {format_time(time)}"
            if in_training
            else f"held-out {time_key} {format_time(time)}"
        )
        status = " (not held out: used in training)" if in_training else ""
        if trained is not None:
            outside = extrapolation_note(time, trained, time_key, which="trained")
            status += "" if outside is None else f" ({outside})"
        spec = get_protocol(protocol)
        dims_note = f"{n_dims} standardised dims" if spec.standardised else f"{n_dims} dims"
        head, gap = scores[spec.headline], scores[spec.gap_metric]
        refs = [] if spec.headline == "w1_all" else [f"perfect {head['perfect-half']:.3f}"]
        refs += [f"{label} {head[k]:.3f}" for k, label in _REFERENCES.items() if k in head]
        title = (
            f"{what}: predicted vs observed, {METRIC_LABELS[spec.headline]} = "
            f"{head['prediction']:.3f} ({', '.join(refs)}; {dims_note}){status}\n"
            + verdict(
                gap["prediction"], floor=gap["perfect-half"], static_ot=gap.get(STATIC_OT),
                previous=gap.get("previous"),
            )
        )  # fmt: skip
        if off.any():
            title += f"\n{off_support_title(int(off.sum()), len(off))} (hollow in the overlay)"
    fig.suptitle(title)
    return finish(fig, show=show, save=save)
