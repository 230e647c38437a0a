"""The leave-one-timepoint-out benchmark figure."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .._scoring import FLOOR
from ..benchmark import BASELINES
from ._axes import finish, new_axes
from ._colors import format_time

#: Fixed colours so a method looks the same in every figure.
METHOD_COLORS = {
    "ot-cfm": "#1b9e77",
    "sb-cfm": "#7570b3",
    "i-cfm": "#e7298a",
    "ot-mfm": "#1f78b4",  # not the orange of the OT-interpolation baseline
}
#: Line styles of the model-free baselines.
BASELINE_STYLES = {
    FLOOR: {
        "color": "#000000",
        "linestyle": "solid",
        "label": "perfect prediction (half of the observed cells)",
    },
    "previous": {
        "color": "#444444",
        "linestyle": (0, (5, 2)),
        "label": "previous time point (unmoved)",
    },
    "ot-interpolation": {
        "color": "#d95f02",
        "linestyle": (0, (1, 1.2)),
        "label": "OT interpolation",
    },
    "entropic-interpolation": {
        "color": "#a6761d",
        "linestyle": (0, (6, 1.5, 1, 1.5)),
        "label": "entropic OT interpolation",
    },
}


def _method_color(method: str, k: int) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    palette = colormaps["tab10"]
    return palette((k + 3) % 10)


def _mean_std(values: pd.Series) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def benchmark(
    results: pd.DataFrame,
    *,
    metric: str | None = None,
    methods: Sequence[str] | None = None,
    baselines: Sequence[str] = (FLOOR, *BASELINES),
    include_mean: bool = True,
    show_seeds: bool = True,
    time_key: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    legend: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes:
    """Leave-one-timepoint-out scores: one group of bars per held-out time, one bar per method.

    Bars are the mean over seeds with ± one standard deviation (ddof=1) as error bars; single
    seeds are the small dots. The model-free baselines are horizontal reference lines across
    each group: ``perfect-half`` (the floor: a random half of the observed cells scored like a
    prediction; nothing can be expected to beat it), ``previous`` (the previous time point, not moved; a method should beat it) and
    ``ot-interpolation`` and ``entropic-interpolation`` (displacement interpolation along the
    exact or the entropic OT plan between the two neighbouring time points, as moscot computes
    it; strong references that need both neighbours). The last group,
    ``mean``, is the mean over held-out times, ± the std over seeds of that mean, as in
    :func:`trajflow.benchmark.summarize`. Lower is better for every metric.

    Parameters
    ----------
    results
        The DataFrame of :func:`trajflow.benchmark.leave_one_out` (or its CSV read back): columns
        ``method``, ``seed``, ``holdout_time`` and ``metric``.
    metric
        Column to plot: ``"energy"``, ``"mmd"``, ``"w1"`` or ``"w2"``. Default: the protocol's
        headline (``results.attrs["headline"]``: energy for the user protocol, W1 for the
        paper's; W1 for a table without it).
    methods
        Flow methods to show, in this order. Default: every non-baseline method in ``results``,
        best (lowest mean) first.
    baselines
        Methods drawn as reference lines instead of bars (those present in ``results``).
    include_mean
        Add the ``mean`` group.
    show_seeds
        Draw each seed's score as a dot.
    time_key
        Name of the time column for the x label. Default: ``results.attrs['time_key']`` if set.
    ylabel, title
        Override the y label and title.
    legend
        Draw the legend (outside the axes, on the right).
    ax, show, save
        Draw into this Axes; ``plt.show()``; path to save to.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into. Bars are :class:`~matplotlib.patches.Rectangle` patches labelled
        with their method.
    """
    if metric is None:
        metric = results.attrs.get("headline", "w1")
    needed = {"method", "seed", "holdout_time", metric}
    missing = needed - set(results.columns)
    if missing:
        raise KeyError(
            f"results lacks column(s) {sorted(missing)}; pass the DataFrame from "
            "trajflow.benchmark.leave_one_out (columns: method, seed, holdout_time, w1, ...)."
        )
    if results.empty:
        raise ValueError("results is empty; nothing to plot.")
    results = results.copy()
    results["holdout_time"] = results["holdout_time"].astype(float)
    present = list(dict.fromkeys(results["method"]))
    # a baseline asked for in methods is drawn as a bar, not also as a line
    base = [b for b in baselines if b in present and b not in (methods or ())]
    per_seed = results.groupby(["method", "seed"])[metric].mean()
    if methods is None:
        flows = [m for m in present if m not in base]
        flows.sort(key=lambda m: per_seed.loc[m].mean())
    else:
        unknown = [m for m in methods if m not in present]
        if unknown:
            raise ValueError(f"methods {unknown} are not in the results (methods: {present}).")
        flows = list(methods)
    holds = sorted(results["holdout_time"].unique())
    groups: list[tuple[str, pd.DataFrame | None]] = [
        (format_time(t), results[results["holdout_time"] == t]) for t in holds
    ]
    if include_mean and len(holds) > 1:
        groups.append(("mean", None))

    ax = new_axes(ax, figsize=(1.6 + 1.35 * len(groups) + 0.25 * len(flows), 4.2))
    n = max(len(flows), 1)
    width = 0.8 / n
    rng = np.random.default_rng(0)
    for g, (_, frame) in enumerate(groups):
        for k, method in enumerate(flows):
            if frame is None:
                values = per_seed.loc[method]
            else:
                values = frame.loc[frame["method"] == method, metric]
            if len(values) == 0:
                continue
            mean, std = _mean_std(values)
            x = g - 0.4 + width * (k + 0.5)
            col = _method_color(method, k)
            bars = ax.bar(
                x,
                mean,
                width=width * 0.9,
                color=col,
                alpha=0.85,
                label=method,
                zorder=2,
                yerr=std if len(values) > 1 else None,  # no zero-length bar for one seed
                capsize=3,
                error_kw={"elinewidth": 1.0, "ecolor": "#222222"},
            )
            for patch in bars.patches:
                patch.set_label(method)
            if show_seeds and len(values) > 1:
                jitter = rng.uniform(-0.18, 0.18, len(values)) * width
                ax.scatter(
                    x + jitter, values, s=9, color="black", alpha=0.6, linewidths=0, zorder=3
                )
        for b in base:
            values = per_seed.loc[b] if frame is None else frame.loc[frame["method"] == b, metric]
            if len(values) == 0:
                continue
            style = BASELINE_STYLES.get(b, {"color": "grey", "linestyle": "-", "label": b})
            ax.hlines(
                float(np.mean(values)),
                g - 0.46,
                g + 0.46,
                colors=style["color"],
                linestyles=[style["linestyle"]],
                linewidth=1.8,
                zorder=4,
                label=f"baseline: {style['label']}",
            )
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([name for name, _ in groups])
    if include_mean and len(holds) > 1:
        ax.axvline(len(groups) - 1.5, color="#bbbbbb", linewidth=0.8, zorder=0)
    ax.set_xlim(-0.55, len(groups) - 0.45)
    time_key = time_key or results.attrs.get("time_key")
    ax.set_xlabel("held-out time point" + (f" ({time_key})" if time_key else ""))
    label = metric.upper() if metric in ("w1", "w2", "mmd") else metric
    ax.set_ylabel(ylabel or f"{label} to held-out cells (lower is better)")
    seeds = results["seed"].nunique()
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed (no error bars)"
    ax.set_title(title or f"Leave-one-timepoint-out {label}, {spread}")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", color="#e5e5e5", zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if legend:
        handles = [
            Patch(color=_method_color(m, k), alpha=0.85, label=m) for k, m in enumerate(flows)
        ]
        for b in base:
            style = BASELINE_STYLES.get(b, {"color": "grey", "linestyle": "-", "label": b})
            handles.append(
                Line2D(
                    [],
                    [],
                    color=style["color"],
                    linestyle=style["linestyle"],
                    linewidth=1.8,
                    label=f"baseline: {style['label']}",
                )
            )
        if show_seeds and seeds > 1:
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="o",
                    color="black",
                    alpha=0.6,
                    markersize=3,
                    label="single seeds",
                )
            )
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
            fontsize="small",
        )
    return finish(ax, show=show, save=save)
