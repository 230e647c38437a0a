"""What tl and pl share at their doors: the model and AnnData-first checks, observed times,
``key_added``, ``n_neighbors`` and the log line of what was written.

A neutral module, so pl never reaches into tl's private modules.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from anndata import AnnData

from ._outputs import is_prediction
from ._timecourse import match_time

if TYPE_CHECKING:
    from ._model import TrajectoryModel

logger = logging.getLogger("trajflow")


def check_model(model: object) -> TrajectoryModel:
    from ._model import TrajectoryModel

    if not isinstance(model, TrajectoryModel):
        raise TypeError(
            f"Expected a fitted TrajectoryModel first, got {type(model).__name__}. Fit one with "
            "model = trajflow.fit_trajectories(adata) and call tl functions as f(adata, model, ...)."
        )
    return model


def _is_prediction(obj: object) -> bool:
    """An AnnData written by :meth:`TrajectoryModel.predict` (it records its source time)."""
    return is_prediction(obj)


def adata_first(first: Any, second: Any, func: str, *, prediction: bool = False) -> tuple[Any, Any]:
    """``(adata, model)`` of a tl/pl call, which takes the AnnData first as scanpy does.

    The model-first order of the development versions (``f(model, adata)``) still works, with a
    FutureWarning that names the new call. With ``prediction=True`` the second
    argument may also be the AnnData that ``model.predict`` returned.
    """
    from ._model import TrajectoryModel

    swapped = isinstance(first, TrajectoryModel) and isinstance(second, AnnData)
    if prediction and not swapped:
        swapped = (
            _is_prediction(first) and isinstance(second, AnnData) and not _is_prediction(second)
        )
    if swapped:
        warnings.warn(
            f"{func}(model, adata, ...) is deprecated: trajflow takes the AnnData first, as scanpy "
            f"does. Call {func}(adata, model, ...).",
            FutureWarning,
            stacklevel=3,
        )
        first, second = second, first
    if not isinstance(first, AnnData):
        raise TypeError(
            f"{func} takes the AnnData first and the fitted model second, got "
            f"{type(first).__name__} first: call {func}(adata, model, ...)."
        )
    return first, second


def observed_time(t: float, times: np.ndarray, *, what: str, time_key: str) -> float:
    """Return the observed time point equal to ``t`` (:func:`~trajflow._timecourse.match_time`)
    or raise naming the observed ones."""
    try:
        t = float(t)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be a number, got {t!r}.") from err
    observed = np.unique(times)
    try:
        return match_time(t, observed, what=what)
    except ValueError:
        raise ValueError(
            f"{what}={t:g} is not a time point observed in adata.obs[{time_key!r}] "
            f"(observed: {[float(v) for v in observed]}). Pick one of those."
        ) from None


def as_time_array(times: float | Sequence[float] | np.ndarray, what: str = "times") -> np.ndarray:
    arr = np.atleast_1d(np.asarray(times, dtype=float)).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be one or more finite numbers, got {times!r}.")
    return arr


def check_neighbors(n_neighbors: int) -> int:
    if (
        isinstance(n_neighbors, bool)
        or not isinstance(n_neighbors, int | np.integer)
        or n_neighbors < 1
    ):
        raise ValueError(f"n_neighbors must be a positive integer, got {n_neighbors!r}.")
    return int(n_neighbors)


def check_key(key_added: str) -> str:
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")
    return key_added


def check_not_view(adata: AnnData, func: str, written: str, fix: str = "") -> None:
    """Refuse to write ``written`` into a view: anndata would silently turn it into a copy
    (``ImplicitModificationWarning``) and the user's object would not get the result.

    ``fix`` names the tool's own way out (``"pass copy=True to get an annotated copy back"``).
    """
    if not adata.is_view:
        return
    fix = f", or {fix}" if fix else ""
    raise ValueError(
        f"adata is a view (a subset like adata[mask]): {func} would have to write {written} "
        "into the view, which silently turns it into a copy. Make it a real AnnData first "
        f"(adata = adata[mask].copy()){fix}."
    )


def log_written(what: str, slots: Sequence[str]) -> None:
    """Log the AnnData slots a tool wrote, as scanpy does."""
    logger.info("%s: added\n%s", what, "\n".join(f"    {s}" for s in slots))
