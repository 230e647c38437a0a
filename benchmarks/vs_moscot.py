"""trajflow and moscot side by side on one job: a simulated course, one time point held out.

The job (issue 27): :func:`trajflow.datasets.simulate`, 4 time points x N cells per time point x
30 dims, time 2 held out.

* **trajflow**: ``fit_trajectories`` with its defaults on the training time points (0, 1, 3),
  ``tl.couplings`` (the sparse transition matrices CellRank's ``RealTimeKernel`` takes) and the
  held-out prediction ``model.predict(2)`` (every cell of time 1 pushed by the flow).
* **moscot**: ``TemporalProblem(...).prepare(time_key, joint_attr='X_pca')`` on the same training
  cells, ``solve()`` with its defaults (its solutions are the couplings; the dense plans are
  materialised, as CellRank's ``from_moscot`` reads them), and its interpolation at the held-out
  time along the (1, 3) plan (the sampler of its ``compute_interpolated_distance``, N cells).

Each side runs in its own subprocess, moscot in its own virtual environment (``--moscot-python``;
it is not a trajflow dependency), with the same number of threads (``--threads``, default 1), so
its peak memory (``getrusage`` max RSS) is its own. The moscot side runs under a time limit
(``--moscot-timeout``); a side that does not finish is reported as such. Both predictions are
scored by the calibrated held-out scores (``trajflow.benchmark.held_out_table``: unbiased
energy against half of the held-out cells, beside the perfect-half floor) twice: against the
held-out cells, and against 4,000 fresh cells the same simulation draws at time 2 (the truth).

Run::

    python3 -m venv /work/venv-moscot && /work/venv-moscot/bin/pip install "moscot>=0.5,<0.6"
    .venv/bin/python benchmarks/vs_moscot.py --sizes 5000 10000 20000 \\
        --moscot-python /work/venv-moscot/bin/python      # writes results/vs_moscot.json

Rows of earlier runs in the output file are kept (one row per size and side), so the sides and
sizes can be run separately (``--sides moscot --sizes 20000``) and the table printed with all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_TIMES, N_DIMS, HOLDOUT, N_FRESH = 4, 30, 2.0, 4_000
#: Cells of each prediction and of the observed cells the scores see (seeded subsamples).
N_SCORED = 2_000
SEED = 0


def _set_threads(n: int) -> None:
    """One thread count for every numeric library (set before numpy / torch / jax load)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ["JAX_PLATFORMS"] = "cpu"
    if n == 1:
        os.environ["XLA_FLAGS"] = (
            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )


