"""Does a training step stay cheap as populations grow? trajflow's default coupling against a
TorchCFM-style loop (a fresh exact POT plan per minibatch and pair of time points, every step),
timed side by side in one run.

A course from :func:`trajflow.datasets.simulate` (10 time points x 30 dims by default) at several
sizes per time point; time point 5 is held out. For every size and coupling it records the
whole-fit time (set-up included) per step, the set-up time (fit time minus the training loop),
and the held-out W1: every cell of time 4 (at most ``--n-eval``) pushed to time 5, exact W1
against ``--n-eval`` observed cells of time 5, on the embedding's own units.

Run::

    .venv/bin/python benchmarks/coupling_scale.py                 # 2k, 20k, 100k; reference at 20k
    .venv/bin/python benchmarks/coupling_scale.py --sizes 2000 --n-steps 200   # quick check
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, format_table, machine_info, peak_rss_mb, time_training, write_json


def run(n_cells: int, coupling: str, args: argparse.Namespace) -> dict:
    import trajflow
    from trajflow.metrics import wasserstein

    adata = trajflow.datasets.simulate(
        n_times=args.n_times, n_cells=n_cells, n_dims=args.n_dims, seed=0
    )
    hold = float(args.n_times // 2)
    runs = []  # (whole fit, training loop) seconds of each repeat: same seed, same model
    for _ in range(args.repeats):
        with time_training() as timer:
            t0 = time.perf_counter()
            model = trajflow.fit_trajectories(
                adata, n_dims=args.n_dims, holdout=hold, coupling=coupling, n_steps=args.n_steps,
                progress=False, device="cpu", seed=0,
            )  # fmt: skip
            runs.append((time.perf_counter() - t0, sum(timer.seconds)))
    fit_s, loop_s = sorted(runs)[len(runs) // 2]  # median (upper middle if even)
    rng = np.random.default_rng(0)
    times = adata.obs["time"].to_numpy()
    obs = adata.obsm["X_pca"][times == hold]
    obs = obs[rng.choice(len(obs), min(args.n_eval, len(obs)), replace=False)]
    pred = model.predict(hold, n_cells=min(args.n_eval, n_cells), seed=0).obsm["X_pca"]
    return {
        "cells_per_time": n_cells,
        "coupling": coupling,
        "n_steps": args.n_steps,
        "fit_s": round(fit_s, 2),
        "fit_s_repeats": [round(f, 2) for f, _ in runs],
        "setup_s": round(fit_s - loop_s, 2),
        "ms_per_step_whole_fit": round(1000 * fit_s / args.n_steps, 2),
        "ms_per_step_loop": round(1000 * loop_s / args.n_steps, 2),
        "w1_heldout": round(float(wasserstein(pred, obs)), 4),
        "peak_rss_mb": round(peak_rss_mb(), 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[2000, 20000, 100000])
    parser.add_argument("--reference-sizes", nargs="+", type=int, default=[20000])
    parser.add_argument("--n-times", type=int, default=10)
    parser.add_argument("--n-dims", type=int, default=30)
    parser.add_argument("--n-steps", type=int, default=3000)
    parser.add_argument("--n-eval", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--repeats", type=int, default=3, help="fits per row; the median one is reported"
    )
    parser.add_argument("--out", default=str(RESULTS_DIR / "coupling_scale_cpu.json"))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    # warm-up: one-time costs (imports torch.optim pulls in on its first step) off the first size
    import trajflow

    warm = trajflow.datasets.simulate(n_times=4, n_cells=300, n_dims=args.n_dims, seed=0)
    trajflow.fit_trajectories(warm, n_dims=args.n_dims, n_steps=20, progress=False, device="cpu")
    rows = []
    for n in args.sizes:
        for coupling in ["auto"] + (["minibatch"] if n in args.reference_sizes else []):
            rows.append(run(n, coupling, args))
            print(rows[-1], flush=True)
    columns = [c for c in rows[0] if c != "fit_s_repeats"]
    print(format_table(rows, columns))
    fit = {(r["cells_per_time"], r["coupling"]): r["fit_s"] for r in rows}
    small, large = min(args.sizes), max(args.sizes)
    if (small, "auto") in fit and large != small:
        ratio = fit[large, "auto"] / fit[small, "auto"]
        print(f"whole fit per step, {large:,} vs {small:,} cells per time point: {ratio:.2f}x")
    for n in args.reference_sizes:
        if (n, "minibatch") in fit and (n, "auto") in fit:
            speedup = fit[n, "minibatch"] / fit[n, "auto"]
            print(f"at {n:,} cells per time point, {speedup:.1f}x faster than the reference")
    write_json(args.out, {"machine": machine_info(), "args": vars(args), "rows": rows})
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
