"""Shared plumbing of :mod:`trajflow.tl`: the model's view of an AnnData, time checks, copies."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

from .._anndata import check_anndata, get_representation, parse_times

if TYPE_CHECKING:
    from .._model import TrajectoryModel

logger = logging.getLogger("trajflow")


def check_model(model: object) -> TrajectoryModel:
    from .._model import TrajectoryModel

    if not isinstance(model, TrajectoryModel):
        raise TypeError(
            f"Expected a fitted TrajectoryModel first, got {type(model).__name__}. Fit one with "
            "model = trajflow.fit_trajectories(adata) and call tl functions as f(model, adata, ...)."
        )
    return model


def model_space(model: TrajectoryModel, adata: AnnData) -> np.ndarray:
    """The cells of ``adata`` in the model's standardised space, shape ``(n_obs, n_dims)``."""
    check_anndata(adata)
    try:
        rep = get_representation(adata, model.use_rep, model.n_dims, allow_pca=False)
    except KeyError as err:
        raise KeyError(
            f"The model was fitted on obsm[{model.use_rep!r}], which this AnnData lacks. Pass the "
            f"AnnData the model was fitted on (or one with the same obsm[{model.use_rep!r}])."
        ) from err
    return model.scaler.transform(rep)


def cell_times(model: TrajectoryModel, adata: AnnData) -> np.ndarray:
    """``adata.obs[model.time_key]`` as floats, with a clear error when missing."""
    return parse_times(adata, model.time_key)


def observed_time(t: float, times: np.ndarray, *, what: str, time_key: str) -> float:
    """Return the observed time point equal to ``t`` or raise naming the observed ones."""
    try:
        t = float(t)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be a number, got {t!r}.") from err
    observed = np.unique(times)
    hits = observed[np.isclose(observed, t, rtol=1e-9, atol=1e-9)]
    if hits.size == 0:
        raise ValueError(
            f"{what}={t:g} is not a time point observed in adata.obs[{time_key!r}] "
            f"(observed: {[float(v) for v in observed]}). Pick one of those."
        )
    return float(hits[0])


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


def log_written(what: str, slots: Sequence[str]) -> None:
    """Log the AnnData slots a tool wrote, as scanpy does."""
    logger.info("%s: added\n%s", what, "\n".join(f"    {s}" for s in slots))