class _Clock:
    """Wall and CPU seconds (``time.process_time``: every thread of the process) per step; on a
    shared machine the CPU seconds are what the step costs, the wall seconds what it took."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._start = (time.perf_counter(), time.process_time())

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[name] = now[0] - self._start[0]
        self.cpu[name] = now[1] - self._start[1]
        self._start = now


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------------------- workers
def _worker_trajflow(data: dict, threads: int) -> dict:
    import anndata as ad
    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(threads)
    import trajflow

    x, t = data["x"], data["time"]
    adata = ad.AnnData(obs=pd.DataFrame({"time": t}, index=[f"c{i}" for i in range(len(t))]))
    adata.obsm["X_pca"] = x
    steps = _Clock()
    model = trajflow.fit_trajectories(adata, progress=False, seed=SEED)
    steps.lap("fit")
    plans = trajflow.tl.couplings(adata, model)
    steps.lap("couplings")
    pred = np.asarray(model.predict(HOLDOUT).obsm["X_pca"], dtype=np.float32)
    steps.lap("predict")
    nnz = int(sum(p.X.nnz for p in plans.values()))
    return {"steps": steps, "pred": pred, "extra": {"couplings_nnz": nnz}}


def _worker_moscot(data: dict, threads: int) -> dict:
    import warnings

    import anndata as ad
    import numpy as np
    import pandas as pd

    warnings.filterwarnings("ignore")
    import moscot
    from moscot.problems.time import TemporalProblem

    x, t = data["x"], data["time"]
    # moscot refuses an AnnData without variables; a 1-column X it never reads (as
    # shared/bench/reference_moscot.py does)
    adata = ad.AnnData(
        X=np.zeros((len(t), 1), dtype=np.float32),
        obs=pd.DataFrame({"time": t}, index=[f"c{i}" for i in range(len(t))]),
    )
    adata.obsm["X_pca"] = x
    steps = _Clock()
    tp = TemporalProblem(adata).prepare(time_key="time", joint_attr="X_pca")
    steps.lap("prepare")
    tp = tp.solve()  # moscot's defaults: epsilon 1e-3 (scale_cost='mean'), balanced
    steps.lap("solve")
    plans = {k: np.asarray(s.transport_matrix) for k, s in tp.solutions.items()}
    steps.lap("plans")  # dense, as CellRank's from_moscot reads them
    converged = {f"{k[0]:g}->{k[1]:g}": bool(s.converged) for k, s in tp.solutions.items()}
    times = sorted(set(np.unique(t).tolist()))
    t0 = max(s for s in times if s < HOLDOUT)
    t1 = min(s for s in times if s > HOLDOUT)
    pred = _moscot_interpolation(
        plans[(t0, t1)], x[t == t0], x[t == t1], (HOLDOUT - t0) / (t1 - t0), int((t == t0).sum())
    )
    steps.lap("predict")
    return {
        "steps": steps,
        "pred": np.asarray(pred, dtype=np.float32),
        "extra": {"converged": converged, "moscot": moscot.__version__},
    }


def _moscot_interpolation(plan, xs, ys, frac: float, n: int):
    """moscot's interpolation (``TemporalProblem._interpolate_gex_with_ot`` with
    ``account_for_unbalancedness=False``, what ``compute_interpolated_distance`` samples): ``n``
    source cells drawn with replacement from the plan's row marginal, a partner for each from its
    row, ``(1 - frac) x + frac y``; the same draws in the same order from the same seed.

    Read from the materialised plan: moscot's own ``_sample_from_tmap`` applies the lazy plan to
    one-hot blocks of 256 source cells, which ott evaluates as an ``(n, m, 256)`` array: 25.6 GB
    at 5,000 cells per time point (out of memory on this 24 GB machine), 410 GB at 20,000.
    """
    import numpy as np

    rng = np.random.RandomState(SEED)
    row_p = plan.sum(axis=1).astype(np.float64)
    rows = rng.choice(len(xs), p=row_p / row_p.sum(), size=n)
    rows, counts = np.unique(rows, return_counts=True)
    src, cols = [], []
    for r, c in zip(rows, counts, strict=True):
        p = plan[r].astype(np.float64)
        cols.append(rng.choice(len(ys), size=c, p=p / p.sum()))
        src.append(np.full(c, r))
    src, cols = np.concatenate(src), np.concatenate(cols)
    return xs[src] * (1 - frac) + ys[cols] * frac


def worker(side: str, data_path: str, out_path: str, threads: int) -> int:
    import numpy as np

    with np.load(data_path) as f:
        data = {"x": f["x"], "time": f["time"]}
    tic = time.perf_counter()
    res = (_worker_trajflow if side == "trajflow" else _worker_moscot)(data, threads)
    np.save(out_path + ".npy", res["pred"])
    clock = res["steps"]
    meta = {
        "steps_s": {k: round(v, 2) for k, v in clock.wall.items()},
        "steps_cpu_s": {k: round(v, 2) for k, v in clock.cpu.items()},
        "total_s": round(sum(clock.wall.values()), 2),
        "total_cpu_s": round(sum(clock.cpu.values()), 2),
        "imports_s": round(time.perf_counter() - tic - sum(clock.wall.values()), 2),
        "peak_rss_mb": round(_peak_rss_mb(), 0),
        **res["extra"],
    }
    Path(out_path + ".json").write_text(json.dumps(meta))
    return 0


# ----------------------------------------------------------------------------- parent
def _course(n_cells: int):
    """Training cells (time 2 held out), the held-out cells and fresh cells at time 2."""
    import numpy as np

    import trajflow

    full = trajflow.datasets.simulate(
        n_times=N_TIMES, n_cells=n_cells + N_FRESH, n_dims=N_DIMS, seed=SEED
    )
    x = np.asarray(full.obsm["X_pca"], dtype=np.float32)
    t = full.obs["time"].to_numpy()
    rank = np.concatenate([np.arange(n_cells + N_FRESH)] * N_TIMES)  # order within a time
    measured = rank < n_cells
    train = measured & (t != HOLDOUT)
    held = measured & (t == HOLDOUT)
    fresh = ~measured & (t == HOLDOUT)
    return x[train], t[train], x[held], x[fresh], x[measured]


def _run_side(side, n, data_path, tmp, args) -> dict:
    py = sys.executable if side == "trajflow" else args.moscot_python
    out = os.path.join(tmp, f"{side}_{n}")
    if os.path.exists(out + ".json") and os.path.exists(out + ".npy"):  # kept from a run before
        meta = json.loads(Path(out + ".json").read_text())
        return {"status": "ok", **meta, "kept_from": out, "pred_path": out + ".npy"}
    cmd = [py, str(Path(__file__).resolve()), "--worker", side, "--data", data_path]
    cmd += ["--worker-out", out, "--threads", str(args.threads)]
    limit = args.moscot_timeout if side == "moscot" else args.trajflow_timeout
    env = dict(os.environ)
    load = [round(v, 2) for v in os.getloadavg()]
    tic = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        try:  # what the unfinished side had cost so far: a lower bound on its CPU seconds
            import psutil

            times = psutil.Process(proc.pid).cpu_times()
            cpu_at_limit = round(times.user + times.system, 1)
        except Exception:  # psutil missing, or the process just ended
            cpu_at_limit = None
        proc.kill()
        proc.communicate()
        return {
            "status": f"did not finish in {limit} s",
            "wall_s": limit,
            "cpu_s_at_limit": cpu_at_limit,
            "load_at_start": load,
        }
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-5:]
        return {"status": f"failed (exit {proc.returncode})", "error": tail, "load_at_start": load}
    meta = json.loads(Path(out + ".json").read_text())
    return {"status": "ok", "wall_s": round(wall, 2), "load_at_start": load, **meta,
            "pred_path": out + ".npy"}  # fmt: skip


def _score(rows: dict, x_train, t_train, held, fresh, everything) -> None:
    import numpy as np

    from trajflow.benchmark import held_out_table

    def sub(x):  # the calibrated scores use halves of <= 1,000 cells; w1_all gets 2,000
        if len(x) <= N_SCORED:
            return x
        return x[np.sort(np.random.default_rng(SEED).choice(len(x), N_SCORED, replace=False))]

    cands = {s: sub(np.load(r.pop("pred_path"))) for s, r in rows.items() if "pred_path" in r}
    if not cands:
        return
    cands["previous"] = sub(x_train[t_train == max(s for s in set(t_train) if s < HOLDOUT)])
    for against, observed in (("held_out", sub(held)), ("fresh", sub(fresh))):
        table = held_out_table(
            cands, observed, reference=everything, metrics=("energy", "mmd", "w1"), seed=SEED
        )
        for side in rows:
            if side in table.index:
                rows[side][f"score_{against}"] = {
                    m: round(float(table.loc[side, m]), 4) for m in ("energy", "mmd", "w1")
                }
                rows[side][f"floor_{against}"] = {
                    m: round(float(table.loc["perfect-half", m]), 4)
                    for m in ("energy", "mmd", "w1")
                }
                rows[side][f"previous_{against}"] = {
                    m: round(float(table.loc["previous", m]), 4) for m in ("energy", "mmd", "w1")
                }


def _table(results: dict) -> str:
    """The side-by-side table: wall seconds per step, CPU seconds, the speed-up in both, the
    unbiased energy of each prediction beside the floor, peak memory."""
    lines = [
        "| cells per time point | trajflow wall s (fit / couplings / predict) | trajflow CPU s "
        "| moscot wall s (solve / plans / predict) | moscot CPU s | speed-up wall / CPU "
        "| energy vs held-out: trajflow / moscot / floor "
        "| energy vs fresh: trajflow / moscot / floor | peak memory trajflow / moscot |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sizes = sorted({int(k.split("/")[0]) for k in results})
    for n in sizes:
        tf, ms = results.get(f"{n}/trajflow", {}), results.get(f"{n}/moscot", {})
        ok_tf, ok_ms = tf.get("status") == "ok", ms.get("status") == "ok"

        def wall(r, parts):
            if r.get("status") != "ok":
                return r.get("status", "not run")
            s = r["steps_s"]
            return f"{r['total_s']:,.1f} ({' / '.join(f'{s[p]:,.1f}' for p in parts)})"

        def cpu(r):
            if r.get("cpu_s_at_limit"):
                return f"> {r['cpu_s_at_limit']:,.0f} (stopped)"
            return f"{r['total_cpu_s']:,.1f}" if r.get("status") == "ok" else "-"

        if ok_tf and ok_ms:
            speed = (
                f"{ms['total_s'] / tf['total_s']:.1f}x / "
                f"{ms['total_cpu_s'] / tf['total_cpu_s']:.1f}x"
            )
        elif ok_tf and str(ms.get("status", "")).startswith("did not"):
            at_limit = ms.get("cpu_s_at_limit")
            speed = f"> {ms['wall_s'] / tf['total_s']:.0f}x / " + (
                f"> {at_limit / tf['total_cpu_s']:.0f}x" if at_limit else "-"
            )
        else:
            speed = "-"

        def energy(key, tf=tf, ms=ms):
            def one(r):
                return f"{r[key]['energy']:.4f}" if key in r else "-"

            floor_key = key.replace("score", "floor")
            floor = (tf.get(floor_key) or ms.get(floor_key) or {}).get("energy")
            return f"{one(tf)} / {one(ms)} / {floor:.4f}" if floor is not None else "-"

        def mem(r):
            return f"{r['peak_rss_mb'] / 1024:.2f} GB" if r.get("status") == "ok" else "-"

        lines.append(
            f"| {n:,} | {wall(tf, ('fit', 'couplings', 'predict'))} | {cpu(tf)} "
            f"| {wall(ms, ('solve', 'plans', 'predict'))} | {cpu(ms)} | {speed} "
            f"| {energy('score_held_out')} | {energy('score_fresh')} | {mem(tf)} / {mem(ms)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 10_000, 20_000])
    parser.add_argument("--sides", nargs="+", default=["trajflow", "moscot"],
                        choices=["trajflow", "moscot"])  # fmt: skip
    parser.add_argument("--moscot-python", default="/work/venv-moscot/bin/python",
                        help="python of a virtual environment with moscot 0.5")  # fmt: skip
    parser.add_argument("--moscot-timeout", type=int, default=3600, help="seconds per size")
    parser.add_argument("--trajflow-timeout", type=int, default=3600, help="seconds per size")
    parser.add_argument("--threads", type=int, default=1, help="threads of each side")
    parser.add_argument("--out", default=str(HERE / "results" / "vs_moscot.json"))
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    parser.add_argument("--keep", default=None,
                        help="folder for each side's prediction and timings; a side already "
                        "there is scored again, not rerun (default: a temporary folder)")  # fmt: skip
    parser.add_argument("--merge", nargs="+", default=None,
                        help="add the rows of these result files to --out, print the table")  # fmt: skip
    parser.add_argument("--worker", choices=["trajflow", "moscot"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    if args.worker:
        return worker(args.worker, args.data, args.worker_out, args.threads)

    out = Path(args.out)
    stored = json.loads(out.read_text()) if out.exists() else {"results": {}}
    if args.merge:  # sides or sizes run separately (e.g. moscot's big sizes in the background)
        for path in args.merge:
            other = json.loads(Path(path).read_text())
            stored["results"].update(other["results"])
            stored.setdefault("runs", []).append({"file": path, "machine": other.get("machine")})
        out.write_text(json.dumps(stored, indent=1))
    if args.table or args.merge:
        print(_table(stored["results"]))
        return 0
    import numpy as np

    sys.path.insert(0, str(HERE))
    from _common import machine_info

    stored["machine"] = machine_info()
    stored["args"] = {k: v for k, v in vars(args).items() if not k.startswith("worker")}
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep or tmp
        Path(keep).mkdir(parents=True, exist_ok=True)
        for n in args.sizes:
            x_train, t_train, held, fresh, everything = _course(n)
            data_path = os.path.join(tmp, f"course_{n}.npz")
            np.savez(data_path, x=x_train, time=t_train)
            rows = {}
            for side in args.sides:
                print(f"{n:,} cells per time point: {side} ...", flush=True)
                rows[side] = _run_side(side, n, data_path, keep, args)
                print(f"  {({k: v for k, v in rows[side].items() if k != 'pred_path'})}",
                      flush=True)  # fmt: skip
            _score(rows, x_train, t_train, held, fresh, everything)
            if out.exists():  # re-read: another run may have added rows meanwhile
                stored["results"] = {**json.loads(out.read_text())["results"], **stored["results"]}
            for side, row in rows.items():
                stored["results"][f"{n}/{side}"] = {"n_cells_per_time": n, "side": side, **row}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(stored, indent=1))
    print(_table(stored["results"]))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
