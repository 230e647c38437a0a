"""Views of :mod:`trajflow.tl` results: genes over time, fates, ancestors.

They read what the tools wrote into the AnnData (``uns``/``obs``/``obsm`` keys) and never modify it.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .._anndata import group_labels, parse_times
from .._timecourse import same_time
from ._axes import finish, point_size, style_embedding_axes
from ._colors import (
    BACKGROUND_COLOR,
    FADED_COLOR,
    OBSERVED_COLOR,
    PREDICTED_COLOR,
    add_legend,
    faded_handle,
    format_time,
)
from ._embedding import EmbeddingMap


def _result(adata: AnnData, key: str, tool: str, slot: str = "uns") -> dict[str, Any]:
    if not isinstance(adata, AnnData):
        raise TypeError(
            f"Expected the AnnData annotated by trajflow.tl.{tool}, got {type(adata).__name__}."
        )
    if key not in adata.uns:
        raise KeyError(
            f"adata.uns has no {key!r}; run trajflow.tl.{tool}(adata, model, ...) first "
            f"(or pass key= the key_added you used)."
        )
    return adata.uns[key]


def _grid(n: int, ncols: int, panel: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel[0] * ncols, panel[1] * nrows),
        layout="constrained",
        squeeze=False,
    )
    flat = list(axes.ravel())
    for extra in flat[n:]:
        extra.set_visible(False)
    return fig, flat[:n]


def _expression_units(adata: AnnData, layer: str) -> str:
    """``'log1p CP10k'`` for a layer named like ``'log1p_cp10k'``, ``'log1p, adata.X'`` when
    scanpy logged ``adata.X`` (``uns['log1p']``), else the layer's name (``'adata.X'``)."""
    low = layer.lower()
    if layer == "X":
        return "log1p, adata.X" if "log1p" in adata.uns else "adata.X"
    if "log" in low:
        for tag, name in (("cp10k", "CP10k"), ("10k", "CP10k"), ("cpm", "CPM")):
            if tag in low:
                return f"log1p {name}"
        return f"log, layer {layer!r}"
    return f"layer {layer!r}"


