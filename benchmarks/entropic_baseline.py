"""What the model-free baselines cost, and which Sinkhorn solves moscot's entropic plan in time.

Three parts, one run, one torch thread (numbers from one run, side by side):

1. ``solvers``: moscot's plan (squared Euclidean cost over its mean, epsilon 1e-3, balanced)
   on real pairs, by trajflow's ``core.plans.scaled_sinkhorn_plan`` and by POT's options:
   ``sinkhorn_epsilon_scaling`` (what ``_ot.entropic_plan`` called before), ``sinkhorn_log``
   (numpy and torch backend) and ``sinkhorn_stabilized``. Each solve runs in a child process
   stopped after ``--limit`` seconds; the table gives seconds, the plan's L1 marginal error and
   its cost above the exact plan's.
2. ``baselines``: seconds per baseline (``ot-interpolation``, ``entropic-interpolation``) at
   1,000, 2,000 and 5,000 cells per side of a simulated 15-dim pair (the entropic one
   subsamples to 2,000 per side above 4,000,000 plan entries).
3. ``loo``: ``leave_one_out``'s whole baseline set (previous, exact and entropic interpolation,
   the floor and the calibrated scoring) on a CyTOF-sized simulated course (1,000 cells per
   time point x 15 dims), beside one default fit of the same course::

    OMP_NUM_THREADS=1 python benchmarks/entropic_baseline.py --limit 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

SOLVERS = ("trajflow", "pot-epsilon-scaling", "pot-log", "pot-log-torch", "pot-stabilized")
#: (name, data file, dims, source times, target times, cells per side): real pairs, the
#: populations pooled over neighbouring time points where one is smaller than the size asked.
PAIRS = {
    "eb-50": ("eb_moon2019_nlsb_subset.h5ad", 50, (0.0, 1.0), (3.0, 4.0)),
    "klein-20": ("klein2015_mesc_lif_withdrawal_subset.h5ad", 20, (0.0, 2.0), (4.0, 7.0)),
    "weinreb-2": ("weinreb2020_larry_2d_tigon.h5ad", 2, (4.0,), (6.0,)),
}


def _data_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("TRAJFLOW_DATA_DIR", default))


def real_pair(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    import anndata as ad

    if name == "sim-15":  # the simulated pair of the ``baselines`` part (times 1 and 3)
        import trajflow

        sim = trajflow.datasets.simulate(n_times=4, n_cells=n, n_dims=15, seed=0)
        x, t = np.asarray(sim.obsm["X_pca"], dtype=np.float64), sim.obs["time"].to_numpy()
        return x[t == 1], x[t == 3]
    file, dims, src, tgt = PAIRS[name]
    adata = ad.read_h5ad(_data_dir() / file)
    x = np.asarray(adata.obsm["X_pca"][:, :dims], dtype=np.float64)
    t = adata.obs["time"].to_numpy(dtype=float)
    rng = np.random.default_rng(0)
    p, q = x[np.isin(t, src)], x[np.isin(t, tgt)]
    p = p[rng.choice(len(p), min(n, len(p)), replace=False)]
    q = q[rng.choice(len(q), min(n, len(q)), replace=False)]
    return p, q


def solve_one(solver: str, pair: str, n: int) -> dict:
    """One solve in this process (the child of :func:`run_solver`)."""
    import ot
    import torch

    from trajflow.core.plans import scaled_sinkhorn_plan

    torch.set_num_threads(1)
    p, q = real_pair(pair, n)
    cost = ot.dist(p, q)
    cost /= cost.mean()
    a, b = ot.unif(len(p)), ot.unif(len(q))
    # POT stops on the L2 norm of a marginal's error: this bound makes its L1 error < 1e-3,
    # trajflow's (and ott-jax's) criterion
    thr = 1e-3 / np.sqrt(max(len(p), len(q)))
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if solver == "trajflow":
            plan = scaled_sinkhorn_plan(torch.as_tensor(cost), 1e-3).numpy()
        elif solver == "pot-epsilon-scaling":  # _ot.entropic_plan before
            plan = ot.bregman.sinkhorn_epsilon_scaling(
                a, b, cost, 1e-3, numItermax=100, epsilon0=1e-1, stopThr=1e-6
            )
        elif solver == "pot-log":
            plan = ot.bregman.sinkhorn_log(a, b, cost, 1e-3, numItermax=10_000, stopThr=thr)
        elif solver == "pot-log-torch":
            tt = [torch.as_tensor(v) for v in (a, b, cost)]
            plan = ot.bregman.sinkhorn_log(*tt, 1e-3, numItermax=10_000, stopThr=thr).numpy()
        elif solver == "pot-stabilized":
            plan = ot.bregman.sinkhorn_stabilized(a, b, cost, 1e-3, numItermax=10_000, stopThr=thr)
        else:
            raise ValueError(solver)
    seconds = time.perf_counter() - t0
    exact = ot.emd2(a, b, cost, numItermax=10_000_000)
    err = np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum()
    return {
        "pair": pair, "shape": f"{len(p)} x {len(q)}", "solver": solver,
        "seconds": round(seconds, 2), "marginal_l1": float(err),
        "cost_over_exact": float((plan * cost).sum() / exact - 1),
        "warned": len(caught) > 0,
    }  # fmt: skip


def run_solver(solver: str, pair: str, n: int, limit: float) -> dict:
    cmd = [sys.executable, __file__, "--one", solver, pair, str(n)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return {"pair": pair, "shape": f"{n} per side", "solver": solver, "seconds": f"> {limit:g}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def baselines(sizes: list[int]) -> list[dict]:
    import torch

    import trajflow
    from trajflow.benchmark import entropic_interpolation, ot_interpolation

    torch.set_num_threads(1)
    rows = []
    for n in sizes:
        sim = trajflow.datasets.simulate(n_times=4, n_cells=n, n_dims=15, seed=0)
        x, t = np.asarray(sim.obsm["X_pca"], dtype=np.float64), sim.obs["time"].to_numpy()
        p, q = x[t == 1], x[t == 3]
        for name, fn in (
            ("ot-interpolation", ot_interpolation),
            ("entropic", entropic_interpolation),
        ):
            t0 = time.perf_counter()
            fn(p, q, 0.5, seed=0)
            rows.append(
                {"cells per side": n, "baseline": name, "seconds": time.perf_counter() - t0}
            )
            print(rows[-1], flush=True)
    return rows


def loo(n_times: int) -> dict:
    import torch

    import trajflow
    from trajflow.benchmark import leave_one_out

    torch.set_num_threads(1)
    trajflow.settings.verbosity = "warning"
    sim = trajflow.datasets.simulate(n_times=n_times, n_cells=1000, n_dims=15, seed=0)
    t0 = time.perf_counter()
    base = leave_one_out(sim, methods=(), seeds=(0,), progress=False)
    base_s = time.perf_counter() - t0
    hold = float(base["holdout_time"].iloc[0])
    t0 = time.perf_counter()
    trajflow.fit_trajectories(sim, holdout=hold, seed=0, progress=False)
    fit_s = time.perf_counter() - t0
    n_hold = base["holdout_time"].nunique()
    return {
        "course": f"simulate({n_times} x 1,000 cells x 15 dims)", "held-out times": n_hold,
        "baselines + scoring, all held-out times (s)": round(base_s, 2),
        "per held-out time (s)": round(base_s / n_hold, 2), "one default fit (s)": round(fit_s, 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, metavar=("SOLVER", "PAIR", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--parts", nargs="+", default=["solvers", "baselines", "loo"])
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS)
    parser.add_argument("--pairs", nargs="+", default=["eb-50:1000", "klein-20:1000",
                        "weinreb-2:1000", "weinreb-2:2000"], help="NAME:CELLS per side")  # fmt: skip
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per POT solve")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 2000, 5000])
    parser.add_argument("--n-times", type=int, default=6, help="time points of the loo course")
    args = parser.parse_args()
    if args.one:
        solver, pair, n = args.one
        print(json.dumps(solve_one(solver, pair, int(n))))
        return
    import pandas as pd

    print(f"load average at start: {os.getloadavg()}", flush=True)
    if "solvers" in args.parts:
        rows = []
        for spec in args.pairs:
            pair, n = spec.split(":")
            for solver in args.solvers:
                rows.append(run_solver(solver, pair, int(n), args.limit))
                print(rows[-1], flush=True)
        print("\nmoscot's plan (epsilon 1e-3 of the mean cost), per solver:")
        print(pd.DataFrame(rows).to_string(index=False))
    if "baselines" in args.parts:
        print("\nseconds per baseline (simulated 15-dim pair):")
        table = pd.DataFrame(baselines(args.sizes))
        print(table.pivot(index="cells per side", columns="baseline", values="seconds").round(2))
    if "loo" in args.parts:
        print("\nleave_one_out's baselines against one fit:")
        for k, v in loo(args.n_times).items():
            print(f"  {k}: {v}")
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
