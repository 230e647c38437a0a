"""Command line: ``trajflow benchmark``, ``trajflow fit`` and ``trajflow predict``."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anndata as ad

from ._clock import CLOCKS

#: Exit status of any failure reported as ``trajflow: error: ...`` (argparse uses 2 as well).
EXIT_ERROR = 2
#: Exit status after Ctrl-C, as shells report a process killed by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A failure with a message meant for the user as is (no traceback, no type name)."""


def _message(err: BaseException) -> str:
    """``err`` as one line for ``trajflow: error: ...``.

    ``str(KeyError('x'))`` is ``"'x'"``: show the key's message without the quotes. Exceptions
    from outside trajflow's usual families keep their type name, which often is the only clue
    (``UnpicklingError``, ``BadZipFile``...).
    """
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]
    else:
        text = str(err)
    text = " ".join(text.split())  # one line, whatever the message was
    plain = (CLIError, ValueError, KeyError, TypeError, OSError, RuntimeError)
    if not isinstance(err, plain) and not type(err).__module__.startswith("trajflow"):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text or type(err).__name__


# --- argument types: bad values fail in argparse, with its usage line, before any work -------


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its "invalid ... value" messages
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_seed = _int_at_least(0, "a non-negative integer")


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):  # float() accepts "nan" and "inf"
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


# --- files -----------------------------------------------------------------------------------


def _read(path: str) -> ad.AnnData:
    """Read an ``.h5ad`` file; the name ``eb`` loads the embryoid-body example data.

    Raises
    ------
    CLIError
        When ``path`` is missing or cannot be read as an ``.h5ad`` file.
    """
    if path == "eb":
        from .datasets import eb

        return eb()
    file = Path(path)
    if not file.exists():
        raise CLIError(f"no such file: {path}")
    if file.is_dir():
        raise CLIError(f"could not read {path} as an .h5ad file (it is a directory)")
    try:
        return ad.read_h5ad(file)
    except Exception as err:  # h5py/anndata raise many types for a file that is not an .h5ad
        raise CLIError(f"could not read {path} as an .h5ad file ({_message(err)})") from err


def _check_parent(out: Path) -> None:
    """Refuse early when ``out`` cannot be created: an ancestor is a file, or not writable."""
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CLIError(f"cannot write {out}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {out}: no permission to write in {ancestor}")


def _check_out(out: Path, *, overwrite: bool, kind: str) -> None:
    """Validate an output path before any work is done, so that a long run is not wasted.

    Parameters
    ----------
    out
        The path given with ``--out``.
    overwrite
        Whether an existing ``out`` may be replaced (``--overwrite``).
    kind
        ``"dir"`` for a model directory, ``"file"`` for a file.
    """
    _check_parent(out)
    if not out.exists():
        return
    if kind == "file" and out.is_dir():
        raise CLIError(f"--out {out} is a directory; give a file name")
    if kind == "dir" and not out.is_dir():
        # Overwriting would replace e.g. the input .h5ad by a model directory.
        raise CLIError(f"--out {out} is a file, not a model directory; choose another path")
    if not overwrite:
        raise CLIError(
            f"{out} already exists; pass --overwrite to replace it or choose another --out"
        )
    if kind == "dir" and any(out.iterdir()) and not (out / "config.json").is_file():
        # Replacing a directory deletes it: only do that to a saved model.
        raise CLIError(f"refusing to replace {out}: it is not a trajflow model directory")


# --- commands --------------------------------------------------------------------------------


