"""Plots of the learned flow: per-cell trajectories over the observed cells (the velocity field
is drawn in ``_velocity.py``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Colormap
from matplotlib.lines import Line2D

from .._anndata import parse_times
from .._consumers import adata_first
from ._arguments import check_unplaceable
from ._axes import finish, new_axes, style_embedding_axes
from ._background import scatter_background
from ._colors import FADED_ALPHA, FADED_COLOR, TimeColors, add_legend, faded_handle, format_time
from ._embedding import EmbeddingMap
from ._support import (
    OFF_SUPPORT,
    extrapolation_note,
    off_support_handle,
    paths_off_support,
    title_with_notes,
)

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def trajectories(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    basis: str | None = None,
    components: Sequence[int] = (1, 2),
    color: str | None = None,
    source_times: float | Sequence[float] | None = None,
    end_time: float | None = None,
    n_cells: int = 15,
    n_points: int = 60,
    sde: bool = False,
    seed: int = 0,
    n_neighbors: int = 15,
    smooth: int = 7,
    unplaceable: Literal["fade", "hide", "show"] = "fade",
    cmap: str | Colormap | None = None,
    lightness: float = 0.55,
    size: float | None = None,
    linewidth: float = 1.0,
    legend: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes:
    """Learned per-cell paths over the observed cells.

    Observed cells are drawn as a light background coloured by time (or by ``color``). From each
    start time a random sample of ``n_cells`` observed cells is pushed through the learned flow
    to ``end_time`` (default: the last time point); each path is a line coloured by the time it
    has reached, its start marked by a dot in the start time's colour and its end by a black dot.

    The default basis is the model's own representation (e.g. PC1/PC2): the paths are drawn
    exactly where they are. On a UMAP (or any other non-linear embedding) they are placed by a
    fitted kNN map (:class:`~trajflow.pl.EmbeddingMap`), which can only place points among the
    observed cells: path stretches that are far from every observed cell, that fall between
    clusters (their nearest cells lie in different places on the UMAP) or that the UMAP tears
    apart (a step that jumps across the embedding) are drawn **faded** (thin, grey, dashed),
    and the legend says so: "faded: the UMAP cannot place these points (far from any observed
    cell, or between clusters)". Read faded stretches as "the path goes somewhere this UMAP
    does not show", not as a route across it; ``unplaceable="hide"`` leaves them out.

    Stretches where a path has left the data (a point farther from every observed cell of the
    nearest trained time points than twice their own 99th-percentile neighbour distance,
    :meth:`~trajflow.TrajectoryModel.support_for`) are drawn **dotted**, a path that ends
    there gets a hollow diamond instead of a black dot, and the title counts them ("3 of 30
    paths end off the observed cells' support"); an ``end_time`` past the trained range says
    "extrapolated". On the representation basis the axes carry their scale (tick labels).

    Parameters
    ----------
    adata
        The observed cells, with ``obs[model.time_key]`` and ``obsm[model.use_rep]`` (at least
        ``model.n_dims`` columns). Not modified.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    basis
        Where to draw. ``None`` (default): the model's representation, e.g. PC1/PC2 for
        ``use_rep='X_pca'`` (exact). Any other 2-D ``obsm`` embedding (``'umap'``, ``'X_umap'``,
        ``'tsne'``...): paths live in the representation space and are placed on the embedding by
        a fitted map, a k-nearest-neighbour regression (inverse-distance weights) from the
        representation (``obsm[use_rep][:, :n_dims]``) to the embedding, trained on ``adata``'s
        cells; see :class:`~trajflow.pl.EmbeddingMap`.
    components
        Two 1-based columns of the basis to plot.
    color
        ``obs`` column or gene (``var_names``, expression in ``X``) for the background cells.
        Default: the model's time key. Paths are always
        coloured by time; with another ``color`` the background's legend (categories) is on the
        right and the paths' time key below the axes.
    source_times
        Time point(s) paths start from. Default: every trained time point but the last.
    end_time
        Where paths end. Default: the last trained time point.
    n_cells
        Paths per start time (sampled with ``seed``).
    n_points
        Points per path.
    sde
        Sample SDE paths (``method='sb-cfm'`` only) instead of the deterministic ODE.
    seed
        Seeds the choice of cells (and SDE noise).
    n_neighbors
        Neighbours of the kNN map for non-linear bases.
    smooth
        Non-linear bases only: a kNN-mapped path jitters as its nearest observed cells change,
        so each placeable stretch is smoothed by a moving average over ``smooth`` points (its
        first and last points are kept exactly; ``1`` turns smoothing off).
    unplaceable
        Non-linear bases only: what to do with path segments the map cannot place (see above):
        ``"fade"`` (default), ``"hide"`` (not drawn), or ``"show"`` (drawn like the others).
    cmap
        Colour map of time (default ``'viridis'``).
    lightness
        How far background cells are blended towards white (0: full colour). Their legend shows
        the blended colours.
    size
        Marker area of background cells (default: scaled to the number of cells).
    linewidth
        Width of path lines.
    legend
        Draw the legends: the background key on the right (one entry per time point when there
        are at most 12, else a colour bar; or the ``color`` categories) and the marker key below.
    title
        Axes title (default: method and what is shown).
    ax
        Draw into this Axes; a new figure is made otherwise.
    show
        Call ``plt.show()``. Default: no.
    save
        Write the figure to this path (``dpi=150``, tight bounding box).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into. Paths from each start time are a
        :class:`~matplotlib.collections.LineCollection` labelled ``"paths from <time>"``; faded
        segments are a second one labelled ``"faded paths from <time>"`` and segments off the
        support a third, ``"off-support paths from <time>"``. Together they hold
        ``n_cells * (n_points - 1)`` segments (fewer with ``unplaceable="hide"``).
    """
    adata, model = adata_first(adata, model, "trajflow.pl.trajectories")
    check_unplaceable(unplaceable)
    time_key = model.time_key
    color = time_key if color is None else color
    emap = EmbeddingMap.fit(
        adata,
        use_rep=model.use_rep,
        n_dims=model.n_dims,
        basis=basis,
        components=components,
        n_neighbors=n_neighbors,
    )
    times = parse_times(adata, time_key)
    tc = TimeColors.make([*model.observed_times, *np.unique(times)], time_key, cmap)
    end = model.times[-1] if end_time is None else float(end_time)
    if source_times is None:
        starts = [t for t in model.times if t < end]
    else:
        starts = [float(t) for t in np.atleast_1d(source_times)]
    if not starts:
        raise ValueError(f"No start time before end_time={end:g}; trained times are {model.times}.")

    ax = new_axes(ax, figsize=(6.4, 5.0))
    scatter_background(
        ax,
        adata,
        emap,
        tc,
        times,
        color=color,
        time_key=time_key,
        lightness=lightness,
        size=size,
        seed=seed,
        key=legend,
        key_paths=True,
    )
    n_faded = n_total = n_off = n_ends_off = n_paths = 0
    for k, start in enumerate(starts):
        traj = model.trajectories(
            source_time=start,
            end_time=end,
            n_points=n_points,
            n_cells=n_cells,
            sde=sde,
            seed=seed + k,
        )
        xy, ok_pts = emap.place(traj.paths)  # (n_cells, n_points, 2), (n_cells, n_points)
        ok = ok_pts[:, :-1] & ok_pts[:, 1:]
        ok &= ~emap.jumps(traj.paths[:, :-1], traj.paths[:, 1:], xy[:, :-1], xy[:, 1:])
        if unplaceable == "show":
            ok[:] = True
        if not emap.linear:
            xy = _smooth_paths(xy, smooth, ok)
        # Where the path itself has left the data (the model's own measure, in the
        # representation): a segment is off when the point it reaches is.
        off_pts = paths_off_support(model, traj.paths, traj.times)
        off = ok & off_pts[:, 1:]
        n_faded += int((~ok).sum())
        n_off += int(off.sum())
        n_total += ok.size
        n_ends_off += int(off_pts[:, -1].sum())
        n_paths += len(off_pts)
        segments = np.stack([xy[:, :-1], xy[:, 1:]], axis=2)  # (n_cells, n_points - 1, 2, 2)
        mid_t = 0.5 * (traj.times[:-1] + traj.times[1:])
        seg_colors = tc(np.broadcast_to(mid_t, ok.shape))
        good, bad = segments[ok & ~off], segments[~ok]
        if off.any():
            ax.add_collection(
                LineCollection(
                    segments[off],
                    colors=seg_colors[off],
                    linewidths=max(linewidth, 0.8),
                    linestyles=(0, (1, 1.5)),
                    zorder=2.5,
                    label=f"off-support paths from {format_time(traj.source_time)}",
                )
            )
        # A thin dark casing keeps light (late) path colours readable over the pale background.
        ax.add_collection(
            LineCollection(
                good,
                colors="#222222",
                linewidths=linewidth + 0.9,
                alpha=0.55,
                zorder=2,
                capstyle="round",
            )
        )
        lc = LineCollection(
            good,
            colors=seg_colors[ok & ~off],
            linewidths=linewidth,
            zorder=3,
            capstyle="round",
            label=f"paths from {format_time(traj.source_time)}",
        )
        ax.add_collection(lc)
        if unplaceable == "fade" and len(bad):
            ax.add_collection(
                LineCollection(
                    bad,
                    colors=FADED_COLOR,
                    linewidths=max(linewidth * 0.8, 0.5),
                    linestyles=(0, (2, 1.5)),
                    alpha=FADED_ALPHA,
                    zorder=2,
                    label=f"faded paths from {format_time(traj.source_time)}",
                )
            )
        ax.scatter(
            xy[:, 0, 0],
            xy[:, 0, 1],
            s=22,
            c=tc(np.full(len(xy), traj.source_time)),
            edgecolors="black",
            linewidths=0.6,
            zorder=4,
        )
        end_ok = ok_pts[:, -1] | (unplaceable == "show")
        end_on = end_ok & ~off_pts[:, -1]
        ax.scatter(*xy[end_on, -1].T, s=9, c="black", linewidths=0, zorder=5)
        ax.scatter(
            *xy[end_ok & ~end_on, -1].T,
            s=18,
            marker="D",
            facecolors="white",
            edgecolors="black",
            linewidths=0.8,
            zorder=5,
        )
        if unplaceable == "fade" and (~end_ok).any():
            ax.scatter(
                *xy[~end_ok, -1].T, s=9, c=FADED_COLOR, alpha=FADED_ALPHA + 0.2, linewidths=0
            )
    ax.autoscale_view()
    style_embedding_axes(ax, emap.axis_labels, ticks=emap.linear)
    if legend:
        if color != time_key and not tc.discrete:
            tc.colorbar(ax, location="bottom", pad=0.08, fraction=0.04).set_label(
                f"path colour: {time_key}"
            )
        handles = [
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                markerfacecolor="white",
                markeredgecolor="black",
                markersize=5,
                label="path start (its time's colour)",
            ),
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                color="black",
                markersize=3.5,
                label=f"path end ({time_key} {format_time(end)})",
            ),
        ]
        if n_ends_off:
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="D",
                    markerfacecolor="white",
                    markeredgecolor="black",
                    markersize=4,
                    label=f"path end {OFF_SUPPORT} ({n_ends_off} of {n_paths})",
                )
            )
        if n_off:
            handles.append(
                off_support_handle("0.3", n_off, n_total, what="path segments", line=True)
            )
        if n_faded:
            verb = "faded" if unplaceable == "fade" else "not drawn"
            share = f" ({100 * n_faded / n_total:.0f} % of path segments)"
            handles.append(faded_handle(emap, line=True, verb=verb, share=share))
        if color != time_key and tc.discrete:
            add_legend(
                ax,
                [Line2D([], [], color=tc(t), lw=2) for t in tc.times],
                [format_time(t) for t in tc.times],
                title=f"path colour: {time_key}",
                where="right-bottom",
            )
        add_legend(ax, handles, where="below", ncols=3 if len(handles) < 3 else 2)
    if title is None:
        where = "" if emap.linear else " (kNN-mapped)"
        notes = [
            extrapolation_note(end, model.times, time_key, which="trained"),
            None
            if not n_ends_off
            else f"{n_ends_off} of {n_paths} paths end {OFF_SUPPORT} (hollow diamonds, dotted)",
        ]
        title_with_notes(ax, f"{model.method} trajectories{where}", notes)
    else:
        ax.set_title(title)
    return finish(ax, show=show, save=save)


def _smooth_paths(xy: np.ndarray, window: int, ok: np.ndarray | None = None) -> np.ndarray:
    """Moving average along each path (edge-padded), keeping the first and last points.

    With ``ok`` (segments, ``(n_paths, n_points - 1)``), each run of points joined by good
    segments is smoothed on its own, so no smoothing carries a jump into a placeable stretch.
    """
    if window <= 1 or xy.shape[1] < 3:
        return xy
    if ok is None or ok.all():
        return _smooth_run(xy, window)
    out = xy.copy()
    for i in range(len(xy)):
        breaks = np.flatnonzero(~ok[i]) + 1  # a run ends before each bad segment
        for run in np.split(np.arange(xy.shape[1]), breaks):
            if len(run) >= 3:
                out[i, run] = _smooth_run(xy[i : i + 1, run], window)[0]
    return out


def _smooth_run(xy: np.ndarray, window: int) -> np.ndarray:
    half = window // 2
    padded = np.pad(xy, ((0, 0), (half, half), (0, 0)), mode="edge")
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    out = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 1, padded)
    out[:, 0], out[:, -1] = xy[:, 0], xy[:, -1]
    return out
