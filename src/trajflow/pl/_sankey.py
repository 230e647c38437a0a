"""Sankey diagram: how annotated groups flow into each other across several time points."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.path import Path

from .._anndata import group_labels, parse_times
from .._consumers import adata_first, check_model, observed_time
from .._timecourse import same_time
from ..tl import cell_transition
from ._axes import finish, new_axes
from ._colors import category_colors, format_time

if TYPE_CHECKING:
    from .._model import TrajectoryModel

_NODE_WIDTH = 0.06
_GAP = 0.02  # vertical gap between groups, as a fraction of the column


def _band(x0: float, y0: tuple[float, float], x1: float, y1: tuple[float, float]) -> Path:
    """A band from ``[y0]`` at ``x0`` to ``[y1]`` at ``x1`` with smooth (cubic) edges."""
    mid = (x0 + x1) / 2
    verts = [
        (x0, y0[0]),
        (mid, y0[0]),
        (mid, y1[0]),
        (x1, y1[0]),
        (x1, y1[1]),
        (mid, y1[1]),
        (mid, y0[1]),
        (x0, y0[1]),
        (x0, y0[0]),
    ]
    codes = [Path.MOVETO] + [Path.CURVE4] * 3 + [Path.LINETO] + [Path.CURVE4] * 3 + [Path.CLOSEPOLY]
    return Path(verts, codes)


def _observed_note(model: TrajectoryModel, trained: Sequence[bool]) -> str:
    """What the observed shares beside the predicted ones do and do not show."""
    balanced = model.config.get("growth_key") is None and model.config.get("unbalanced") is None
    lines = []
    if any(trained):
        how = (
            "a balanced fit carries the cells onto the observed cells there, so the predicted "
            "share matches the observed one largely by construction: not a validation"
            if balanced
            else "the fit was trained to reach the observed cells there (with growth), so "
            "the shares are not an independent check"
        )
        lines.append(
            f"'fitted to x%': the observed share at a time point the model was trained on; {how}."
        )
    if not all(trained):
        lines.append(
            "'held-out obs. x%': the observed share at a time point left out of training "
            "(holdout=): an independent check."
        )
    elif balanced:
        lines.append("For an independent check, fit with holdout= a time point and show it here.")
    return "\n".join(lines)


def sankey(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    groupby: str,
    times: Sequence[float] | None = None,
    n_neighbors: int = 30,
    sde: bool | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    min_flow: float = 0.005,
    show_observed: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes:
    """Where the annotated groups go, across several time points, as a Sankey diagram.

    The first column is the observed composition of ``obs[groupby]`` at the first time point.
    Each band carries a group's share forward with :func:`trajflow.tl.cell_transition`
    (``forward=True``: the fraction of the group's cells that the flow carries into each group
    of the next time point), so the later columns are the composition the flow *predicts*
    from the first time point, and band widths add up. The first column's labels give each
    group's number of cells. Each later group's label gives the predicted share and, in
    brackets, the share *observed* at that time point. At a time point the model was trained
    on (``fitted to x%``, column header "trained") the two agree largely by construction: a
    balanced fit carries the earlier cells onto exactly those observed cells, so the match is
    not a validation. Only at a time point held out of training (``holdout=``; ``held-out obs.
    x%``, header "held out") is the comparison an independent check. A note under the diagram
    says so.

    Parameters
    ----------
    adata
        The cells, with ``obs[model.time_key]``, ``obsm[model.use_rep]`` and ``obs[groupby]``
        annotated at every time point shown. Colours follow ``adata.uns[f"{groupby}_colors"]``
        (scanpy's) when present. Not modified.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    groupby
        Categorical column of ``adata.obs`` with the groups.
    times
        Observed time points to show, in order (at least two). Default: every observed one.
    n_neighbors, sde, n_samples, seed
        As in :func:`trajflow.tl.cell_transition`.
    min_flow
        Bands thinner than this share of all cells are not drawn (they are still counted).
    show_observed
        Add the observed share to the labels of the later groups (and the note on what it
        shows).
    title
        Axes title. Default: names the direction and the grouping.
    ax, show, save
        Axes to draw into; show the figure / save it to this path. Default: neither.

    Returns
    -------
    The Axes.

    Examples
    --------
    >>> tf.pl.sankey(adata, model, groupby="cell_type")
    """
    adata, model = adata_first(adata, model, "trajflow.pl.sankey")
    model = check_model(model)
    obs_t = parse_times(adata, model.time_key)
    if times is None:
        steps = [float(t) for t in np.unique(obs_t)]
    else:
        steps = [
            observed_time(t, obs_t, what="times", time_key=model.time_key)
            for t in np.atleast_1d(np.asarray(times, dtype=float))
        ]
    if len(steps) < 2 or any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError(f"times must be two or more increasing observed time points, got {steps}.")
    labels = group_labels(adata, groupby).to_numpy()  # checks the column first
    names, colors = category_colors(adata, groupby)
    observed, counts = [], []
    for t in steps:
        at = labels[same_time(obs_t, t)]
        count = pd.Series(at[pd.notna(at)]).value_counts().reindex(names, fill_value=0)
        counts.append(count.to_numpy())
        observed.append(counts[-1] / max(int(count.sum()), 1))
    # A time point the model was trained on is not a test: the fit carried the cells onto it.
    trained = [bool(same_time(np.asarray(model.times), t).any()) for t in steps]
    tables = [
        cell_transition(
            adata,
            model,
            source_time=a,
            target_time=b,
            groupby=groupby,
            n_neighbors=n_neighbors,
            sde=sde,
            n_samples=n_samples,
            seed=seed,
            key_added=None,
        )
        .reindex(index=names, columns=names)
        .fillna(0.0)
        .to_numpy()
        for a, b in itertools.pairwise(steps)
    ]
    mass = [observed[0]]
    for table in tables:
        mass.append(mass[-1] @ table)

    ax = new_axes(ax, figsize=(2.2 + 1.9 * len(steps), 4.8))

    def stack(k: int) -> tuple[np.ndarray, float]:
        """Bottom of each group's node in column ``k`` (top to bottom, gaps between) and the
        height of a share of 1; groups seen or carried there get a place."""
        m, present = mass[k], (mass[k] > 0) | (observed[k] > 0)
        scale = 1.0 - _GAP * max(int(present.sum()) - 1, 0)
        tops = 1.0 - np.concatenate([[0.0], np.cumsum(m * scale + _GAP * present)[:-1]])
        return tops - m * scale, scale

    layout = [stack(k) for k in range(len(steps))]
    for k, (t, m) in enumerate(zip(steps, mass, strict=True)):
        bottom, scale = layout[k]
        for g in np.flatnonzero((m > 0) | (observed[k] > 0)):
            node = Rectangle(
                (k - _NODE_WIDTH / 2, bottom[g]),
                _NODE_WIDTH,
                max(m[g] * scale, 0.002),
                color=colors[g],
                lw=0,
                zorder=3,
            )
            ax.add_patch(node)
            text = f"{names[g]}: {m[g]:.0%}"
            if k == 0:
                text += f" (n={counts[0][g]})"
            elif show_observed:
                seen = "fitted to" if trained[k] else "held-out obs."
                text += f" ({seen} {observed[k][g]:.0%})"
            last = k == len(steps) - 1
            dx = _NODE_WIDTH / 2 + 0.02
            ax.text(
                k + dx if last else k - dx,
                bottom[g] + m[g] * scale / 2,
                text,
                ha="left" if last else "right",
                va="center",
                fontsize="x-small",
                zorder=4,
                bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 0.5},
            )
        head = f"{model.time_key} {format_time(t)}"
        if k > 0:
            head += "\n(trained)" if trained[k] else "\n(held out)"
        ax.text(k, 1.03, head, ha="center", va="bottom", fontsize="small")
    for k, table in enumerate(tables):
        (b0, scale0), (b1, scale1) = layout[k], layout[k + 1]
        flow = mass[k][:, None] * table
        out_top = b0 + mass[k] * scale0  # bands leave each node from its top down
        in_top = b1 + mass[k + 1] * scale1  # and enter each node from its top down
        for a in range(len(names)):
            for b in range(len(names)):
                f = flow[a, b]
                if f <= 0:
                    continue
                y0 = (out_top[a] - f * scale0, out_top[a])
                y1 = (in_top[b] - f * scale1, in_top[b])
                out_top[a] -= f * scale0
                in_top[b] -= f * scale1
                if f < min_flow:
                    continue
                ax.add_patch(
                    PathPatch(
                        _band(k + _NODE_WIDTH / 2, y0, k + 1 - _NODE_WIDTH / 2, y1),
                        facecolor=colors[a],
                        alpha=0.45,
                        lw=0,
                        zorder=2,
                    )
                )
    ax.set_xlim(-0.6, len(steps) - 0.4)
    ax.set_ylim(-0.02, 1.1)
    ax.axis("off")
    if show_observed and len(steps) > 1:
        ax.text(
            0.5,
            -0.02,
            _observed_note(model, trained[1:]),
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize="x-small",
            color="0.3",
            wrap=True,
        )
    ax.set_title(
        title
        if title is not None
        else f"where the {groupby} groups of {model.time_key} {format_time(steps[0])} go "
        "(bands: the flow's forward transitions; % predicted)",
        fontsize="small",
    )
    return finish(ax, show=show, save=save)
