"""Command line: ``trajflow benchmark``, ``trajflow fit`` and ``trajflow predict``.

One module per subcommand (:mod:`.benchmark`, :mod:`.fit`, :mod:`.predict`, each with
``add_parser(subparsers)`` and ``run(args)``); what they share is in :mod:`._args` (argument
types, groups, the help formatter), :mod:`._io` (input, output paths, atomic writes) and
:mod:`._errors` (one-line errors and warnings, exit statuses).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from . import benchmark, fit, predict
from ._args import Formatter, add_common_args
from ._errors import EXIT_ERROR, EXIT_INTERRUPTED, CLIError, message, show_warning
from ._io import loaders as _loaders  # noqa: F401  (its name before the split into modules)

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "CLIError", "build_parser", "main"]

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


def build_parser() -> argparse.ArgumentParser:
    """The ``trajflow`` argument parser with its three subcommands."""
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="trajflow", description=_DESCRIPTION, formatter_class=Formatter
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"trajflow {__version__}",
        help="show the version and exit",
    )
    add_common_args(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (benchmark, fit, predict):
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Any error is reported as one line ``trajflow: error: <message>`` on stderr with status 2
    (``--debug`` re-raises it instead, with its traceback); Ctrl-C gives status 130. Warnings
    are one line each, ``trajflow: warning: <message>``.
    Bad arguments exit through argparse (``SystemExit(2)`` with a usage line).
    """
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s")
    # trajflow's logger has a level of its own (trajflow.settings.verbosity, "info" by default for
    # notebooks): -v decides here, and the caller's setting is back afterwards (main in-process).
    package_logger = logging.getLogger("trajflow")
    saved_level = package_logger.level
    package_logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = show_warning
            return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("trajflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # whatever trajflow, torch or anndata raise: one line, no traceback
        if args.debug:
            raise
        print(f"trajflow: error: {message(err)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        package_logger.setLevel(saved_level)
        from ..core.distributed import shutdown

        shutdown()
