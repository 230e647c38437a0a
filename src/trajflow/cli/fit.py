"""``trajflow fit``: fit a model to a time course and save it."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import _args, _io
from ._errors import EXIT_INTERRUPTED, CLIError

DESCRIPTION = """\
Fit one time-conditioned velocity network to a snapshot time course by conditional flow \
matching over every pair of consecutive training time points, and save the model as a folder \
(config.json, weights.pt, cells.npz) that 'trajflow predict' and trajflow.TrajectoryModel.load \
read. Cells are scaled for training only; the model predicts in the representation's own units. \
All paths are checked before the data is read and training starts: an existing --out is \
refused unless --overwrite, and it is replaced only once the new model is completely written \
(a failed or interrupted fit leaves it as it was). With --checkpoint-dir a resumable \
checkpoint is written as training goes; --resume-from continues from one (same data and \
settings; --n-steps may grow).
"""

EPILOG = """\
examples:
  trajflow fit data.h5ad --time-key day --n-dims 10 --out model
  trajflow fit eb --method sb-cfm --holdout 2 --n-steps 5000 --out eb_sb --figure eb_sb.png
  trajflow fit big.h5ad --checkpoint-dir ckpt --checkpoint-every 200 --out model
  trajflow fit big.h5ad --checkpoint-dir ckpt --resume-from ckpt --out model
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    defaults = _args.fit_defaults()
    methods, solvers = _args.methods(), _args.solvers()
    f = _args.add_subcommand(
        subparsers,
        "fit",
        help="fit a model to a time course and save it",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    _args.add_data_args(f, scaling_default=defaults["scaling"])
    model = f.add_argument_group("model")
    model.add_argument(
        "--method",
        default=defaults["method"],
        choices=methods,
        metavar="METHOD",
        help=f"flow-matching method, {_args.one_of(methods)}; {_args.score_methods()} also "
        "learns a score, so that 'trajflow predict --sde' can sample the SDE",
    )
    model.add_argument(
        "--holdout",
        nargs="+",
        type=_args.finite_float,
        default=None,
        metavar="TIME",
        help="observed time point(s) to leave out of training (default: none)",
    )
    model.add_argument(
        "--sigma",
        type=_args.non_negative_float,
        default=None,
        help="ot-cfm/i-cfm: width of the Gaussian tube around each path; sb-cfm: Brownian "
        "diffusion per unit of time; in training units (default: the method's, e.g. 0.1 for "
        "ot-cfm, 1.0 for sb-cfm)",
    )
    model.add_argument(
        "--restore",
        type=_args.non_negative_float,
        default=None,
        help="straight-path methods: width of the offset added to each training pair's source "
        "cell and shed along its path, so cells that drift off the data are brought back; "
        "root-mean-square over the dimensions in training units, shaped per dimension like the "
        "cells' spread within time points; 0 turns it off (default: the method's, 0.3 for "
        "ot-cfm and ot-cfm-hermite, 0 otherwise; none below 5 dimensions)",
    )
    model.add_argument(
        "--growth-key",
        default=None,
        metavar="COLUMN",
        help="obs column of positive growth factors per unit of time (expected descendants), "
        "weighting each cell's mass in the couplings (default: every cell weighs the same)",
    )
    model.add_argument(
        "--unbalanced",
        type=_args.positive_float,
        default=None,
        metavar="REG_M",
        help="unbalanced OT with mass relaxation REG_M > 0 (try 0.1-10; smaller lets more cells "
        "appear or vanish) for methods with an OT coupling (default: balanced OT)",
    )
    model.add_argument(
        "--solver",
        default=defaults["solver"],
        choices=solvers,
        metavar="SOLVER",
        help=f"ODE solver stored for predictions, {_args.one_of(solvers)}",
    )
    model.add_argument(
        "--solver-steps",
        type=_args.positive_int,
        default=defaults["solver_steps"],
        metavar="N",
        help="steps of a fixed-step solver over a prediction's span (Euler steps under 'auto')",
    )
    model.add_argument(
        "--seed",
        type=_args.seed,
        default=defaults["seed"],
        help="seed of network initialisation and pair sampling",
    )
    _args.add_training_args(f)
    ckpt = f.add_argument_group("checkpoints")
    ckpt.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="write a resumable checkpoint (a loadable model plus optimiser state) here as "
        "training goes, replacing the previous one (default: none)",
    )
    ckpt.add_argument(
        "--checkpoint-every",
        type=_args.positive_int,
        default=None,
        metavar="N",
        help=f"steps between checkpoints (default: {defaults['checkpoint_every']}); needs "
        "--checkpoint-dir",
    )
    ckpt.add_argument(
        "--resume-from",
        default=None,
        metavar="DIR",
        help="continue training from the --checkpoint-dir of an earlier fit with the same data "
        "and settings (may be the same folder as --checkpoint-dir)",
    )
    out = _args.add_output_args(
        f, "model folder to write; replaced only once the new model is completely written"
    )
    out.add_argument(
        "--figure",
        default=None,
        metavar="PNG",
        help="also draw the trajectories to this image, replaced if it exists",
    )
    _args.add_runtime_args(f)
    f.set_defaults(func=run)
    return f


