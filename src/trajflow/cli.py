"""Command line: ``trajflow benchmark``, ``trajflow fit`` and ``trajflow predict``."""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import os
import sys
import warnings
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line ``trajflow: warning: ...`` (no source file, no code line)."""
    print(f"trajflow: warning: {' '.join(str(message).split())}", file=sys.stderr)


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


def _float_above(minimum: float, *, strict: bool) -> Callable[[str], float]:
    """A finite number ``> minimum`` (``strict``) or ``>= minimum``."""
    what = f"a finite number {'>' if strict else '>='} {minimum:g}"

    def parse(text: str) -> float:
        value = _finite_float(text)
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


_positive_float = _float_above(0.0, strict=True)
_non_negative_float = _float_above(0.0, strict=False)


def _threads(text: str) -> int | str:
    """``auto`` or a positive number of threads."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}")
    return value


# --- files -----------------------------------------------------------------------------------


def _loaders() -> dict[str, Callable[[], ad.AnnData]]:
    """The example data sets the ``data`` argument may name, by name."""
    from . import datasets

    return dict(getattr(datasets, "LOADERS", {"eb": datasets.eb}))


def _read(path: str) -> ad.AnnData:
    """Read an ``.h5ad`` file, or load the example data set of that name (``eb``...).

    Raises
    ------
    CLIError
        When ``path`` is missing or cannot be read as an ``.h5ad`` file, or the data set cannot
        be loaded.
    """
    loaders = _loaders()
    if path in loaders:  # a file of that name can still be given as ./name
        try:
            return loaders[path]()
        except Exception as err:
            raise CLIError(f"could not load the data set {path!r} ({_message(err)})") from err
    file = Path(path)
    if not file.exists():
        if not file.suffix and len(file.parts) == 1:  # a bare word: perhaps a mistyped name
            raise CLIError(
                f"no such file or data set: {path} (data sets: {', '.join(sorted(loaders))})"
            )
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


def _check_out(out: Path, *, overwrite: bool, kind: str, flag: str = "--out") -> None:
    """Validate an output path before any work is done, so that a long run is not wasted.

    Parameters
    ----------
    out
        The path given with ``flag``.
    overwrite
        Whether an existing ``out`` may be replaced (``--overwrite``).
    kind
        ``"dir"`` for a model directory, ``"file"`` for a file.
    flag
        The option that named ``out``, for the messages.
    """
    _check_parent(out)
    if not out.exists():
        return
    if kind == "file" and out.is_dir():
        raise CLIError(f"{flag} {out} is a directory; give a file name")
    if kind == "dir" and not out.is_dir():
        # Overwriting would replace e.g. the input .h5ad by a model directory.
        raise CLIError(f"{flag} {out} is a file, not a model directory; choose another path")
    if not overwrite:
        raise CLIError(
            f"{out} already exists; pass --overwrite to replace it or choose another {flag}"
        )
    if kind == "dir" and any(out.iterdir()) and not (out / "config.json").is_file():
        # Replacing a directory deletes it: only do that to a saved model.
        raise CLIError(f"refusing to replace {out}: it is not a trajflow model directory")


