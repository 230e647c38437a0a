"""``trajflow predict``: predict cells at one or more times from a saved model."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _args, _io
from ._errors import CLIError, message

DESCRIPTION = """\
Predict the cell population at one or more times by pushing the trained cells of a saved model \
through the learned flow, and write the predicted cells to an .h5ad file: positions in \
obsm[<use_rep>] (the representation's own units, no X), and obs columns <time_key> (the \
predicted time), source_time and source_cell. By default a time between two trained time \
points is reached from both (the earlier one pushed forward, the later one backward, in the \
shares the model validated on its training time points) and any other time from the nearest \
earlier trained time point; --source-time pushes from one given trained time point instead \
(later times go forward, earlier ones backward). Times outside the trained range are \
extrapolated, with a warning.
"""

EPILOG = """\
examples:
  trajflow predict model --time 1.5 --out day1.5.h5ad
  trajflow predict model --time 1 2 3 --source-time 0 --n-cells 500 --out from0.h5ad
  trajflow predict sb_model --time 2 --sde --seed 1 --device cpu --out sde.h5ad
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    solvers = _args.solvers()
    p = _args.add_subcommand(
        subparsers,
        "predict",
        help="predict cells at one or more times from a saved model",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("model", help="model folder written by 'trajflow fit'")
    pred = p.add_argument_group("prediction")
    pred.add_argument(
        "--time",
        nargs="+",
        type=_args.finite_float,
        required=True,
        metavar="TIME",
        help="target time(s), in the units of obs[time_key]; several go into one file, sorted, "
        "told apart by obs[time_key]",
    )
    pred.add_argument(
        "--source-time",
        type=_args.finite_float,
        default=None,
        metavar="TIME",
        help="trained time point whose cells are pushed to every target time, the only source "
        "(default: both trained time points around a time between them, else the nearest "
        "earlier one)",
    )
    pred.add_argument(
        "--sde",
        action="store_true",
        help=f"sample the SDE instead of the ODE; only for models that learned a score "
        f"(--method {_args.score_methods()}); cells pulled back follow its reverse-time SDE",
    )
    pred.add_argument(
        "--n-cells",
        type=_args.positive_int,
        default=None,
        metavar="N",
        help="cells to predict per target time, drawn from the source population(s) with --seed "
        "(default: all of one source; from two, their sizes interpolated by the shares)",
    )
    pred.add_argument(
        "--seed", type=_args.seed, default=0, help="seed of the cell subsampling and the SDE noise"
    )
    pred.add_argument(
        "--solver",
        default=None,
        choices=solvers,
        metavar="SOLVER",
        help=f"ODE solver, {_args.one_of(solvers)} (default: the one the model was fitted with)",
    )
    pred.add_argument(
        "--solver-steps",
        type=_args.positive_int,
        default=None,
        metavar="N",
        help="integration steps over a prediction's span (default: the model's)",
    )
    pred.add_argument(
        "--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda..."
    )
    _args.add_output_args(
        p, ".h5ad file to write; replaced only once the new one is completely written"
    )
    p.set_defaults(func=run)
    return p


def load_model(path: str, device: str) -> Any:
    """Load a saved model; a damaged one gives an error that names the folder."""
    from .._model import TrajectoryModel

    try:
        return TrajectoryModel.load(path, device=device)
    except Exception as err:
        if str(Path(path)) in str(err):  # trajflow's own message already says which model failed
            raise
        raise CLIError(f"could not load the trajflow model in {path} ({message(err)})") from err


def _times_text(times: Sequence[float]) -> str:
    return ", ".join(f"{t:g}" for t in times)


def _check_request(args: argparse.Namespace, model: Any) -> float | None:
    """The model's ``--source-time`` (or None) after the refusals that ``model.predict`` makes
    too, told here in the flags' names (``--sde``, ``--source-time``, ``--time``) and with what
    to do instead."""
    from .._timecourse import match_time

    if args.sde and not model.learns_score:
        raise CLIError(
            f"--sde needs a model that learned a score, but {args.model} was fitted with method "
            f"{model.method!r}, which does not; drop --sde (the ODE), or refit with --method "
            f"{_args.score_methods()}"
        )
    source = args.source_time
    if source is not None:
        try:
            source = match_time(source, model.times, what="--source-time")
        except ValueError:
            raise CLIError(
                f"--source-time {source:g} is not a time point {args.model} was trained on "
                f"({_times_text(model.times)})"
            ) from None
    return source


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _io.check_out(out, overwrite=args.overwrite, kind="file")  # before the (slow) load and predict
    model = load_model(args.model, args.device)
    source = _check_request(args, model)
    times = args.time
    pred = model.predict(
        times[0] if len(times) == 1 else times,
        source_time=source,
        n_cells=args.n_cells,
        sde=args.sde,
        seed=args.seed,
        solver=args.solver,
        n_steps=args.solver_steps,
    )
    _io.write_atomically(out, pred.write_h5ad)
    label = "time" if len(set(times)) == 1 else "times"
    print(
        f"{pred.n_obs} predicted cells at {label} {_times_text(sorted(set(times)))} written to {out}"
    )
    return 0
