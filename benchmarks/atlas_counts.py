"""From raw counts at atlas scale: what a user runs on a sparse counts matrix, step by step.

Builds a sparse counts matrix (CSR, float32 integers) of ``--n-cells`` cells x ``--n-genes``
genes with a known time course (:func:`trajflow.datasets.simulate` with ``n_genes``: Poisson
counts from the simulation's 3-dimensional latent through a gene-loading matrix; no
``obsm['X_pca']``), then runs what a user runs, with the defaults:

1. ``trajflow.fit_trajectories(adata)``, which computes its automatic PCA of the counts
   (``normalize_total`` + ``log1p`` + 2,000 highly variable genes + ``sc.pp.pca``, timed apart as
   ``pca``; the rest of the fit is ``fit``);
2. ``tl.couplings(adata, model)`` (CellRank's hand-off);
3. ``tl.fate_probabilities(adata, model, groupby='fate')`` (the known branch at the last time);
4. ``tl.cell_transition(adata, model, source_time=first, target_time=last, groupby='fate')``.

Each step's wall time, CPU time (``time.process_time``, all threads: on a shared machine what
the step costs) and peak resident memory (a thread samples ``/proc/self/statm`` every
20 ms; ``peak_rss_gb`` is the highest value during the step, ``rss_after_gb`` the value after
it) are reported beside the size of the sparse matrix and of the same matrix dense: a step that
densified the gene matrix would need at least the dense size. ``adata.X`` is checked to still be
the same sparse matrix at the end.

Run::

    .venv/bin/python benchmarks/atlas_counts.py --n-cells 200000       # ~ minutes
    .venv/bin/python benchmarks/atlas_counts.py --n-cells 1000000      # the 1M run
    # writes results/atlas_counts_<n>.json
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


class MemorySampler:
    """The process's resident memory, sampled in a thread; :meth:`step` returns the peak
    since the last call."""

    def __init__(self, interval: float = 0.02) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._interval = interval
        self._peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page / 1024**3

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self.current())

    def step(self) -> float:
        peak = max(self._peak, self.current())
        self._peak = self.current()
        return peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch
    from _common import RESULTS_DIR, machine_info, peak_rss_mb, write_json
    from scipy import sparse

    import trajflow
    from trajflow import _anndata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=200_000, help="cells in all")
    parser.add_argument("--n-times", type=int, default=5)
    parser.add_argument("--n-genes", type=int, default=2_500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info()
    mem = MemorySampler()
    steps: dict[str, dict[str, float]] = {}

    cpu = [time.process_time()]

    def record(name: str, seconds: float) -> None:
        now = time.process_time()
        steps[name] = {
            "s": round(seconds, 2),
            "cpu_s": round(now - cpu[0], 2),
            "peak_rss_gb": round(mem.step(), 2),
            "rss_after_gb": round(mem.current(), 2),
            "load_1min": round(os.getloadavg()[0], 2),
        }
        cpu[0] = now
        print(f"{name}: {steps[name]}", flush=True)

    per_time = args.n_cells // args.n_times
    tic = time.perf_counter()
    adata = trajflow.datasets.simulate(
        n_times=args.n_times, n_cells=per_time, n_genes=args.n_genes, seed=0
    )
    record("simulate_counts", time.perf_counter() - tic)
    X = adata.X
    assert sparse.issparse(X) and "X_pca" not in adata.obsm
    matrix = {
        "shape": list(X.shape),
        "nnz": int(X.nnz),
        "density": round(X.nnz / (X.shape[0] * X.shape[1]), 4),
        "dtype": str(X.dtype),
        "sparse_gb": round((X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1024**3, 2),
        "dense_float32_gb": round(X.shape[0] * X.shape[1] * 4 / 1024**3, 2),
        "median_counts_per_cell": float(np.median(np.asarray(X.sum(axis=1)).ravel())),
    }
    print(f"counts: {matrix}", flush=True)

    # the automatic PCA runs inside fit_trajectories; time it apart by wrapping it there
    pca_seconds = []
    ensure_pca = _anndata.ensure_pca

    def timed_pca(*a, **k):
        t = time.perf_counter()
        ensure_pca(*a, **k)
        pca_seconds.append(time.perf_counter() - t)
        record("pca", pca_seconds[-1])

    _anndata.ensure_pca = timed_pca
    tic = time.perf_counter()
    try:
        model = trajflow.fit_trajectories(adata, progress=False, seed=0)
    finally:
        _anndata.ensure_pca = ensure_pca
    record("fit", time.perf_counter() - tic - sum(pca_seconds))

    tic = time.perf_counter()
    plans = trajflow.tl.couplings(adata, model)
    record("couplings", time.perf_counter() - tic)
    nnz_plans = int(sum(p.X.nnz for p in plans.values()))
    del plans

    times = sorted(np.unique(adata.obs["time"]).tolist())
    tic = time.perf_counter()
    trajflow.tl.fate_probabilities(adata, model, groupby="fate")
    record("fate_probabilities", time.perf_counter() - tic)

    tic = time.perf_counter()
    table = trajflow.tl.cell_transition(
        adata, model, source_time=times[0], target_time=times[-1], groupby="fate"
    )
    record("cell_transition", time.perf_counter() - tic)
    mem.close()

    assert adata.X is X and sparse.issparse(adata.X), "adata.X was replaced"
    # how well the known fates come out: mean probability of each cell's true branch, by time
    probs = adata.obsm["fate_probabilities"]
    names = list(probs.columns) if hasattr(probs, "columns") else ["down", "up"]
    p = np.asarray(probs, dtype=float)
    truth = adata.obs["fate"].to_numpy()
    t_obs = adata.obs["time"].to_numpy()
    hit = p[np.arange(len(p)), [names.index(f) for f in truth]]
    fate_by_time = {f"{t:g}": round(float(np.nanmean(hit[t_obs == t])), 3) for t in times[:-1]}
    result = {
        "n_cells": int(adata.n_obs),
        "n_times": args.n_times,
        "cells_per_time": per_time,
        "counts_matrix": matrix,
        "pca_dims": int(adata.obsm["X_pca"].shape[1]),
        "steps": steps,
        "user_steps_total_s": round(
            sum(v["s"] for k, v in steps.items() if k != "simulate_counts"), 2
        ),
        "user_steps_total_cpu_s": round(
            sum(v["cpu_s"] for k, v in steps.items() if k != "simulate_counts"), 2
        ),
        "peak_rss_gb_over_run": round(peak_rss_mb() / 1024, 2),
        "couplings_nnz": nnz_plans,
        "mean_probability_of_true_fate_by_time": fate_by_time,
        "cell_transition_first_to_last": table.round(3).to_dict(),
        "X_still_sparse": bool(sparse.issparse(adata.X)),
    }
    print(result, flush=True)
    out = args.out or str(RESULTS_DIR / f"atlas_counts_{args.n_cells}.json")
    write_json(out, {"machine": info, "args": vars(args), "result": result})
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
