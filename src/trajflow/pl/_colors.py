"""Colours and keys of the plots: the shared colours, time colours (legend or colour bar),
scanpy's category colours, blending towards white, and legends that stack on one Axes.

Nothing here writes into the user's AnnData.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Colormap, ListedColormap, Normalize
from matplotlib.legend import Legend
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.transforms import offset_copy

if TYPE_CHECKING:
    from ._embedding import EmbeddingMap

DEFAULT_CMAP = "viridis"
OBSERVED_COLOR = "#3b4cc0"
PREDICTED_COLOR = "#e66101"
BACKGROUND_COLOR = "#d9d9d9"
#: How points the embedding map cannot place are drawn (``unplaceable="fade"``).
FADED_COLOR = "#9a9a9a"
FADED_ALPHA = 0.45
#: Up to this many distinct time points get a discrete legend; more get a colour bar.
MAX_DISCRETE_TIMES = 12


# --------------------------------------------------------------------------- time colours
@dataclass
class TimeColors:
    """A colour scale over real time values, shared by cells, paths and the time key.

    With few distinct time points (at most :data:`MAX_DISCRETE_TIMES`, 12) the key is a legend
    with one entry per time point, and the time points are spread evenly over the colour map
    (by rank, so unevenly spaced times such as days 0, 1/3, 1, 3, 7 stay distinguishable); a
    time between two of them gets the colour in between. With more time points the colour is
    linear in time and the key is a continuous colour bar.
    """

    times: list[float]
    cmap: Colormap
    norm: Normalize
    label: str

    @classmethod
    def make(
        cls, times: Sequence[float], label: str, cmap: str | Colormap | None = None
    ) -> TimeColors:
        times = sorted({float(t) for t in times})
        lo, hi = times[0], times[-1]
        if hi == lo:
            hi = lo + 1.0
        cm = colormaps[cmap or DEFAULT_CMAP] if not isinstance(cmap, Colormap) else cmap
        return cls(times=times, cmap=cm, norm=Normalize(lo, hi), label=label)

    def __call__(self, t: float | np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        if self.discrete and len(self.times) > 1:
            pos = np.interp(t, self.times, np.linspace(0.0, 1.0, len(self.times)))
            return np.asarray(self.cmap(pos))
        return np.asarray(self.cmap(self.norm(t)))

    @property
    def discrete(self) -> bool:
        """Whether the key is a legend (few time points) rather than a colour bar."""
        return len(self.times) <= MAX_DISCRETE_TIMES

    def colorbar(
        self, ax: Axes, *, alpha: float = 1.0, lightness: float = 0.0, **kwargs: Any
    ) -> Colorbar:
        """A colour bar labelled with the time key and ticked at the observed time points.

        ``lightness`` blends the bar towards white as :func:`lighten` blends the cells, so the
        bar shows the colours drawn.
        """
        cmap = self.cmap
        if lightness:
            cmap = ListedColormap(lighten(self.cmap(np.linspace(0, 1, 256)), lightness))
        sm = ScalarMappable(norm=self.norm, cmap=cmap)
        kwargs = {"pad": 0.02, "fraction": 0.05, **kwargs}
        cbar = ax.figure.colorbar(sm, ax=ax, **kwargs)
        cbar.set_label(self.label)
        ticks = self.times if len(self.times) <= MAX_DISCRETE_TIMES else None
        if ticks is not None:
            cbar.set_ticks(ticks)
            cbar.set_ticklabels([format_time(t) for t in ticks])
        cbar.solids.set_alpha(alpha)
        cbar.outline.set_visible(False)
        return cbar

    def handles(self, *, lightness: float = 0.0, paths: bool = False) -> list[Any]:
        """Legend handles, one per time point: a dot in the cells' colour (blended towards
        white by ``lightness``, as drawn), and, with ``paths``, a line in the paths' (full)
        colour under it."""
        out: list[Any] = []
        for t in self.times:
            full = self(t)
            dot = Line2D([], [], ls="", marker="o", markersize=7, color=lighten(full, lightness))
            if paths:
                line = Line2D([], [], color=full, lw=2.0)
                out.append((line, dot))
            else:
                out.append(dot)
        return out

    def key(
        self,
        ax: Axes,
        *,
        lightness: float = 0.0,
        paths: bool = False,
        title: str | None = None,
        extra: Sequence[tuple[Any, str]] = (),
    ) -> Legend | Colorbar:
        """The time key of ``ax``: a legend outside on the right with one entry per time point
        (few time points), else a colour bar. ``extra`` adds ``(handle, label)`` entries to
        the legend (discrete only)."""
        if not self.discrete:
            cbar = self.colorbar(ax, lightness=0.0 if paths else lightness)
            if paths and lightness:  # one bar for both: the paths' colours, cells paler
                cbar.set_label(f"{title or self.label} (cells: paler shade)")
            elif title:
                cbar.set_label(title)
            return cbar
        handles = self.handles(lightness=lightness, paths=paths)
        labels = [format_time(t) for t in self.times]
        for h, lab in extra:
            handles.append(h)
            labels.append(lab)
        return add_legend(
            ax,
            handles,
            labels,
            title=title or self.label,
            where="right",
            handler_map={tuple: HandlerTuple(ndivide=1)},
        )


def format_time(t: float) -> str:
    """``2.0`` -> ``'2'``, ``0.333333`` -> ``'0.333'``."""
    return f"{float(t):.4g}" if float(t) != int(t) else f"{int(t)}"


def category_colors(adata: AnnData, key: str) -> tuple[list[str], np.ndarray]:
    """``(categories, RGBA colours)`` of ``obs[key]``, as scanpy colours them: the colours in
    ``adata.uns[f"{key}_colors"]`` when there is one per category, else scanpy's default
    palettes (20, 28 or 102 colours by the number of categories). ``adata`` is not modified."""
    from matplotlib.colors import to_rgba
    from scanpy.plotting import palettes

    col = adata.obs[key]
    cats = (
        [str(c) for c in col.cat.categories]
        if isinstance(col.dtype, pd.CategoricalDtype)
        else [str(c) for c in pd.Categorical(col.dropna().astype(str)).categories]
    )
    stored = adata.uns.get(f"{key}_colors")
    if stored is not None and len(stored) == len(cats):
        colors = list(stored)
    else:
        n = len(cats)
        palette = (
            palettes.default_20
            if n <= 20
            else palettes.default_28
            if n <= 28
            else palettes.default_102
        )
        colors = [palette[i % len(palette)] for i in range(n)]
    return cats, np.array([to_rgba(c) for c in colors])


def lighten(colors: np.ndarray, amount: float) -> np.ndarray:
    """Blend RGBA colours towards white by ``amount`` (0 keeps them, 1 gives white)."""
    out = np.array(colors, dtype=float, copy=True)
    out[..., :3] = out[..., :3] + (1.0 - out[..., :3]) * amount
    return out


def add_legend(
    ax: Axes,
    handles: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    where: str = "right",
    title: str | None = None,
    ncols: int = 1,
    **kwargs: Any,
) -> Legend:
    """Add a legend to ``ax`` without removing the legends already there.

    ``where``: ``"right"`` (outside, top right of the axes, scanpy's place), ``"right-bottom"``
    (outside, bottom right, for a second key), ``"below"`` (outside, centred under the x label)
    or ``"inside"`` (``loc="best"``, light frame).
    """
    old = [c for c in ax.get_children() if isinstance(c, Legend)]
    if where == "right":
        place = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "frameon": False}
    elif where == "right-bottom":
        place = {"loc": "lower left", "bbox_to_anchor": (1.02, 0.0), "frameon": False}
    elif where == "below":
        # Anchored a fixed distance (points) under the axes, so it clears the x label.
        below = offset_copy(ax.transAxes, fig=ax.figure, y=-20, units="points")
        place = {
            "loc": "upper center",
            "bbox_to_anchor": (0.5, 0.0),
            "bbox_transform": below,
            "frameon": False,
        }
    elif where == "inside":
        place = {"loc": "best", "framealpha": 0.85}
    else:
        raise ValueError(
            f"where must be 'right', 'right-bottom', 'below' or 'inside', got {where!r}."
        )
    args = {"handles": list(handles)}
    if labels is not None:
        args["labels"] = list(labels)
    leg = ax.legend(
        **args,
        title=title,
        ncols=ncols,
        fontsize="small",
        title_fontsize="small",
        alignment="left",
        **{**place, **kwargs},
    )
    for prev in old:  # ax.legend() replaces ax.legend_; keep the earlier ones drawn
        if prev is not leg and prev not in ax.artists:
            ax.add_artist(prev)
            prev.set_clip_on(False)  # add_artist clips to the axes; legends sit outside them
    return leg


def legends(ax: Axes) -> list[Legend]:
    """Every legend drawn on ``ax`` (the current one and those kept by :func:`add_legend`)."""
    return [c for c in ax.get_children() if isinstance(c, Legend)]


def faded_handle(
    emap: EmbeddingMap, *, line: bool = False, verb: str = "faded", share: str = ""
) -> Line2D:
    """The legend entry (labelled handle) for points the map cannot place; ``share`` is
    appended to the label (e.g. ``" (12 % of path segments)"``)."""
    if line:
        h = Line2D([], [], color=FADED_COLOR, lw=1.0, ls=(0, (2, 1.5)), alpha=FADED_ALPHA + 0.2)
    else:
        h = Line2D([], [], ls="", marker="o", markersize=5, mfc="none", mec=FADED_COLOR, alpha=0.9)
    h.set_label(emap.unplaceable_note(verb) + share)
    return h
