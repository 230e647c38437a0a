"""W1 evaluation time against population size, exact vs a subsampled estimate.

Exact W1 (``trajflow.metrics.wasserstein``: POT ``emd2`` on the full n x m Euclidean cost) is
roughly cubic in time and quadratic in memory. The subsampled estimate draws ``--subsample``
cells from each side without replacement, solves exact W1 between the subsamples, and repeats
``--repeats`` times; it reports mean ± std over repeats (the estimator trajflow.metrics is
getting above a documented size, implemented here until it lands).

Two pairs of synthetic populations (5-D branching time course, ``_common.synthetic_timecourse``)
are measured at every size per side (default 500, 1k, 2k, 5k, 10k):

- ``shifted``: time 1 vs time 2 (W1 clearly above zero, as when scoring a prediction);
- ``same``: two independent samples of time 2 (true W1 is 0; the empirical W1 is pure
  sampling bias, which shrinks with n, so a small subsample overestimates it).

The estimate departs from the exact value when ``|mean - exact| > 2 std`` (shown as ``z``) or
by more than 5% of the exact value. Exact W1 is skipped for a size when the time predicted from
the previous sizes exceeds ``--max-exact-seconds``.

Run::

    .venv/bin/python benchmarks/metrics_size.py                # writes results/metrics_size.json
    .venv/bin/python benchmarks/metrics_size.py --sizes 500 1000 --repeats 3   # quick check
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS_DIR,
    format_table,
    machine_info,
    peak_rss_mb,
    synthetic_timecourse,
    write_json,
)

from trajflow.metrics import wasserstein


def subsampled_w1(
    a: np.ndarray, b: np.ndarray, size: int, repeats: int, seed: int = 0
) -> tuple[float, float, list[float]]:
    """Mean and std of exact W1 between ``size``-cell subsamples of ``a`` and ``b``."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        ia = rng.choice(len(a), size=min(size, len(a)), replace=False)
        ib = rng.choice(len(b), size=min(size, len(b)), replace=False)
        values.append(wasserstein(a[ia], b[ib]))
    return float(np.mean(values)), float(np.std(values, ddof=1) if repeats > 1 else 0.0), values


def predict_seconds(history: list[tuple[int, float]], n: int) -> float | None:
    """Extrapolate exact-W1 time to ``n`` from a power law through the last two sizes."""
    if len(history) < 2:
        return None
    (n1, s1), (n2, s2) = history[-2:]
    exponent = np.log(max(s2, 1e-3) / max(s1, 1e-3)) / np.log(n2 / n1)
    exponent = float(np.clip(exponent, 2.0, 3.5))
    return s2 * (n / n2) ** exponent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000, 10_000])
    p.add_argument("--n-dims", type=int, default=5)
    p.add_argument(
        "--subsample",
        type=int,
        nargs="+",
        default=[1000, 2000],
        help="cells per side in the subsampled estimate (one estimate per value)",
    )
    p.add_argument("--repeats", type=int, default=5, help="subsamples per estimate")
    p.add_argument(
        "--max-exact-seconds",
        type=float,
        default=240.0,
        help="skip exact W1 when it is predicted to take longer",
    )
    p.add_argument("--out", default=str(RESULTS_DIR / "metrics_size.json"))
    args = p.parse_args(argv)

    info = machine_info()
    info["wasserstein_signature"] = str(inspect.signature(wasserstein))
    print(
        f"machine: {info['cpu_model']}, {info['cpu_cores']} cores, {info['ram_gb']} GB RAM, "
        f"load {info['load_average_at_start']}"
    )
    n_max = max(args.sizes)
    course = synthetic_timecourse(5 * 2 * n_max, args.n_dims, seed=1)
    x, t = course.obsm["X_pca"].astype(np.float64), course.obs["time"].to_numpy()
    t1, t2 = x[t == 1.0], x[t == 2.0]
    pairs = {
        "shifted": (t1[:n_max], t2[:n_max]),
        "same": (t2[:n_max], t2[n_max : 2 * n_max]),
    }

    rows: list[dict[str, Any]] = []
    for name, (a_all, b_all) in pairs.items():
        history: list[tuple[int, float]] = []
        for n in args.sizes:
            a, b = a_all[:n], b_all[:n]
            row: dict[str, Any] = {"pair": name, "n_per_side": n}
            guess = predict_seconds(history, n)
            if guess is not None and guess > args.max_exact_seconds:
                row["exact_w1"] = None
                row["exact_seconds"] = None
                row["exact_skipped"] = f"predicted {guess:.0f} s > {args.max_exact_seconds:.0f} s"
            else:
                t0 = time.perf_counter()
                row["exact_w1"] = wasserstein(a, b)
                row["exact_seconds"] = time.perf_counter() - t0
                history.append((n, row["exact_seconds"]))
            for m in args.subsample:
                if m >= n:
                    continue
                t0 = time.perf_counter()
                mean, std, values = subsampled_w1(a, b, m, args.repeats)
                est_s = time.perf_counter() - t0
                row[f"sub{m}_mean"] = mean
                row[f"sub{m}_std"] = std
                row[f"sub{m}_seconds"] = est_s
                row[f"sub{m}_values"] = values
                if row["exact_w1"] is not None:
                    dep = mean - row["exact_w1"]
                    row[f"sub{m}_departure"] = dep
                    row[f"sub{m}_z"] = dep / std if std > 0 else float("inf")
                    row[f"sub{m}_rel"] = dep / row["exact_w1"]
                    row[f"sub{m}_departs"] = bool(
                        abs(dep) > 2 * std or abs(dep) > 0.05 * row["exact_w1"]
                    )
            row["peak_rss_mb"] = peak_rss_mb()
            rows.append(row)
            msg = f"{name} n={n}: exact " + (
                f"{row['exact_w1']:.4f} in {row['exact_seconds']:.2f} s"
                if row["exact_w1"] is not None
                else row["exact_skipped"]
            )
            for m in args.subsample:
                if f"sub{m}_mean" in row:
                    msg += (
                        f"; sub{m}x{args.repeats} {row[f'sub{m}_mean']:.4f} ± "
                        f"{row[f'sub{m}_std']:.4f} in {row[f'sub{m}_seconds']:.2f} s"
                    )
            print(msg, flush=True)

    table = []
    for r in rows:
        subs = [m for m in args.subsample if f"sub{m}_mean" in r] or [None]
        for m in subs:
            table.append(
                {
                    "pair": r["pair"],
                    "n/side": r["n_per_side"],
                    "exact W1": r["exact_w1"],
                    "exact s": r["exact_seconds"],
                    "subsample": m or "-",
                    "estimate": (f"{r[f'sub{m}_mean']:.4f} ± {r[f'sub{m}_std']:.4f}" if m else "-"),
                    "estimate s": r.get(f"sub{m}_seconds"),
                    "departure": r.get(f"sub{m}_departure"),
                    "z": r.get(f"sub{m}_z"),
                    "departs": r.get(f"sub{m}_departs"),
                }
            )
    print()
    print(format_table(table, list(table[0])))
    write_json(args.out, {"machine": info, "args": vars(args), "rows": rows, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
