"""Command line: ``trajflow benchmark``, ``trajflow fit`` and ``trajflow predict``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import anndata as ad

from ._clock import CLOCKS


def _read(path: str) -> ad.AnnData:
    """Read an ``.h5ad`` file; the name ``eb`` loads the embryoid-body example data."""
    if path == "eb":
        from .datasets import eb

        return eb()
    if not Path(path).is_file():
        raise SystemExit(f"trajflow: no such file: {path}")
    return ad.read_h5ad(path)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="an .h5ad file, or 'eb' for the embryoid-body example data")
    p.add_argument("--time-key", default="time", help="obs column with time points (default: time)")
    p.add_argument("--use-rep", default="X_pca", help="obsm key or 'X' (default: X_pca)")
    p.add_argument("--n-dims", type=int, default=5, help="dimensions to model (default: 5)")
    p.add_argument("--n-steps", type=int, default=None, help="training steps (default: 3000)")
    p.add_argument(
        "--clock",
        default="auto",
        choices=CLOCKS,
        help="how observed time maps to the flow's time (default: auto)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _fit_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {"clock": args.clock}
    if args.n_steps is not None:
        kwargs["n_steps"] = args.n_steps
    return kwargs


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import leave_one_out, summarize

    adata = _read(args.data)
    results = leave_one_out(
        adata,
        time_key=args.time_key,
        methods=args.methods,
        seeds=args.seeds,
        n_dims=args.n_dims,
        holdout_times=args.holdout_times,
        use_rep=args.use_rep,
        fit_kwargs=_fit_kwargs(args),
        device=args.device,
        progress=not args.quiet,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(out, index=False)
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"W1 (mean ± std over seeds {list(args.seeds)}), {args.n_dims} dims, {args.data}:")
        print(summarize(results).to_string())
    print(f"\nPer-run results: {out}")
    if not args.no_figure:
        from . import pl

        fig_path = out.with_suffix(".png")
        ax = pl.benchmark(results)
        ax.figure.savefig(fig_path, dpi=150, bbox_inches="tight")
        print(f"Figure: {fig_path}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from ._fit import fit_trajectories

    adata = _read(args.data)
    model = fit_trajectories(
        adata,
        time_key=args.time_key,
        use_rep=args.use_rep,
        n_dims=args.n_dims,
        method=args.method,
        holdout=args.holdout,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
        **_fit_kwargs(args),
    )
    from .core.distributed import barrier

    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only the first process writes
    try:
        if is_main:
            model.save(args.out, overwrite=args.overwrite)
            print(f"{model}\nfitted in {model.history['fit_seconds']:.1f} s, saved to {args.out}")
    finally:
        barrier()
    if not is_main:
        return 0
    if args.figure:
        from . import pl

        ax = pl.trajectories(model, adata)
        ax.figure.savefig(args.figure, dpi=150, bbox_inches="tight")
        print(f"Figure: {args.figure}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ._model import TrajectoryModel

    model = TrajectoryModel.load(args.model, device=args.device)
    pred = model.predict(args.time, n_cells=args.n_cells, seed=args.seed)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise SystemExit(f"trajflow: {out} exists; pass --overwrite to replace it.")
    pred.write_h5ad(out)
    print(f"{pred.n_obs} predicted cells at {args.time:g} written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._methods import METHODS

    parser = argparse.ArgumentParser(prog="trajflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trajflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what trajflow does")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("benchmark", help="leave-one-timepoint-out benchmark")
    _add_data_args(b)
    b.add_argument(
        "--methods", nargs="+", default=["ot-cfm", "sb-cfm", "i-cfm"], choices=sorted(METHODS)
    )
    b.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    b.add_argument(
        "--holdout-times",
        nargs="+",
        type=float,
        default=None,
        help="time points to hold out (default: every interior one)",
    )
    b.add_argument("--out", default="results.csv", help="per-run CSV (default: results.csv)")
    b.add_argument(
        "--no-figure", action="store_true", help="do not write the figure next to the CSV"
    )
    b.set_defaults(func=_benchmark)

    f = sub.add_parser("fit", help="fit a model and save it")
    _add_data_args(f)
    f.add_argument("--method", default="ot-cfm", choices=sorted(METHODS))
    f.add_argument("--holdout", nargs="+", type=float, default=None)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True, help="model directory to write")
    f.add_argument("--overwrite", action="store_true")
    f.add_argument("--figure", default=None, help="also write a trajectories figure (PNG path)")
    f.set_defaults(func=_fit)

    p = sub.add_parser("predict", help="predict cells at a time from a saved model")
    p.add_argument("model", help="model directory written by 'trajflow fit'")
    p.add_argument("--time", type=float, required=True)
    p.add_argument("--n-cells", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help=".h5ad file to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        return args.func(args)
    except (ValueError, KeyError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"trajflow: error: {err}", file=sys.stderr)
        return 2
    finally:
        from .core.distributed import shutdown

        shutdown()


if __name__ == "__main__":
    sys.exit(main())
