"""Are fate probabilities probabilities? Scored against the known fates of the simulated course.

    .venv/bin/python benchmarks/fates.py --out benchmarks/results/fates.csv

:func:`trajflow.datasets.simulate` keeps each measured cell's true fate (the branch its own
path reaches at the last time point). For each seed, a default fit, then
:func:`trajflow.tl.fate_probabilities` for every earlier time point, both ways:
``through="observed"`` (default: chained through the observed time points) and
``through="direct"`` (one push straight to the last time point). Per source time the table gives
accuracy of the most likely fate, the Brier score (mean squared error of P(up), 0.25 for a coin
flip), the log loss and the share of cells with a probability above 0.99 ("certain"), with the
same numbers for a perfectly calibrated coin flip (0.5) for scale.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import trajflow as tf


def score(p_up: np.ndarray, up: np.ndarray) -> dict[str, float]:
    p = np.clip(p_up, 1e-6, 1 - 1e-6)
    return {
        "accuracy": float(np.mean((p_up > 0.5) == up)),
        "brier": float(np.mean((p_up - up) ** 2)),
        "log_loss": float(-np.mean(up * np.log(p) + (1 - up) * np.log(1 - p))),
        "certain": float(np.mean(np.maximum(p_up, 1 - p_up) > 0.99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-times", type=int, default=6)
    parser.add_argument("--n-cells", type=int, default=400)
    parser.add_argument("--n-dims", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/fates.csv")
    args = parser.parse_args()
    tf.settings.verbosity = "warning"
    rows = []
    for seed in args.seeds:
        adata = tf.datasets.simulate(
            n_times=args.n_times, n_cells=args.n_cells, n_dims=args.n_dims, seed=seed
        )
        start = time.perf_counter()
        model = tf.fit_trajectories(adata, seed=seed, progress=False)
        fit_s = time.perf_counter() - start
        t = adata.obs["time"].to_numpy()
        up = (adata.obs["fate"] == "up").to_numpy()
        for through in ("observed", "direct"):
            start = time.perf_counter()
            res = tf.tl.fate_probabilities(adata, model, groupby="fate", through=through, copy=True)
            tool_s = time.perf_counter() - start
            col = list(res.uns["fate_probabilities"]["groups"]).index("up")
            probs = res.obsm["fate_probabilities"][:, col]
            for src in res.uns["fate_probabilities"]["source_times"]:
                at = t == src
                rows.append(
                    {
                        "seed": seed,
                        "through": through,
                        "source_time": src,
                        "fit_s": fit_s,
                        "tool_s": tool_s,
                        **score(probs[at], up[at]),
                    }
                )
        for src in np.unique(t)[:-1]:
            at = t == src
            rows.append(
                {
                    "seed": seed,
                    "through": "coin flip",
                    "source_time": src,
                    **score(np.full(at.sum(), 0.5), up[at]),
                }
            )
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    table = (
        frame.groupby(["through", "source_time"])[["accuracy", "brier", "log_loss", "certain"]]
        .mean()
        .round(3)
    )
    text = (
        f"simulate(n_times={args.n_times}, n_cells={args.n_cells}, n_dims={args.n_dims}), "
        f"seeds {args.seeds}, default fit; mean over seeds\n\n{table.to_markdown()}\n"
    )
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
