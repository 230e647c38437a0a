"""Plots of the learned flow: per-cell trajectories and the velocity field."""

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
from .._timecourse import same_time
from ._utils import (
    FADED_ALPHA,
    FADED_COLOR,
    EmbeddingMap,
    TimeColors,
    add_legend,
    check_unplaceable,
    faded_handle,
    finish,
    format_time,
    lighten,
    new_axes,
    point_size,
    scatter_background,
    style_embedding_axes,
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
        segments are a second one labelled ``"faded paths from <time>"``. Together they hold
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
    n_faded = n_total = 0
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
        n_faded += int((~ok).sum())
        n_total += ok.size
        segments = np.stack([xy[:, :-1], xy[:, 1:]], axis=2)  # (n_cells, n_points - 1, 2, 2)
        mid_t = 0.5 * (traj.times[:-1] + traj.times[1:])
        seg_colors = tc(np.broadcast_to(mid_t, ok.shape))
        good, bad = segments[ok], segments[~ok]
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
            colors=seg_colors[ok],
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
        ax.scatter(*xy[end_ok, -1].T, s=9, c="black", linewidths=0, zorder=5)
        if unplaceable == "fade" and (~end_ok).any():
            ax.scatter(
                *xy[~end_ok, -1].T, s=9, c=FADED_COLOR, alpha=FADED_ALPHA + 0.2, linewidths=0
            )
    ax.autoscale_view()
    style_embedding_axes(ax, emap.axis_labels)
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
        title = f"{model.method} trajectories{where}"
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


def _support(model: TrajectoryModel, adata: AnnData, time: float) -> tuple[np.ndarray, bool]:
    """Cells the field is drawn over: those observed at ``time``, else the predicted population."""
    times = parse_times(adata, model.time_key)
    hit = same_time(times, time)
    if hit.any():
        return model.representation(adata)[hit], True
    return model.predict(time).obsm[model.use_rep], False


_MAX_FIELD_CELLS = 20_000


def _grid_field(
    xy: np.ndarray,
    uv: np.ndarray,
    extent: np.ndarray,
    n_grid: int,
    smooth: float,
    min_mass: float,
    good: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian-kernel average of per-cell 2-D velocities on a regular grid; grid points with
    little nearby mass are masked (NaN).

    Returns ``xx, yy, u, v, bad_share``: the grid, the field averaged over the ``good`` cells
    (all by default) where there are any, else over all cells, and the kernel share of the cells
    that are not good at each grid point.
    """
    (x0, y0), (x1, y1) = extent
    gx, gy = np.linspace(x0, x1, n_grid), np.linspace(y0, y1, n_grid)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    bw = smooth * max(gx[1] - gx[0], gy[1] - gy[0])
    good = np.ones(len(xy), dtype=bool) if good is None else np.asarray(good, dtype=bool)
    if len(xy) > _MAX_FIELD_CELLS:  # bound memory (grid x cells) on very large data
        keep = np.random.default_rng(0).choice(len(xy), _MAX_FIELD_CELLS, replace=False)
        xy, uv, good = xy[keep], uv[keep], good[keep]
    d2 = (grid**2).sum(1)[:, None] + (xy**2).sum(1)[None, :] - 2.0 * grid @ xy.T
    w = np.exp(-0.5 * np.maximum(d2, 0.0) / bw**2)
    mass = w.sum(1)
    good_mass = w[:, good].sum(1)
    field_all = (w @ uv) / np.maximum(mass, 1e-12)[:, None]
    field_good = (w[:, good] @ uv[good]) / np.maximum(good_mass, 1e-12)[:, None]
    field = np.where((good_mass > 1e-12)[:, None], field_good, field_all)
    bad_share = 1.0 - good_mass / np.maximum(mass, 1e-12)
    # Empty where cells are too few nearby, or where the nearest cell is beyond the kernel width.
    nearest = np.sqrt(np.maximum(d2.min(1), 0.0))
    field[(mass < min_mass) | (nearest > bw)] = np.nan
    shape = xx.shape
    return (
        xx,
        yy,
        field[:, 0].reshape(shape),
        field[:, 1].reshape(shape),
        bad_share.reshape(shape),
    )


def velocity(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    time: float | None = None,
    basis: str | None = None,
    components: Sequence[int] = (1, 2),
    kind: Literal["stream", "quiver"] = "stream",
    n_grid: int | None = None,
    smooth: float = 1.5,
    min_mass: float = 2.0,
    density: float = 1.2,
    step: float = 0.5,
    n_neighbors: int = 15,
    unplaceable: Literal["fade", "hide", "show"] = "fade",
    cmap: str | Colormap | None = None,
    lightness: float = 0.7,
    size: float | None = None,
    arrow_color: str = "black",
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes:
    """The learned velocity field at one time, as streamlines or arrows over the cells.

    The field is evaluated at the cells present at ``time``: the observed cells when ``time`` is
    an observed time point of ``adata``, otherwise the population ``model.predict(time)``. Each
    cell's velocity is placed on the 2-D basis, then averaged on a regular grid with a Gaussian
    kernel; grid points with little nearby mass are left empty, so arrows only appear where
    there are cells. Those cells are drawn in their time colour over a pale background of the
    observed cells of all times.

    The default basis is the model's representation (exact arrows). On a UMAP (or another
    non-linear embedding, through the kNN map :class:`~trajflow.pl.EmbeddingMap`) a cell's arrow
    can only be drawn where the map can place both the cell and where it is heading; cells for
    which it cannot (far from any observed cell, between clusters, or a step the UMAP tears
    apart) are left out of the field. Where they are most of the nearby cells, arrows are drawn
    **faded** (grey, ``kind="quiver"``) or not at all (streamlines, which cannot fade), and a
    note under the axes says how many cells that concerns.

    Parameters
    ----------
    adata
        Observed cells with ``obs[model.time_key]`` and ``obsm[model.use_rep]``. Not modified.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    time
        Time at which the field is drawn. Default: the middle trained time point.
    basis, components, n_neighbors
        As in :func:`trajflow.pl.trajectories`. On the representation basis the arrows are the
        exact velocity components along the two plotted dimensions. On a non-linear embedding a
        velocity ``v`` at ``x`` becomes ``(f(x + h v) - f(x)) / h`` with ``f`` the kNN map and
        ``h = step`` times the mean spacing of the observed time points: the direction on the
        embedding in which each cell is heading over that interval.
    kind
        ``"stream"`` (streamlines, width by speed) or ``"quiver"`` (arrows on the grid).
    n_grid, smooth, min_mass
        Grid points per axis (default 40 for streamlines, 20 for arrows); kernel width in grid
        spacings; minimum kernel mass (≈ number of nearby cells) for a grid point to get an
        arrow. Grid points farther than the kernel width from every cell stay empty too.
    density
        Streamline density (``matplotlib.pyplot.streamplot``).
    step
        See ``basis``; only used for non-linear bases.
    unplaceable
        Non-linear bases only: ``"fade"`` (default; see above), ``"hide"`` (no arrows where most
        nearby cells cannot be placed) or ``"show"`` (use every cell, placeable or not).
    cmap, lightness, size
        Background colours (time colour map, blend towards white, marker area); the time
        legend shows the colours as drawn.
    arrow_color
        Colour of streamlines or arrows.
    title, ax, show, save
        As in :func:`trajflow.pl.trajectories`.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into.
    """
    adata, model = adata_first(adata, model, "trajflow.pl.velocity")
    if kind not in ("stream", "quiver"):
        raise ValueError(f"kind must be 'stream' or 'quiver', got {kind!r}.")
    check_unplaceable(unplaceable)
    time_key = model.time_key
    time = float(model.times[len(model.times) // 2] if time is None else time)
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
    x, observed = _support(model, adata, time)
    v = model.velocity(x, time)
    xy, good = emap.place(x)
    if emap.linear:
        uv = v[:, list(emap.components)]
    else:
        obs_t = np.asarray(sorted(model.observed_times), dtype=float)
        spacing = (obs_t[-1] - obs_t[0]) / max(len(obs_t) - 1, 1) or 1.0
        h = step * spacing
        ahead, ok_ahead = emap.place(x + h * v)
        uv = (ahead - xy) / h
        good &= ok_ahead & ~emap.jumps(x, x + h * v, xy, ahead)
    if unplaceable == "show":
        good[:] = True

    ax = new_axes(ax, figsize=(6.4, 5.0))
    here = lighten(tc(time), 0.2)
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
        seed=0,
        key_extra=[
            (
                Line2D([], [], ls="", marker="o", markersize=7, color=here),
                f"{'observed' if observed else 'predicted'} cells at {format_time(time)}\n"
                "(field drawn over them)",
            )
        ],
    )
    # The cells the field is evaluated at, in their time colour on top of the pale background.
    s = point_size(adata.n_obs) if size is None else size
    shown = good | (unplaceable == "show")
    ax.scatter(*xy[shown].T, s=s, c=[here], linewidths=0, zorder=1.5, rasterized=True)
    if unplaceable == "fade" and (~shown).any():
        ax.scatter(
            *xy[~shown].T,
            s=s,
            facecolors="none",
            edgecolors=FADED_COLOR,
            linewidths=0.5,
            alpha=FADED_ALPHA,
            zorder=1.5,
            rasterized=True,
        )
    lo = emap.coords.min(0)
    hi = emap.coords.max(0)
    pad = 0.02 * (hi - lo)
    n_grid = (40 if kind == "stream" else 20) if n_grid is None else int(n_grid)
    extent = np.array([lo - pad, hi + pad])
    xx, yy, u, w, bad_share = _grid_field(xy, uv, extent, n_grid, smooth, min_mass, good)
    unsure = bad_share > 0.5  # most of the cells nearby cannot be placed
    speed = np.hypot(u, w)
    if kind == "stream":
        u_s, w_s = np.where(unsure, np.nan, u), np.where(unsure, np.nan, w)
        speed_s = np.hypot(u_s, w_s)
        top = np.nanpercentile(speed_s, 95) if np.isfinite(speed_s).any() else 1.0
        lw = 0.5 + 1.5 * np.clip(np.nan_to_num(speed_s) / (top or 1.0), 0, 1)
        # NaN (masked) grid points stop streamlines, so none are drawn where there are no cells.
        if np.isfinite(speed_s).any():
            ax.streamplot(
                xx,
                yy,
                np.ma.masked_invalid(u_s),
                np.ma.masked_invalid(w_s),
                density=density,
                color=arrow_color,
                linewidth=lw,
                arrowsize=1.0,
                zorder=3,
            )
    else:
        ok = np.isfinite(u)
        sure = ok & ~unsure
        # The fastest sure arrows (95th percentile) span ~0.9 grid spacings, so arrows never
        # overlap; faded arrows (whose length the UMAP cannot give) are capped at that length.
        spacing = min(xx[0, 1] - xx[0, 0], yy[1, 0] - yy[0, 0])
        ref = speed[sure] if sure.any() else speed[ok]
        top = float(np.percentile(ref, 95)) if ref.size else 1.0
        style = {
            "angles": "xy",
            "zorder": 3,
            "scale_units": "xy",
            "scale": (top or 1.0) / (0.9 * spacing),
            "width": 0.0035,
            "headwidth": 4,
            "headlength": 4.5,
            "pivot": "middle",
        }
        ax.quiver(xx[sure], yy[sure], u[sure], w[sure], color=arrow_color, **style)
        if unplaceable == "fade" and (ok & unsure).any():
            faded = ok & unsure
            cap = np.minimum(1.0, (top or 1.0) / np.maximum(speed[faded], 1e-300))
            ax.quiver(
                xx[faded],
                yy[faded],
                u[faded] * cap,
                w[faded] * cap,
                color=FADED_COLOR,
                alpha=FADED_ALPHA + 0.15,
                label="faded arrows",
                **style,
            )
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    style_embedding_axes(ax, emap.axis_labels)
    n_bad = int((~good).sum())
    if n_bad and unplaceable != "show":
        faded = kind == "quiver" and unplaceable == "fade"
        share = f"{n_bad} of {len(good)} cells ({100 * n_bad / len(good):.0f} %)"
        arrows = "faded" if faded else "not drawn"
        handle = faded_handle(
            emap, line=False, share=f":\n{share}; arrows {arrows} where they are most cells"
        )
        add_legend(ax, [handle], where="below")
    if title is None:
        where = "" if emap.linear else ", kNN-mapped"
        cells = "observed" if observed else "predicted"
        title = (
            f"velocity at {time_key} {format_time(time)} ({model.method}{where})\n"
            f"over the {cells} cells at {format_time(time)}"
        )
    ax.set_title(title)
    return finish(ax, show=show, save=save)
