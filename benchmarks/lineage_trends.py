"""Gene trends per lineage, on the simulated course (known branches) and on Klein.

    OMP_NUM_THREADS=1 python benchmarks/lineage_trends.py   # ~3 min on 2 loaded cores

Simulated course (:func:`trajflow.datasets.simulate`, 6 x 400 cells, 10 dims): the "genes" are
the latent coordinates (the branch coordinate, which goes up in one lineage and down in the
other, and progress, the same in both); ``obs['fate']`` is each cell's realised branch, so the
true per-lineage mean at each time point is the mean over the cells that *did* take that branch.
Default fit, ``tl.predict_expression(lineage_key="fate")`` from time 0, and the table compares
each lineage's predicted mean with the true one, next to the one averaged line of before.

Klein (``klein2015_mesc_lif_withdrawal_subset.h5ad``, days 0-7, 20 PCs): the day-7 cells are
split into 3 k-means clusters of the PCs (the lineages), ``tl.fate_probabilities`` towards them
and ``tl.predict_expression(lineage_key="fate_probabilities")`` from day 0 on the genes that
tell the clusters apart most (log1p CP10k). Also prints the share of cells with a fate above
0.99 per source day (the fate-calibration check on a real set).

Writes ``results/lineage_trends_sim.png``, ``results/lineage_trends_klein.png`` and
``results/lineage_trends.md``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from sklearn.cluster import KMeans

import trajflow as tf

RESULTS = Path(__file__).resolve().parent / "results"


def simulated(seed: int, lines: list[str]) -> None:
    sim = tf.datasets.simulate(n_times=6, n_cells=400, n_dims=10, seed=seed)
    latent = sim.obsm["X_latent"]
    adata = ad.AnnData(
        X=np.c_[latent[:, 1], latent[:, 0]].astype(np.float32),
        obs=sim.obs.copy(),
        var=pd.DataFrame(index=["branch coordinate", "progress"]),
    )
    adata.obsm["X_pca"] = sim.obsm["X_pca"]
    adata.uns["fate_colors"] = ["#1f77b4", "#d62728"]
    model = tf.fit_trajectories(adata, seed=seed, progress=False)
    tf.tl.predict_expression(adata, model, times=np.linspace(0, 5, 26), lineage_key="fate")
    res = adata.uns["trajflow_expression"]
    fig = tf.pl.gene_trends(adata, ncols=2)
    t = adata.obs["time"].to_numpy()
    times = np.asarray(res["times"])
    rows = []
    for ax, j in zip(fig.axes[:2], range(2), strict=True):
        for g, name in enumerate(res["lineages"]):
            truth = [adata.X[(t == s) & (adata.obs["fate"] == name).to_numpy(), j].mean()
                     for s in range(6)]  # fmt: skip
            ax.plot(range(6), truth, "x", color="black", ms=7, mew=1.6, zorder=6)
            for s in range(6):
                k = int(np.flatnonzero(np.isclose(times, s))[0])
                rows.append({"gene": res["genes"][j], "lineage": name, "time": s,
                             "true": truth[s], "predicted": res["lineage_mean"][g, k, j],
                             "averaged": res["mean"][k, j]})  # fmt: skip
    fig.legends[0].remove()
    handles = [
        Line2D([], [], color=c, lw=2, label=f"{n}: predicted, per lineage")
        for n, c in zip(res["lineages"], adata.uns["fate_colors"], strict=True)
    ] + [
        Line2D([], [], color="0.45", lw=1, ls="--", label="all cells (average, as before)"),
        Line2D(
            [],
            [],
            color="black",
            marker="x",
            ls="",
            mew=1.6,
            label="truth: mean of the cells that took that branch",
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False,
               fontsize="small")  # fmt: skip
    fig.savefig(RESULTS / "lineage_trends_sim.png", dpi=130)
    plt.close(fig)
    frame = pd.DataFrame(rows)
    branch = frame[frame["gene"] == "branch coordinate"].copy()
    branch["error per lineage"] = (branch["predicted"] - branch["true"]).abs()
    branch["error averaged"] = (branch["averaged"] - branch["true"]).abs()
    table = branch.pivot_table(
        index="time", columns="lineage", values=["true", "predicted", "averaged"]
    ).round(3)
    lines += [
        f"## Simulated course (seed {seed}): branch coordinate per lineage",
        "",
        "| time | down: true / predicted | up: true / predicted | averaged (one line) |",
        "|---|---|---|---|",
    ]
    for s in range(6):
        r = table.loc[s]
        lines.append(
            f"| {s} | {r[('true', 'down')]:.2f} / {r[('predicted', 'down')]:.2f} | "
            f"{r[('true', 'up')]:.2f} / {r[('predicted', 'up')]:.2f} | "
            f"{r[('averaged', 'down')]:.2f} |"
        )
    lines += [
        "",
        f"Mean absolute error against the true lineage means: per lineage "
        f"{branch['error per lineage'].mean():.3f}, one averaged line "
        f"{branch['error averaged'].mean():.3f}.",
        "",
    ]


def klein(path: str, seed: int, lines: list[str]) -> None:
    adata = ad.read_h5ad(path)
    model = tf.fit_trajectories(adata, seed=seed, progress=False)
    x = model.representation(adata)
    t = adata.obs["time"].to_numpy()
    last = t == t.max()
    km = KMeans(n_clusters=3, n_init=10, random_state=seed).fit(x[last])
    labels = np.full(adata.n_obs, None, dtype=object)
    labels[last] = [f"d7-{c}" for c in km.labels_]
    adata.obs["day7_cluster"] = pd.Categorical(labels, categories=["d7-0", "d7-1", "d7-2"])
    tf.tl.fate_probabilities(adata, model, groupby="day7_cluster")
    probs = adata.obsm["fate_probabilities"]
    lines += ["## Klein: share of cells with a fate above 0.99 (3 day-7 k-means clusters)", ""]
    lines += [
        "| source day | cells | share > 0.99 | mean largest probability |",
        "|---|---|---|---|",
    ]
    for s in adata.uns["fate_probabilities"]["source_times"]:
        top = probs[t == s].max(axis=1)
        lines.append(f"| {s:g} | {len(top)} | {np.mean(top > 0.99):.1%} | {top.mean():.3f} |")
    lines.append("")
    # the genes that tell the day-7 clusters apart most (log1p CP10k)
    expr = np.asarray(adata.layers["log1p_cp10k"][last].todense()
                      if hasattr(adata.layers["log1p_cp10k"], "todense")
                      else adata.layers["log1p_cp10k"][last])  # fmt: skip
    means = np.vstack([expr[km.labels_ == c].mean(axis=0) for c in range(3)])
    spread = means.max(axis=0) - means.min(axis=0)
    genes = list(adata.var_names[np.argsort(spread)[::-1][:6]])
    tf.tl.predict_expression(
        adata, model, times=np.linspace(0, 7, 29), genes=genes, layer="log1p_cp10k",
        lineage_key="fate_probabilities",
    )  # fmt: skip
    res = adata.uns["trajflow_expression"]
    fig = tf.pl.gene_trends(adata, ncols=3)
    fig.savefig(RESULTS / "lineage_trends_klein.png", dpi=130)
    plt.close(fig)
    k = -1
    lines += [
        f"## Klein: predicted expression at day 7 per lineage (genes: {', '.join(genes)})",
        "",
        "| gene | "
        + " | ".join(f"{g}: predicted / observed" for g in res["lineages"])
        + " | averaged (one line) |",
        "|---|" + "---|" * (len(res["lineages"]) + 1),
    ]
    for j, gene in enumerate(res["genes"]):
        cells = " | ".join(
            f"{res['lineage_mean'][g, k, j]:.2f} / {res['observed_lineage_mean'][g, -1, j]:.2f}"
            for g in range(len(res["lineages"]))
        )
        lines.append(f"| {gene} | {cells} | {res['mean'][k, j]:.2f} |")
    lines.append("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--klein",
        default=str(
            Path(__file__).resolve().parents[1]
            / "../shared/data/klein2015_mesc_lif_withdrawal_subset.h5ad"
        ),
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    tf.settings.verbosity = "warning"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"# Gene trends per lineage (seed {args.seed}; load average {load})", ""]
    simulated(args.seed, lines)
    klein(args.klein, args.seed, lines)
    text = "\n".join(lines)
    (RESULTS / "lineage_trends.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
