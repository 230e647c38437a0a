"""How trajflow's fit scales with the number of cells: synthetic time courses with 5 time points
and 10k, 100k and 1M cells in total, in 5 and 50 dimensions.

For every size, in a fresh subprocess (so the peak RSS is that size's own), it measures:

- fit time for a fixed number of steps (``--n-steps``, default 300), split into the training
  loop (time per step) and set-up (standardising, solving full OT plans when they are small);
- peak memory: RSS of the process (``getrusage``), and CUDA memory when on a GPU;
- W1 evaluation time: ``model.predict`` of ``--n-eval`` cells (default 2000) from time 1 to
  time 2 and exact W1 (``trajflow.metrics.wasserstein``) against ``--n-eval`` observed cells
  drawn at random from time 2 (a subsample: exact W1 between whole 200k-cell populations is
  out of reach, see ``metrics_size.py``).

Which coupling ``coupling="auto"`` picks is reported: the full plan between two populations
when ``n_a * n_b <= MAX_FULL_PLAN_ENTRIES`` (4e6, i.e. up to 2000 cells per time point), else a
fresh 128 x 128 plan per minibatch. No step should hold an n_cells x n_cells matrix: at 1M cells
one population pair would need 200k x 200k floats (160 GB), far beyond this machine.

Run::

    .venv/bin/python benchmarks/scaling.py                       # writes results/scaling_cpu.json
    .venv/bin/python benchmarks/scaling.py --sizes 10000 --dims 5 --n-steps 50   # quick check
    .venv/bin/python benchmarks/scaling.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS_DIR,
    cuda_peak_mb,
    current_rss_mb,
    format_table,
    machine_info,
    peak_rss_mb,
    resolve_device,
    sync,
    synthetic_timecourse,
    time_training,
    write_json,
)

N_TIMES = 5


def worker(n_cells: int, n_dims: int, n_steps: int, n_eval: int, device: torch.device) -> dict:
    """Measure one size in this process; returns a dict of numbers."""
    import trajflow
    from trajflow.core.strategy import MAX_FULL_PLAN_ENTRIES
    from trajflow.metrics import wasserstein

    # Warm up (lazy initialisation) so the first steps of the timed fit are not off.
    trajflow.fit_trajectories(
        synthetic_timecourse(500, n_dims), n_dims=n_dims, n_steps=10, device=device, progress=False
    )
    rss_start = current_rss_mb()
    t0 = time.perf_counter()
    adata = synthetic_timecourse(n_cells, n_dims, n_times=N_TIMES)
    make_s = time.perf_counter() - t0
    rss_data = current_rss_mb()
    per_pop = n_cells // N_TIMES
    with time_training(device) as timer:
        t0 = time.perf_counter()
        model = trajflow.fit_trajectories(
            adata, n_dims=n_dims, n_steps=n_steps, device=device, progress=False
        )
        sync(device)
        fit_s = time.perf_counter() - t0
    loop_s = timer.seconds[0]
    rss_after_fit = peak_rss_mb()

    rng = np.random.default_rng(0)
    obs_all = adata.obsm["X_pca"][adata.obs["time"].to_numpy() == 2.0]
    n_eval_eff = min(n_eval, len(obs_all))
    t0 = time.perf_counter()
    pred = model.predict(2.0, source_time=1.0, n_cells=n_eval_eff).obsm["X_pca"]
    predict_s = time.perf_counter() - t0
    obs = obs_all[rng.choice(len(obs_all), size=n_eval_eff, replace=False)]
    t0 = time.perf_counter()
    w1 = wasserstein(pred, obs)
    w1_s = time.perf_counter() - t0
    return {
        "n_cells": n_cells,
        "n_dims": n_dims,
        "cells_per_time_point": per_pop,
        "coupling": "full plan" if per_pop * per_pop <= MAX_FULL_PLAN_ENTRIES else "minibatch",
        "n_steps": n_steps,
        "make_data_seconds": make_s,
        "fit_seconds": fit_s,
        "loop_seconds": loop_s,
        "setup_seconds": fit_s - loop_s,
        "step_ms": 1000 * loop_s / n_steps,
        "rss_start_mb": rss_start,
        "rss_with_data_mb": rss_data,
        "peak_rss_fit_mb": rss_after_fit,
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_mb": cuda_peak_mb(device),
        "n_eval": n_eval_eff,
        "predict_seconds": predict_s,
        "w1_seconds": w1_s,
        "w1": w1,
        "pair_matrix_gb_if_dense": per_pop * per_pop * 4 / 1e9,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--dims", type=int, nargs="+", default=[5, 50])
    p.add_argument("--n-steps", type=int, default=300, help="training steps per fit")
    p.add_argument("--n-eval", type=int, default=2000, help="cells per side for the W1 check")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per size before giving up")
    p.add_argument("--out", default=None, help="JSON path (default results/scaling_<dev>.json)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    if device is None:
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.worker:
        result = worker(args.sizes[0], args.dims[0], args.n_steps, args.n_eval, device)
        print("RESULT " + json.dumps(result))
        return 0

    info = machine_info(device)
    print(
        f"machine: {info['cpu_model']}, {info['cpu_cores']} cores, {info['ram_gb']} GB RAM, "
        f"load {info['load_average_at_start']}"
    )
    rows: list[dict[str, Any]] = []
    for n_dims in args.dims:
        for n_cells in args.sizes:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "--device", args.device,
                "--sizes", str(n_cells),
                "--dims", str(n_dims),
                "--n-steps", str(args.n_steps),
                "--n-eval", str(args.n_eval),
                "--threads", str(args.threads),
            ]  # fmt: skip
            print(f"{n_cells} cells, {n_dims} dims ...", flush=True)
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=args.timeout, check=False
                )
            except subprocess.TimeoutExpired:
                rows.append({"n_cells": n_cells, "n_dims": n_dims, "error": "timeout"})
                print("  timed out", flush=True)
                continue
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                err = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                rows.append({"n_cells": n_cells, "n_dims": n_dims, "error": " | ".join(err)})
                print(f"  failed (rc {proc.returncode}): {err}", flush=True)
                continue
            row = json.loads(lines[-1][len("RESULT ") :])
            row["subprocess_seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(
                f"  fit {row['fit_seconds']:.1f} s ({row['step_ms']:.2f} ms/step, set-up "
                f"{row['setup_seconds']:.1f} s), peak RSS {row['peak_rss_mb']:.0f} MiB, "
                f"W1 {row['w1']:.3f} in {row['w1_seconds']:.2f} s",
                flush=True,
            )

    columns = [
        "n_cells",
        "n_dims",
        "coupling",
        "fit_seconds",
        "step_ms",
        "setup_seconds",
        "peak_rss_mb",
        "cuda_peak_mb",
        "predict_seconds",
        "w1_seconds",
        "w1",
    ]
    print()
    print(format_table(rows, columns))
    ok = [r for r in rows if "error" not in r]
    mb = [r["step_ms"] for r in ok if r["coupling"] == "minibatch"]
    full = [r["step_ms"] for r in ok if r["coupling"] == "full plan"]
    summary = {
        "minibatch_step_ms_range": [min(mb), max(mb)] if mb else None,
        "full_plan_step_ms_range": [min(full), max(full)] if full else None,
        "largest_fit_ok": any(r["n_cells"] >= 1_000_000 and r["n_dims"] >= 50 for r in ok),
        "max_peak_rss_mb": max((r["peak_rss_mb"] for r in ok), default=None),
    }
    print(f"\nsummary: {summary}")
    out = args.out or RESULTS_DIR / f"scaling_{device.type}.json"
    write_json(out, {"machine": info, "args": vars(args), "summary": summary, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
