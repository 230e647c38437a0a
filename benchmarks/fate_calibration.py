"""Are fate probabilities calibrated? Brier, reliability and the share of "certain" cells per
time point, against the known fates of the simulated course.

    OMP_NUM_THREADS=1 python benchmarks/fate_calibration.py --label after
    # the code before a change: PYTHONPATH=<old checkout>/src ... --label before

:func:`trajflow.datasets.simulate` keeps each measured cell's realised fate (``obs['fate']``, the
branch its own path reaches at the last time point) and its latent state. The *true* fate
probability of a measured cell is estimated here by continuing its latent state with the
simulation's own stochastic process ``--n-mc`` times (the realised fate is one draw of it). For
each seed: a default fit, then :func:`trajflow.tl.fate_probabilities` (``through="observed"``,
the default, and ``through="direct"``, what :func:`trajflow.tl.cell_transition` uses) for every
earlier time point. Per source time point:

- ``brier``: mean squared error of P(up) against the realised fate (lower is better; the true
  probability's own Brier is the floor no method can beat on average, a coin flip's is 0.25);
- ``mse_true``: mean squared error of P(up) against the true probability;
- ``certain``: share of cells whose largest fate probability is above 0.99;
- ``ece``: expected calibration error of the largest fate probability (5 bins of [0.5, 1]);
- the reliability curve (binned largest probability vs how often that fate was realised), drawn
  per time point into ``<out>.png`` with the true probability's curve beside it.

Writes ``<out>.csv`` (one row per seed, source time and kind), ``<out>_reliability.csv`` and the
figure; prints the mean table.

``--klein PATH`` adds the check on a real set (no truth there): Klein's day-7 cells split into 3
k-means clusters of the PCs, a default fit, and per source day and ``through`` the share of cells
with a fate above 0.99, the mean largest probability and each cluster's share of the fate mass
beside its share of the day-7 cells (``<out>_klein.md``). ``--seeds`` with no value skips the
simulated course.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

import trajflow as tf

BINS = np.linspace(0.5, 1.0, 6)  # largest probability of two fates lies in [0.5, 1]
MIN_BIN = 10  # cells (seeds pooled) a bin needs to be drawn


def true_up_probability(adata, n_mc: int, seed: int) -> np.ndarray:
    """P(up) of each measured cell under the simulation's own process, by ``n_mc`` continuations
    of its latent state (Euler-Maruyama with the simulation's step, drift and diffusion)."""
    from trajflow.datasets._simulate import _sim_drift

    sim = adata.uns["simulation"]
    n_times, diffusion = int(sim["n_times"]), float(sim["diffusion"])
    steps_per_unit, dt = 20, 1 / 20  # as in simulate()
    rng = np.random.default_rng(10_000 + seed)
    t_obs = adata.obs["time"].to_numpy()
    z0 = np.asarray(adata.obsm["X_latent"], dtype=np.float64)
    p = np.empty(adata.n_obs)
    for s in np.unique(t_obs):
        idx = np.flatnonzero(t_obs == s)
        z = np.repeat(z0[idx], n_mc, axis=0)
        for k in range(int(np.rint(s * steps_per_unit)), (n_times - 1) * steps_per_unit):
            t = k * dt
            z += _sim_drift(z, t, n_times) * dt + diffusion * np.sqrt(dt) * rng.normal(size=z.shape)
        p[idx] = (z[:, 1] >= 0).reshape(len(idx), n_mc).mean(axis=1)
    return p


def scores(p_up: np.ndarray, up: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    top = np.maximum(p_up, 1 - p_up)
    hit = (p_up >= 0.5) == up
    bins = np.clip(np.digitize(top, BINS[1:-1]), 0, len(BINS) - 2)
    ece = sum(
        np.sum(bins == b) * abs(top[bins == b].mean() - hit[bins == b].mean())
        for b in np.unique(bins)
    ) / len(top)
    return {
        "brier": float(np.mean((p_up - up) ** 2)),
        "mse_true": float(np.mean((p_up - truth) ** 2)),
        "certain": float(np.mean(top > 0.99)),
        "mean_max_prob": float(top.mean()),
        "ece": float(ece),
        "accuracy": float(hit.mean()),
    }


def reliability(p_up: np.ndarray, up: np.ndarray) -> pd.DataFrame:
    top = np.maximum(p_up, 1 - p_up)
    hit = (p_up >= 0.5) == up
    bins = np.clip(np.digitize(top, BINS[1:-1]), 0, len(BINS) - 2)
    rows = [
        {"bin": b, "predicted": top[bins == b].mean(), "observed": hit[bins == b].mean(),
         "n": int(np.sum(bins == b))}
        for b in range(len(BINS) - 1) if np.any(bins == b)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def plot(rel: pd.DataFrame, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = sorted(rel["source_time"].unique())
    kinds = [k for k in ("truth", "observed", "direct") if k in set(rel["kind"])]
    colors = {"truth": "0.2", "observed": "#d62728", "direct": "#1f77b4"}
    names = {
        "truth": "true probability",
        "observed": 'trajflow, through="observed" (default)',
        "direct": 'trajflow, through="direct" (= "observed" from the last-but-one time)',
    }
    fig, axes = plt.subplots(
        1, len(times), figsize=(2.6 * len(times), 3.0), layout="constrained", sharey=True
    )
    for ax, t in zip(np.atleast_1d(axes), times, strict=True):
        ax.plot([0.5, 1], [0.5, 1], color="0.7", lw=1, ls="--", zorder=0)
        for kind in kinds:
            sub = rel[(rel["source_time"] == t) & (rel["kind"] == kind)]
            # pool the seeds: cell-weighted mean per bin
            g = sub.groupby("bin").apply(
                lambda d: pd.Series(
                    {
                        "predicted": np.average(d["predicted"], weights=d["n"]),
                        "observed": np.average(d["observed"], weights=d["n"]),
                        "n": d["n"].sum(),
                    }
                ),
                include_groups=False,
            )
            g = g[g["n"] >= MIN_BIN]  # a bin of a few cells says nothing
            ax.plot(g["predicted"], g["observed"], "-", color=colors[kind], lw=1.4,
                    label=names[kind], zorder=2)  # fmt: skip
            ax.scatter(g["predicted"], g["observed"], s=4 + 60 * g["n"] / g["n"].max(),
                       color=colors[kind], zorder=3)  # fmt: skip
        ax.set_title(f"cells at time {t:g}", fontsize="medium")
        ax.set_xlim(0.48, 1.02)
        ax.set_ylim(0.3, 1.02)
        ax.set_xlabel("largest fate probability")
        ax.spines[["top", "right"]].set_visible(False)
    np.atleast_1d(axes)[0].set_ylabel("share whose most likely fate\nwas the realised one")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(kinds), frameon=False,
               fontsize="small")  # fmt: skip
    fig.suptitle(
        title + f"\ndot area: cells in the bin (bins of fewer than {MIN_BIN} cells not drawn); "
        "on the diagonal = calibrated, below it = over-certain",
        fontsize="medium",
    )
    fig.savefig(out, dpi=130)
    plt.close(fig)


def markdown(table: pd.DataFrame) -> str:
    """A pipe table (pandas' ``to_markdown`` needs tabulate, not a dependency)."""
    head = [*table.index.names, *table.columns]
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    for key, row in table.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join([*(f"{k:g}" if isinstance(k, float) else str(k) for k in key),
                                          *(f"{v:.3f}" for v in row)]) + " |")  # fmt: skip
    return "\n".join(lines)


def klein(path: str, out: Path, label: str) -> None:
    """Over-certainty and lineage mass on Klein (3 day-7 k-means clusters), both ``through``."""
    import anndata as ad
    from sklearn.cluster import KMeans

    adata = ad.read_h5ad(path)
    model = tf.fit_trajectories(adata, seed=0, progress=False)
    t = adata.obs["time"].to_numpy()
    last = t == t.max()
    km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(model.representation(adata)[last])
    labels = np.full(adata.n_obs, None, dtype=object)
    labels[last] = [f"d7-{c}" for c in km.labels_]
    adata.obs["cluster"] = pd.Categorical(labels, categories=["d7-0", "d7-1", "d7-2"])
    sizes = np.bincount(km.labels_, minlength=3) / last.sum()
    lines = [
        f"{label}: Klein, 3 k-means clusters of the day-7 cells (shares "
        + ", ".join(f"{x:.1%}" for x in sizes)
        + "), default fit (seed 0)",
        "",
        "| through | source day | cells | share > 0.99 | mean largest probability | "
        "fate mass per cluster |",
        "|---|---|---|---|---|---|",
    ]
    for through in ("observed", "direct"):
        tf.tl.fate_probabilities(adata, model, groupby="cluster", through=through)
        probs = adata.obsm["fate_probabilities"]
        for src in adata.uns["fate_probabilities"]["source_times"]:
            p = probs[t == src]
            top = p.max(axis=1)
            mass = ", ".join(f"{x:.1%}" for x in p.mean(axis=0))
            lines.append(
                f"| {through} | {src:g} | {len(p)} | {np.mean(top > 0.99):.1%} | "
                f"{top.mean():.3f} | {mass} |"
            )
    text = "\n".join(lines) + "\n"
    out.parent.joinpath(f"{out.name}_klein.md").write_text(text)
    print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--klein", default=None)
    parser.add_argument("--n-times", type=int, default=6)
    parser.add_argument("--n-cells", type=int, default=400)
    parser.add_argument("--n-dims", type=int, default=10)
    parser.add_argument("--n-mc", type=int, default=400)
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    tf.settings.verbosity = "warning"
    out = Path(args.out or f"benchmarks/results/fate_calibration_{args.label}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.klein:
        klein(args.klein, out, args.label)
    if not args.seeds:
        return
    rows, rels = [], []
    for seed in args.seeds:
        adata = tf.datasets.simulate(
            n_times=args.n_times, n_cells=args.n_cells, n_dims=args.n_dims, seed=seed
        )
        t = adata.obs["time"].to_numpy()
        up = (adata.obs["fate"] == "up").to_numpy()
        truth = true_up_probability(adata, args.n_mc, seed)
        start = time.perf_counter()
        model = tf.fit_trajectories(adata, seed=seed, progress=False)
        fit_s = time.perf_counter() - start
        preds = {"truth": (truth, 0.0)}
        for through in ("observed", "direct"):
            start = time.perf_counter()
            res = tf.tl.fate_probabilities(adata, model, groupby="fate", through=through, copy=True)
            tool_s = time.perf_counter() - start
            col = list(res.uns["fate_probabilities"]["groups"]).index("up")
            preds[through] = (res.obsm["fate_probabilities"][:, col], tool_s)
        for kind, (p, tool_s) in preds.items():
            for src in np.unique(t)[:-1]:
                at = t == src
                rows.append({"label": args.label, "seed": seed, "kind": kind, "source_time": src,
                             "fit_s": fit_s, "tool_s": tool_s, **scores(p[at], up[at], truth[at])})  # fmt: skip
                rel = reliability(p[at], up[at])
                rel[["label", "seed", "kind", "source_time"]] = args.label, seed, kind, src
                rels.append(rel)
        print(f"seed {seed}: fit {fit_s:.1f} s", flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    rel = pd.concat(rels, ignore_index=True)
    rel.to_csv(out.parent / f"{out.name}_reliability.csv", index=False)
    plot(
        rel,
        out.with_suffix(".png"),
        f"Reliability of fate probabilities ({args.label}): simulate(n_times={args.n_times}, "
        f"n_cells={args.n_cells}, n_dims={args.n_dims}), seeds {args.seeds} pooled",
    )
    cols = ["brier", "mse_true", "certain", "mean_max_prob", "ece", "accuracy", "tool_s"]
    table = frame.groupby(["kind", "source_time"])[cols].mean().round(3)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    text = (
        f"{args.label}: simulate(n_times={args.n_times}, n_cells={args.n_cells}, "
        f"n_dims={args.n_dims}), seeds {args.seeds}, default fit, true P(up) from {args.n_mc} "
        f"continuations per cell; mean over seeds; load average {load}\n\n"
        f"{markdown(table)}\n"
    )
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
