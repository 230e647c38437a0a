"""A biologist's first hour with trajflow, straight after ``pip install trajflow``.

Reads (or downloads, with a known hash) the Klein et al. 2015 mouse ES cell time course through
``trajflow.datasets``, computes a 30-component PCA the scanpy way, fits with the defaults, and
produces every answer a first session asks for, with trajflow's log lines visible:

- the population at two days nobody measured (3 and 5.5), in one call;
- fate probabilities of every earlier cell, and a group-to-group ``cell_transition`` table;
- a Sankey figure of how the clusters flow from day 0 to day 7;
- each cell's velocity in ``obsm`` (scVelo's ``{vkey}_{basis}`` convention);
- CellRank-ready couplings (``cellrank.kernels.RealTimeKernel(adata, couplings=...)``).

Run::

    python tutorials/first_hour.py --out first_hour_results          # about a minute on a laptop
    python tutorials/first_hour.py --out /tmp/fh --n-steps 300       # a quick check

Set ``TRAJFLOW_DATA_DIR`` to a folder holding ``klein2015_mesc_lif_withdrawal_subset.h5ad`` to
read a local copy instead of downloading.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script: write files, open no windows

import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.cluster import KMeans

import trajflow as tf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="first_hour_results", help="folder for figures/tables")
    parser.add_argument("--n-steps", type=int, default=3000, help="training steps (default 3000)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Data: a local copy (TRAJFLOW_DATA_DIR) or the public source files, hash-checked.
    adata = tf.datasets.klein()
    print(adata)

    # 2. A 30-component PCA of the log-normalised counts, as a scanpy user would compute it.
    sc.pp.pca(adata, n_comps=30, layer="log1p_cp10k", key_added="X_pca30")
    # Clusters to ask questions about (leiden needs igraph; k-means needs nothing extra).
    labels = KMeans(n_clusters=6, n_init=10, random_state=0).fit_predict(adata.obsm["X_pca30"])
    adata.obs["cluster"] = pd.Categorical([f"c{k}" for k in labels])

    # 3. Fit with the defaults on the 30-d representation (the log says what it used).
    model = tf.fit_trajectories(
        adata, time_key="time", use_rep="X_pca30", n_steps=args.n_steps, progress=False
    )
    print(model)

    # 4. Two days nobody measured, in one call: one AnnData, every cell knows its source cell.
    predicted = model.predict([3.0, 5.5])
    print(predicted)
    print(predicted.obs.head(3).to_string())
    predicted.write_h5ad(out / "predicted_days_3_and_5.5.h5ad")

    # 5. Fates of every cell before day 7, over the day-7 clusters.
    tf.tl.fate_probabilities(adata, model, groupby="cluster")
    fates = pd.DataFrame(
        adata.obsm["fate_probabilities"],
        index=adata.obs_names,
        columns=adata.uns["fate_probabilities"]["groups"],
    ).dropna()
    fates.to_csv(out / "fate_probabilities.csv")
    day2 = fates[adata.obs.loc[fates.index, "time"] == 2]
    print(f"day-2 cells with a fate probability above 0.99: {np.mean(day2.max(axis=1) > 0.99):.0%}")

    # 6. Where do the day-2 clusters go by day 7 (rows sum to 1)?
    table = tf.tl.cell_transition(adata, model, source_time=2, target_time=7, groupby="cluster")
    print(table.attrs["question"])
    print(table.round(2).to_string())
    table.to_csv(out / "cell_transition_day2_to_day7.csv")

    # 7. A Sankey figure across all four days.
    ax = tf.pl.sankey(adata, model, groupby="cluster")
    ax.figure.savefig(out / "sankey.png", dpi=150, bbox_inches="tight")

    # 8. Each cell's velocity at its own time point, where scVelo looks for it.
    tf.tl.velocity(adata, model)
    print("velocity:", adata.obsm["trajflow_velocity_pca30"].shape)

    # 9. Couplings in CellRank's format: pass them to RealTimeKernel, or call
    #    tf.tl.realtime_kernel(adata, model) when cellrank is installed.
    couplings = tf.tl.couplings(adata, model)
    for (t1, t2), block in couplings.items():
        rows = np.asarray(block.X.sum(axis=1)).ravel()
        print(
            f"coupling {t1:g} -> {t2:g}: {block.shape}, rows sum to {rows.min():.3f}-{rows.max():.3f}"
        )

    adata.write_h5ad(out / "klein_annotated.h5ad")
    print(f"results in {out.resolve()}")


if __name__ == "__main__":
    main()
