"""How the command line fails: one line ``trajflow: error: ...``, exit statuses, warnings."""

from __future__ import annotations

import sys

#: Exit status of any failure reported as ``trajflow: error: ...`` (argparse uses 2 as well).
EXIT_ERROR = 2
#: Exit status after Ctrl-C, as shells report a process killed by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A failure with a message meant for the user as is (no traceback, no type name)."""


def message(err: BaseException) -> str:
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


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line ``trajflow: warning: ...`` (no source file, no code line); the
    signature of :func:`warnings.showwarning`."""
    print(f"trajflow: warning: {' '.join(str(message).split())}", file=sys.stderr)