def _fit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"clock": args.clock, "coupling": args.coupling}
    if args.scaling is not None:
        kwargs["scaling"] = args.scaling
    if args.threads is not None:
        kwargs["threads"] = args.threads
    if args.n_steps is not None:
        kwargs["n_steps"] = args.n_steps
    return kwargs


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import leave_one_out, summarize

    out = Path(args.out)
    # The CSV is replaced silently (as always), but a directory or a bad parent fails up front.
    _check_out(out, overwrite=True, kind="file")
    adata = _read(args.data)
    results = leave_one_out(
        adata,
        time_key=args.time_key,
        methods=args.methods,
        seeds=args.seeds,
        protocol=args.protocol,
        n_dims=args.n_dims,
        holdout_times=args.holdout_times,
        use_rep=args.use_rep,
        fit_kwargs=_fit_kwargs(args),
        device=args.device,
        progress=not args.quiet,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(out, index=False)
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        units = "own units" if args.protocol == "user" else "standardised"
        print(
            f"W1 (mean ± std over seeds {list(args.seeds)}), {args.protocol} protocol, "
            f"{results.attrs['n_dims']} dims ({units}), {args.data}:"
        )
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

    # Before reading and training: a taken --out would otherwise only fail after the fit.
    _check_out(Path(args.out), overwrite=args.overwrite, kind="dir")
    if args.figure:
        _check_out(Path(args.figure), overwrite=True, kind="file")
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

        ax = pl.trajectories(adata, model)
        ax.figure.savefig(args.figure, dpi=150, bbox_inches="tight")
        print(f"Figure: {args.figure}")
    return 0


def _load_model(path: str, device: str) -> Any:
    """Load a saved model; a damaged one gives an error that names the folder."""
    from ._model import TrajectoryModel

    try:
        return TrajectoryModel.load(path, device=device)
    except Exception as err:
        if str(Path(path)) in str(err):  # trajflow's own message already says which model failed
            raise
        raise CLIError(f"could not load the trajflow model in {path} ({_message(err)})") from err


def _predict(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out(out, overwrite=args.overwrite, kind="file")  # before the (slow) load and predict
    model = _load_model(args.model, args.device)
    pred = model.predict(args.time, n_cells=args.n_cells, seed=args.seed)
    pred.write_h5ad(out)
    print(f"{pred.n_obs} predicted cells at {args.time:g} written to {out}")
    return 0


# --- parser ----------------------------------------------------------------------------------


def _add_common_args(p: argparse.ArgumentParser, default: Any) -> None:
    """``-v`` and ``--debug``; subcommands get ``default=SUPPRESS`` so that a flag given before
    the subcommand is not reset by the subcommand's default."""
    p.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log what trajflow does"
    )
    p.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the full traceback of an error instead of a one-line message",
    )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="an .h5ad file, or 'eb' for the embryoid-body example data")
    p.add_argument("--time-key", default="time", help="obs column with time points (default: time)")
    p.add_argument("--use-rep", default="X_pca", help="obsm key or 'X' (default: X_pca)")
    p.add_argument(
        "--n-dims",
        type=_positive_int,
        default=None,
        help="dimensions to model (default: all, up to 50; the paper protocol: 5)",
    )
    p.add_argument(
        "--scaling",
        default=None,
        choices=("global", "per-dimension"),
        help="one global scale (default) or whitening per dimension (the paper protocol's)",
    )
    p.add_argument(
        "--n-steps", type=_positive_int, default=None, help="training steps (default: 3000)"
    )
    p.add_argument(
        "--clock",
        default="auto",
        choices=CLOCKS,
        help="how observed time maps to the flow's time (default: auto)",
    )
    p.add_argument(
        "--coupling",
        default="auto",
        choices=("auto", "full", "bank", "minibatch"),
        help="how OT pairs are made: full plans when small, else a bank solved ahead (default: "
        "auto)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch CPU threads during fits (default: one for the default network)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``trajflow`` argument parser with its three subcommands."""
    from ._methods import METHODS
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="trajflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trajflow {__version__}")
    _add_common_args(parser, default=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_common_args(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("benchmark", parents=[common], help="leave-one-timepoint-out benchmark")
    _add_data_args(b)
    b.add_argument(
        "--methods", nargs="+", default=["ot-cfm", "sb-cfm", "i-cfm"], choices=sorted(METHODS)
    )
    b.add_argument("--seeds", nargs="+", type=_seed, default=[0, 1, 2])
    b.add_argument(
        "--protocol",
        default="user",
        choices=("user", "paper"),
        help="user: the representation as stored, scored in its own units (default); paper: the "
        "TorchCFM protocol (5 dims, whitened, scored standardised)",
    )
    b.add_argument(
        "--holdout-times",
        nargs="+",
        type=_finite_float,
        default=None,
        help="time points to hold out (default: every interior one)",
    )
    b.add_argument(
        "--out",
        default="results.csv",
        help="per-run CSV, replaced if it exists (default: results.csv)",
    )
    b.add_argument(
        "--no-figure", action="store_true", help="do not write the figure next to the CSV"
    )
    b.set_defaults(func=_benchmark)

    f = sub.add_parser("fit", parents=[common], help="fit a model and save it")
    _add_data_args(f)
    f.add_argument("--method", default="ot-cfm", choices=sorted(METHODS))
    f.add_argument("--holdout", nargs="+", type=_finite_float, default=None)
    f.add_argument("--seed", type=_seed, default=0)
    f.add_argument("--out", required=True, help="model directory to write")
    f.add_argument("--overwrite", action="store_true", help="replace an existing model at --out")
    f.add_argument("--figure", default=None, help="also write a trajectories figure (PNG path)")
    f.set_defaults(func=_fit)

    p = sub.add_parser(
        "predict", parents=[common], help="predict cells at a time from a saved model"
    )
    p.add_argument("model", help="model directory written by 'trajflow fit'")
    p.add_argument("--time", type=_finite_float, required=True)
    p.add_argument("--n-cells", type=_positive_int, default=None)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help=".h5ad file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file at --out")
    p.set_defaults(func=_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Any error is reported as one line ``trajflow: error: <message>`` on stderr with status 2
    (``--debug`` re-raises it instead, with its traceback); Ctrl-C gives status 130.
    Bad arguments exit through argparse (``SystemExit(2)`` with a usage line).
    """
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(message)s",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("trajflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # whatever trajflow, torch or anndata raise: one line, no traceback
        if debug:
            raise
        print(f"trajflow: error: {_message(err)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        from .core.distributed import shutdown

        shutdown()


if __name__ == "__main__":
    sys.exit(main())