def _centre_and_spread(
    res: dict[str, Any], prefix: str, spread: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centre, low, high)`` arrays ``(n_times, n_genes)`` of one statistic pair: mean and
    mean ± 1 sd (``"std"``), median and quartiles (``"iqr"``), or the mean alone."""
    if spread == "iqr":
        median = next(
            (res[f"{prefix}{k}"] for k in ("median", "q50") if f"{prefix}{k}" in res), None
        )
        if median is None:
            raise ValueError(
                "spread='iqr' draws the median with its quartiles, but this result has no "
                "medians (trajflow.tl.predict_expression stores mean, std, q25 and q75). Use "
                "spread='std' (mean ± 1 sd) or spread=None (mean)."
            )
        return (
            np.asarray(median, dtype=float),
            np.asarray(res[f"{prefix}q25"], dtype=float),
            np.asarray(res[f"{prefix}q75"], dtype=float),
        )
    mean = np.asarray(res[f"{prefix}mean"], dtype=float)
    if spread == "std":
        sd = np.asarray(res[f"{prefix}std"], dtype=float)
        return mean, mean - sd, mean + sd
    return mean, mean, mean


# --------------------------------------------------------------------------- genes over time
def gene_trends(
    adata: AnnData,
    genes: str | Sequence[str] | None = None,
    *,
    key: str = "trajflow_expression",
    spread: Literal["std", "iqr"] | None = "std",
    lineages: bool | str | Sequence[str] | None = None,
    ncols: int = 3,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | Figure:
    """Expression of genes along time: predicted (line and band) and observed (dots and bars).

    Reads ``adata.uns[key]`` written by :func:`trajflow.tl.predict_expression`. Predicted and
    observed cells are summarised by the *same* statistics, named in the legend: with
    ``spread="std"`` (default) the line and the dots are means and the band and the bars ± one
    standard deviation over cells (cut at 0 for non-negative expression); with ``"iqr"``
    medians with the 25-75 % quantiles (needs medians in the result). Dots are the observed
    cells at each measured time point (hollow for time points the model did not train on, e.g.
    held out). Dotted vertical lines mark the measured time points; everything between them is
    predicted. The y axis is labelled with the expression's units, from the layer used (e.g.
    ``"expression (log1p CP10k)"`` for ``layer="log1p_cp10k"``).

    When the tool was run with ``lineage_key``, each lineage gets its own line, band and
    dots, in the lineage group's scanpy colour (``adata.uns[f"{groupby}_colors"]``, else
    scanpy's default palette); every path counts towards each lineage with its fate
    probability (see :func:`trajflow.tl.predict_expression`), so these are weighted
    statistics. A thin grey dashed line shows the average over all cells for comparison.

    Parameters
    ----------
    adata
        AnnData annotated by :func:`~trajflow.tl.predict_expression`.
    genes
        Gene(s) among those predicted. Default: all of them (up to 12).
    key
        The ``key_added`` used by the tool.
    spread
        ``"std"`` (mean ± 1 sd), ``"iqr"`` (median and 25-75 % quantiles; the result must hold
        medians) or ``None`` (means only).
    lineages
        Per-lineage trends when the result holds them: ``None`` (default) or ``True`` draws
        all lineages, a name or a list of names draws those, ``False`` draws the average over
        all cells as without lineages.
    ncols
        Panels per row (one panel per gene) when ``ax`` is not given.
    ax
        Draw all genes on this Axes (one colour per gene) instead of one panel per gene; with
        lineages, draw one gene on it (one colour per lineage).
    show, save
        Show the figure / save it to this path. Default: neither.

    Returns
    -------
    matplotlib.axes.Axes or matplotlib.figure.Figure
        The Axes when ``ax`` is given, else the new Figure (one panel per gene).

    Raises
    ------
    KeyError
        When ``adata.uns[key]`` is missing, or a gene or lineage was not predicted.
    ValueError
        When ``spread`` is unknown (or ``"iqr"`` without medians), ``lineages`` names
        lineages but the result has none, or ``ax`` is given with lineages and several genes.
    """
    res = _result(adata, key, "predict_expression")
    if spread not in ("iqr", "std", None):
        raise ValueError(f"spread must be 'std', 'iqr' or None, got {spread!r}.")
    chosen = _chosen_lineages(res, lineages)
    names = [str(g) for g in res["genes"]]
    if genes is None:
        genes = names[:12]
    elif isinstance(genes, str):
        genes = [genes]
    missing = [g for g in genes if g not in names]
    if missing:
        raise KeyError(
            f"Gene(s) {missing} were not predicted (predicted: {names[:10]}"
            f"{'...' if len(names) > 10 else ''}). Run trajflow.tl.predict_expression with "
            "genes= including them."
        )
    if chosen:
        return _lineage_trends(
            adata, res, list(genes), chosen, spread=spread, ncols=ncols, ax=ax, show=show,
            save=save,
        )  # fmt: skip
    times = np.asarray(res["times"], dtype=float)
    otimes = np.asarray(res["observed_times"], dtype=float)
    trained = np.asarray(res["trained_times"], dtype=float)
    is_trained = np.array([same_time(trained, t).any() for t in otimes], dtype=bool)
    layer = str(res.get("layer", "X"))
    ylabel = f"expression ({_expression_units(adata, layer)})"
    cap = 0.012 * (max(times.max(), otimes.max()) - min(times.min(), otimes.min()) or 1.0)
    time_key = str(res.get("time_key", "time"))
    pred = _centre_and_spread(res, "", spread)
    obs = _centre_and_spread(res, "observed_", spread)
    cut = False
    if spread == "std":
        # Expression is non-negative when every stored lower quartile is: cut the sd there.
        nonneg = min(np.min(res["q25"]), np.min(res["observed_q25"])) >= 0
        if nonneg:
            cut = bool((pred[1] < 0).any() or (obs[1] < 0).any())
            pred = (pred[0], np.maximum(pred[1], 0.0), pred[2])
            obs = (obs[0], np.maximum(obs[1], 0.0), obs[2])

    def draw(a: Axes, gene: str, color_pred: Any, color_obs: Any, label: bool) -> None:
        j = names.index(gene)
        centre, lo, hi = (v[:, j] for v in pred)
        if spread is not None:
            a.fill_between(times, lo, hi, color=color_pred, alpha=0.18, linewidth=0)
        a.plot(times, centre, color=color_pred, lw=2, label=f"{gene} predicted" if label else None)
        ocentre, olo, ohi = (v[:, j] for v in obs)
        if spread is not None:
            a.vlines(otimes, olo, ohi, color=color_obs, lw=1.2, zorder=2)
            a.hlines(
                np.r_[olo, ohi],
                np.r_[otimes, otimes] - cap,
                np.r_[otimes, otimes] + cap,
                color=color_obs,
                lw=1.2,
                zorder=2,
            )
        for mask, face in ((is_trained, color_obs), (~is_trained, "white")):
            if mask.any():
                a.plot(
                    otimes[mask],
                    ocentre[mask],
                    "o",
                    ms=6,
                    color=color_obs,
                    mfc=face,
                    mec=color_obs,
                    zorder=3,
                )

    def decorate(a: Axes) -> None:
        for t in otimes:
            a.axvline(t, color="0.75", lw=0.8, ls=":", zorder=0)
        a.set_xticks(otimes)
        a.set_xticklabels([format_time(t) for t in otimes])
        a.set_xlabel(time_key)
        a.set_ylabel(ylabel)
        a.spines[["top", "right"]].set_visible(False)

    stat = "median" if spread == "iqr" else "mean"
    what = {"iqr": "25-75 %", "std": "± 1 sd", None: ""}[spread]
    note = ", cut at 0" if cut else ""
    legend = [
        Line2D(
            [],
            [],
            color=PREDICTED_COLOR,
            lw=2,
            label=f"predicted {stat}"
            + (f" (band: {what} of predicted cells{note})" if what else ""),
        ),
        Line2D(
            [],
            [],
            color=OBSERVED_COLOR,
            marker="o",
            ls="",
            label=f"observed {stat}" + (f" (bar: {what} of observed cells{note})" if what else ""),
        ),
    ]
    if (~is_trained).any():
        legend.append(
            Line2D(
                [],
                [],
                color=OBSERVED_COLOR,
                marker="o",
                mfc="white",
                ls="",
                label="observed, not trained on",
            )
        )
    if ax is not None:
        colors = colormaps["tab10"](np.arange(len(genes)) % 10)
        for gene, c in zip(genes, colors, strict=True):
            draw(ax, gene, c, c, True)
        decorate(ax)
        handles = [
            Line2D([], [], color=c, lw=2, label=g) for g, c in zip(genes, colors, strict=True)
        ]
        handles.append(
            Line2D([], [], color="0.3", marker="o", ls="", label=f"observed {stat} (dots)")
        )
        ax.legend(handles=handles, frameon=False, fontsize="small")
        desc = f"line: predicted {stat}, dots: observed {stat}"
        if what:
            desc += f"; band and bars: {what} of cells{note}"
        ax.set_title(desc, fontsize="small")
        return finish(ax, show=show, save=save)
    fig, axes = _grid(len(genes), ncols, (3.4, 2.8))
    for a, gene in zip(axes, genes, strict=True):
        draw(a, gene, PREDICTED_COLOR, OBSERVED_COLOR, False)
        decorate(a)
        a.set_title(gene, style="italic")
    fig.legend(
        handles=legend,
        loc="outside lower center",
        ncols=len(legend),
        frameon=False,
        fontsize="small",
    )
    mapping = res.get("mapping", "")
    fig.suptitle(
        "Genes over time, predicted by the flow and mapped to genes via "
        + (
            "the PCA loadings"
            if mapping == "pca"
            else "a kNN average of observed cells\n(averaging narrows the predicted spread)"
        ),
        fontsize="medium",
    )
    return finish(fig, show=show, save=save)


def _chosen_lineages(res: dict[str, Any], lineages: Any) -> list[str]:
    """The lineages :func:`gene_trends` draws (empty: the average over all cells)."""
    names = [str(g) for g in res.get("lineages", [])]
    if lineages is None:
        return names
    if lineages is False:
        return []
    if not names:
        raise ValueError(
            f"lineages={lineages!r}, but this result has no lineages; run "
            "trajflow.tl.predict_expression with lineage_key= (the key_added of "
            "trajflow.tl.fate_probabilities, or a column of groups at the last time point)."
        )
    if lineages is True:
        return names
    wanted = [lineages] if isinstance(lineages, str) else [str(g) for g in lineages]
    missing = [g for g in wanted if g not in names]
    if missing or not wanted:
        raise KeyError(f"Lineage(s) {missing or wanted} not among the predicted lineages {names}.")
    return wanted


def _lineage_colors(adata: AnnData, res: dict[str, Any], chosen: list[str]) -> dict[str, Any]:
    """Scanpy's colours of the lineages' groups (``uns[f"{groupby}_colors"]`` or the default
    palette, by the column's categories); the default palette when the column is gone."""
    from ._colors import category_colors

    groupby = str(res.get("lineage_groupby", ""))
    names = [str(g) for g in res["lineages"]]
    if groupby in adata.obs.columns:
        cats, rgba = category_colors(adata, groupby)
        table = dict(zip(cats, rgba, strict=True))
        if all(g in table for g in names):
            return {g: table[g] for g in chosen}
    from scanpy.plotting import palettes

    return {g: palettes.default_20[names.index(g) % 20] for g in chosen}


def _lineage_trends(
    adata: AnnData,
    res: dict[str, Any],
    genes: list[str],
    chosen: list[str],
    *,
    spread: str | None,
    ncols: int,
    ax: Axes | None,
    show: bool | None,
    save: str | os.PathLike | None,
) -> Axes | Figure:
    """:func:`gene_trends` with one line, band and set of dots per lineage."""
    if ax is not None and len(genes) != 1:
        raise ValueError(
            f"ax= with lineages draws one gene (one colour per lineage); pass one gene, e.g. "
            f"genes={genes[0]!r}, or lineages=False, or no ax."
        )
    names = [str(g) for g in res["genes"]]
    lnames = [str(g) for g in res["lineages"]]
    times = np.asarray(res["times"], dtype=float)
    otimes = np.asarray(res["observed_times"], dtype=float)
    trained = np.asarray(res["trained_times"], dtype=float)
    is_trained = np.array([same_time(trained, t).any() for t in otimes], dtype=bool)
    layer = str(res.get("layer", "X"))
    time_key = str(res.get("time_key", "time"))
    colors = _lineage_colors(adata, res, chosen)
    weight = np.asarray(res["lineage_weight"], dtype=float)
    oweight = np.asarray(res["observed_lineage_weight"], dtype=float)
    span = max(times.max(), otimes.max()) - min(times.min(), otimes.min()) or 1.0
    # Dots of different lineages side by side around each time point, not on top of each other.
    offsets = (np.arange(len(chosen)) - (len(chosen) - 1) / 2) * 0.012 * span
    stat = "median" if spread == "iqr" else "mean"
    what = {"iqr": "25-75 %", "std": "± 1 sd", None: ""}[spread]

    def lineage_stats(prefix: str, g: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sub = {
            k: np.asarray(res[f"{prefix}lineage_{k}"], dtype=float)[g][:, j]
            for k in ("mean", "std", "q25", "q75")
        }
        if spread == "iqr":
            raise ValueError(
                "spread='iqr' draws medians, but per-lineage results hold weighted means, sds "
                "and quartiles; use spread='std' or spread=None."
            )
        if spread == "std":
            return sub["mean"], sub["mean"] - sub["std"], sub["mean"] + sub["std"]
        return sub["mean"], sub["mean"], sub["mean"]

    def draw(a: Axes, gene: str) -> None:
        j = names.index(gene)
        a.plot(times, np.asarray(res["mean"], dtype=float)[:, j], color="0.45", lw=1, ls="--",
               zorder=1)  # fmt: skip
        for n, lineage in enumerate(chosen):
            g, c = lnames.index(lineage), colors[lineage]
            centre, lo, hi = lineage_stats("", g, j)
            if spread is not None:
                a.fill_between(times, lo, hi, color=c, alpha=0.15, linewidth=0)
            a.plot(times, centre, color=c, lw=2, zorder=2)
            ocentre, olo, ohi = lineage_stats("observed_", g, j)
            has = np.isfinite(ocentre) & (oweight[g] > 0)
            x = otimes + offsets[n]
            if spread is not None:
                a.vlines(x[has], olo[has], ohi[has], color=c, lw=1.1, zorder=3)
            for mask, face in ((has & is_trained, c), (has & ~is_trained, "white")):
                if mask.any():
                    a.plot(x[mask], ocentre[mask], "o", ms=5.5, color=c, mfc=face, mec="0.2",
                           mew=0.5, zorder=4)  # fmt: skip
        for t in otimes:
            a.axvline(t, color="0.75", lw=0.8, ls=":", zorder=0)
        a.set_xticks(otimes)
        a.set_xticklabels([format_time(t) for t in otimes])
        a.set_xlabel(time_key)
        a.set_ylabel(f"expression ({_expression_units(adata, layer)})")
        a.spines[["top", "right"]].set_visible(False)

    groupby = str(res.get("lineage_groupby", "lineage"))
    target = format_time(float(res.get("lineage_target_time", times.max())))
    handles = [
        Line2D([], [], color=colors[g], lw=2, marker="o", mec="0.2", mew=0.5,
               label=f"{g} (~{weight[lnames.index(g)]:.0f} of {int(res['n_cells'])} paths)")
        for g in chosen
    ]  # fmt: skip
    handles.append(Line2D([], [], color="0.45", lw=1, ls="--", label="all cells (average)"))
    desc = (
        f"line: predicted {stat} per lineage ({groupby} at {time_key} {target}), each path "
        f"weighted by its fate probability; dots: observed cells, weighted alike"
        + (f"; band and bars: {what}" if what else "")
    )
    if ax is not None:
        draw(ax, genes[0])
        ax.legend(handles=handles, frameon=False, fontsize="small",
                  title=f"{groupby} at {time_key} {target}; paths and cells\nweighted by fate "
                  "probability", title_fontsize="small")  # fmt: skip
        ax.set_title(genes[0], style="italic")
        return finish(ax, show=show, save=save)
    fig, axes = _grid(len(genes), ncols, (3.6, 2.9))
    for a, gene in zip(axes, genes, strict=True):
        draw(a, gene)
        a.set_title(gene, style="italic")
    fig.legend(handles=handles, loc="outside lower center", frameon=False, fontsize="small",
               ncols=min(len(handles), 4), title=f"lineage ({groupby})",
               title_fontsize="small")  # fmt: skip
    width = max(40, int(fig.get_figwidth() * 14))  # characters that fit across the figure
    fig.suptitle("\n".join(textwrap.wrap("Genes over time per lineage. " + desc, width)),
                 fontsize="small")  # fmt: skip
    return finish(fig, show=show, save=save)


# --------------------------------------------------------------------------- fates
def fates(
    adata: AnnData,
    *,
    key: str = "fate_probabilities",
    groups: str | Sequence[str] | None = None,
    basis: str | None = None,
    components: Sequence[int] = (1, 2),
    cmap: str = "Reds",
    ncols: int = 3,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | Figure:
    """Fate probabilities of the source cells, one panel per fate.

    Reads ``adata.obsm[key]`` / ``adata.uns[key]`` written by
    :func:`trajflow.tl.fate_probabilities`. Each panel colours the cells of the source time point
    by their probability of that fate (0 to 1, shared scale), shows the observed cells of that
    group at the target time point in blue and every other cell in light grey.

    Parameters
    ----------
    adata
        AnnData annotated by :func:`~trajflow.tl.fate_probabilities`.
    key
        The ``key_added`` used by the tool.
    groups
        Fate group(s) to show. Default: all.
    basis, components
        Where to draw: ``None`` for the model's representation (``components`` 1-based, e.g.
        ``(1, 2)``), or an ``obsm`` embedding such as ``"umap"``.
    cmap
        Colour map of the probabilities.
    ncols
        Panels per row.
    ax
        Draw a single group on this Axes (``groups`` must name one).
    show, save
        Show the figure / save it to this path. Default: neither.

    Returns
    -------
    matplotlib.axes.Axes or matplotlib.figure.Figure
        The Axes when ``ax`` is given, else the new Figure (one panel per fate).
    """
    res = _result(adata, key, "fate_probabilities")
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm has no {key!r}; run trajflow.tl.fate_probabilities first.")
    all_groups = [str(g) for g in res["groups"]]
    if groups is None:
        groups = all_groups
    elif isinstance(groups, str):
        groups = [groups]
    missing = [g for g in groups if g not in all_groups]
    if missing:
        raise KeyError(f"Fate group(s) {missing} not among {all_groups}.")
    if ax is not None and len(groups) != 1:
        raise ValueError(f"ax= draws one group; pass groups= one of {all_groups}, or no ax.")
    emap = EmbeddingMap.fit(
        adata,
        use_rep=str(res["use_rep"]),
        n_dims=int(res["n_dims"]),
        basis=basis,
        components=components,
    )
    xy = emap.coords
    probs = np.asarray(adata.obsm[key])
    src = ~np.isnan(probs).any(axis=1)
    labels = group_labels(adata, str(res["groupby"])).to_numpy()
    time_key = str(res["time_key"])
    at_tgt = same_time(parse_times(adata, time_key), float(res["target_time"]))
    size = point_size(adata.n_obs)
    cm = colormaps[cmap]

    def draw(a: Axes, group: str) -> Any:
        g = all_groups.index(group)
        a.scatter(*xy[~src].T, s=size * 0.6, c=BACKGROUND_COLOR, lw=0, rasterized=True)
        tgt = at_tgt & (labels == group)
        a.scatter(*xy[tgt].T, s=size * 0.6, c="#4a90d9", lw=0, alpha=0.8, rasterized=True)
        order = np.argsort(probs[src, g])
        sc = a.scatter(
            *xy[src][order].T,
            s=size,
            c=probs[src, g][order],
            cmap=cm,
            vmin=0,
            vmax=1,
            edgecolors="0.5",
            linewidths=0.2,
            rasterized=True,
        )
        style_embedding_axes(a, emap.axis_labels)
        a.set_title(f"fate: {group}")
        return sc

    # Results of development versions hold one 'source_time'.
    sources = np.atleast_1d(res.get("source_times", res.get("source_time")))
    when = ", ".join(format_time(float(t)) for t in sources)
    legend = [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            color="#4a90d9",
            label=f"{res['groupby']} = fate group at {time_key} {format_time(res['target_time'])}",
        ),
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            color=cm(0.75),
            mec="0.5",
            label=f"cells at {time_key} {when}, coloured by P(fate)",
        ),
    ]
    if ax is not None:
        sc = draw(ax, groups[0])
        ax.figure.colorbar(sc, ax=ax, pad=0.02, fraction=0.05, label="fate probability")
        ax.legend(handles=legend, frameon=False, fontsize="x-small", loc="best")
        return finish(ax, show=show, save=save)
    fig, axes = _grid(len(groups), ncols, (3.6, 3.3))
    sc = None
    for a, group in zip(axes, groups, strict=True):
        sc = draw(a, group)
    fig.colorbar(sc, ax=axes, pad=0.02, fraction=0.04, label="fate probability")
    fig.legend(handles=legend, loc="outside lower center", ncols=2, frameon=False, fontsize="small")
    return finish(fig, show=show, save=save)


# --------------------------------------------------------------------------- ancestors
def ancestors(
    adata: AnnData,
    *,
    key: str = "ancestors",
    color: Literal["density", "probability"] = "density",
    basis: str | None = None,
    components: Sequence[int] = (1, 2),
    cmap: str = "YlGnBu",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes:
    """Where a group of cells came from.

    Reads what :func:`trajflow.tl.ancestors` (or :func:`trajflow.tl.descendants`, with
    ``key="descendants"``) wrote. The chosen cells are drawn in orange, the
    cells of the earlier time point coloured by the density of the traced-back cells (or their
    ancestor probability), the traced-back positions as small black crosses, and every other
    cell in light grey.

    Parameters
    ----------
    adata
        AnnData annotated by :func:`~trajflow.tl.ancestors`.
    key
        The ``key_added`` used by the tool.
    color
        ``"density"`` (``obs[f"{key}_density"]``) or ``"probability"`` (``obs[key]``).
    basis, components
        Where to draw: ``None`` for the model's representation (``components`` 1-based), or an
        ``obsm`` embedding such as ``"umap"`` (traced-back positions are placed on it by a kNN
        map, see :class:`~trajflow.pl.EmbeddingMap`).
    cmap
        Colour map of the earlier cells.
    ax, show, save
        Axes to draw on (default: a new figure); show / save it. Default: neither.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into.
    """
    res = _result(adata, key, "ancestors")
    if color not in ("density", "probability"):
        raise ValueError(f"color must be 'density' or 'probability', got {color!r}.")
    col = f"{key}_density" if color == "density" else key
    if col not in adata.obs:
        raise KeyError(f"adata.obs has no {col!r}; run trajflow.tl.ancestors first.")
    emap = EmbeddingMap.fit(
        adata,
        use_rep=str(res["use_rep"]),
        n_dims=int(res["n_dims"]),
        basis=basis,
        components=components,
    )
    xy = emap.coords
    values = adata.obs[col].to_numpy(dtype=float)
    earlier = ~np.isnan(values)
    chosen = np.isin(np.asarray(adata.obs_names), np.asarray(res["cells"]))
    size = point_size(adata.n_obs)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.8, 4.6), layout="constrained")
    ax.scatter(*xy[~earlier & ~chosen].T, s=size * 0.6, c=BACKGROUND_COLOR, lw=0, rasterized=True)
    order = np.argsort(values[earlier])
    sc = ax.scatter(
        *xy[earlier][order].T,
        s=size,
        c=values[earlier][order],
        cmap=cmap,
        edgecolors="0.6",
        linewidths=0.2,
        rasterized=True,
        zorder=2,
    )
    ax.scatter(
        *xy[chosen].T, s=size, c=PREDICTED_COLOR, edgecolors="0.2", linewidths=0.3, rasterized=True
    )
    moved, placed = emap.place(np.asarray(res["positions"]))
    cross = max(size * 0.5, 4)
    # Under the coloured cells, so the density colours stay readable where the crosses pile up.
    ax.scatter(*moved[placed].T, s=cross, marker="x", c="black", lw=0.6, alpha=0.7, zorder=1.5)
    n_bad = int((~placed).sum())
    if n_bad:  # positions the kNN map cannot place: faded (see EmbeddingMap)
        ax.scatter(*moved[~placed].T, s=cross, marker="x", c=FADED_COLOR, lw=0.6, alpha=0.6)
    back = float(res["target_time"]) < float(res["source_time"])  # ancestors, else descendants
    label = (
        f"density of {'traced-back' if back else 'pushed'} cells"
        if color == "density"
        else f"{'ancestor' if back else 'descendant'} probability"
    )
    ax.figure.colorbar(
        sc, ax=ax, pad=0.02, fraction=0.05, label=f"{label} (at {format_time(res['target_time'])})"
    )
    tk = str(res["time_key"])
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            color=PREDICTED_COLOR,
            mec="0.2",
            label=f"chosen cells ({tk} {format_time(res['source_time'])})",
        ),
        Line2D(
            [],
            [],
            marker="x",
            ls="",
            color="black",
            label=f"{'traced back' if back else 'carried forward'} to {tk} "
            f"{format_time(res['target_time'])}",
        ),
    ]
    if n_bad:
        faded = faded_handle(emap, share=f":\n{n_bad} of the {len(moved)} crosses")
        faded.set_marker("x")
        faded.set_markeredgecolor(FADED_COLOR)
        handles.append(faded)
    add_legend(ax, handles, where="below")
    style_embedding_axes(ax, emap.axis_labels, ticks=emap.linear)
    ax.set_title(
        f"{'Ancestors' if back else 'Descendants'} at {tk} {format_time(res['target_time'])}"
    )
    return finish(ax, show=show, save=save)
