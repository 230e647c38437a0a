"""Does unbalanced OT (cells appear and vanish between time points) change held-out W1 on EMT?

Leave-one-timepoint-out on the A549 TGFB1 EMT time course (days 0, 1/3, 1, 3, 7; 10-d autoencoder
latent, first 5 PCs of it standardised, the TorchCFM protocol of ``trajflow.benchmark``):
balanced OT-CFM against OT-CFM with unbalanced couplings for several mass relaxations ``reg_m``.

Usage::

    python benchmarks/growth_emt.py                       # reg_m 0.3 1 3 10, seeds 0 1 2
    python benchmarks/growth_emt.py --reg-m 1 --seeds 0 --out /tmp/emt.csv

The EMT data here is an autoencoder latent without genes, so no proliferation-score growth
weights (``growth_key=``) can be computed for it; only ``unbalanced=`` is compared.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import anndata as ad
import pandas as pd
import torch

import trajflow as tf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(
        os.environ.get("TRAJFLOW_DATA_DIR", Path(__file__).parents[2] / "shared" / "data")
    )
    parser.add_argument("--data", type=Path, default=default_data / "emt_a549_tgfb1_ae_latent.h5ad")
    parser.add_argument("--method", default="ot-cfm")
    parser.add_argument("--reg-m", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("growth_emt.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adata = ad.read_h5ad(args.data)
    frames = []
    configs: list[tuple[str, dict]] = [("balanced", {})]
    configs += [(f"unbalanced reg_m={r:g}", {"unbalanced": r}) for r in args.reg_m]
    for i, (label, kwargs) in enumerate(configs):
        t0 = time.perf_counter()
        res = tf.benchmark.leave_one_out(
            adata,
            methods=(args.method,),
            seeds=args.seeds,
            protocol="paper",
            baselines=i == 0,
            fit_kwargs={"n_steps": args.n_steps, **kwargs},
            progress=False,
        )
        res.loc[res["method"] == args.method, "method"] = f"{args.method} {label}"
        frames.append(res)
        print(f"{label}: {time.perf_counter() - t0:.0f} s", flush=True)
        results = pd.concat(frames, ignore_index=True)
        results.to_csv(args.out, index=False)
    print(tf.benchmark.summarize(results, "w1").to_string())


if __name__ == "__main__":
    main()
