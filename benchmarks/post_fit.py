"""Every step after the fit, timed beside the fit itself (issue 27): a simulated course of 4 time
points x N cells x 30 dims, the default fit, then each tool a user runs next, with its time and
its own peak memory, at 10k, 50k and 200k cells per time point, one torch thread.

Each size runs in a fresh subprocess (so one size's memory does not carry into the next); a
size's results are written as each step finishes, so a run killed by ``--timeout`` still reports
what finished. Peak memory per step is the process's peak resident set during that step (the
kernel's high-water mark, reset before each step through ``/proc/self/clear_refs``).

On a shared machine the wall time swings with the load; each step's CPU time (``cpu_s``, this
process's user + system seconds) is recorded beside it and is the steadier of the two.

Steps (N cells per time point, time points 0-3, groups ``obs['fate']``):

- ``fit``: ``fit_trajectories(adata)`` with the defaults (every time point trained);
- ``couplings``: ``tl.couplings`` (3 sequential pairs, N x N each; CellRank's hand-off);
- ``cell_transition``: ``tl.cell_transition`` 0 -> 3 by fate;
- ``fate_probabilities``: ``tl.fate_probabilities`` at 3 by fate (every cell of 0-2, chained);
- ``ancestors`` / ``descendants``: a group of 10% of the cells of time 3 back to 0 / of time 0
  to 3;
- ``predict_expression``: 20 genes at 7 times from every cell of time 0, kNN mapping;
- ``predict``: ``model.predict(2)`` (every cell of time 1, with the support measure);
- ``push``: every cell of time 0 to time 3;
- ``trajectories``: every cell of time 0, 20 points to time 3.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/post_fit.py            # 10k, 50k, 200k
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/post_fit.py --sizes 10000 --timeout 900
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

STEPS = (
    "fit",
    "couplings",
    "cell_transition",
    "fate_probabilities",
    "ancestors",
    "descendants",
    "predict_expression",
    "predict",
    "push",
    "trajectories",
)


def _peak_reset() -> None:
    # not Linux: the peak is then the process's peak so far
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(n_cells: int, out: Path, skip: set[str], save_outputs: str | None) -> None:
    """One size, in this process: every step in order, the JSON rewritten after each."""
    import numpy as np
    import pandas as pd
    import torch
    from _common import machine_info
    from anndata import AnnData

    import trajflow

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    trajflow.settings.verbosity = "warning"
    record: dict[str, Any] = {
        "n_cells_per_time": n_cells,
        "machine": machine_info(),
        "steps": {},
    }

    def save() -> None:
        out.write_text(json.dumps(record, indent=1))

    t0 = time.perf_counter()
    adata = trajflow.datasets.simulate(n_times=4, n_cells=n_cells, n_dims=30, seed=0)
    rng = np.random.default_rng(0)
    # 20 "genes": fixed random mixtures of the embedding (a dense expression matrix)
    genes = (adata.obsm["X_pca"] @ rng.normal(size=(30, 20))).astype(np.float32)
    adata = AnnData(
        genes, obs=adata.obs, var=pd.DataFrame(index=[f"g{i}" for i in range(20)]),
        obsm=dict(adata.obsm), uns=dict(adata.uns),
    )  # fmt: skip
    times = adata.obs["time"].to_numpy()
    group_3 = (times == 3) & (rng.random(adata.n_obs) < 0.1)
    group_0 = (times == 0) & (rng.random(adata.n_obs) < 0.1)
    record["simulate_s"] = round(time.perf_counter() - t0, 2)
    outputs: dict[str, Any] = {}
    model = None

    def step(name: str, fn: Any) -> None:
        if name in skip:
            record["steps"][name] = {"skipped": True}
            save()
            return
        _peak_reset()
        load = os.getloadavg()[0]
        t, cpu = time.perf_counter(), time.process_time()
        result = fn()
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        record["steps"][name] = {
            "seconds": round(seconds, 2),
            "cpu_s": round(cpu, 2),
            "peak_mb": round(_peak_mb(), 0),
            "load_1min": round(load, 2),
        }
        print(
            f"[{n_cells}] {name}: {seconds:.2f} s ({cpu:.2f} s CPU), peak {_peak_mb():.0f} MB",
            flush=True,
        )
        if save_outputs and result is not None:
            outputs.update(result)
        save()

    def fit() -> None:
        nonlocal model
        model = trajflow.fit_trajectories(adata, progress=False, seed=0)

    def couplings() -> dict:
        cpl = trajflow.tl.couplings(adata, model)
        return {f"couplings_{a}_{b}": v.X for (a, b), v in cpl.items()}

    def cell_transition() -> dict:
        frame = trajflow.tl.cell_transition(
            adata, model, source_time=0, target_time=3, groupby="fate", key_added=None
        )
        return {"cell_transition": frame.to_numpy()}

    def fates() -> dict:
        trajflow.tl.fate_probabilities(adata, model, groupby="fate", target_time=3)
        return {"fate_probabilities": adata.obsm["fate_probabilities"]}

    def ancestors() -> dict:
        trajflow.tl.ancestors(adata, model, cells=group_3, target_time=0)
        return {f"ancestors{s}": adata.obs[f"ancestors{s}"].to_numpy() for s in ("", "_density")}

    def descendants() -> dict:
        trajflow.tl.descendants(adata, model, cells=group_0, target_time=3)
        return {
            f"descendants{s}": adata.obs[f"descendants{s}"].to_numpy() for s in ("", "_density")
        }

    def expression() -> dict:
        trajflow.tl.predict_expression(
            adata, model, times=np.linspace(0, 3, 7), mapping="knn", seed=0
        )
        res = adata.uns["trajflow_expression"]
        return {f"expression_{k}": res[k] for k in ("mean", "std", "q25", "q75")}

    def predict() -> dict:
        pred = model.predict(2.0)
        return {
            "predict": pred.obsm["X_pca"],
            "support_distance": pred.obs["support_distance"].to_numpy(),
        }

    def push() -> dict:
        return {"push": model.push(adata.obsm["X_pca"][times == 0], source_time=0, times=3)}

    def trajectories() -> dict:
        paths = model.trajectories(n_points=20).paths
        return {"trajectories_end": paths[:, -1], "trajectories_mid": paths[:, 10]}

    for name, fn in zip(
        STEPS,
        (fit, couplings, cell_transition, fates, ancestors, descendants, expression, predict, push,
         trajectories),
        strict=True,
    ):  # fmt: skip
        step(name, fn)
    record["total_s"] = round(time.perf_counter() - t0, 2)
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save()
    if save_outputs:
        from scipy import sparse

        flat = {}
        for k, v in outputs.items():
            if sparse.issparse(v):
                v = v.tocsr()
                flat[f"{k}__data"], flat[f"{k}__indices"] = v.data, v.indices
                flat[f"{k}__indptr"], flat[f"{k}__shape"] = v.indptr, np.asarray(v.shape)
            else:
                flat[k] = np.asarray(v, dtype=float)
        np.savez_compressed(save_outputs, **flat)


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per step, one column per size: wall seconds, CPU seconds, peak MB and
    the step's CPU time over the fit's (wall time when CPU time was not recorded)."""
    head = "| step | " + " | ".join(f"{r['n_cells_per_time']:,} cells/time" for r in results)
    lines = [head + " |", "|---|" + "---|" * len(results)]
    for name in STEPS:
        cells = []
        for r in results:
            s = r["steps"].get(name)
            fit = r["steps"].get("fit", {})
            if s is None:
                cells.append("not finished")
            elif s.get("skipped"):
                cells.append("skipped")
            else:
                key = "cpu_s" if "cpu_s" in s and fit.get("cpu_s") else "seconds"
                cpu = f" / {s['cpu_s']:.1f} s CPU" if "cpu_s" in s else ""
                ratio = f", {s[key] / fit[key]:.2f}x fit" if name != "fit" and fit.get(key) else ""
                cells.append(f"{s['seconds']:.1f} s{cpu} ({s['peak_mb']:,.0f} MB{ratio})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per size")
    parser.add_argument("--skip", nargs="*", default=[], choices=STEPS, help="steps not run")
    parser.add_argument("--out", default=None, help="JSON of every size (default: results/)")
    parser.add_argument("--save-outputs", default=None, help="npz prefix: each size's outputs")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--one-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        save = f"{args.save_outputs}_{args.one}.npz" if args.save_outputs else None
        run_size(args.one, Path(args.one_out), set(args.skip), save)
        return 0
    from _common import RESULTS_DIR

    out = Path(args.out) if args.out else RESULTS_DIR / "post_fit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    results = []
    for n in args.sizes:
        part = out.with_name(f"{out.stem}_{n}.json")
        cmd = [sys.executable, __file__, "--one", str(n), "--one-out", str(part)]
        cmd += ["--skip", *args.skip] if args.skip else []
        cmd += ["--save-outputs", args.save_outputs] if args.save_outputs else []
        try:
            subprocess.run(cmd, env=env, timeout=args.timeout, check=True)
            status = "finished"
        except subprocess.TimeoutExpired:
            status = f"killed after the {args.timeout:.0f} s timeout"
        except subprocess.CalledProcessError as err:
            status = f"failed (exit {err.returncode})"
        record = json.loads(part.read_text()) if part.exists() else {"steps": {}}
        record.setdefault("n_cells_per_time", n)
        record["status"] = status
        results.append(record)
        out.write_text(json.dumps(results, indent=1))
        print(f"{n:,} cells per time point: {status}", flush=True)
    print(table(results))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
