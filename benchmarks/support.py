"""Predictions on the data's support (issue 26): how many predicted cells leave the data.

For each shared set at the dims users work in (EB 50 PCs, Klein 20, EMT 10) and the simulated
course (``trajflow.datasets.simulate``, 6 time points x 500 cells x 10 dims), one fit on every
time point per method and variant; then

- **one gap**: every cell of each time point pushed to the next one (pooled over the gaps);
- **first to last**: every cell of the first time point pushed to the last one, and to each
  time point in between (where the cells leave the data);

each scored by the support measure every ``predict`` writes (``obs['off_support']``: farther
from every observed cell of the target time point than twice those cells' own 99th-percentile
nearest-neighbour distance; ``trajflow._scoring.Support``). ``before`` is the fit as it was
before issue 26 (``restore=0``), ``after`` today's default (``restore=None``: the method's;
0.3 for ot-cfm, 0 for the methods without it, which are then run once). Prints one table and
writes a CSV; ``--figure`` draws EB's first-to-last push before and after::

    python benchmarks/support.py --out benchmarks/results/support.csv \\
        --figure benchmarks/results/support_eb.png
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

import trajflow

SETS = {
    "eb": ("eb_moon2019_nlsb_subset.h5ad", 50),
    "klein": ("klein2015_mesc_lif_withdrawal_subset.h5ad", 20),
    "emt": ("emt_a549_tgfb1_ae_latent.h5ad", 10),
    "sim": (None, 10),
}
#: ``before``: no restoring offset (the fit before issue 26); ``after``: the method's default.
VARIANTS = {"before": {"restore": 0.0}, "after": {}}


def _data_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("TRAJFLOW_DATA_DIR", default))


def load(name: str) -> tuple[ad.AnnData, int]:
    file, n_dims = SETS[name]
    if file is None:
        return trajflow.datasets.simulate(n_times=6, n_cells=500, n_dims=n_dims), n_dims
    return ad.read_h5ad(_data_dir() / file), n_dims


def off_support(model: trajflow.TrajectoryModel) -> dict[str, float]:
    """One-gap and first-to-last off-support shares (and the largest ratios) of ``model``."""
    times = list(model.times)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the log's off-support warning: we count it here
        gaps = [model.predict(b, source_time=a) for a, b in itertools.pairwise(times)]
        reach = {t: model.predict(t, source_time=times[0]) for t in times[1:]}
    one = np.concatenate([p.obs["support_distance"].to_numpy() for p in gaps])
    last = reach[times[-1]].obs["support_distance"].to_numpy()
    out = {
        "one_gap_off": float(np.mean(one > 1)),
        "one_gap_max": float(one.max()),
        "first_last_off": float(np.mean(last > 1)),
        "first_last_max": float(last.max()),
    }
    # where the first time point's cells leave the data: the share off at each later time
    for t, p in reach.items():
        out[f"first_to_{t:g}"] = float(p.obs["off_support"].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument(
        "--methods", nargs="+", default=["ot-cfm", "i-cfm", "sb-cfm", "mmfm", "ot-mfm"]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-steps", type=int, default=None, help="default: the fit's default")
    parser.add_argument("--out", default="benchmarks/results/support.csv")
    parser.add_argument("--figure", default=None, help="PNG of EB's first-to-last push")
    parser.add_argument(
        "--paper", default=None, metavar="CSV",
        help="instead: the paper protocol's leave-one-out (W1, 5 dims) of ot-cfm before and "
        "after, on the shared sets given, written to CSV",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    trajflow.settings.verbosity = "error"
    if args.paper:
        paper(args.sets, args.seed, args.paper)
        return
    rows, eb_models = [], {}
    for name in args.sets:
        adata, n_dims = load(name)
        for method in args.methods:
            default = trajflow.METHODS[method].default_restore
            for variant, kw in VARIANTS.items():
                if variant == "after" and default == 0:
                    continue  # the same fit as "before"
                t0 = time.perf_counter()
                model = trajflow.fit_trajectories(
                    adata, n_dims=n_dims, method=method, seed=args.seed, progress=False,
                    threads=1, **kw, **({"n_steps": args.n_steps} if args.n_steps else {}),
                )  # fmt: skip
                fit_s = time.perf_counter() - t0
                if name == "eb" and method == "ot-cfm":
                    eb_models[variant] = model
                shares = off_support(model)
                rows.append(
                    {"set": name, "n_dims": n_dims, "method": method, "variant": variant,
                     "restore": model.config["restore"], **shares, "fit_s": round(fit_s, 1)}
                )  # fmt: skip
                print(
                    f"{name} {method} {variant} (restore {model.config['restore']:g}): one gap "
                    f"{100 * shares['one_gap_off']:.1f}%, first->last "
                    f"{100 * shares['first_last_off']:.1f}% (largest {shares['first_last_max']:.1f}"
                    f"), fit {fit_s:.0f} s",
                    flush=True,
                )
                pd.DataFrame(rows).to_csv(args.out, index=False)  # kept as it goes
    frame = pd.DataFrame(rows)
    table = frame.assign(
        one_gap=(100 * frame.one_gap_off).round(1).astype(str) + "%",
        first_last=(100 * frame.first_last_off).round(1).astype(str) + "%",
    )[["set", "method", "variant", "restore", "one_gap", "first_last", "first_last_max"]]
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.round(2).to_string(index=False))
    print(f"load average at the end: {os.getloadavg()}")
    if args.figure and len(eb_models) == 2:
        figure(load("eb")[0], eb_models, args.figure)


def paper(sets: list[str], seed: int, path: str) -> None:
    """The paper protocol's held-out W1 (``w1_all``) and off-support share of ot-cfm, before
    and after, per shared set (the simulated course has no paper numbers)."""
    from trajflow.benchmark import leave_one_out

    frames = []
    for name in (s for s in sets if SETS[s][0] is not None):
        adata, _ = load(name)
        for variant, kw in VARIANTS.items():
            res = leave_one_out(
                adata, methods=("ot-cfm",), seeds=(seed,), protocol="paper", fit_kwargs=kw,
                progress=False,
            )  # fmt: skip
            frames.append(res.assign(set=name, variant=variant))
            pd.concat(frames).to_csv(path, index=False)
            flow = res[res.method == "ot-cfm"]
            print(
                f"{name} paper {variant}: W1 {flow.w1_all.mean():.3f}, off the held-out cells' "
                f"support {100 * flow.off_support.mean():.1f}%",
                flush=True,
            )


def figure(adata: ad.AnnData, models: dict, path: str) -> None:
    """EB's day 0 -> day 4 push before and after: paths and end points on PC1/PC2 (off-support
    end points in red), and each pushed cell's support distance against the day-4 cells' own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trajflow._scoring import Support

    fig, axes = plt.subplots(2, 2, figsize=(11, 9.5), height_ratios=[1.3, 1])
    t = adata.obs["time"].to_numpy(dtype=float)
    first, last = float(t.min()), float(t.max())
    day4 = np.asarray(adata.obsm["X_pca"][t == last, :50], dtype=np.float64)
    # the observed day-4 cells' own ratio (leave-one-out: distance to the nearest other cell)
    own = Support.fit(day4)
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=2).fit(own.reference)
    own_ratio = nn.kneighbors(day4)[0][:, 1] / own.threshold
    bins = np.linspace(0, 8.5, 60)
    for col, variant in enumerate(("before", "after")):
        model = models[variant]
        ax = axes[0, col]
        trajflow.pl.trajectories(
            adata, model, source_times=first, end_time=last, n_cells=40, seed=0, ax=ax,
            show=False, legend=col == 1, title="",
        )  # fmt: skip
        pred = model.predict(last, source_time=first)
        x = pred.obsm["X_pca"]
        off = pred.obs["off_support"].to_numpy()
        ax.scatter(x[~off, 0], x[~off, 1], s=4, c="0.25", alpha=0.5, lw=0, zorder=3)
        ax.scatter(x[off, 0], x[off, 1], s=10, c="tab:red", lw=0, zorder=4)
        restore = model.config["restore"]
        ax.set_title(
            f"{variant} (restore={restore:g}): every day-{first:g} cell pushed to day {last:g}\n"
            f"{100 * off.mean():.1f}% off the day-{last:g} cells' support (red)",
            fontsize=10,
        )
        ax = axes[1, col]
        ratio = pred.obs["support_distance"].to_numpy()
        ax.hist(np.clip(own_ratio, 0, bins[-1]), bins=bins, color="0.6", alpha=0.7,
                label=f"observed day-{last:g} cells (nearest other cell)")  # fmt: skip
        ax.hist(np.clip(ratio, 0, bins[-1]), bins=bins, histtype="step", lw=1.8,
                color="tab:red" if variant == "before" else "tab:blue",
                label=f"day {first:g} pushed to day {last:g} ({variant})")  # fmt: skip
        ax.axvline(1, color="k", ls="--", lw=1)
        ax.text(1.05, ax.get_ylim()[1] * 0.92, "off the support \u2192", fontsize=9)
        ax.set_xlabel(
            f"distance to the nearest observed day-{last:g} cell, in units of the threshold\n"
            "(2 x the cells' 99th-percentile neighbour distance; last bin: all beyond)",
            fontsize=9,
        )
        ax.set_ylabel("cells")
        ax.legend(fontsize=8, frameon=False, loc="upper right")
    # one scale for both panels: the observed cells look the same, the far cells stand out
    x0 = min(ax.get_xlim()[0] for ax in axes[0]), max(ax.get_xlim()[1] for ax in axes[0])
    y0 = min(ax.get_ylim()[0] for ax in axes[0]), max(ax.get_ylim()[1] for ax in axes[0])
    for ax in axes[0]:
        ax.set_xlim(*x0)
        ax.set_ylim(*y0)
    fig.suptitle(
        "EB (50 PCs), default fit on every day: where day-0 cells pushed to day 4 land", fontsize=12
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
