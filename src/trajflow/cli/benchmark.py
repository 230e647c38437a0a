"""``trajflow benchmark``: leave-one-timepoint-out benchmark of methods against baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _args, _io

DESCRIPTION = """\
Leave-one-timepoint-out benchmark: for every interior time point (or --holdout-times), every \
method and every seed, fit without that time point, predict it, and score the prediction \
against the held-out cells, beside model-free baselines and the floor a perfect prediction \
reaches (half of the held-out cells against the other half; every candidate is scored at that \
size). Scores: unbiased energy distance (the user protocol's headline), unbiased MMD, W1 and \
W2 at matched size, and w1_all, W1 against every held-out cell as published (the paper \
protocol's headline); "closed" is the share of static OT's distance to the floor \
a method closes. Writes one row per run to a CSV (replaced if it exists), prints the summary, \
and draws a figure next to the CSV.
"""

EPILOG = """\
examples:
  trajflow benchmark eb --methods ot-cfm i-cfm --seeds 0 1 --out results.csv
  trajflow benchmark data.h5ad --protocol paper --holdout-times 2 --out paper.csv
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..benchmark import PROTOCOLS

    methods = _args.methods()
    b = _args.add_subcommand(
        subparsers,
        "benchmark",
        help="leave-one-timepoint-out benchmark of methods against baselines",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    _args.add_data_args(b, scaling_default=None)
    bench = b.add_argument_group("benchmark")
    bench.add_argument(
        "--methods",
        nargs="+",
        default=["ot-cfm", "sb-cfm", "i-cfm"],
        choices=methods,
        metavar="METHOD",
        help=f"methods to compare, each {_args.one_of(methods)}",
    )
    bench.add_argument(
        "--seeds",
        nargs="+",
        type=_args.seed,
        default=[0, 1, 2],
        metavar="SEED",
        help="one fit per seed (non-negative integers)",
    )
    bench.add_argument(
        "--protocol",
        default="user",
        choices=PROTOCOLS,
        help="user: the representation as stored, scored in its own units; paper: the TorchCFM "
        "protocol (5 dims, whitened, scored standardised)",
    )
    bench.add_argument(
        "--holdout-times",
        nargs="+",
        type=_args.finite_float,
        default=None,
        metavar="TIME",
        help="time points to hold out, one at a time (default: every interior one)",
    )
    bench.add_argument(
        "--out", default="results.csv", metavar="CSV", help="per-run CSV, replaced if it exists"
    )
    bench.add_argument(
        "--no-figure", action="store_true", help="do not write the figure (CSV name, .png)"
    )
    bench.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the model-free baselines (previous, OT and entropic OT interpolation; the "
        "floor is still scored): faster on large time points, but no closed share",
    )
    _args.add_training_args(b)
    _args.add_runtime_args(b)
    b.set_defaults(func=run)
    return b


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..benchmark import get_protocol, leave_one_out, summarize

    out = Path(args.out)
    # The CSV is replaced silently (as always), but a directory or a bad parent fails up front.
    _io.check_out(out, overwrite=True, kind="file")
    adata = _io.read(args.data)
    _io.read_times(adata, args.time_key, from_labels=args.time_from_labels)
    results = leave_one_out(
        adata,
        time_key=args.time_key,
        methods=args.methods,
        seeds=args.seeds,
        protocol=args.protocol,
        n_dims=args.n_dims,
        holdout_times=args.holdout_times,
        use_rep=args.use_rep,
        baselines=not args.no_baselines,
        fit_kwargs=_args.fit_kwargs(args),
        device=args.device,
        progress=not args.quiet,
    )
    _io.write_atomically(out, lambda tmp: results.to_csv(tmp, index=False))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        spec = get_protocol(args.protocol)
        print(
            f"{spec.headline} (mean ± std over seeds {list(args.seeds)}; perfect-half is the "
            f"floor), {args.protocol} protocol, {results.attrs['n_dims']} dims ({spec.units}), "
            f"{args.data}:"
        )
        print(summarize(results).to_string())
    print(f"\nPer-run results: {out}")
    if not args.no_figure:
        from .. import pl

        _io.write_figure(out.with_suffix(".png"), pl.benchmark(results))
    return 0
