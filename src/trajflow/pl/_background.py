"""The observed-cell background of the embedding plots, with its key (time, categories, a
numeric column or a gene).

Nothing here writes into the user's AnnData.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba_array
from matplotlib.lines import Line2D

from ._axes import point_size
from ._colors import BACKGROUND_COLOR, TimeColors, add_legend, category_colors, lighten
from ._embedding import EmbeddingMap


def scatter_background(
    ax: Axes,
    adata: AnnData,
    emap: EmbeddingMap,
    tc: TimeColors,
    times: np.ndarray,
    *,
    color: str,
    time_key: str,
    lightness: float,
    size: float | None,
    seed: int,
    key: bool = True,
    key_paths: bool = False,
    key_extra: Sequence[tuple[Any, str]] = (),
) -> None:
    """Draw the observed cells of ``adata`` as a light background on ``ax``, with its key.

    Cells are drawn in random order (``seed``) so no time point hides the others. The key shows
    the colours as drawn (blended towards white by ``lightness``): outside on the right, a
    legend with one entry per time point (few time points) or per category, else a colour bar.

    Parameters
    ----------
    ax
        Axes to draw into.
    adata
        The observed cells (``obs`` is read for ``color``).
    emap
        Where each cell is placed (:attr:`EmbeddingMap.coords`).
    tc
        Time colours (used when ``color == time_key``).
    times
        Time of each cell, shape ``(n_obs,)``.
    color
        ``time_key`` to colour by time; another ``obs`` column for categorical colours (with a
        legend) or numeric grey levels (with a colour bar); a gene of ``var_names`` for its
        expression in ``X`` (grey levels).
    time_key
        The time column's name.
    lightness
        Blend towards white (0: full colour).
    size
        Marker area; default scaled to the number of cells.
    seed
        Seed of the drawing order.
    key
        Draw the legend / colour bar.
    key_paths
        Time key only: each entry also shows the full time colour as a line (for paths drawn
        in it).
    key_extra
        Time key only: more ``(handle, label)`` entries for its legend.
    """
    n = adata.n_obs
    order = np.random.default_rng(seed).permutation(n)
    s = point_size(n) if size is None else size
    xy = emap.coords[order]
    if color == time_key:
        colors = lighten(tc(times[order]), lightness)
        ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=s, linewidths=0, rasterized=True, zorder=1)
        if key:
            tc.key(ax, lightness=lightness, paths=key_paths, extra=key_extra)
        return
    if color in adata.obs.columns:
        col = adata.obs[color]
    elif color in adata.var_names:  # a gene: its expression in X, as scanpy colours by genes
        if not adata.var_names.is_unique:
            raise ValueError(
                f"color={color!r}: adata.var_names are not unique, so the gene is ambiguous; "
                "run adata.var_names_make_unique() first."
            )
        col = pd.Series(np.asarray(adata.obs_vector(color), dtype=float), index=adata.obs_names)
    else:
        raise KeyError(
            f"color={color!r} is neither a column of adata.obs nor a gene in adata.var_names."
        )
    if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
        names, base = category_colors(adata, color)
        codes = pd.Categorical(
            col.astype(object)
            .where(col.notna(), None)
            .map(lambda v: None if v is None else str(v)),
            categories=names,
        ).codes
        # Unlabelled cells (code -1) stay light grey; the legend shows the drawn colours.
        shown = np.vstack([lighten(base, lightness), to_rgba_array(BACKGROUND_COLOR)])
        colors = shown[codes[order]]
        ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=s, linewidths=0, rasterized=True, zorder=1)
        if key:
            handles = [
                Line2D([], [], ls="", marker="o", markersize=7, color=shown[i], label=name)
                for i, name in enumerate(names)
            ]
            if (codes < 0).any():
                handles.append(
                    Line2D([], [], ls="", marker="o", markersize=7, color=shown[-1], label="NA")
                )
            add_legend(ax, handles, title=color, where="right", ncols=1 if len(names) <= 14 else 2)
        return
    values = col.to_numpy(dtype=float)[order]
    # grey levels between the 1st and 99th percentiles (scanpy's vmax='p99' habit): one outlier
    # (a raw count of 2,000 among tens) would otherwise leave every other cell white
    finite = values[np.isfinite(values)]
    low, high, below, above = 0.0, 1.0, False, False
    if len(finite):
        # observed values, not interpolated ones: with ~100 cells an interpolated 99th
        # percentile still leans towards a lone outlier
        low = float(np.percentile(finite, 1, method="higher"))
        high = float(np.percentile(finite, 99, method="lower"))
        if not high > low:
            low, high = float(finite.min()), float(finite.max())
        below, above = bool(finite.min() < low), bool(finite.max() > high)
    clipped = below or above
    sc = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        c=values,
        vmin=low,
        vmax=high if high > low else None,
        cmap="Greys",
        s=s,
        linewidths=0,
        alpha=0.6,
        rasterized=True,
        zorder=1,
    )
    if key:
        extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
            (below, above), "neither"
        )
        cbar = ax.figure.colorbar(sc, ax=ax, pad=0.02, fraction=0.05, extend=extend)
        cbar.solids.set_alpha(0.6)  # as the cells are drawn
        cbar.set_label(color + (" (1st-99th percentile)" if clipped else ""))
