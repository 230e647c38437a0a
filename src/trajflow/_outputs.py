"""The AnnData objects a model hands back: their ``obs`` / ``uns`` key names and how they are built.

One owner for the layout of a prediction (:meth:`~trajflow.TrajectoryModel.predict`) and of the
paths as cells (:meth:`~trajflow.Trajectories.to_anndata`), so tl and pl read the keys from
here instead of restating bare strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

#: ``uns`` key of a prediction's record (method, sde, time, source_time).
PREDICTION_KEY = "trajflow"
#: ``obs`` column of a predicted cell: the trained time point it was pushed from.
SOURCE_TIME_KEY = "source_time"
#: ``obs`` column of a predicted cell: the obs name of the cell it was pushed from.
SOURCE_CELL_KEY = "source_cell"
#: ``obs`` column of a predicted cell: its distance to the nearest observed cell of the nearest
#: trained time points, over the threshold calibrated on those cells (above 1: off the support).
SUPPORT_DISTANCE_KEY = "support_distance"
#: ``uns[PREDICTION_KEY]`` entry: the trained time point pushed backward (NaN: none).
BACKWARD_SOURCE_KEY = "backward_source_time"
#: ``uns[PREDICTION_KEY]`` entry: the share of the predicted cells pushed backward.
BACKWARD_SHARE_KEY = "backward_share"
#: ``obs`` column of a predicted cell: ``support_distance > 1``.
OFF_SUPPORT_KEY = "off_support"


def time_labels(times: Sequence[float]) -> list[str]:
    """Short labels for distinct times (``1``, ``1.5``), exact where ``:g`` would merge two."""
    labels = [f"{t:g}" for t in times]
    if len(set(labels)) < len(set(times)):
        labels = [np.format_float_positional(t, trim="-") for t in times]
    return labels


def unique_labels(names: Sequence[Any]) -> list[str]:
    """``names`` as strings, repeats suffixed ``#2``, ``#3``... (never one of ``names``)."""
    names = [str(n) for n in names]
    taken, next_k, out = set(names), {}, []
    for name in names:
        if name not in next_k:
            next_k[name] = 2
            out.append(name)
            continue
        label = f"{name}#{next_k[name]}"
        while label in taken:
            next_k[name] += 1
            label = f"{name}#{next_k[name]}"
        taken.add(label)
        next_k[name] += 1
        out.append(label)
    return out


def is_prediction(obj: Any) -> bool:
    """Whether ``obj`` is an AnnData written by :meth:`~trajflow.TrajectoryModel.predict`."""
    return isinstance(obj, AnnData) and SOURCE_TIME_KEY in obj.uns.get(PREDICTION_KEY, {})


def positions_anndata(
    positions: np.ndarray, obs: pd.DataFrame, use_rep: str, var_names: Sequence[str] | None
) -> AnnData:
    """An AnnData of cells at ``positions``: in ``obsm[use_rep]``, or for ``use_rep="X"`` in
    ``X`` with the modelled genes as ``var_names`` (``"0"``, ``"1"``... when unknown)."""
    if use_rep != "X":
        out = AnnData(obs=obs)
        out.obsm[use_rep] = positions
        return out
    names = [str(i) for i in range(positions.shape[1])] if var_names is None else var_names
    return AnnData(X=positions, obs=obs, var=pd.DataFrame(index=pd.Index(list(names))))


def prediction_positions(pred: AnnData, use_rep: str) -> np.ndarray:
    """The positions of the cells of a prediction (``obsm[use_rep]``, or ``X``)."""
    return np.asarray(pred.X if use_rep == "X" else pred.obsm[use_rep], dtype=np.float64)


def prediction_anndata(
    positions: Sequence[np.ndarray],
    *,
    times: Sequence[float],
    sources: Sequence[float],
    source_cells: Sequence[np.ndarray],
    time_key: str,
    use_rep: str,
    method: str,
    sde: bool,
    single: bool,
    support: Sequence[np.ndarray] | None = None,
    var_names: Sequence[str] | None = None,
    plans: Sequence[Any] | None = None,
) -> AnnData:
    """The AnnData of predicted cells, one block of ``positions`` per target time.

    Parameters
    ----------
    positions
        Per target time, the predicted cells ``(n_cells, n_dims)`` in the representation's units.
    times
        The target times.
    sources
        Per target time, the trained time point its cells were pushed from, or per cell
        (an array) when a prediction draws from two.
    source_cells
        Per target time, the obs names of the pushed cells.
    time_key, use_rep
        The fitted AnnData's time column and representation (``obs`` / ``obsm`` keys written).
    method, sde
        Recorded in ``uns[PREDICTION_KEY]``.
    single
        One target time was asked for: ``uns`` records floats, not lists.
    support
        Per target time, each cell's support distance (:data:`SUPPORT_DISTANCE_KEY`); written
        with :data:`OFF_SUPPORT_KEY` and, in ``uns``, the share off the support per time.
    var_names
        For ``use_rep="X"``: the genes' names (the positions then go to ``X``).
    plans
        Per target time, its :class:`~trajflow._sources.SourcePlan`: ``uns`` records the
        forward source as ``source_time``, the backward one as ``backward_source_time`` (NaN
        when none) and ``backward_share``. Default: ``sources`` are the only sources.

    Returns
    -------
    anndata.AnnData
        Cells named ``"<source cell>@t=<time>"`` (unique), ``obs`` columns ``time_key``,
        :data:`SOURCE_TIME_KEY`, :data:`SOURCE_CELL_KEY`, positions in ``obsm[use_rep]`` (in
        ``X``, with ``var_names``, for ``use_rep="X"``).
    """
    labels = []
    for label, cells in zip(time_labels(list(times)), source_cells, strict=True):
        labels += [f"{c}@t={label}" for c in unique_labels(cells)]
    sizes = [len(x) for x in positions]
    per_cell = [
        np.broadcast_to(np.asarray(s, dtype=float), (n,))
        for s, n in zip(sources, sizes, strict=True)
    ]
    obs = pd.DataFrame(
        {
            time_key: np.repeat(times, sizes),
            SOURCE_TIME_KEY: np.concatenate(per_cell) if per_cell else np.array([], float),
            SOURCE_CELL_KEY: np.concatenate(source_cells),
        },
        index=pd.Index(labels),
    )
    forward = [float(p.forward) for p in plans] if plans is not None else list(sources)
    backward = [np.nan if p.backward is None else float(p.backward) for p in plans or []]
    back_shares = [float(p.backward_share) for p in plans or []]
    record: dict[str, Any] = {
        "method": method,
        SOURCE_TIME_KEY: forward[0] if single else forward,
        "time": times[0] if single else list(times),
        "sde": sde,
    }
    if plans is not None:
        record[BACKWARD_SOURCE_KEY] = backward[0] if single else backward
        record[BACKWARD_SHARE_KEY] = back_shares[0] if single else back_shares
    if support is not None:
        obs[SUPPORT_DISTANCE_KEY] = np.concatenate(support)
        obs[OFF_SUPPORT_KEY] = obs[SUPPORT_DISTANCE_KEY].to_numpy() > 1
        shares = [float(np.mean(d > 1)) if len(d) else 0.0 for d in support]
        record["off_support_share"] = shares[0] if single else shares
    out = positions_anndata(np.concatenate(positions), obs, use_rep, var_names)
    out.uns[PREDICTION_KEY] = record
    return out
