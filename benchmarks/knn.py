"""The exact neighbour search behind the tools (issue 27), against the alternatives.

``tl.couplings``, ``cell_transition`` and the kNN mapping of ``predict_expression`` spend almost
all their time in one search: the ``k`` nearest observed cells of every pushed cell. This times
``trajflow._neighbors.kneighbors`` (scikit-learn's exact search on a CPU) beside the torch
search the library runs on a CUDA model (``torch_kneighbors``, float64 and, for comparison,
float32) on ``--device``, and, when they are installed, faiss's exact flat index, its IVF index
and hnswlib (approximate: their recall of the exact neighbours is printed). The data: time 1 of
``datasets.simulate`` (N cells x 30 dims) searched among time 2's cells, standardised, k = 30.

    OMP_NUM_THREADS=1 python benchmarks/knn.py --sizes 50000
    python benchmarks/knn.py --sizes 50000 200000 --device cuda      # on a GPU machine
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import RESULTS_DIR, machine_info, resolve_device, sync, write_json

import trajflow
from trajflow._neighbors import kneighbors, torch_kneighbors


def _pair(n: int, n_dims: int) -> tuple[np.ndarray, np.ndarray]:
    adata = trajflow.datasets.simulate(n_times=4, n_cells=n, n_dims=n_dims, seed=0)
    x = np.asarray(adata.obsm["X_pca"], dtype=np.float64)
    t = adata.obs["time"].to_numpy(dtype=float)
    mean, std = x.mean(axis=0), x.std(axis=0)
    return (x[t == 1] - mean) / std, (x[t == 2] - mean) / std


def _timed(fn, device: torch.device | None = None) -> tuple[float, float, object]:
    """``(wall s, CPU s of this process, result)``."""
    if device is not None:
        sync(device)
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    if device is not None:
        sync(device)
    return time.perf_counter() - w, time.process_time() - c, out


def _recall(idx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(idx, exact, strict=True)]))


def _torch_f32(query, reference, k, device):
    """The same search in float32 (not the library's: it can swap near-tied neighbours)."""
    ref = torch.as_tensor(reference, dtype=torch.float32, device=device)
    ref_sq = (ref * ref).sum(dim=1)
    out = []
    for start in range(0, len(query), 2048):
        block = torch.as_tensor(query[start : start + 2048], dtype=torch.float32, device=device)
        sq = torch.addmm(ref_sq[None, :], block, ref.T, alpha=-2.0)
        out.append(torch.topk(sq, k, dim=1, largest=False).indices.cpu().numpy())
    return np.concatenate(out)


def run(n: int, n_dims: int, k: int, device: torch.device) -> list[dict]:
    query, reference = _pair(n, n_dims)
    rows = []

    def add(name, wall, cpu, idx, exact, build=None):
        row = {
            "cells": n,
            "method": name,
            "wall_s": wall,
            "cpu_s": cpu,
            "recall": _recall(idx, exact),
        }
        if build is not None:
            row["build_cpu_s"] = build
        rows.append(row)
        print(row, flush=True)

    wall, cpu, (_, exact) = _timed(lambda: kneighbors(query, reference, k))
    add("scikit-learn exact (the CPU default)", wall, cpu, exact, exact)
    for name, fn in (
        ("torch float64 (the CUDA default)", lambda: torch_kneighbors(query, reference, k, device=device)[1]),
        ("torch float32", lambda: _torch_f32(query, reference, k, device)),
    ):  # fmt: skip
        wall, cpu, idx = _timed(fn, device)
        add(f"{name} on {device}", wall, cpu, idx, exact)
    q32, r32 = np.ascontiguousarray(query, np.float32), np.ascontiguousarray(reference, np.float32)
    try:
        import faiss
    except ImportError:
        print("faiss not installed: skipped")
    else:
        faiss.omp_set_num_threads(torch.get_num_threads())
        flat = faiss.IndexFlatL2(n_dims)
        wall, cpu, (_, idx) = _timed(lambda: (flat.add(r32), flat.search(q32, k))[1])
        add("faiss flat (exact, float32)", wall, cpu, idx, exact)
        for nlist in (256, 1024):
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(n_dims), n_dims, nlist)
            _, build, _ = _timed(lambda ivf=ivf: (ivf.train(r32), ivf.add(r32)))
            for nprobe in (16, 32, 64):
                ivf.nprobe = nprobe
                wall, cpu, (_, idx) = _timed(lambda ivf=ivf: ivf.search(q32, k))
                add(f"faiss IVF{nlist}, nprobe {nprobe}", wall, cpu, idx, exact, build)
    try:
        import hnswlib
    except ImportError:
        print("hnswlib not installed: skipped")
    else:
        index = hnswlib.Index(space="l2", dim=n_dims)
        index.set_num_threads(torch.get_num_threads())

        def build_hnsw():
            index.init_index(max_elements=len(r32), ef_construction=100, M=16)
            index.add_items(r32)

        _, build, _ = _timed(build_hnsw)
        for ef in (50, 100, 200):
            index.set_ef(ef)
            wall, cpu, (idx, _) = _timed(lambda: index.knn_query(q32, k=k))
            add(f"hnswlib ef {ef}", wall, cpu, idx, exact, build)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[50_000])
    parser.add_argument("--dims", type=int, default=30)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device is None:
        return
    rows = [row for n in args.sizes for row in run(n, args.dims, args.k, device)]
    out = args.out or RESULTS_DIR / f"knn_{device.type}.json"
    write_json(out, {"machine": machine_info(device), "rows": rows})


if __name__ == "__main__":
    main()