def check_paths(args: argparse.Namespace) -> None:
    """Every path of ``fit`` checked before the data is read and the (long) training starts.

    The library checks ``resume_from`` and ``--out`` too, but only after reading the data and
    building the couplings (``--out`` only after training): these checks are the early ones,
    in the flags' names.
    """
    from .._checkpoint import TRAINER_STATE_FILE

    out = Path(args.out)
    ckpt = None if args.checkpoint_dir is None else Path(args.checkpoint_dir)
    resume = None if args.resume_from is None else Path(args.resume_from)
    if args.checkpoint_every is not None and ckpt is None:
        raise CLIError("--checkpoint-every needs --checkpoint-dir (where to write checkpoints)")
    _io.check_out(out, overwrite=args.overwrite, kind="dir")
    if args.figure:
        _io.check_out(Path(args.figure), overwrite=True, kind="file", flag="--figure")
    if resume is not None:
        if not resume.is_dir():
            raise CLIError(f"--resume-from {resume}: no such checkpoint directory")
        if not (resume / TRAINER_STATE_FILE).is_file():
            raise CLIError(
                f"--resume-from {resume} is not a trajflow checkpoint (no {TRAINER_STATE_FILE}); "
                "pass the --checkpoint-dir of an earlier fit"
            )
    if ckpt is None:
        return
    if _io.same_path(ckpt, out):
        raise CLIError(
            f"--checkpoint-dir and --out are both {out}; give the checkpoints their own folder"
        )
    if resume is not None and _io.same_path(ckpt, resume):
        return  # resuming and checkpointing in one folder: replacing it as training goes is meant
    if (ckpt / TRAINER_STATE_FILE).is_file() and not args.overwrite:
        raise CLIError(
            f"{ckpt} already holds a checkpoint; pass --resume-from {ckpt} to continue that fit, "
            "--overwrite to start over, or choose another --checkpoint-dir"
        )
    _io.check_out(ckpt, overwrite=args.overwrite, kind="dir", flag="--checkpoint-dir")


def run(args: argparse.Namespace) -> int:
    from .._fit import fit_trajectories

    # Before reading and training: a taken --out would otherwise only fail after the fit.
    check_paths(args)
    adata = _io.read(args.data)
    _io.read_times(adata, args.time_key, from_labels=args.time_from_labels)
    checkpoint_every = (
        {} if args.checkpoint_every is None else {"checkpoint_every": args.checkpoint_every}
    )
    with warnings.catch_warnings():
        # The trainer's "the model keeps what was trained so far": the CLI does not save it.
        warnings.filterwarnings("ignore", message="Training interrupted")
        model = fit_trajectories(
            adata,
            time_key=args.time_key,
            use_rep=args.use_rep,
            n_dims=args.n_dims,
            method=args.method,
            holdout=args.holdout,
            sigma=args.sigma,
            restore=args.restore,
            growth_key=args.growth_key,
            unbalanced=args.unbalanced,
            solver=args.solver,
            solver_steps=args.solver_steps,
            seed=args.seed,
            device=args.device,
            progress=not args.quiet,
            checkpoint_dir=args.checkpoint_dir,
            resume_from=args.resume_from,
            **checkpoint_every,
            **_args.fit_kwargs(args),
        )
    if model.history.get("interrupted"):
        # A half-trained model must not replace (or pose as) a finished one at --out.
        done, total = model.history.get("steps_done"), model.config["n_steps"]
        from .._checkpoint import TRAINER_STATE_FILE

        saved = args.checkpoint_dir and (Path(args.checkpoint_dir) / TRAINER_STATE_FILE).is_file()
        hint = (
            f"; resume from the last checkpoint with --resume-from {args.checkpoint_dir}"
            if saved
            else ""
        )
        print(
            f"trajflow: interrupted after {done} of {total} training steps; nothing written to "
            f"{args.out}{hint}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    from ..core.distributed import barrier

    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only the first process writes
    try:
        if is_main:
            model.save(args.out, overwrite=args.overwrite)  # atomic: temporary folder, renamed
            print(f"{model}\nfitted in {model.history['fit_seconds']:.1f} s, saved to {args.out}")
    finally:
        barrier()
    if is_main and args.figure:
        from .. import pl

        _io.write_figure(Path(args.figure), pl.trajectories(adata, model))
    return 0
