"""What the subcommands share: argument types, the help formatter, the fit defaults (from
``FitConfig``, the one source of :func:`~trajflow.fit_trajectories`' options) and the argument
groups."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

from ._io import loaders

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


positive_int = _int_at_least(1, "a positive integer")
seed = _int_at_least(0, "a non-negative integer")


def finite_float(text: str) -> float:
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
        value = finite_float(text)
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


positive_float = _float_above(0.0, strict=True)
non_negative_float = _float_above(0.0, strict=False)


def threads(text: str) -> int | str:
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


# --- help ------------------------------------------------------------------------------------


class Formatter(argparse.HelpFormatter):
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


def fit_defaults() -> dict[str, Any]:
    """The defaults of :func:`~trajflow.fit_trajectories` (its one source, ``FitConfig``), which
    the flags show and pass on."""
    from .._config import fit_defaults as defaults

    return defaults()


def one_of(names: Sequence[str]) -> str:
    return "one of " + ", ".join(names)


def methods() -> list[str]:
    """The registered method names, sorted."""
    from .._methods import METHODS

    return sorted(METHODS)


def score_methods() -> str:
    """The methods that learn a score (and so can sample the SDE): ``"a or b"``."""
    from .._methods import METHODS

    return " or ".join(name for name in methods() if METHODS[name].learns_score)


def solvers() -> tuple[str, ...]:
    from ..core.integrate import SOLVERS

    return SOLVERS


# --- argument groups -------------------------------------------------------------------------


def add_common_args(p: argparse.ArgumentParser, default: Any) -> None:
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


def add_subcommand(
    subparsers: argparse._SubParsersAction, name: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand with ``-v`` / ``--debug`` and the help :class:`Formatter`; ``kwargs``
    (``help``, ``description``, ``epilog``) go to ``add_parser``."""
    common = argparse.ArgumentParser(add_help=False)
    add_common_args(common, default=argparse.SUPPRESS)
    return subparsers.add_parser(name, parents=[common], formatter_class=Formatter, **kwargs)


def add_data_args(p: argparse.ArgumentParser, *, scaling_default: str | None) -> None:
    """The input data and how it is read, shared by ``fit`` and ``benchmark``."""
    from .._fit import SCALINGS

    defaults = fit_defaults()
    benchmark = scaling_default is None  # the protocol chooses
    names = ", ".join(sorted(loaders()))
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
        "--time-from-labels",
        action="store_true",
        help="read each time label's first number as its time point ('day 7' -> 7, 'E7.5' -> "
        "7.5), for labels that are not numbers; the file is not changed",
    )
    data.add_argument(
        "--use-rep",
        default=defaults["use_rep"],
        metavar="KEY",
        help="obsm key of the representation to model, or X; a missing X_pca is computed",
    )
    data.add_argument(
        "--n-dims",
        type=positive_int,
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


#: Training settings shared by ``fit`` and ``benchmark`` (passed on to every fit).
TRAINING = (
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


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The training settings shared by ``fit`` and ``benchmark`` (:data:`TRAINING`)."""
    from .._clock import CLOCKS
    from ..core import COUPLINGS, LR_SCHEDULES
    from ..core.network import ACTIVATIONS

    defaults = fit_defaults()
    train = p.add_argument_group("training")
    train.add_argument(
        "--n-steps",
        type=positive_int,
        default=defaults["n_steps"],
        metavar="N",
        help="optimisation (AdamW) steps",
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults["batch_size"],
        metavar="N",
        help="pairs of cells drawn per pair of time points per step",
    )
    train.add_argument(
        "--lr", type=positive_float, default=defaults["lr"], help="learning rate (> 0)"
    )
    train.add_argument(
        "--weight-decay",
        type=non_negative_float,
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
        type=positive_int,
        default=defaults["hidden"],
        metavar="WIDTH",
        help="width of the velocity network's hidden layers",
    )
    train.add_argument(
        "--n-layers",
        type=positive_int,
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
        type=threads,
        default=defaults["threads"],
        metavar="N",
        help="torch CPU threads during fits: a positive integer, or auto (one thread for "
        "networks up to the default size, torch's own setting otherwise)",
    )


def fit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :data:`TRAINING` settings (and ``--scaling`` when given) as keyword arguments."""
    kwargs: dict[str, Any] = {name: getattr(args, name) for name in TRAINING}
    if args.scaling is not None:  # benchmark: None lets the protocol choose
        kwargs["scaling"] = args.scaling
    return kwargs


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("runtime")
    run.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available, else CPU), cpu, cuda, cuda:1...",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def add_output_args(p: argparse.ArgumentParser, what: str) -> argparse._ArgumentGroup:
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="PATH", help=what)
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (without it an existing one is refused before any work)",
    )
    return out
