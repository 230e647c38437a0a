"""Axes plumbing of the plots: a new Axes when none is given, the scanpy look of an embedding,
marker sizes, and finishing (save / show).
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure


def point_size(n: int, scale: float = 1.0) -> float:
    """Scanpy-like default marker area for ``n`` points."""
    return float(np.clip(60_000 / max(n, 1), 2.0, 30.0) * scale)


def new_axes(ax: Axes | None, figsize: tuple[float, float] = (5.6, 4.6)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def style_embedding_axes(
    ax: Axes, labels: tuple[str, str], *, frameless: bool = True, ticks: bool = False
) -> None:
    """Scanpy look: labelled axes, light frame; no tick labels unless ``ticks``.

    A UMAP's coordinates carry no units, so they get no ticks. The model's representation (a
    PCA) has a scale that matters: pass ``ticks=True`` there, so that a prediction far off the
    data (PC2 at 1,400 where the cells reach 31) cannot pass for an ordinary panel.
    """
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if ticks:
        ax.tick_params(labelsize="x-small", length=2.5, pad=1.5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if frameless:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)


def finish(
    obj: Axes | Figure | SubFigure, *, show: bool | None, save: str | os.PathLike | None
) -> Axes | Figure | SubFigure:
    """Save and/or show when asked, and return ``obj``; by default nothing is shown or saved."""
    fig = obj
    while not isinstance(fig, Figure):  # Axes or SubFigure -> the root Figure
        fig = fig.figure
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
    if show:
        plt.show()
    return obj
