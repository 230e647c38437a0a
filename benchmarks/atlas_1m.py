"""A 1M-cell course end to end with the defaults: simulate 20 time points x 50,000 cells x 50
dims, fit (time point 10 held out), predict the held-out time from every cell of time 9, and
score it, with the time of each part and the peak memory, in one run.

Run::

    .venv/bin/python benchmarks/atlas_1m.py             # writes results/atlas_1m_cpu.json
    .venv/bin/python benchmarks/atlas_1m.py --n-cells 5000 --n-steps 300   # quick check
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine_info, peak_rss_mb, time_training, write_json


def main(argv: list[str] | None = None) -> int:
    import trajflow
    from trajflow.metrics import wasserstein

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-times", type=int, default=20)
    parser.add_argument("--n-cells", type=int, default=50_000, help="cells per time point")
    parser.add_argument("--n-dims", type=int, default=50)
    parser.add_argument("--n-steps", type=int, default=3000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    parts: dict[str, float] = {}
    t0 = time.perf_counter()
    adata = trajflow.datasets.simulate(
        n_times=args.n_times, n_cells=args.n_cells, n_dims=args.n_dims, seed=0
    )
    parts["simulate_s"] = time.perf_counter() - t0
    hold = float(args.n_times // 2)
    with time_training() as timer:
        t1 = time.perf_counter()
        model = trajflow.fit_trajectories(
            adata, n_dims=args.n_dims, holdout=hold, n_steps=args.n_steps, device=args.device,
            progress=False,
        )  # fmt: skip
        parts["fit_s"] = time.perf_counter() - t1
    parts["training_loop_s"] = sum(timer.seconds)
    parts["fit_setup_s"] = parts["fit_s"] - parts["training_loop_s"]
    t2 = time.perf_counter()
    pred = model.predict(hold).obsm["X_pca"]  # every cell of the previous time point
    parts["predict_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    times = adata.obs["time"].to_numpy()
    # exact W1 on 5,000-cell subsamples per side (metrics.wasserstein's documented estimate),
    # beside the same estimate for the unmoved previous time point
    w1 = wasserstein(pred, adata.obsm["X_pca"][times == hold])
    w1_prev = wasserstein(
        adata.obsm["X_pca"][times == hold - 1], adata.obsm["X_pca"][times == hold]
    )
    parts["score_s"] = time.perf_counter() - t3
    parts["total_s"] = time.perf_counter() - t0
    result = {
        **{k: round(v, 2) for k, v in parts.items()},
        "n_cells_total": int(adata.n_obs),
        "n_predicted": len(pred),
        "w1_heldout": round(float(w1), 4),
        "w1_previous_unmoved": round(float(w1_prev), 4),
        "peak_rss_mb": round(peak_rss_mb(), 0),
        "device": str(model.device),
    }
    for k, v in result.items():
        print(f"{k}: {v}")
    out = args.out or str(RESULTS_DIR / f"atlas_1m_{model.device.type}.json")
    write_json(out, {"machine": machine_info(model.device), "args": vars(args), "result": result})
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
