"""Ancestors and descendants: where a chosen group of cells came from or goes, along the flow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from .._anndata import check_anndata, parse_times, select_cells
from .._consumers import (
    adata_first,
    check_key,
    check_model,
    check_neighbors,
    check_not_view,
    log_written,
    observed_time,
)
from .._neighbors import gaussian_sums, kneighbors
from .._timecourse import same_time

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def ancestors(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    cells: Sequence[str] | np.ndarray | pd.Series,
    target_time: float,
    n_neighbors: int = 15,
    key_added: str = "ancestors",
    copy: bool = False,
) -> AnnData | None:
    """Where a group of cells came from: the flow integrated backwards to an earlier time point.

    The chosen cells (all from one observed time point) are integrated backwards with the
    (probability-flow) ODE to ``target_time``. Each pulled-back point spreads weight
    ``1 / n_neighbors`` over its ``n_neighbors`` nearest observed cells at ``target_time``, which
    gives every observed cell there an ancestor probability (summing to 1 over the time
    point); a Gaussian kernel density of the pulled-back points (Scott's bandwidth) is evaluated
    at the same cells. Distances are Euclidean in the model's standardised space.

    Parameters
    ----------
    adata
        The AnnData the model was fitted on (or one with the same ``obs[time_key]`` and
        ``obsm[use_rep]``).
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    cells
        The group: obs names, or a boolean mask over ``adata.obs_names``
        (``adata.obs['leiden'] == '3'``). All must be of one time point.
    target_time
        Earlier observed time point to trace the cells back to, in the units of
        ``obs[time_key]``.
    n_neighbors
        Observed cells at ``target_time`` that share each pulled-back point.
    key_added
        Where the results go (see below).
    copy
        Annotate and return a copy of ``adata`` instead of writing in place.

    Returns
    -------
    anndata.AnnData or None
        ``None``, or the annotated copy when ``copy=True``. Writes

        ``adata.obs[key_added]``
            Ancestor probability of each cell at ``target_time`` (sums to 1 there; ``NaN`` at
            other time points).
        ``adata.obs[f"{key_added}_density"]``
            Kernel density of the pulled-back cells at each cell of ``target_time``, scaled to
            a maximum of 1 (``NaN`` at other time points).
        ``adata.uns[key_added]``
            ``cells`` (the chosen obs names), ``positions`` (their pulled-back positions, in
            ``obsm[use_rep]`` units, ``(n_cells, n_dims)``), ``nearest`` (the obs name of the
            nearest observed cell at ``target_time`` for each), ``source_time``,
            ``target_time``, ``n_neighbors``, ``bandwidth``, ``use_rep``, ``n_dims``,
            ``time_key``.

    Raises
    ------
    TypeError
        When ``adata`` or ``model`` is not what it should be (an AnnData first, a fitted
        :class:`~trajflow.TrajectoryModel` second), or ``target_time`` is not a number.
    KeyError
        When ``adata`` lacks ``obs[time_key]`` or ``obsm[use_rep]``, or a cell name is not in
        ``adata.obs_names``.
    ValueError
        When ``cells`` selects no cell, is a mask of the wrong length or spans several time
        points, ``target_time`` is not an observed time point earlier than theirs, or
        ``n_neighbors`` or ``key_added`` is invalid, or ``adata`` is a view and
        ``copy=False`` (writing would silently turn it into a copy).

    Examples
    --------
    >>> tf.tl.ancestors(adata, model, cells=adata.obs["leiden"] == "3", target_time=0)
    >>> tf.pl.ancestors(adata)
    """
    return _trace(adata, model, cells, target_time, n_neighbors, key_added, copy, backward=True)


def descendants(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    cells: Sequence[str] | np.ndarray | pd.Series,
    target_time: float,
    n_neighbors: int = 15,
    key_added: str = "descendants",
    copy: bool = False,
) -> AnnData | None:
    """Where a group of cells goes: the flow integrated forwards to a later time point.

    The mirror of :func:`ancestors`: the chosen cells (all from one observed time point) are
    pushed with the ODE to ``target_time``; each pushed point spreads weight ``1 / n_neighbors``
    over its ``n_neighbors`` nearest observed cells there (a descendant probability summing to 1
    over the time point), and a Gaussian kernel density of the pushed points (Scott's
    bandwidth) is evaluated at the same cells.

    Parameters
    ----------
    adata
        The AnnData the model was fitted on (or one with the same ``obs[time_key]`` and
        ``obsm[use_rep]``).
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    cells
        The group: obs names, or a boolean mask over ``adata.obs_names``. All of one time point.
    target_time
        Later observed time point to carry the cells to, in the units of ``obs[time_key]``.
    n_neighbors
        Observed cells at ``target_time`` that share each pushed point.
    key_added
        Where the results go (see below).
    copy
        Annotate and return a copy of ``adata`` instead of writing in place.

    Returns
    -------
    anndata.AnnData or None
        ``None``, or the annotated copy when ``copy=True``. Writes

        ``adata.obs[key_added]``
            Descendant probability of each cell at ``target_time`` (sums to 1 there; ``NaN``
            at other time points).
        ``adata.obs[f"{key_added}_density"]``
            Kernel density of the pushed cells at each cell of ``target_time``, scaled to a
            maximum of 1 (``NaN`` at other time points).
        ``adata.uns[key_added]``
            The same fields as :func:`ancestors` writes (``positions`` are the pushed
            positions).

    Raises
    ------
    TypeError
        When ``adata`` or ``model`` is not what it should be (an AnnData first, a fitted
        :class:`~trajflow.TrajectoryModel` second), or ``target_time`` is not a number.
    KeyError
        When ``adata`` lacks ``obs[time_key]`` or ``obsm[use_rep]``, or a cell name is not in
        ``adata.obs_names``.
    ValueError
        When ``cells`` selects no cell, is a mask of the wrong length or spans several time
        points, ``target_time`` is not an observed time point later than theirs, or
        ``n_neighbors`` or ``key_added`` is invalid, or ``adata`` is a view and
        ``copy=False`` (writing would silently turn it into a copy).

    Examples
    --------
    >>> tf.tl.descendants(adata, model, cells=adata.obs["leiden"] == "3", target_time=7)
    >>> tf.pl.ancestors(adata, key="descendants")
    """
    return _trace(adata, model, cells, target_time, n_neighbors, key_added, copy, backward=False)


def _trace(
    adata: AnnData,
    model: TrajectoryModel,
    cells: Sequence[str] | np.ndarray | pd.Series,
    target_time: float,
    n_neighbors: int,
    key_added: str,
    copy: bool,
    *,
    backward: bool,
) -> AnnData | None:
    """Body of :func:`ancestors` (``backward``) and :func:`descendants`."""
    func = "trajflow.tl.ancestors" if backward else "trajflow.tl.descendants"
    adata, model = adata_first(adata, model, func)
    model = check_model(model)
    check_anndata(adata)
    check_key(key_added)
    if not copy:
        check_not_view(
            adata, func, f"obs[{key_added!r}]", "pass copy=True to get an annotated copy back"
        )
    n_neighbors = check_neighbors(n_neighbors)
    mask = select_cells(adata, cells)
    obs_t = parse_times(adata, model.time_key)
    src_times = np.unique(obs_t[mask])
    if len(src_times) > 1:
        raise ValueError(
            f"cells span several time points {[float(t) for t in src_times]}; pick cells of one "
            f"time point, e.g. cells=(adata.obs['leiden'] == '3') & "
            f"(adata.obs[{model.time_key!r}] == {float(src_times[-1]):g})."
        )
    src = float(src_times[0])
    tgt = observed_time(target_time, obs_t, what="target_time", time_key=model.time_key)
    if backward and tgt >= src:
        raise ValueError(
            f"target_time={tgt:g} must be earlier than the cells' time point {src:g}; for where "
            "cells go, use trajflow.tl.descendants or trajflow.tl.fate_probabilities."
        )
    if not backward and tgt <= src:
        raise ValueError(
            f"target_time={tgt:g} must be later than the cells' time point {src:g}; for where "
            "cells came from, use trajflow.tl.ancestors."
        )
    x_all = model.representation(adata)
    positions = model.push(x_all[mask], source_time=src, times=tgt)
    # Neighbours and the density live in the model's standardised space.
    back = model.scaler.transform(positions)
    at_tgt = np.flatnonzero(same_time(obs_t, tgt))
    z_tgt = model.scaler.transform(x_all[at_tgt])
    k = min(n_neighbors, len(at_tgt))
    idx = kneighbors(back, z_tgt, k, return_distance=False, device=model.device)
    prob = np.bincount(idx.ravel(), minlength=len(at_tgt)) / idx.size
    # Gaussian KDE with Scott's rule on the pulled-back points.
    n, d = back.shape
    bw = float(np.mean(back.std(axis=0)) * n ** (-1.0 / (d + 4))) if n > 1 else 1.0
    bw = bw if bw > 1e-8 else 1.0
    dens = gaussian_sums(z_tgt, back, bw)  # blockwise: no (cells x points) matrix
    dens = dens / dens.max() if dens.max() > 0 else dens

    if copy:
        adata = adata.copy()
    names = np.asarray(adata.obs_names)
    col = np.full(adata.n_obs, np.nan)
    col[at_tgt] = prob
    adata.obs[key_added] = col
    col = np.full(adata.n_obs, np.nan)
    col[at_tgt] = dens
    adata.obs[f"{key_added}_density"] = col
    adata.uns[key_added] = {
        "cells": names[mask].astype(str),
        "positions": positions,
        "nearest": names[at_tgt[idx[:, 0]]].astype(str),
        "source_time": src,
        "target_time": tgt,
        "n_neighbors": k,
        "bandwidth": bw,
        "use_rep": model.use_rep,
        "n_dims": model.n_dims,
        "time_key": model.time_key,
    }
    word = "ancestors" if backward else "descendants"
    log_written(
        f"{word} at {tgt:g} of {int(mask.sum())} cells at {src:g}",
        [
            f"'{key_added}', {word[:-1]} probability (adata.obs)",
            f"'{key_added}_density', density of the {'pulled-back' if backward else 'pushed'} "
            "cells (adata.obs)",
            f"'{key_added}', {'pulled-back' if backward else 'pushed'} positions and settings "
            "(adata.uns)",
        ],
    )
    return adata if copy else None
