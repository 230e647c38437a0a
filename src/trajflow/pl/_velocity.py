"""The learned velocity field at one time, as streamlines or arrows over the cells: the field
evaluated at the cells present then, placed on the basis and averaged on a grid."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.lines import Line2D

from .._anndata import parse_times
from .._consumers import adata_first
from .._timecourse import same_time, time_tolerance
from ._arguments import check_unplaceable
from ._axes import finish, new_axes, point_size, style_embedding_axes
from ._background import scatter_background
from ._colors import (
    FADED_ALPHA,
    FADED_COLOR,
    TimeColors,
    add_legend,
    faded_handle,
    format_time,
    lighten,
)
from ._embedding import EmbeddingMap
from ._support import (
    OFF_SUPPORT,
    off_support_handle,
    prediction_off_support,
    share_text,
    title_with_notes,
)

#: Arrows of a field with no later trained time point (at or past the last one).
EXTRAPOLATED_COLOR = "#b2182b"
#: Arrows where most nearby cells are carried off the observed cells' support.
LEAVING_COLOR = "#e08214"

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def _support(
    model: TrajectoryModel, adata: AnnData, time: float
) -> tuple[np.ndarray, bool, np.ndarray]:
    """Cells the field is drawn over: those observed at ``time``, else the predicted population
    (with its ``obs['off_support']``)."""
    times = parse_times(adata, model.time_key)
    hit = same_time(times, time)
    if hit.any():
        return model.representation(adata)[hit], True, np.zeros(int(hit.sum()), dtype=bool)
    pred = model.predict(time)
    return model.representation(pred), False, prediction_off_support(pred)


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


def _speed_note(
    model: TrajectoryModel, adata: AnnData, times: np.ndarray, time: float, v: np.ndarray
) -> str | None:
    """``'mean speed 26.5 here, 10.1 to 12.3 at the other trained time points'``: how the
    extrapolated field compares with the trained ones, at the observed cells of each."""
    x_all = model.representation(adata)
    others = []
    for t in model.times:
        at = same_time(times, t)
        if at.any() and not same_time(t, time):
            others.append(float(np.linalg.norm(model.velocity(x_all[at], t), axis=1).mean()))
    if not others:
        return None
    here = float(np.linalg.norm(v, axis=1).mean())
    return (
        f"mean speed {here:.1f} here, {min(others):.1f} to {max(others):.1f} at the other "
        "trained time points"
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
    arrow_color: str | None = None,
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

    Two things are marked, because arrows look equally sure everywhere. At or past the last
    trained time point (or before the first) no later cells constrain where the field points:
    it is extrapolated, and is drawn in dark red with a title line and a legend entry saying
    so. And where most nearby cells are carried off the observed cells' support within
    ``step`` times the mean spacing of the time points (the model's own measure,
    :meth:`~trajflow.TrajectoryModel.support_for`), arrows are drawn in orange, with the
    share of such cells in the title and the legend.

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
        See ``basis`` (non-linear bases), and the horizon, in mean spacings of the time points,
        over which cells heading off the support are marked.
    unplaceable
        Non-linear bases only: ``"fade"`` (default; see above), ``"hide"`` (no arrows where most
        nearby cells cannot be placed) or ``"show"`` (use every cell, placeable or not).
    cmap, lightness, size
        Background colours (time colour map, blend towards white, marker area); the time
        legend shows the colours as drawn.
    arrow_color
        Colour of streamlines or arrows. Default: black, or dark red
        (:data:`EXTRAPOLATED_COLOR`) for an extrapolated field.
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
    x, observed, off_now = _support(model, adata, time)
    v = model.velocity(x, time)
    xy, good = emap.place(x)
    obs_t = np.asarray(sorted(model.observed_times), dtype=float)
    spacing = (obs_t[-1] - obs_t[0]) / max(len(obs_t) - 1, 1) or 1.0
    h = step * spacing
    # Past the last trained time point no later cells constrain the field: it is extrapolated.
    trained = np.asarray(model.times, dtype=float)
    tol = time_tolerance(trained)
    extrapolated = bool(time >= trained[-1] - tol or time < trained[0] - tol)
    # Cells the field carries off the data within h (the model's own support measure).
    heading_off = model.support_for(time + h).distance(x + h * v) > 1
    if arrow_color is None:
        arrow_color = EXTRAPOLATED_COLOR if extrapolated else "black"
    if emap.linear:
        uv = v[:, list(emap.components)]
    else:
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
    # Predicted cells off the observed cells' support (the model's measure) are drawn hollow.
    ax.scatter(*xy[shown & ~off_now].T, s=s, c=[here], linewidths=0, zorder=1.5, rasterized=True)
    ax.scatter(
        *xy[shown & off_now].T,
        s=s,
        facecolors="none",
        edgecolors=[here],
        linewidths=0.6,
        zorder=1.5,
        rasterized=True,
    )
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
    # The observed cells and those the field is drawn over (a prediction may lie off the data).
    shown_xy = np.concatenate([emap.coords, xy[shown]])
    lo = shown_xy.min(0)
    hi = shown_xy.max(0)
    pad = 0.02 * (hi - lo)
    n_grid = (40 if kind == "stream" else 20) if n_grid is None else int(n_grid)
    extent = np.array([lo - pad, hi + pad])
    xx, yy, u, w, bad_share = _grid_field(xy, uv, extent, n_grid, smooth, min_mass, good)
    unsure = bad_share > 0.5  # most of the cells nearby cannot be placed
    leaving = np.zeros_like(unsure)
    if heading_off.any():  # where most cells nearby are carried off the data
        leaving = _grid_field(xy, uv, extent, n_grid, smooth, min_mass, ~heading_off)[4] > 0.5
    speed = np.hypot(u, w)
    if kind == "stream":
        if leaving.any():
            u_l = np.where(leaving & ~unsure, u, np.nan)
            w_l = np.where(leaving & ~unsure, w, np.nan)
            if np.isfinite(u_l).any():
                ax.streamplot(
                    xx,
                    yy,
                    np.ma.masked_invalid(u_l),
                    np.ma.masked_invalid(w_l),
                    density=density,
                    color=LEAVING_COLOR,
                    linewidth=1.0,
                    arrowsize=1.0,
                    zorder=3,
                )
        unsure = unsure | leaving
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
        sure_on = sure & ~leaving
        ax.quiver(xx[sure_on], yy[sure_on], u[sure_on], w[sure_on], color=arrow_color, **style)
        if (sure & leaving).any():
            go = sure & leaving
            ax.quiver(xx[go], yy[go], u[go], w[go], color=LEAVING_COLOR, **style)
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
    style_embedding_axes(ax, emap.axis_labels, ticks=emap.linear)
    below = []
    if extrapolated:
        below.append(
            Line2D(
                [],
                [],
                color=arrow_color,
                lw=1.5,
                label="arrows: extrapolated field (no later trained time point\n"
                "constrains where it points)",
            )
        )
    if off_now.any():
        below.append(off_support_handle(lighten(tc(time), 0.2), int(off_now.sum()), len(off_now)))
    n_leaving = int(heading_off.sum())
    if n_leaving:
        below.append(
            Line2D(
                [],
                [],
                color=LEAVING_COLOR,
                lw=1.5,
                label=f"arrows where most cells head {OFF_SUPPORT} by {time_key} "
                f"+{h:.3g}\n({n_leaving} of {len(heading_off)} cells, "
                f"{share_text(n_leaving, len(heading_off))})",
            )
        )
    n_bad = int((~good).sum())
    if n_bad and unplaceable != "show":
        faded = kind == "quiver" and unplaceable == "fade"
        share = f"{n_bad} of {len(good)} cells ({100 * n_bad / len(good):.0f} %)"
        arrows = "faded" if faded else "not drawn"
        below.append(
            faded_handle(
                emap, line=False, share=f":\n{share}; arrows {arrows} where they are most cells"
            )
        )
    if below:
        add_legend(ax, below, where="below")
    if title is None:
        where = "" if emap.linear else ", kNN-mapped"
        cells = "observed" if observed else "predicted"
        notes = [
            None
            if not extrapolated
            else (
                "extrapolated: at or past the last trained time point "
                f"({time_key} {format_time(trained[-1])})"
                if time >= trained[-1] - tol
                else "extrapolated: before the first trained time point "
                f"({time_key} {format_time(trained[0])})"
            ),
            _speed_note(model, adata, times, time, v) if extrapolated else None,
            None
            if not n_leaving
            else f"{share_text(n_leaving, len(heading_off))} of the cells head {OFF_SUPPORT}",
        ]
        title_with_notes(
            ax,
            f"velocity at {time_key} {format_time(time)} ({model.method}{where})\n"
            f"over the {cells} cells at {format_time(time)}",
            notes,
        )
    else:
        ax.set_title(title)
    return finish(ax, show=show, save=save)
