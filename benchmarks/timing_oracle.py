"""How much of the held-out error is *when*, not *where*: a diagnostic for issue 7.

For every interior time point of each data set, fit with that time point held out (time clock),
then push the previous time point's cells to a grid of fractions ``s`` of the gap and score
every prediction against the held-out cells (exact W1, the benchmark's scoring space). The
best fraction uses the held-out cells, so "oracle" is not a method; it bounds what a better
clock alone could gain. Beside it: the fraction the time clock uses, and the fraction the
distance clock (built from the training time points only) would use.

    .venv/bin/python benchmarks/timing_oracle.py --out benchmarks/results/timing_oracle.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import trajflow
from trajflow._anndata import Standardizer, get_representation, parse_times
from trajflow._clock import distance_clock
from trajflow.metrics import wasserstein

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import DATASETS, REPO, read_dataset

FRACTIONS = np.round(np.arange(0.1, 0.91, 0.1), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "timing_oracle.csv"
    )
    parser.add_argument("--datasets", nargs="+", default=["EB", "EMT", "Klein"])
    parser.add_argument("--method", default="ot-cfm")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.datasets:
        n_dims = DATASETS[name][1]
        adata = read_dataset(name)
        if adata is None:
            continue
        times = parse_times(adata, "time")
        rep = get_representation(adata, "X_pca", n_dims)
        scorer = Standardizer.fit(rep)
        days = sorted(set(times.tolist()))
        for k in range(1, len(days) - 1):
            t_prev, hold, t_next = days[k - 1], days[k], days[k + 1]
            obs = scorer.transform(rep[times == hold])
            rest = [d for d in days if d != hold]
            clock = distance_clock(
                rest, [scorer.transform(rep[times == d]) for d in rest], origin=0.0, unit=1.0
            )
            lo, mid, hi = clock([t_prev, hold, t_next])
            for seed in args.seeds:
                model = trajflow.fit_trajectories(
                    adata,
                    method=args.method,
                    clock="time",
                    holdout=hold,
                    n_dims=n_dims,
                    scaling="per-dimension",
                    seed=seed,
                    device="cpu",
                    progress=False,
                )
                for s in FRACTIONS:
                    t = t_prev + s * (t_next - t_prev)
                    pred = model.predict(t, source_time=t_prev).obsm["X_pca"]
                    rows.append(
                        {
                            "dataset": name,
                            "holdout_time": hold,
                            "seed": seed,
                            "fraction": s,
                            "w1": wasserstein(scorer.transform(pred), obs),
                            "time_fraction": (hold - t_prev) / (t_next - t_prev),
                            "distance_fraction": float((mid - lo) / (hi - lo)),
                        }
                    )
            print(f"{name} t={hold:g} done", file=sys.stderr)
    frame = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    curve = frame.groupby(["dataset", "holdout_time", "fraction"], sort=False)["w1"].mean()
    summary = []
    for (name, hold), g in curve.groupby(level=[0, 1], sort=False):
        g = g.droplevel([0, 1])
        first = frame[(frame["dataset"] == name) & (frame["holdout_time"] == hold)].iloc[0]
        tf, df = first["time_fraction"], first["distance_fraction"]
        summary.append(
            {
                "dataset": name,
                "held-out": f"{hold:g}",
                "time fraction": round(tf, 2),
                "distance fraction": round(df, 2),
                "best fraction": g.idxmin(),
                "W1 at time fraction": round(float(np.interp(tf, g.index, g.values)), 3),
                "W1 at best (oracle)": round(float(g.min()), 3),
            }
        )
    table = pd.DataFrame(summary)
    print(table.to_string(index=False))
    means = table.groupby("dataset", sort=False)[["W1 at time fraction", "W1 at best (oracle)"]]
    print(means.mean().round(3).to_string())
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
