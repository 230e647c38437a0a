"""The model's clock: how far along its trajectory the population is at each observed time."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes

from .._clock import AUTO_MARGIN
from ._axes import finish, new_axes
from ._colors import OBSERVED_COLOR, PREDICTED_COLOR, add_legend, format_time

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def clock_reason(model: TrajectoryModel) -> str:
    """Why the model has its clock, in one or two lines: the user's choice, or what
    ``clock='auto'`` compared (the held-out W1 of each candidate, ``model.clock.scores``)."""
    c = model.clock
    asked = model.config.get("clock")
    if asked is None:  # saved before the clock was configurable
        return f"{c.kind} clock"
    if asked != "auto":
        return f"{c.kind} clock, set by the user (clock={asked!r})"
    scores = c.scores
    if not scores or not {"time", "distance"} <= set(scores):
        n = len(model.times)
        return (
            f"clock='auto' kept the time clock\n(with {n} trained time point"
            f"{'s' if n != 1 else ''}, fewer than 4, the clocks cannot be compared)"
        )
    t, d = scores["time"], scores["distance"]
    gain = 100 * (1 - d / t) if t > 0 else 0.0
    # fit_clock scores the training populations after the model's scaler (standardised units).
    w1 = f"held-out W1 (standardised units): distance clock {d:.3g}, time clock {t:.3g}"
    if c.kind == "distance":
        return f"clock='auto' chose the distance clock ({gain:.0f} % lower W1)\n{w1}"
    if gain > 0:
        why = f"distance only {gain:.1f} % better, needs {100 * AUTO_MARGIN:.0f} %"
    else:
        why = "distance clock not better"
    return f"clock='auto' kept the time clock ({why})\n{w1}"


def clock(
    model: TrajectoryModel,
    *,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes:
    """Progress of the population (0 at the first trained time point, 1 at the last) against
    observed time, as the model's clock places it, and why the model has that clock.

    The time clock is the diagonal (constant speed). The distance clock passes through the
    training time points at their share of the cumulative W2 distance travelled; a curve above
    the diagonal means the population moved early. Held-out time points are marked where the
    model places them, which is where their predictions are made.

    The title says why this clock: set by the user (``clock='time'`` or ``'distance'``), or
    what ``clock='auto'`` found when it held out each interior training time point in turn
    and predicted it model-free with each clock (the held-out W1 per candidate,
    ``model.clock.scores``, in the model's standardised units, lower is better; the distance
    clock must be at least 1 % better), or that there were too few time points (< 4) to
    compare.

    Parameters
    ----------
    model
        A fitted :class:`~trajflow.TrajectoryModel` (``model.clock``).
    ax
        Axes to draw on; a new figure by default.
    show, save
        Show the figure / save it to this path.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into.
    """
    ax = new_axes(ax, figsize=(5.2, 4.6))
    c = model.clock
    t0, t1 = model.times[0], model.times[-1]
    tau0, tau1 = c([t0, t1])

    def progress(t: np.ndarray | list[float]) -> np.ndarray:
        return (c(np.asarray(t, dtype=float)) - tau0) / (tau1 - tau0)

    grid = np.linspace(t0, t1, 200)
    if c.kind != "time":
        ax.plot([t0, t1], [0, 1], color="0.6", ls="--", lw=1, label="time clock (constant speed)")
    ax.plot(grid, progress(grid), color=OBSERVED_COLOR, lw=2, label=f"{c.kind} clock (the model's)")
    ax.scatter(
        model.times,
        progress(model.times),
        color=OBSERVED_COLOR,
        s=30,
        zorder=3,
        label="trained time points",
    )
    if model.holdout:
        ax.scatter(
            model.holdout,
            progress(model.holdout),
            marker="D",
            color=PREDICTED_COLOR,
            s=36,
            zorder=4,
            label="held out (placed here)",
        )
    ax.set_xlabel(model.time_key)
    ticks = np.array(sorted({*model.times, *model.holdout}))
    ax.set_xticks(ticks, minor=True)
    # Label the time points themselves when their labels do not collide.
    if len(ticks) <= 12 and np.min(np.diff(ticks), initial=np.inf) > 0.06 * (t1 - t0):
        ax.set_xticks(ticks)
        ax.set_xticklabels([format_time(t) for t in ticks])
    ax.set_ylabel("progress (0: first, 1: last trained time point)")
    ax.set_ylim(-0.03, 1.03)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles, _ = ax.get_legend_handles_labels()
    add_legend(ax, handles, where="inside", loc="lower right", frameon=False)
    ax.set_title(clock_reason(model), fontsize="small", loc="left")
    return finish(ax, show=show, save=save)
