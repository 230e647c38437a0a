"""Torch's intra-op threads for trajflow's small networks: the default fit on EB with torch's own
thread count and with ``threads="auto"`` (one thread for the default network), on an idle machine
and on one where another process keeps ``--load`` cores busy, timed side by side in one run.

Run::

    .venv/bin/python benchmarks/threads.py            # writes results/threads_cpu.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, format_table, machine_info, write_json


def _burn(stop: mp.Event) -> None:
    x = 0.0
    while not stop.is_set():
        for i in range(100_000):
            x += i * 1e-9


def fit_seconds(adata: ad.AnnData, threads: object, n_steps: int) -> float:
    import trajflow

    t0 = time.perf_counter()
    trajflow.fit_trajectories(
        adata, n_dims=5, n_steps=n_steps, threads=threads, progress=False, device="cpu"
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from trajflow.datasets import data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-steps", type=int, default=1000)
    parser.add_argument("--load", type=int, default=1, help="busy processes in the loaded runs")
    parser.add_argument("--out", default=str(RESULTS_DIR / "threads_cpu.json"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    adata = ad.read_h5ad(data_dir() / "eb_moon2019_nlsb_subset.h5ad")
    default_threads = torch.get_num_threads()
    rows = []
    for machine in ("idle", f"{args.load} core(s) busy"):
        stop = mp.Event()
        burners = []
        if machine != "idle":
            burners = [mp.Process(target=_burn, args=(stop,)) for _ in range(args.load)]
            for p in burners:
                p.start()
            time.sleep(1.0)
        try:
            for label, threads in ((f"torch default ({default_threads})", None), ("auto", "auto")):
                rows.append(
                    {
                        "machine": machine,
                        "threads": label,
                        "fit_s": round(fit_seconds(adata, threads, args.n_steps), 2),
                    }
                )
                print(rows[-1], flush=True)
        finally:
            stop.set()
            for p in burners:
                p.join()
    print(format_table(rows, ["machine", "threads", "fit_s"]))
    write_json(args.out, {"machine": machine_info(), "args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
