"""Cell fates: where each cell of a time point ends up at a later time point."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.neighbors import NearestNeighbors

from .._anndata import check_anndata, group_labels, parse_times
from .._timecourse import same_time
from ._utils import adata_first, check_key, check_model, check_neighbors, log_written, observed_time

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def fate_probabilities(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    source_time: float,
    groupby: str,
    target_time: float | None = None,
    n_neighbors: int = 15,
    n_samples: int | None = None,
    sde: bool | None = None,
    seed: int = 0,
    key_added: str = "fate_probabilities",
    copy: bool = False,
) -> AnnData | None:
    """Probability of each cell of ``source_time`` to end in each group at ``target_time``.

    Every cell of ``adata`` at ``source_time`` is pushed through the flow to ``target_time`` and
    its end point is assigned to the groups of ``obs[groupby]`` among the observed cells at
    ``target_time`` by a k-nearest-neighbour classifier (the fraction of its ``n_neighbors``
    nearest target cells in each group, Euclidean distance in the model's standardised space).
    With the SDE (``method="sb-cfm"``) each cell is pushed ``n_samples`` times with independent
    noise and the probabilities are averaged, so a cell at a branch point gets split fates; the
    ODE is deterministic and uses one sample.

    Parameters
    ----------
    adata
        The AnnData the model was fitted on (or one with the same ``obs[time_key]`` and
        ``obsm[use_rep]``) with the groups in ``obs[groupby]``.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    source_time
        Observed time point whose cells get fate probabilities.
    groupby
        Column of ``adata.obs`` with the groups (e.g. clusters or cell types) at ``target_time``.
        Only its labels at ``target_time`` are used; missing labels are ignored.
    target_time
        Observed time point the fates are read at. Default: the last trained time point.
    n_neighbors
        Neighbours of the kNN classifier.
    n_samples
        Pushes per cell. Default: 10 with the SDE, 1 with the ODE.
    sde
        Sample the SDE. Default: ``True`` when the model learned a score (``sb-cfm``).
    seed
        Seed of the SDE noise.
    key_added
        Where the results go (see below).
    copy
        Annotate and return a copy of ``adata`` instead of writing in place.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. Writes

    ``adata.obsm[key_added]``
        Array ``(n_obs, n_groups)``: each source cell's probability per group (rows sum to 1);
        ``NaN`` for cells of other time points.
    ``adata.obs[f"{key_added}_fate"]``
        The most likely group of each source cell (categorical; missing elsewhere).
    ``adata.uns[key_added]``
        ``groups`` (column order of the ``obsm`` array), ``groupby``, ``source_time``,
        ``target_time``, ``n_neighbors``, ``n_samples``, ``sde``, ``use_rep``, ``n_dims``,
        ``time_key``.

    Examples
    --------
    >>> tf.tl.fate_probabilities(adata, model, source_time=0, groupby="leiden")
    >>> tf.pl.fates(adata)
    """
    adata, model = adata_first(adata, model, "trajflow.tl.fate_probabilities")
    model = check_model(model)
    check_anndata(adata)
    check_key(key_added)
    n_neighbors = check_neighbors(n_neighbors)
    labels = group_labels(adata, groupby)
    obs_t = parse_times(adata, model.time_key)
    src = observed_time(source_time, obs_t, what="source_time", time_key=model.time_key)
    tgt = model.times[-1] if target_time is None else target_time
    tgt = observed_time(tgt, obs_t, what="target_time", time_key=model.time_key)
    if tgt <= src:
        raise ValueError(
            f"target_time={tgt:g} must be later than source_time={src:g}; for where cells came "
            "from, use trajflow.tl.ancestors."
        )
    if sde is None:
        sde = model.learns_score  # sde=True without a score is refused by model.push
    if n_samples is None:
        n_samples = 10 if sde else 1
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")

    x_all = model.representation(adata)
    z_all = model.scaler.transform(x_all)  # kNN distances in the model's standardised space
    at_tgt = same_time(obs_t, tgt) & labels.notna().to_numpy()
    if not at_tgt.any():
        raise ValueError(
            f"No cell at target_time={tgt:g} has a label in adata.obs[{groupby!r}]; annotate "
            "the cells of the target time point (e.g. cluster them)."
        )
    tgt_labels = labels.to_numpy()[at_tgt]
    col = adata.obs[groupby]
    order = (
        [str(c) for c in col.cat.categories]
        if isinstance(col.dtype, pd.CategoricalDtype)
        else sorted(set(tgt_labels))
    )
    groups = [g for g in order if g in set(tgt_labels)]
    code = pd.Index(groups).get_indexer(tgt_labels)
    k = min(n_neighbors, int(at_tgt.sum()))
    nn = NearestNeighbors(n_neighbors=k).fit(z_all[at_tgt])

    src_mask = same_time(obs_t, src)
    x0 = x_all[src_mask]
    probs = np.zeros((len(x0), len(groups)))
    for s in range(n_samples):
        end = model.push(x0, source_time=src, times=tgt, sde=sde, seed=seed + s)
        idx = nn.kneighbors(model.scaler.transform(end), return_distance=False)
        for g in range(len(groups)):
            probs[:, g] += (code[idx] == g).mean(axis=1)
    probs /= n_samples

    if copy:
        adata = adata.copy()
    out = np.full((adata.n_obs, len(groups)), np.nan)
    out[src_mask] = probs
    adata.obsm[key_added] = out
    fate = np.full(adata.n_obs, None, dtype=object)
    fate[src_mask] = np.asarray(groups, dtype=object)[probs.argmax(axis=1)]
    adata.obs[f"{key_added}_fate"] = pd.Categorical(fate, categories=groups)
    adata.uns[key_added] = {
        "groups": np.asarray(groups, dtype=str),
        "groupby": groupby,
        "source_time": src,
        "target_time": tgt,
        "n_neighbors": k,
        "n_samples": int(n_samples),
        "sde": bool(sde),
        "use_rep": model.use_rep,
        "n_dims": model.n_dims,
        "time_key": model.time_key,
    }
    log_written(
        f"fate probabilities of {len(x0)} cells at {src:g} over {len(groups)} groups at {tgt:g}",
        [
            f"'{key_added}', fate probabilities (adata.obsm)",
            f"'{key_added}_fate', most likely fate (adata.obs)",
            f"'{key_added}', groups and settings (adata.uns)",
        ],
    )
    return adata if copy else None