def _same_path(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _write_atomically(out: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write`` on a temporary file next to ``out``, then rename it to ``out``: an existing
    ``out`` is only replaced by a complete file, never lost to a failed write."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so the rename is atomic), same suffix (matplotlib picks the format by it).
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp{out.suffix}")
    try:
        write(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- commands --------------------------------------------------------------------------------

#: Training settings shared by ``fit`` and ``benchmark`` (passed on to every fit).
_TRAINING = (
    "n_steps",
    "batch_size",
    "lr",
    "weight_decay",
    "lr_schedule",
    "hidden",
    "n_layers",
    "activation",
    "clock",
    "coupling",
    "threads",
)


def _fit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {name: getattr(args, name) for name in _TRAINING}
    if args.scaling is not None:  # benchmark: None lets the protocol choose
        kwargs["scaling"] = args.scaling
    return kwargs


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import get_protocol, leave_one_out, summarize

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
    _write_atomically(out, lambda tmp: results.to_csv(tmp, index=False))
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        units = get_protocol(args.protocol).units
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
        _write_atomically(
            fig_path, lambda tmp: ax.figure.savefig(tmp, dpi=150, bbox_inches="tight")
        )
        print(f"Figure: {fig_path}")
    return 0


def _check_fit_paths(args: argparse.Namespace) -> None:
    """Every path of ``fit`` checked before the data is read and the (long) training starts."""
    from ._checkpoint import TRAINER_STATE_FILE

    out = Path(args.out)
    ckpt = None if args.checkpoint_dir is None else Path(args.checkpoint_dir)
    resume = None if args.resume_from is None else Path(args.resume_from)
    if args.checkpoint_every is not None and ckpt is None:
        raise CLIError("--checkpoint-every needs --checkpoint-dir (where to write checkpoints)")
    _check_out(out, overwrite=args.overwrite, kind="dir")
    if args.figure:
        _check_out(Path(args.figure), overwrite=True, kind="file", flag="--figure")
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
    if _same_path(ckpt, out):
        raise CLIError(
            f"--checkpoint-dir and --out are both {out}; give the checkpoints their own folder"
        )
    if resume is not None and _same_path(ckpt, resume):
        return  # resuming and checkpointing in one folder: replacing it as training goes is meant
    if (ckpt / TRAINER_STATE_FILE).is_file() and not args.overwrite:
        raise CLIError(
            f"{ckpt} already holds a checkpoint; pass --resume-from {ckpt} to continue that fit, "
            "--overwrite to start over, or choose another --checkpoint-dir"
        )
    _check_out(ckpt, overwrite=args.overwrite, kind="dir", flag="--checkpoint-dir")


def _fit(args: argparse.Namespace) -> int:
    from ._fit import fit_trajectories

    # Before reading and training: a taken --out would otherwise only fail after the fit.
    _check_fit_paths(args)
    adata = _read(args.data)
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
            **_fit_kwargs(args),
        )
    if model.history.get("interrupted"):
        # A half-trained model must not replace (or pose as) a finished one at --out.
        done, total = model.history.get("steps_done"), model.config["n_steps"]
        from ._checkpoint import TRAINER_STATE_FILE

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
    from .core.distributed import barrier

    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only the first process writes
    try:
        if is_main:
            model.save(args.out, overwrite=args.overwrite)  # atomic: temporary folder, renamed
            print(f"{model}\nfitted in {model.history['fit_seconds']:.1f} s, saved to {args.out}")
    finally:
        barrier()
    if not is_main:
        return 0
    if args.figure:
        from . import pl

        ax = pl.trajectories(adata, model)
        figure = Path(args.figure)
        _write_atomically(figure, lambda tmp: ax.figure.savefig(tmp, dpi=150, bbox_inches="tight"))
        print(f"Figure: {figure}")
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


def _times_text(times: Sequence[float]) -> str:
    return ", ".join(f"{t:g}" for t in times)


def _predict(args: argparse.Namespace) -> int:
    from ._methods import METHODS
    from ._timecourse import match_time

    out = Path(args.out)
    _check_out(out, overwrite=args.overwrite, kind="file")  # before the (slow) load and predict
    model = _load_model(args.model, args.device)
    if args.sde and not model.learns_score:
        with_score = sorted(name for name, spec in METHODS.items() if spec.learns_score)
        raise CLIError(
            f"--sde needs a model that learned a score, but {args.model} was fitted with method "
            f"{model.method!r}, which does not; drop --sde (the ODE), or refit with --method "
            f"{' or '.join(with_score)}"
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
    times = args.time
    if args.sde:
        backwards = [
            t for t in times if t < (model.source_time_for(t) if source is None else source)
        ]
        if backwards:
            raise CLIError(
                f"--sde integrates forward only, but --time {_times_text(backwards)} comes before "
                "its source time; drop --sde to pull cells back with the ODE"
            )
    pred = model.predict(
        times[0] if len(times) == 1 else times,
        source_time=source,
        n_cells=args.n_cells,
        sde=args.sde,
        seed=args.seed,
        solver=args.solver,
        n_steps=args.solver_steps,
    )
    _write_atomically(out, pred.write_h5ad)
    label = "time" if len(set(times)) == 1 else "times"
    print(
        f"{pred.n_obs} predicted cells at {label} {_times_text(sorted(set(times)))} written to {out}"
    )
    return 0


# --- parser ----------------------------------------------------------------------------------


class _Formatter(argparse.HelpFormatter):
    """Shows each option's default, wraps prose, keeps indented example blocks as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text
            or not action.option_strings
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or action.nargs == 0
        ):
            return text
        if isinstance(default, list | tuple):
            default = " ".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.strip("\n").split("\n\n"):
            if any(line.startswith("  ") for line in block.splitlines()):  # examples: as written
                blocks.append("\n".join(indent + line for line in block.splitlines()))
            else:
                blocks.append(super()._fill_text(block, width, indent))
        return "\n\n".join(blocks)


def _fit_defaults() -> dict[str, Any]:
    """The defaults of :func:`~trajflow.fit_trajectories`, which the flags show and pass on."""
    from . import _fit

    parameters = inspect.signature(_fit.fit_trajectories).parameters
    return {name: param.default for name, param in parameters.items()}


def _one_of(names: Sequence[str]) -> str:
    return "one of " + ", ".join(names)


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


def _add_data_args(p: argparse.ArgumentParser, *, scaling_default: str | None) -> None:
    """The input data and how it is read, shared by ``fit`` and ``benchmark``."""
    from ._fit import SCALINGS

    defaults = _fit_defaults()
    benchmark = scaling_default is None  # the protocol chooses
    names = ", ".join(sorted(_loaders()))
    data = p.add_argument_group("input")
    data.add_argument(
        "data",
        help=f"an .h5ad file, or the name of an example data set: {names} (see "
        "trajflow.datasets; write ./NAME for a file called NAME)",
    )
    data.add_argument(
        "--time-key",
        default=defaults["time_key"],
        metavar="COLUMN",
        help="obs column with each cell's time point (numbers, or labels that parse as numbers)",
    )
    data.add_argument(
        "--use-rep",
        default=defaults["use_rep"],
        metavar="KEY",
        help="obsm key of the representation to model, or X; a missing X_pca is computed",
    )
    data.add_argument(
        "--n-dims",
        type=_positive_int,
        default=None,
        metavar="N",
        help="model the first N dimensions of the representation (default: "
        + (
            "the protocol's: all up to 50 for user, 5 for paper)" if benchmark else "all, up to 50)"
        ),
    )
    scaling_help = (
        "global: centre and divide by one scale, keeping the geometry; per-dimension: whiten "
        "every dimension (the TorchCFM paper protocol)"
    )
    if benchmark:
        scaling_help += " (default: the --protocol's: global for user, per-dimension for paper)"
    data.add_argument("--scaling", default=scaling_default, choices=SCALINGS, help=scaling_help)


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """The training settings shared by ``fit`` and ``benchmark`` (:data:`_TRAINING`)."""
    from .core import COUPLINGS, LR_SCHEDULES
    from .core.network import ACTIVATIONS

    defaults = _fit_defaults()
    train = p.add_argument_group("training")
    train.add_argument(
        "--n-steps",
        type=_positive_int,
        default=defaults["n_steps"],
        metavar="N",
        help="optimisation (AdamW) steps",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults["batch_size"],
        metavar="N",
        help="pairs of cells drawn per pair of time points per step",
    )
    train.add_argument(
        "--lr", type=_positive_float, default=defaults["lr"], help="learning rate (> 0)"
    )
    train.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=defaults["weight_decay"],
        metavar="WD",
        help="AdamW weight decay (>= 0)",
    )
    train.add_argument(
        "--lr-schedule",
        default=defaults["lr_schedule"],
        choices=LR_SCHEDULES,
        help="learning-rate decay over the steps",
    )
    train.add_argument(
        "--hidden",
        type=_positive_int,
        default=defaults["hidden"],
        metavar="WIDTH",
        help="width of the velocity network's hidden layers",
    )
    train.add_argument(
        "--n-layers",
        type=_positive_int,
        default=defaults["n_layers"],
        metavar="N",
        help="hidden layers of the velocity network",
    )
    train.add_argument(
        "--activation",
        default=defaults["activation"],
        choices=ACTIVATIONS,
        help="activation of the velocity network",
    )
    train.add_argument(
        "--clock",
        default=defaults["clock"],
        choices=CLOCKS,
        help="how observed time maps to the flow's time: time (constant speed across a gap), "
        "distance (by cumulative W2 distance), auto (whichever places held-out interior time "
        "points better)",
    )
    train.add_argument(
        "--coupling",
        default=defaults["coupling"],
        choices=COUPLINGS,
        help="how OT pairs are made: full plans between whole populations, a bank of minibatch "
        "plans solved ahead, a fresh plan per minibatch and step, or auto (full when small, "
        "else bank)",
    )
    train.add_argument(
        "--threads",
        type=_threads,
        default=defaults["threads"],
        metavar="N",
        help="torch CPU threads during fits: a positive integer, or auto (one thread for "
        "networks up to the default size, torch's own setting otherwise)",
    )


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("runtime")
    run.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available, else CPU), cpu, cuda, cuda:1...",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_output_args(p: argparse.ArgumentParser, what: str) -> argparse._ArgumentGroup:
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="PATH", help=what)
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (without it an existing one is refused before any work)",
    )
    return out


_DESCRIPTION = """\
Learn continuous cell trajectories from snapshot time courses (flow matching on an AnnData \
representation), and predict the population at any time.

Each subcommand has its own help: trajflow fit --help, trajflow predict --help, trajflow \
benchmark --help. Errors are reported on one line with exit status 2 (--debug shows the \
traceback); Ctrl-C exits with 130.

examples:
  trajflow fit data.h5ad --time-key day --out model
  trajflow predict model --time 2.5 --out predicted.h5ad
  trajflow benchmark eb --methods ot-cfm i-cfm --out results.csv
"""

_FIT_DESCRIPTION = """\
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

_FIT_EPILOG = """\
examples:
  trajflow fit data.h5ad --time-key day --n-dims 10 --out model
  trajflow fit eb --method sb-cfm --holdout 2 --n-steps 5000 --out eb_sb --figure eb_sb.png
  trajflow fit big.h5ad --checkpoint-dir ckpt --checkpoint-every 200 --out model
  trajflow fit big.h5ad --checkpoint-dir ckpt --resume-from ckpt --out model
"""

_PREDICT_DESCRIPTION = """\
Predict the cell population at one or more times by pushing the trained cells of a saved model \
through the learned flow, and write the predicted cells to an .h5ad file: positions in \
obsm[<use_rep>] (the representation's own units, no X), and obs columns <time_key> (the \
predicted time), source_time and source_cell. By default each time is reached from the nearest \
earlier trained time point; --source-time pushes from one given trained time point instead \
(later times go forward, earlier ones backward). Times outside the trained range are \
extrapolated, with a warning.
"""

_PREDICT_EPILOG = """\
examples:
  trajflow predict model --time 1.5 --out day1.5.h5ad
  trajflow predict model --time 1 2 3 --source-time 0 --n-cells 500 --out from0.h5ad
  trajflow predict sb_model --time 2 --sde --seed 1 --device cpu --out sde.h5ad
"""

_BENCHMARK_DESCRIPTION = """\
Leave-one-timepoint-out benchmark: for every interior time point (or --holdout-times), every \
method and every seed, fit without that time point, predict it, and score the prediction \
against the held-out cells (W1, W2, MMD, energy distance), beside model-free baselines. Writes \
one row per run to a CSV (replaced if it exists), prints the summary, and draws a figure next \
to the CSV.
"""

_BENCHMARK_EPILOG = """\
examples:
  trajflow benchmark eb --methods ot-cfm i-cfm --seeds 0 1 --out results.csv
  trajflow benchmark data.h5ad --protocol paper --holdout-times 2 --out paper.csv
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``trajflow`` argument parser with its three subcommands."""
    from ._methods import METHODS
    from ._version import __version__
    from .benchmark import PROTOCOLS
    from .core.integrate import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS

    methods = sorted(METHODS)
    with_score = " or ".join(name for name in methods if METHODS[name].learns_score)
    solvers = FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS
    defaults = _fit_defaults()

    parser = argparse.ArgumentParser(
        prog="trajflow", description=_DESCRIPTION, formatter_class=_Formatter
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"trajflow {__version__}",
        help="show the version and exit",
    )
    _add_common_args(parser, default=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_common_args(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # ---- benchmark
    b = sub.add_parser(
        "benchmark",
        parents=[common],
        help="leave-one-timepoint-out benchmark of methods against baselines",
        description=_BENCHMARK_DESCRIPTION,
        epilog=_BENCHMARK_EPILOG,
        formatter_class=_Formatter,
    )
    _add_data_args(b, scaling_default=None)
    bench = b.add_argument_group("benchmark")
    bench.add_argument(
        "--methods",
        nargs="+",
        default=["ot-cfm", "sb-cfm", "i-cfm"],
        choices=methods,
        metavar="METHOD",
        help=f"methods to compare, each {_one_of(methods)}",
    )
    bench.add_argument(
        "--seeds",
        nargs="+",
        type=_seed,
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
        type=_finite_float,
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
    _add_training_args(b)
    _add_runtime_args(b)
    b.set_defaults(func=_benchmark)

    # ---- fit
    f = sub.add_parser(
        "fit",
        parents=[common],
        help="fit a model to a time course and save it",
        description=_FIT_DESCRIPTION,
        epilog=_FIT_EPILOG,
        formatter_class=_Formatter,
    )
    _add_data_args(f, scaling_default=defaults["scaling"])
    model = f.add_argument_group("model")
    model.add_argument(
        "--method",
        default=defaults["method"],
        choices=methods,
        metavar="METHOD",
        help=f"flow-matching method, {_one_of(methods)}; {with_score} also learns a score, so "
        "that 'trajflow predict --sde' can sample the SDE",
    )
    model.add_argument(
        "--holdout",
        nargs="+",
        type=_finite_float,
        default=None,
        metavar="TIME",
        help="observed time point(s) to leave out of training (default: none)",
    )
    model.add_argument(
        "--sigma",
        type=_non_negative_float,
        default=None,
        help="ot-cfm/i-cfm: width of the Gaussian tube around each path; sb-cfm: Brownian "
        "diffusion per unit of time; in training units (default: the method's, e.g. 0.1 for "
        "ot-cfm, 1.0 for sb-cfm)",
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
        type=_positive_float,
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
        help=f"ODE solver stored for predictions, {_one_of(solvers)}",
    )
    model.add_argument(
        "--solver-steps",
        type=_positive_int,
        default=defaults["solver_steps"],
        metavar="N",
        help="steps of a fixed-step solver over a prediction's span",
    )
    model.add_argument(
        "--seed",
        type=_seed,
        default=defaults["seed"],
        help="seed of network initialisation and pair sampling",
    )
    _add_training_args(f)
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
        type=_positive_int,
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
    out = _add_output_args(
        f, "model folder to write; replaced only once the new model is completely written"
    )
    out.add_argument(
        "--figure",
        default=None,
        metavar="PNG",
        help="also draw the trajectories to this image, replaced if it exists",
    )
    _add_runtime_args(f)
    f.set_defaults(func=_fit)

    # ---- predict
    p = sub.add_parser(
        "predict",
        parents=[common],
        help="predict cells at one or more times from a saved model",
        description=_PREDICT_DESCRIPTION,
        epilog=_PREDICT_EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument("model", help="model folder written by 'trajflow fit'")
    pred = p.add_argument_group("prediction")
    pred.add_argument(
        "--time",
        nargs="+",
        type=_finite_float,
        required=True,
        metavar="TIME",
        help="target time(s), in the units of obs[time_key]; several go into one file, sorted, "
        "told apart by obs[time_key]",
    )
    pred.add_argument(
        "--source-time",
        type=_finite_float,
        default=None,
        metavar="TIME",
        help="trained time point whose cells are pushed to every target time (default: for "
        "each target time the nearest earlier trained time point)",
    )
    pred.add_argument(
        "--sde",
        action="store_true",
        help=f"sample the SDE instead of the ODE; only for models that learned a score "
        f"(--method {with_score}); forward in time only",
    )
    pred.add_argument(
        "--n-cells",
        type=_positive_int,
        default=None,
        metavar="N",
        help="cells to push per target time, drawn from the source population with --seed "
        "(default: all of them)",
    )
    pred.add_argument(
        "--seed", type=_seed, default=0, help="seed of the cell subsampling and the SDE noise"
    )
    pred.add_argument(
        "--solver",
        default=None,
        choices=solvers,
        metavar="SOLVER",
        help=f"ODE solver, {_one_of(solvers)} (default: the one the model was fitted with)",
    )
    pred.add_argument(
        "--solver-steps",
        type=_positive_int,
        default=None,
        metavar="N",
        help="integration steps over a prediction's span (default: the model's)",
    )
    pred.add_argument(
        "--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda..."
    )
    _add_output_args(p, ".h5ad file to write; replaced only once the new one is completely written")
    p.set_defaults(func=_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Any error is reported as one line ``trajflow: error: <message>`` on stderr with status 2
    (``--debug`` re-raises it instead, with its traceback); Ctrl-C gives status 130. Warnings
    are one line each, ``trajflow: warning: <message>``.
    Bad arguments exit through argparse (``SystemExit(2)`` with a usage line).
    """
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s")
    # trajflow's logger has a level of its own (trajflow.settings.verbosity, "info" by default for
    # notebooks): -v decides here, and the caller's setting is back afterwards (main in-process).
    package_logger = logging.getLogger("trajflow")
    saved_level = package_logger.level
    package_logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _show_warning
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
        package_logger.setLevel(saved_level)
        from .core.distributed import shutdown

        shutdown()


if __name__ == "__main__":
    sys.exit(main())
