"""Does the flow beat static OT? Both benchmark protocols, one command (issue 14).

    .venv/bin/python benchmarks/protocols.py --out benchmarks/results/protocols.csv

User protocol (:func:`trajflow.benchmark.leave_one_out` with ``protocol="user"``): EB with 50
PCs, Klein with 20, EMT with 10, fitted with trajflow's defaults and scored in each
representation's own units. Paper protocol (``protocol="paper"``): the first 5 dims (Weinreb:
its 2), whitened, scored standardised. Each held-out interior time point in turn, seeds 0 1 2.

Every method is compared with the exact static-OT interpolation of the same split
(``ot-interpolation``) and with moscot-style entropic interpolation (``entropic-interpolation``):
the table gives each one's mean W1 and energy distance as a ratio to the exact interpolation's
(mean over held-out times and seeds, per data set), and the W1 of a perfect predictor at half the
size (two random halves of the held-out population; :func:`trajflow.benchmark.noise_floor`) for
scale. ``--variants`` adds named fit settings (``name=json``) beside the methods, under the user
protocol only (the paper protocol fixes its own settings, so a variant there would repeat a
method's fits).

Writes all rows to the CSV and the tables to the same path with a ``.md`` suffix. Data are read
from ``$TRAJFLOW_DATA_DIR`` (default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from trajflow._anndata import get_representation, parse_times
from trajflow.benchmark import leave_one_out, noise_floor, scoring_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import data_dir

#: (label, file, user-protocol dims, paper-protocol dims)
DATASETS = {
    "EB": ("eb_moon2019_nlsb_subset.h5ad", 50, 5),
    "Klein": ("klein2015_mesc_lif_withdrawal_subset.h5ad", 20, 5),
    "EMT": ("emt_a549_tgfb1_ae_latent.h5ad", 10, 5),
    "Weinreb": ("weinreb2020_larry_2d_tigon.h5ad", None, 2),
}
USER_SETS = ("EB", "Klein", "EMT")
PAPER_SETS = ("EB", "EMT", "Klein", "Weinreb")


def floors(adata, protocol: str, n_dims: int) -> dict[float, float]:
    """W1 between two random halves of every interior held-out population, in the scoring space."""
    rep = get_representation(adata, "X_pca", n_dims)
    z = scoring_space(rep, protocol=protocol).transform(rep)
    times = parse_times(adata, "time")
    interior = sorted(set(times.tolist()))[1:-1]
    return {t: noise_floor(z[times == t], n_repeats=5)[0] for t in interior}


def run(args: argparse.Namespace) -> pd.DataFrame:
    variants = dict(v.split("=", 1) for v in args.variants)
    frames = []
    for protocol, sets in (("user", USER_SETS), ("paper", PAPER_SETS)):
        if protocol not in args.protocols:
            continue
        for name in sets:
            if name not in args.datasets:
                continue
            file, user_dims, paper_dims = DATASETS[name]
            path = data_dir() / file
            if not path.is_file():
                print(f"skip {name}: {path} not found", file=sys.stderr)
                continue
            adata = ad.read_h5ad(path)
            n_dims = user_dims if protocol == "user" else paper_dims
            runs = [(m, m, {}) for m in args.methods]
            if protocol == "user":  # the paper protocol fixes its own fit settings (whitening)
                runs += [(label, "ot-cfm", json.loads(kw)) for label, kw in variants.items()]
            for i, (label, method, kw) in enumerate(runs):
                t0 = time.perf_counter()
                part = leave_one_out(
                    adata,
                    methods=(kw.pop("method", method),),
                    seeds=args.seeds,
                    protocol=protocol,
                    n_dims=n_dims,
                    baselines=i == 0,
                    fit_kwargs={"n_steps": args.n_steps, **kw},
                    progress=False,
                )
                part.loc[part["clock"] != "", "method"] = label
                part["protocol"], part["data"], part["n_dims"] = protocol, name, n_dims
                frames.append(part)
                print(
                    f"{protocol} {name} ({n_dims} dims) {label}: {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            floor = floors(adata, protocol, n_dims)
            rows = [
                {"method": "perfect sample (half)", "seed": 0, "holdout_time": t, "w1": w}
                for t, w in floor.items()
            ]
            extra = pd.DataFrame(rows).assign(protocol=protocol, data=name, n_dims=n_dims)
            frames.append(extra)
            pd.concat(frames, ignore_index=True).to_csv(args.out, index=False)
    return pd.concat(frames, ignore_index=True)


def tables(results: pd.DataFrame) -> str:
    """Markdown: per protocol, method x data set, W1 (and energy) as a ratio to exact OT."""
    out = []
    for protocol, frame in results.groupby("protocol", sort=False):
        per = frame.groupby(["data", "method"])[["w1", "energy", "fit_seconds"]].mean()
        sets = list(dict.fromkeys(frame["data"]))
        methods = list(dict.fromkeys(frame["method"]))
        head = "| method | " + " | ".join(f"{s} W1 (ratio, energy ratio)" for s in sets)
        out += [
            f"### {protocol} protocol",
            "",
            head + " | mean W1 ratio | s per fit |",
            "|---" * (len(sets) + 3) + "|",
        ]
        for m in methods:
            cells, ratios, secs = [], [], []
            for s in sets:
                if (s, m) not in per.index:
                    cells.append("")
                    continue
                row, ref = per.loc[(s, m)], per.loc[(s, "ot-interpolation")]
                r = row["w1"] / ref["w1"]
                ratios.append(r)
                energy = row["energy"] / ref["energy"] if np.isfinite(row["energy"]) else np.nan
                e = "" if np.isnan(energy) else f", {energy:.2f}"
                cells.append(f"{row['w1']:.3f} ({r:.3f}{e})")
                if row["fit_seconds"] > 0:
                    secs.append(row["fit_seconds"])
            seconds = f"{np.mean(secs):.1f}" if secs else ""
            out.append(f"| {m} | " + " | ".join(cells) + f" | {np.mean(ratios):.3f} | {seconds} |")
        out.append("")
    return "\n".join(out)


def fit_times(n_steps: int) -> str:
    """Seconds per default fit of EB (all time points, seed 0) at 5, 20 and 50 dims, with the
    new defaults (one global scale) beside the old (per-dimension whitening)."""
    import trajflow

    adata = ad.read_h5ad(data_dir() / DATASETS["EB"][0])
    trajflow.fit_trajectories(adata, n_dims=5, n_steps=50, progress=False)  # warm-up
    lines = ["| dims | global scale (default) | per-dimension (old default) |", "|---|---|---|"]
    for n_dims in (5, 20, 50):
        secs = []
        for scaling in ("global", "per-dimension"):
            t0 = time.perf_counter()
            trajflow.fit_trajectories(
                adata, n_dims=n_dims, scaling=scaling, n_steps=n_steps, progress=False
            )
            secs.append(time.perf_counter() - t0)
        lines.append(f"| {n_dims} | {secs[0]:.1f} s | {secs[1]:.1f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/protocols.csv"))
    parser.add_argument("--methods", nargs="+", default=["ot-cfm"])
    parser.add_argument("--variants", nargs="*", default=[], help="name=json fit kwargs")
    parser.add_argument("--protocols", nargs="+", default=["user", "paper"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-steps", type=int, default=3000)
    parser.add_argument("--table-only", action="store_true", help="re-tabulate an existing CSV")
    parser.add_argument(
        "--fit-times", action="store_true", help="only time default EB fits at 5, 20, 50 dims"
    )
    args = parser.parse_args(argv)
    if args.fit_times:
        print(fit_times(args.n_steps))
        return
    results = pd.read_csv(args.out) if args.table_only else run(args)
    md = tables(results)
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
