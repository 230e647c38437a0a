"""The model's clock: how far along its trajectory the population is at each observed time."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes

from ._utils import OBSERVED_COLOR, PREDICTED_COLOR, finish, new_axes

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def clock(
    model: TrajectoryModel,
    *,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes:
    """Progress of the population (0 at the first trained time point, 1 at the last) against
    observed time, as the model's clock places it.

    The time clock is the diagonal (constant speed). The distance clock passes through the
    training time points at their share of the cumulative W2 distance travelled; a curve above
    the diagonal means the population moved early. Held-out time points are marked where the
    model places them, which is where their predictions are made.

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
    The Axes.
    """
    ax = new_axes(ax, figsize=(4.8, 4.2))
    c = model.clock
    t0, t1 = model.times[0], model.times[-1]
    tau0, tau1 = c([t0, t1])

    def progress(t: np.ndarray | list[float]) -> np.ndarray:
        return (c(np.asarray(t, dtype=float)) - tau0) / (tau1 - tau0)

    grid = np.linspace(t0, t1, 200)
    if c.kind != "time":
        ax.plot([t0, t1], [0, 1], color="0.6", ls="--", lw=1, label="time clock (constant speed)")
    chosen = f"{c.kind} clock" + (
        " (chosen by auto)" if model.config.get("clock") == "auto" else ""
    )
    ax.plot(grid, progress(grid), color=OBSERVED_COLOR, lw=2, label=chosen)
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
    ax.set_ylabel("progress (0: first, 1: last trained time point)")
    ax.set_ylim(-0.03, 1.03)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(frameon=False, fontsize="small", loc="lower right")
    if c.scores:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in c.scores.items())
        ax.set_title(f"auto's check (leave-one-out W1): {scores}", fontsize="small")
    return finish(ax, show=show, save=save)
