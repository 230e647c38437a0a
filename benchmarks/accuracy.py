"""Held-out accuracy of trajflow's methods on the four shared data sets (issue 7).

One command produces the whole table::

    .venv/bin/python benchmarks/accuracy.py --out benchmarks/results/accuracy.csv

It runs :func:`trajflow.benchmark.leave_one_out` (every interior time point held out in turn,
W1 on the first ``n_dims`` dimensions standardised over all cells) for every method and seed on
every data set, writes all rows to the CSV, and a markdown table (method x held-out time, mean ±
std over seeds, plus the mean over held-out times) with the noise floor of every held-out
population (W1 between two random halves, :func:`trajflow.benchmark.noise_floor`) beside it to
the same path with a ``.md`` suffix.

Data are read from ``$TRAJFLOW_DATA_DIR`` (default ``../shared/data`` next to the repository).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from trajflow._anndata import Standardizer, get_representation, parse_times
from trajflow._clock import CLOCKS
from trajflow.benchmark import leave_one_out, noise_floor, summarize

REPO = Path(__file__).resolve().parents[1]

#: (label, file, n_dims). Every data set uses the same hyperparameters (trajflow's defaults).
DATASETS: dict[str, tuple[str, int]] = {
    "EB": ("eb_moon2019_nlsb_subset.h5ad", 5),
    "EMT": ("emt_a549_tgfb1_ae_latent.h5ad", 5),
    "Klein": ("klein2015_mesc_lif_withdrawal_subset.h5ad", 5),
    "Weinreb": ("weinreb2020_larry_2d_tigon.h5ad", 2),
}
DEFAULT_METHODS = ("ot-cfm", "mmfm", "ot-mfm", "mmfm-metric")
#: Every method is run with each clock; rows are labelled ``"<method> (<clock> clock)"``.
DEFAULT_CLOCKS = ("time", "auto")


def data_dir() -> Path:
    return Path(os.environ.get("TRAJFLOW_DATA_DIR", REPO.parent / "shared" / "data"))


def read_dataset(name: str) -> ad.AnnData | None:
    """The shared data set ``name`` of :data:`DATASETS`, or None (with a note) when absent."""
    path = data_dir() / DATASETS[name][0]
    if not path.is_file():
        print(f"skip {name}: {path} not found", file=sys.stderr)
        return None
    return ad.read_h5ad(path)


def floors(
    adata: ad.AnnData, n_dims: int, *, max_cells: int = 3000
) -> dict[float, tuple[float, float]]:
    """Noise floor of every interior time point, in the benchmark's scoring space."""
    times = parse_times(adata, "time")
    rep = get_representation(adata, "X_pca", n_dims)
    z = Standardizer.fit(rep).transform(rep)
    out = {}
    uniq = sorted(set(times.tolist()))
    for t in uniq[1:-1]:
        pop = z[times == t]
        if len(pop) > max_cells:  # exact W1 on two halves of 1,500 cells each is plenty
            pop = pop[np.random.default_rng(0).choice(len(pop), max_cells, replace=False)]
        out[t] = noise_floor(pop)
    return out


def _to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (pandas' ``to_markdown`` needs the optional ``tabulate``)."""
    cols = [table.index.name or ""] + [str(c) for c in table.columns]
    rows = [
        [str(i)] + ["" if pd.isna(v) else str(v) for v in r]
        for i, r in zip(table.index, table.values, strict=True)
    ]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def markdown(results: pd.DataFrame, floor: dict[str, dict[float, tuple[float, float]]]) -> str:
    """One table per data set: W1 mean ± std over seeds per held-out time, and the noise floor."""
    lines = []
    order = [n for n in DATASETS if n in set(results["dataset"])]
    for name in order:
        sub = results[results["dataset"] == name]
        file, n_dims = DATASETS[name]
        table = summarize(sub)
        if "clock" in sub:  # what clock="auto" chose, per held-out time
            chosen = sub[sub["clock"].fillna("") != ""].groupby("method")["clock"]
            table["clock used"] = chosen.agg(lambda c: "/".join(sorted(set(c)))).reindex(
                table.index
            )
        fl = floor[name]
        row = {f"t={t:g}": f"{m:.3f} ± {s:.3f}" for t, (m, s) in fl.items()}
        row["mean"] = f"{np.mean([m for m, _ in fl.values()]):.3f}"
        row["fit_s"] = ""
        row["clock used"] = ""
        table.loc["noise floor"] = pd.Series(row)
        seeds = sorted(sub["seed"].unique())
        lines += [
            f"### {name} (`{file}`, {n_dims} dims, seeds {', '.join(map(str, seeds))})",
            "",
            _to_markdown(table),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "accuracy.csv"
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--clocks", nargs="+", default=list(DEFAULT_CLOCKS), choices=CLOCKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--n-steps", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        help="do not run: combine CSVs written by earlier (e.g. per-data-set, parallel) runs into "
        "--out and its markdown",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merged = pd.concat([pd.read_csv(p) for p in args.merge], ignore_index=True)
        floor = {}
        for name in merged["dataset"].unique():
            file, n_dims = DATASETS[name]
            floor[name] = floors(ad.read_h5ad(data_dir() / file), n_dims)
        merged.to_csv(args.out, index=False)
        args.out.with_suffix(".md").write_text(markdown(merged, floor))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)
        return 0

    frames, floor = [], {}
    for name in args.datasets:
        n_dims = DATASETS[name][1]
        adata = read_dataset(name)
        if adata is None:
            continue
        floor[name] = floors(adata, n_dims)
        t0 = time.perf_counter()
        parts = []
        for k, clock in enumerate(args.clocks):
            part = leave_one_out(
                adata,
                methods=args.methods,
                seeds=args.seeds,
                protocol="paper",
                n_dims=n_dims,
                device=args.device,
                baselines=k == 0,  # model-free: the same for every clock
                fit_kwargs={"n_steps": args.n_steps, "clock": clock},
                progress=False,
            )
            fitted = part["clock"] != ""
            part.loc[fitted, "method"] = part.loc[fitted, "method"] + f" ({clock} clock)"
            parts.append(part)
        res = pd.concat(parts, ignore_index=True)
        res.insert(0, "dataset", name)
        res.insert(1, "n_dims", n_dims)
        fl = res["holdout_time"].map(lambda t, f=floor[name]: f[t][0])
        res["noise_floor"] = fl
        frames.append(res)
        print(f"{name}: {len(res)} runs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(summarize(res).to_string(), file=sys.stderr)
        # write as we go, so a long run leaves usable partial results
        all_res = pd.concat(frames, ignore_index=True)
        all_res.to_csv(args.out, index=False)
        args.out.with_suffix(".md").write_text(markdown(all_res, floor))
    if not frames:
        print("no data set found; set TRAJFLOW_DATA_DIR", file=sys.stderr)
        return 1
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
