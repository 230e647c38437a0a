"""Package settings: how much trajflow says (``trajflow.settings.verbosity``) and whether GPU
fits replay their training step as a CUDA graph (``trajflow.settings.cuda_graphs``).

trajflow logs through the standard ``logging`` logger ``"trajflow"``. So that the lines a
scanpy user expects ("added 'X' (adata.obsm)") show in a notebook without any logging set-up,
the logger gets one handler of its own that writes to ``sys.stderr``. It stays silent whenever
the application configured logging itself (a handler on the root logger, as ``logging.basicConfig``,
pytest or the CLI install), so each line is printed once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

logger = logging.getLogger("trajflow")

_PACKAGE_DIR = str(Path(__file__).resolve().parent) + "/"


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the first frame outside trajflow
    (the user's line), however deep inside trajflow the warning is raised."""
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(
        _PACKAGE_DIR
    ):
        frame, level = frame.f_back, level + 1
    return level


#: Verbosity names, scanpy's order: 0 errors, 1 warnings, 2 info (default), 3 debug.
LEVELS: dict[str, int] = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
_BY_NUMBER = dict(enumerate(LEVELS))


class _NotebookHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` unless the root logger has handlers of its own."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return  # the application shows it through propagation
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # never let logging break a fit
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno < logging.WARNING else f"{record.levelname}: {message}"


class Settings:
    """Global options of trajflow (one instance: ``trajflow.settings``).

    Attributes
    ----------
    verbosity
        How much trajflow logs: ``0``/``"error"``, ``1``/``"warning"``, ``2``/``"info"``
        (default: what a tool wrote and where, which representation a fit used) or
        ``3``/``"debug"``. Reading it returns the name.
    cuda_graphs
        Whether a fit on a CUDA device (one process) captures its training step as a CUDA
        graph and replays it (default ``True``): the same numbers with one launch per step
        instead of ~100, which is what makes small networks worth a GPU. Set it to ``False``
        to train eagerly (e.g. while profiling). A step that cannot be captured falls back to
        eager training with a warning.

    Examples
    --------
    >>> import trajflow
    >>> trajflow.settings.verbosity = "warning"  # only warnings and errors
    >>> trajflow.settings.verbosity
    'warning'
    """

    def __init__(self) -> None:
        self._handler = _NotebookHandler()
        self._handler.setFormatter(_Formatter())
        if not any(isinstance(h, _NotebookHandler) for h in logger.handlers):
            logger.addHandler(self._handler)
        self.verbosity = "info"
        self._cuda_graphs = True

    @property
    def cuda_graphs(self) -> bool:
        """Replay the training step of a CUDA fit as a CUDA graph (``True`` or ``False``)."""
        return self._cuda_graphs

    @cuda_graphs.setter
    def cuda_graphs(self, value: bool) -> None:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(
                f"cuda_graphs must be True or False, got {value!r}; e.g. "
                "trajflow.settings.cuda_graphs = False to train GPU fits eagerly."
            )
        self._cuda_graphs = bool(value)

    @property
    def verbosity(self) -> str:
        """How much trajflow logs, by name (``"error"``, ``"warning"``, ``"info"`` or ``"debug"``).

        Set it to one of those names (any case) or to ``0``-``3``; anything else raises a
        ``ValueError``.
        """
        level = logger.level
        return next((name for name, value in LEVELS.items() if value == level), str(level))

    @verbosity.setter
    def verbosity(self, value: int | str) -> None:
        given = value
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            value = _BY_NUMBER.get(int(value), value)  # numpy numbers too, as everywhere
        if isinstance(value, np.str_):
            value = str(value)
        if not isinstance(value, str) or value.lower() not in LEVELS:
            raise ValueError(
                f"verbosity must be one of {list(LEVELS)} or 0-3, got {given!r}; e.g. "
                "trajflow.settings.verbosity = 'warning' to hide the info lines."
            )
        logger.setLevel(LEVELS[value.lower()])

    def __repr__(self) -> str:
        return f"trajflow.settings(verbosity={self.verbosity!r}, cuda_graphs={self.cuda_graphs!r})"


settings = Settings()
