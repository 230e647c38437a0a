"""Real moscot on the simulated course of ``calibrated.py --sets sim``, scored the same way.

moscot lives in its own virtual environment (it pins jax / ott-jax), so this runs in three
steps that pass ``.npz`` files:

    python benchmarks/moscot_sim.py export logs/sim.npz                    # trajflow's venv
    /work/venv-moscot/bin/python benchmarks/moscot_sim.py solve logs/sim.npz logs/moscot.npz
    python benchmarks/moscot_sim.py score logs/sim.npz logs/moscot.npz     # trajflow's venv

``export`` writes the course of ``calibrated.py`` (4 time points x 5,000 training cells x 30
dims, time 2 held out, 10,000 fresh cells at time 2). ``solve`` fits moscot 0.5's
``TemporalProblem`` on the pair (1, 3) in the same 30 dims (squared Euclidean cost,
``policy="explicit"``) with ``solve()``'s defaults (epsilon 1e-3 of the mean cost, balanced,
ott-jax's 2,000-iteration cap) and once more run to convergence (``max_iterations=10000``), and
interpolates at time 2 as moscot's ``compute_interpolated_distance`` does
(``_interpolate_gex_with_ot``'s sampler: as many cells as time 1 has, source rows drawn from the
plan's row marginal, a partner per draw from its row; re-implemented in numpy because moscot's
own asks for 25.6 GB at 5,000 x 5,000), seeds 0, 1, 2.
``score`` scores them beside trajflow's baselines with ``held_out_table`` against the fresh
cells, seed by seed as ``calibrated.py`` does, so the rows line up with its sim table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

SEEDS = (0, 1, 2)
SETTINGS = {"moscot-default": {}, "moscot-converged": {"max_iterations": 10_000}}


def export(path: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from calibrated import SIM, _simulated

    adata, fresh = _simulated()
    rep = np.asarray(adata.obsm["X_pca"][:, : SIM["n_dims"]], dtype=np.float64)
    t = adata.obs["time"].to_numpy(dtype=float)
    hold = SIM["holdout"]
    np.savez(path, rep=rep, time=t, fresh=fresh, hold=hold, t_prev=hold - 1, t_next=hold + 1)
    print(f"wrote {path}: {rep.shape} training cells, {fresh.shape} fresh")


def solve(path: str, out: str) -> None:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import warnings

    import anndata as ad
    import moscot
    import pandas as pd
    from moscot.problems.time import TemporalProblem

    warnings.filterwarnings("ignore")
    data = np.load(path)
    rep, t = data["rep"], data["time"]
    t0, tk, t1 = float(data["t_prev"]), float(data["hold"]), float(data["t_next"])
    keep = np.isin(t, [t0, t1])
    sub = ad.AnnData(
        X=np.zeros((int(keep.sum()), 1), dtype=np.float32),
        obs=pd.DataFrame({"time": t[keep]}, index=[f"c{i}" for i in np.flatnonzero(keep)]),
    )
    sub.obsm["X_rep"] = rep[keep].astype(np.float32)
    frac = (tk - t0) / (t1 - t0)
    n_prev = int((t == t0).sum())
    result = {"moscot_version": moscot.__version__}
    for name, kw in SETTINGS.items():
        tp = TemporalProblem(sub).prepare(
            time_key="time", joint_attr="X_rep", policy="explicit", subset=[(t0, t1)],
            cost="sq_euclidean",
        )  # fmt: skip
        tic = time.perf_counter()
        tp = tp.solve(**kw)
        sol = tp.solutions[(t0, t1)]
        np.asarray(sol.transport_matrix)  # blocks until the solve is done
        seconds = time.perf_counter() - tic
        plan = np.asarray(sol.transport_matrix, dtype=np.float64)
        prob = tp[(t0, t1)]
        xs = np.asarray(prob.xy.data_src, dtype=np.float64)
        ys = np.asarray(prob.xy.data_tgt, dtype=np.float64)
        for seed in SEEDS:
            # moscot's sampler (TemporalMixin._interpolate_gex_with_ot: n_prev source rows drawn
            # from the plan's row marginal, one partner per draw from its row), in numpy: moscot's
            # own asks for 25.6 GB at 5,000 x 5,000 and fails here
            rng = np.random.default_rng(seed)
            rows = plan.sum(1)
            i = rng.choice(len(plan), size=n_prev, p=rows / rows.sum())
            cdf = np.cumsum(plan[i], axis=1)
            j = np.minimum((cdf < rng.random((n_prev, 1)) * cdf[:, -1:]).sum(1), len(ys) - 1)
            result[f"{name}/{seed}"] = (1 - frac) * xs[i] + frac * ys[j]
        result[f"{name}/seconds"] = seconds
        result[f"{name}/converged"] = bool(sol.converged)
        print(f"{name}: {seconds:.1f} s, converged {bool(sol.converged)}", flush=True)
        np.savez(out, **result)  # kept as it goes


def score(path: str, moscot_path: str, out: str | None, seeds: tuple[int, ...] = SEEDS) -> None:
    import pandas as pd

    import trajflow
    from trajflow.benchmark import entropic_interpolation, held_out_table, ot_interpolation

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from calibrated import closed_table

    trajflow.settings.verbosity = "warning"
    data, ms = np.load(path), np.load(moscot_path)
    solved = [name for name in SETTINGS if f"{name}/0" in ms]
    rep, t, fresh = data["rep"], data["time"], data["fresh"]
    t0, tk, t1 = float(data["t_prev"]), float(data["hold"]), float(data["t_next"])
    prev, nxt = rep[t == t0], rep[t == t1]
    frac = (tk - t0) / (t1 - t0)
    rows = []
    for seed in seeds:
        tic = time.perf_counter()
        entropic = entropic_interpolation(prev, nxt, frac, seed=seed)
        entropic_s = time.perf_counter() - tic
        candidates = {
            "previous": prev,
            "ot-interpolation": ot_interpolation(prev, nxt, frac, seed=seed),
            "entropic-interpolation": entropic,
            **{name: ms[f"{name}/{seed}"] for name in solved},
        }
        table = held_out_table(candidates, fresh, reference=rep, seed=seed)
        for cand, row in table.iterrows():
            rows.append(
                {"set": "sim", "n_dims": rep.shape[1], "holdout_time": tk, "seed": seed,
                 "candidate": cand, **row[["energy", "mmd", "w1", "w2"]].to_dict(),
                 "total_var": float(np.var(candidates.get(cand, fresh), axis=0).sum())}
            )  # fmt: skip
        print(f"seed {seed}: trajflow's entropic interpolation {entropic_s:.1f} s", flush=True)
    frame = pd.DataFrame(rows)
    if out:
        frame.to_csv(out, index=False)
    for name in solved:
        print(f"{name}: solve {float(ms[f'{name}/seconds']):.1f} s, converged "
              f"{bool(ms[f'{name}/converged'])} (moscot {ms['moscot_version']})")  # fmt: skip
    table = closed_table(frame)
    score = table.pivot(index="candidate", columns="metric", values="score")
    closed = table.pivot(index="candidate", columns="metric", values="closed")
    print("\nmean over seeds (closed share of static OT's gap to the floor, energy):")
    print(score.round(4).join((100 * closed["energy"]).round(0).rename("closed %")).to_string())
    print("\ntotal variance:", frame.groupby("candidate")["total_var"].mean().round(3).to_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("export").add_argument("sim")
    p = sub.add_parser("solve")
    p.add_argument("sim")
    p.add_argument("moscot")
    p = sub.add_parser("score")
    p.add_argument("sim")
    p.add_argument("moscot")
    p.add_argument("--out", default=None, help="CSV of the rows")
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args()
    if args.step == "export":
        export(args.sim)
    elif args.step == "solve":
        solve(args.sim, args.moscot)
    else:
        score(args.sim, args.moscot, args.out, tuple(args.seeds))


if __name__ == "__main__":
    main()
