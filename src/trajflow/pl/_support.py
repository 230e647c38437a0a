"""Off the support and outside the trained range: which predicted cells and path points lie
where no observed cell is, and which times are extrapolated, and how the plots say so.

The measure is the model's own (:meth:`~trajflow.TrajectoryModel.support_for`, one owner:
:class:`trajflow._scoring.Support`), which ``predict`` writes to ``obs['off_support']``: a
point is off the support when it is farther from every observed cell of the nearest trained
time points than twice those cells' own 99th-percentile nearest-neighbour distance. Nothing
here measures distances of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from .._outputs import OFF_SUPPORT_KEY
from .._timecourse import time_tolerance
from ._colors import format_time

if TYPE_CHECKING:
    from .._model import TrajectoryModel

#: What the plots call a point off the support (legends and titles).
OFF_SUPPORT = "off the observed cells' support"
#: Why, in words, for the legend's second line.
OFF_SUPPORT_WHY = "farther from the nearest time points' cells than twice their own spacing"


def prediction_off_support(pred: AnnData) -> np.ndarray:
    """``obs['off_support']`` of a prediction as booleans (all ``False`` for a prediction
    written before trajflow measured it)."""
    if OFF_SUPPORT_KEY not in pred.obs:
        return np.zeros(pred.n_obs, dtype=bool)
    return np.asarray(pred.obs[OFF_SUPPORT_KEY], dtype=bool)


def paths_off_support(model: TrajectoryModel, paths: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Whether each point of ``paths`` ``(n_paths, n_points, n_dims)`` (user units, at
    ``times``) lies off the support of the observed cells around its time:
    ``(n_paths, n_points)`` booleans."""
    off = np.zeros(paths.shape[:2], dtype=bool)
    for j, t in enumerate(np.asarray(times, dtype=float)):
        off[:, j] = model.support_for(float(t)).distance(paths[:, j]) > 1
    return off


def share_text(n_off: int, n: int) -> str:
    """``'12%'``, or ``'<1%'`` for a share that rounds to 0 but is not 0."""
    share = 100 * n_off / max(n, 1)
    return "<1%" if 0 < share < 0.5 else f"{share:.0f}%"


def off_support_title(n_off: int, n: int, what: str = "predicted cells") -> str:
    """A title line: ``'12% of the predicted cells off the observed cells' support (hollow)'``."""
    return f"{share_text(n_off, n)} of the {what} {OFF_SUPPORT}"


def off_support_handle(
    color: str, n_off: int, n: int, *, what: str = "predicted cells", line: bool = False
) -> Line2D:
    """The legend entry for points (hollow markers) or path stretches (dotted lines) off the
    support, with their count."""
    if line:
        handle = Line2D([], [], color=color, lw=1.0, ls=(0, (1, 1.5)))
        look = "dotted"
    else:
        handle = Line2D([], [], ls="", marker="o", markersize=5, mfc="none", mec=color, mew=1.0)
        look = "hollow"
    handle.set_label(f"{look}: {n_off} of the {n} {what} {OFF_SUPPORT}\n({OFF_SUPPORT_WHY})")
    return handle


def extrapolation_note(
    time: float | Sequence[float],
    known: Sequence[float],
    time_key: str,
    *,
    which: str = "observed",
) -> str | None:
    """``'extrapolated: past the last observed time point (day 4)'`` when ``time`` (or the last of
    several) lies outside the ``known`` time points (``which``: ``"observed"``, or
    ``"trained"`` when the model's own range is known), else ``None``."""
    t_min, t_max = float(np.min(time)), float(np.max(time))
    lo, hi = float(np.min(known)), float(np.max(known))
    tol = time_tolerance(known)
    if t_max > hi + tol:
        return f"extrapolated: past the last {which} time point ({time_key} {format_time(hi)})"
    if t_min < lo - tol:
        return f"extrapolated: before the first {which} time point ({time_key} {format_time(lo)})"
    return None


def title_with_notes(ax: Axes, head: str, notes: Sequence[str | None]) -> None:
    """``head`` and, one line each, the notes that apply (extrapolated, off the support), a
    size smaller when there are any."""
    lines = [head, *filter(None, notes)]
    ax.set_title("\n".join(lines), fontsize="medium" if len(lines) > 1 else None)
