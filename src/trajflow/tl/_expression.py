"""Genes over time: expression of predicted cells, mapped back from the model's representation."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._anndata import _looks_like_counts, check_anndata, parse_times
from .._consumers import (
    adata_first,
    as_time_array,
    check_key,
    check_model,
    check_neighbors,
    log_written,
    logger,
    observed_time,
)
from .._neighbors import kneighbors
from .._outputs import PREDICTION_KEY, SOURCE_CELL_KEY, SOURCE_TIME_KEY
from .._timecourse import same_time
from ._carry import carry

if TYPE_CHECKING:
    from .._model import TrajectoryModel

Mapping = Literal["auto", "pca", "knn"]


def resolve_genes(adata: AnnData, genes: str | Sequence[str] | None) -> np.ndarray:
    """Column indices of ``genes`` in ``adata.var_names`` (all genes for ``None``).

    Parameters
    ----------
    adata
        The AnnData whose ``var_names`` are searched.
    genes
        One gene name, several, or ``None`` for all genes.

    Returns
    -------
    numpy.ndarray
        Integer column indices, in the order of ``genes``.

    Raises
    ------
    KeyError
        When a gene is not in ``adata.var_names`` (the message suggests close names).
    ValueError
        When ``genes`` is empty or has duplicates.
    """
    if genes is None:
        return np.arange(adata.n_vars)
    if isinstance(genes, str):
        genes = [genes]
    genes = list(genes)
    if not genes:
        raise ValueError("genes is empty; pass gene names from adata.var_names, or None for all.")
    index = pd.Index(adata.var_names)
    missing = [g for g in genes if g not in index]
    if missing:
        hints = []
        lower = {str(v).lower(): str(v) for v in index}
        for g in missing[:5]:
            close = [lower[str(g).lower()]] if str(g).lower() in lower else []
            close = close or difflib.get_close_matches(str(g), [str(v) for v in index], n=3)
            if close:
                hints.append(f"{g!r}: did you mean {', '.join(map(repr, close))}?")
        raise KeyError(
            f"Gene(s) {missing[:10]} not in adata.var_names ({adata.n_vars} genes). "
            + (" ".join(hints) + " " if hints else "")
            + "Check the spelling (mouse genes are usually 'Nanog', human 'NANOG')."
        )
    if len(set(genes)) != len(genes):
        raise ValueError(f"genes has duplicates: {genes}.")
    return index.get_indexer(genes)


def expression_matrix(adata: AnnData, layer: str | None) -> Any:
    """``adata.layers[layer]`` or ``adata.X`` (sparse or dense, not copied).

    Parameters
    ----------
    adata
        The AnnData holding the expression.
    layer
        A key of ``adata.layers``, or ``None`` for ``adata.X``.

    Returns
    -------
    numpy.ndarray or scipy.sparse.spmatrix
        The matrix, cells x genes, as stored.

    Raises
    ------
    KeyError
        When ``layer`` is not in ``adata.layers``.
    ValueError
        When ``layer`` is ``None`` and ``adata.X`` is empty.
    """
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= naming the expression layer to use.")
        return adata.X
    if layer not in adata.layers:
        keys = ", ".join(map(repr, adata.layers.keys())) or "none"
        raise KeyError(f"layer={layer!r} is not in adata.layers (available: {keys}).")
    return adata.layers[layer]


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)


def _stored_pca_mean(adata: AnnData) -> np.ndarray | None:
    """Per-gene mean of the input of trajflow's automatic PCA (``uns['trajflow_pca']['mean']``,
    see :func:`~trajflow._anndata.ensure_pca`), or ``None`` when there is none of the right
    length."""
    record = adata.uns.get("trajflow_pca")
    mean = record.get("mean") if isinstance(record, dict) else None
    if mean is None:
        return None
    mean = np.asarray(mean, dtype=np.float64).ravel()
    return mean if mean.shape == (adata.n_vars,) else None


def _pca_loadings(
    model: TrajectoryModel, adata: AnnData, expr: Any, gene_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | str:
    """``(gene means, loadings (n_genes, n_dims))`` when the representation is a PCA of ``expr``
    whose loadings are stored; otherwise a sentence saying why not.

    The loadings are ``varm['PCs']`` (scanpy's, or those of trajflow's automatic PCA; genes
    outside the PCA have zero rows). The mean is the one stored by the automatic PCA
    (``uns['trajflow_pca']['mean']``, right even when ``adata`` has fewer cells than the PCA)
    or else the mean of ``expr``; whichever makes ``obsm['X_pca'] == (expr - mean) @ PCs`` on a
    sample of cells is used, and if neither does the PCA was not computed on ``expr``.
    """
    if model.use_rep != "X_pca" or "PCs" not in adata.varm:
        return (
            f"the representation is obsm[{model.use_rep!r}] and adata.varm has no 'PCs' "
            "(scanpy's PCA loadings)"
            if "PCs" not in adata.varm
            else f"the model's representation is obsm[{model.use_rep!r}], not 'X_pca'"
        )
    loadings = np.asarray(adata.varm["PCs"], dtype=np.float64)
    if loadings.shape[1] < model.n_dims:
        return f"varm['PCs'] has {loadings.shape[1]} components, fewer than n_dims={model.n_dims}"
    loadings = loadings[:, : model.n_dims]
    # Check that obsm['X_pca'] really is (expr - mean) @ loadings: a PCA of this very matrix.
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(adata.n_obs, size=min(500, adata.n_obs), replace=False))
    rep = model.representation(adata)[idx]
    sample = _dense(expr[idx])
    stored = _stored_pca_mean(adata)
    means = [] if stored is None else [stored]
    means.append(np.asarray(expr.mean(axis=0), dtype=np.float64).ravel())
    mean = None
    for candidate in means:
        err = np.abs((sample - candidate) @ loadings - rep).max(axis=0) / (rep.std(axis=0) + 1e-12)
        if np.all(err <= 1e-2):
            mean = candidate
            break
    if mean is None:
        record = adata.uns.get("trajflow_pca")
        if isinstance(record, dict) and record.get("log_normalised") and _looks_like_counts(expr):
            return (
                "obsm['X_pca'] is trajflow's automatic PCA of normalize_total(target_sum=1e4) + "
                "log1p of adata.X, and this expression matrix is raw counts (pass a layer with "
                "those values, e.g. adata.layers['log1p_cp10k'] = sc.pp.log1p(sc.pp."
                "normalize_total(adata, target_sum=1e4, inplace=False)['X']), and "
                "layer='log1p_cp10k')"
            )
        return (
            "obsm['X_pca'] is not the projection of this expression matrix on varm['PCs'] "
            "(pass the layer the PCA was computed on)"
        )
    zero = np.all(loadings[gene_idx] == 0, axis=1)
    if np.any(zero):
        names = list(adata.var_names[gene_idx[zero]][:5])
        return f"gene(s) {names} have zero PCA loadings (not among the genes the PCA used)"
    return mean, loadings


def _weighted_summary(e: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted ``mean``, ``std``, ``q25``, ``q75`` per column of ``e`` ``(n, genes)``; NaN when
    the weights sum to 0."""
    total = w.sum()
    if total <= 0:
        nan = np.full(e.shape[1], np.nan)
        return {"mean": nan, "std": nan, "q25": nan, "q75": nan}
    p = w / total
    mean = p @ e
    std = np.sqrt(np.maximum(p @ (e - mean) ** 2, 0.0))
    # Weighted quantiles: each cell's weight centred on its rank (numpy has no weighted
    # linear-interpolation quantile before 2.0's "inverted_cdf", which is a step function).
    order = np.argsort(e, axis=0, kind="stable")
    es = np.take_along_axis(e, order, axis=0)
    ps = p[order]
    cdf = np.cumsum(ps, axis=0) - 0.5 * ps
    q25 = np.array([np.interp(0.25, cdf[:, j], es[:, j]) for j in range(e.shape[1])])
    q75 = np.array([np.interp(0.75, cdf[:, j], es[:, j]) for j in range(e.shape[1])])
    return {"mean": mean, "std": std, "q25": q25, "q75": q75}


def _lineage_weights(
    adata: AnnData, model: TrajectoryModel, lineage_key: str, obs_t: np.ndarray, src: float
) -> tuple[np.ndarray, list[str], str, str, float]:
    """``(weights (n_obs, n_lineages), lineage names, groupby, source of the weights, target
    time)`` for :func:`predict_expression`'s ``lineage_key``.

    A ``key_added`` of :func:`~trajflow.tl.fate_probabilities` gives its ``obsm`` array (NaN
    rows: no fate computed) with the cells of its target time point one-hot by their group. A
    column of ``adata.obs`` gives the same, computed here (through the observed time points, to
    the last trained time point) on a light copy holding only the time, the column and the
    representation, so nothing is written into ``adata``.
    """
    from ._fates import fate_probabilities

    record = adata.uns.get(lineage_key)
    if lineage_key in adata.obsm and isinstance(record, dict) and "groups" in record:
        probs = np.asarray(adata.obsm[lineage_key], dtype=np.float64)
        groups = [str(g) for g in record["groups"]]
        if probs.shape != (adata.n_obs, len(groups)):
            raise ValueError(
                f"adata.obsm[{lineage_key!r}] has shape {probs.shape}, not (n_obs, "
                f"{len(groups)} groups) as adata.uns[{lineage_key!r}]['groups'] says; rerun "
                "trajflow.tl.fate_probabilities."
            )
        groupby, target = str(record["groupby"]), float(record["target_time"])
        origin = "fate_probabilities"
    elif lineage_key in adata.obs.columns:
        groupby, target = lineage_key, float(model.times[-1])
        if src >= target or same_time(src, target):
            raise ValueError(
                f"lineage_key={lineage_key!r} names groups at the last trained time point "
                f"({target:g}), but source_time={src:g} is not before it; pass an earlier "
                "source_time."
            )
        light = AnnData(
            obs=adata.obs[[model.time_key, lineage_key]].copy(),
            obsm={model.use_rep: adata.obsm[model.use_rep]},
        )
        level = logger.level
        logger.setLevel(max(level, 30))  # the light copy's keys are not the user's: no log line
        try:
            fate_probabilities(light, model, groupby=lineage_key, target_time=target)
        finally:
            logger.setLevel(level)
        probs = np.asarray(light.obsm["fate_probabilities"], dtype=np.float64)
        groups = [str(g) for g in light.uns["fate_probabilities"]["groups"]]
        origin = "obs"
    else:
        raise KeyError(
            f"lineage_key={lineage_key!r} is neither the key_added of "
            "trajflow.tl.fate_probabilities (adata.obsm and adata.uns) nor a column of "
            "adata.obs. Run trajflow.tl.fate_probabilities(adata, model, groupby=...) first, "
            "or pass a column with the groups at the last time point."
        )
    # Cells of the target time point belong to their own group.
    at_tgt = same_time(obs_t, target)
    if groupby in adata.obs.columns:
        labels = adata.obs[groupby].astype(object).to_numpy()[at_tgt]
        onehot = np.array([[str(v) == g for g in groups] for v in labels], dtype=np.float64)
        if len(onehot):
            probs[at_tgt] = np.where(onehot.any(axis=1, keepdims=True), onehot, np.nan)
    in_src = same_time(obs_t, src)
    if not np.all(np.isfinite(probs[in_src])):
        record = record if isinstance(record, dict) else {}
        raise ValueError(
            f"adata.obsm[{lineage_key!r}] has no fate probabilities for the cells at "
            f"source_time={src:g} (its source times: "
            f"{', '.join(f'{t:g}' for t in np.atleast_1d(record.get('source_times', [])))}); "
            f"rerun trajflow.tl.fate_probabilities(adata, model, groupby={groupby!r}, "
            f"source_time={src:g}) or pass that source_time here."
        )
    return probs, groups, groupby, origin, target


def _lineage_knots(probs: np.ndarray, obs_t: np.ndarray, src: float, target: float) -> list[float]:
    """Observed time points from ``src`` to ``target`` where cells have fate weights (at the
    target, the labelled cells)."""
    known = np.all(np.isfinite(probs), axis=1)
    return [
        float(t)
        for t in np.unique(obs_t)
        if (t >= src or same_time(t, src)) and (t <= target or same_time(t, target))
        and np.any(known[same_time(obs_t, t)])
    ]  # fmt: skip


def _path_weights(
    model: TrajectoryModel,
    probs: np.ndarray,
    x_all: np.ndarray,
    obs_t: np.ndarray,
    src_idx: np.ndarray,
    knots: list[float],
    at: Any,
    grid: np.ndarray,
) -> list[np.ndarray]:
    """Each path's lineage weights ``(n_paths, n_lineages)`` at every time of ``grid``.

    A path counts towards a lineage with the fate probability of where it *is*: at the source
    time the source cell's own, at each later knot (an observed time point with fate
    probabilities) the probabilities of the observed cells it has reached there, spread with
    the fates' own kernel; linear in time between knots, constant outside them. So a path that
    has entered a branch counts for that branch, while early on it counts for every fate it
    may still take (as CellRank weights each cell by its own fate probability).
    """
    from ._fate_kernel import KERNEL_SHARE, calibrated_assign, is_balanced

    at_knots = []
    for t in knots:
        if same_time(t, knots[0]):
            at_knots.append(probs[src_idx])
            continue
        there = same_time(obs_t, t) & np.all(np.isfinite(probs), axis=1)
        move = calibrated_assign(
            model.scaler.transform(at(t)),
            model.scaler.transform(x_all[there]),
            n_neighbors=30,
            share=KERNEL_SHARE,
            balanced=is_balanced(model),
            device=model.device,
        )
        at_knots.append(np.asarray(move @ probs[there]))
    ks = np.asarray(knots, dtype=float)
    out = []
    for t in grid:
        j = int(np.searchsorted(ks, t, side="right"))
        if j == 0:
            out.append(at_knots[0])
        elif j == len(ks):
            out.append(at_knots[-1])
        else:
            a = (t - ks[j - 1]) / (ks[j] - ks[j - 1])
            out.append((1 - a) * at_knots[j - 1] + a * at_knots[j])
    return out


def predict_expression(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    times: float | Sequence[float] | np.ndarray,
    genes: str | Sequence[str] | None = None,
    layer: str | None = None,
    mapping: Mapping = "auto",
    n_neighbors: int = 15,
    source_time: float | None = None,
    n_cells: int | None = None,
    sde: bool = False,
    seed: int = 0,
    lineage_key: str | None = None,
    key_added: str = "trajflow_expression",
    return_cells: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Expression of genes in the cells the flow predicts at any time.

    The cells of ``adata`` at ``source_time`` are pushed through the flow to every time in
    ``times`` (one integration, so the trends are continuous), and each predicted position is
    mapped back from the model's representation to gene expression in one of two ways:

    ``"pca"``
        Through the PCA loadings: ``expression = gene mean + x @ PCs[:, :n_dims].T``. Used when the
        representation is ``obsm['X_pca']`` with scanpy's loadings in ``varm['PCs']`` and
        ``obsm['X_pca']`` is checked to be the projection of ``layer`` on them. Exact for the
        linear model, but only the first ``n_dims`` components carry signal: a gene's
        prediction is its rank-``n_dims`` reconstruction (smoother than single cells).
    ``"knn"``
        A k-nearest-neighbour average: each predicted cell gets the mean expression of its
        ``n_neighbors`` nearest observed cells of ``adata`` (all time points, Euclidean distance in
        the model's standardised space). Works for any representation (autoencoder latents,
        PCA without stored loadings); predictions stay on the observed expression manifold.

    ``"auto"`` (default) uses ``"pca"`` when it applies and ``"knn"`` otherwise; which one was used
    is logged and stored. Either way per-cell spread is shrunk compared with single cells, so
    compare predicted and observed *means*; quartiles are shown for orientation.

    With ``lineage_key``, the trends are also summarised per lineage, as CellRank's gene trends
    are: at every time each path counts towards each lineage with the fate probability of
    where it is then (a weighted mean, sd and quartiles), so branches that split are not
    averaged into one line. At the source time that is the source cell's own fate probability;
    at each later observed time point with fate probabilities, that of the observed cells the
    path has reached (spread with :func:`fate_probabilities`' kernel; at the fates' target time
    point, their groups); linear in time in between. The observed cells are summarised the same way at every time point with
    fate probabilities (and by their own group at the fates' target time point).

    Parameters
    ----------
    adata
        The AnnData the model was fitted on (or one with the same ``obs[time_key]`` and
        ``obsm[use_rep]``), holding the expression in ``X`` or ``layers[layer]``.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    times
        Time(s) to predict at, in the units of ``obs[time_key]``, e.g.
        ``np.linspace(0, 7, 29)``; unmeasured times are fine. All must be ``>= source_time``;
        times beyond the trained range are extrapolated with an ``ExtrapolationWarning``.
    genes
        Gene name(s) from ``adata.var_names``. Default: all genes.
    layer
        Expression layer to read (default ``adata.X``). Use log-normalised values, e.g.
        ``layer="log1p_cp10k"``, not raw counts.
    mapping
        ``"auto"``, ``"pca"`` or ``"knn"`` (see above).
    n_neighbors
        Neighbours of the ``"knn"`` mapping.
    source_time
        Observed time point whose cells are pushed, in the units of ``obs[time_key]``.
        Default: the first trained time point.
    n_cells
        Push a random subset of this many source cells (default: all).
    sde
        Sample the SDE (``method="sb-cfm"`` only) instead of the probability-flow ODE.
    seed
        Seed of subsampling and SDE noise.
    lineage_key
        Trends per lineage. Either the ``key_added`` of :func:`fate_probabilities` (e.g.
        ``"fate_probabilities"``; it must hold the cells at ``source_time``), whose
        probabilities weight each source cell's path, or a column of ``adata.obs`` with groups
        at the last trained time point (e.g. clusters there), from which those fate
        probabilities are computed first with :func:`fate_probabilities`' defaults (not written
        into ``adata``). Default: no lineages.
    key_added
        Results go to ``adata.uns[key_added]``.
    return_cells
        Also build and return the predicted cells (AnnData: cells × ``genes``, ``obs[time_key]``,
        ``obs['source_cell']``, positions in ``obsm[use_rep]``). ``adata`` is still annotated.
    copy
        Annotate and return a copy of ``adata`` instead of writing in place.

    Returns
    -------
    anndata.AnnData or None
        ``None`` (``adata`` annotated in place); the annotated copy when ``copy=True``; the
        predicted cells when ``return_cells=True`` (``X`` their expression, cells x
        ``genes``, named ``predicted-<i>``; ``obs`` columns ``time_key``, ``source_time`` and
        ``source_cell``; positions in ``obsm[use_rep]``; ``uns['trajflow']`` the mapping,
        layer and ``sde``). Writes

        ``adata.uns[key_added]``
            A dict with ``genes``; ``times`` (sorted); ``mean``, ``std``, ``q25``, ``q75`` of
            the predicted expression, arrays ``(n_times, n_genes)``; ``observed_times`` and
            ``observed_mean``/``observed_std``/``observed_q25``/``observed_q75`` (the data,
            per observed time point); ``trained_times``; ``mapping`` (``"pca"`` or
            ``"knn"``); ``layer`` (``"X"`` for ``adata.X``); ``source_time``; ``n_cells``;
            ``sde``; ``time_key``. With ``lineage_key`` also ``lineages`` (names);
            ``lineage_key``; ``lineage_groupby`` (the column the lineages are groups of);
            ``lineage_target_time``; ``lineage_weight`` (each lineage's summed fate
            probability over the source cells: its expected number of them);
            ``lineage_mean``/``lineage_std``/``lineage_q25``/``lineage_q75``, arrays
            ``(n_lineages, n_times, n_genes)``; ``observed_lineage_mean``/``_std``/``_q25``/
            ``_q75``, arrays ``(n_lineages, n_observed_times, n_genes)`` (NaN at time points
            without fate probabilities) and ``observed_lineage_weight``
            ``(n_lineages, n_observed_times)``.

    Raises
    ------
    TypeError
        When ``adata`` or ``model`` is not what it should be (an AnnData first, a fitted
        :class:`~trajflow.TrajectoryModel` second), or ``source_time`` is not a number.
    KeyError
        When a gene is not in ``adata.var_names`` (the message suggests close names),
        ``layer`` is not in ``adata.layers``, or ``adata`` lacks ``obs[time_key]`` or
        ``obsm[use_rep]``.
    ValueError
        When ``times`` is empty or not finite or earlier than ``source_time``,
        ``source_time`` is not an observed time point, ``genes`` is empty or has duplicates,
        ``mapping="pca"`` does not apply, both ``copy`` and ``return_cells`` are set,
        ``lineage_key``'s fate probabilities do not cover ``source_time`` (or its groups are
        at a time not after it), or ``mapping``, ``n_neighbors``, ``n_cells`` or
        ``key_added`` is invalid.

    Examples
    --------
    >>> tf.tl.predict_expression(adata, model, times=np.linspace(0, 7, 29),
    ...                          genes=["Zfp42", "Pou5f1"], layer="log1p_cp10k")
    >>> tf.pl.gene_trends(adata, genes=["Zfp42", "Pou5f1"])

    Per lineage, from fate probabilities towards clusters at the last time point:

    >>> tf.tl.fate_probabilities(adata, model, groupby="leiden")
    >>> tf.tl.predict_expression(adata, model, times=np.linspace(0, 7, 29), genes="Krt8",
    ...                          lineage_key="fate_probabilities")
    >>> tf.pl.gene_trends(adata, "Krt8")  # one line per lineage
    """
    adata, model = adata_first(adata, model, "trajflow.tl.predict_expression")
    model = check_model(model)
    check_anndata(adata)
    if mapping not in ("auto", "pca", "knn"):
        raise ValueError(f"mapping must be 'auto', 'pca' or 'knn', got {mapping!r}.")
    check_key(key_added)
    n_neighbors = check_neighbors(n_neighbors)
    if copy and return_cells:
        raise ValueError("copy=True and return_cells=True both ask for a return value; pick one.")
    gene_idx = resolve_genes(adata, genes)
    expr = expression_matrix(adata, layer)
    if layer is None and _looks_like_counts(expr):
        logger.warning(
            "adata.X looks like raw counts; predicted expression averages counts. Pass a "
            "log-normalised layer (layer=...) for interpretable trends."
        )
    obs_t = parse_times(adata, model.time_key)
    x_all = model.representation(adata)
    grid = np.unique(as_time_array(times))
    src = model.times[0] if source_time is None else source_time
    src = observed_time(src, obs_t, what="source_time", time_key=model.time_key)
    at_src = same_time(grid, src)
    if grid[0] < src and not at_src[0]:
        raise ValueError(
            f"times must be >= source_time={src:g} (got {grid[0]:g}); the flow is integrated "
            "forwards from the source cells. Pass an earlier source_time."
        )
    in_src = same_time(obs_t, src)
    src_idx = np.flatnonzero(in_src)
    if n_cells is not None:
        if isinstance(n_cells, bool) or not isinstance(n_cells, int | np.integer) or n_cells < 1:
            raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}.")
        pick = np.random.default_rng(seed).choice(
            len(src_idx), size=n_cells, replace=n_cells > len(src_idx)
        )
        src_idx = src_idx[pick]
    x0 = x_all[src_idx]
    names = np.asarray(adata.obs_names)[src_idx]
    lineage = None
    if lineage_key is not None:
        if not isinstance(lineage_key, str) or not lineage_key:
            raise ValueError(
                f"lineage_key must be a non-empty string or None, got {lineage_key!r}."
            )
        lineage = _lineage_weights(adata, model, lineage_key, obs_t, src)

    # Representation units throughout; the source time itself is the source cells, unmoved.
    # With lineages, the paths are also read at the knots of their weights (one integration).
    knots = [] if lineage is None else _lineage_knots(lineage[0], obs_t, src, lineage[4])
    extra = np.array([t for t in knots[1:] if not same_time(grid, t).any()], dtype=float)
    later = np.r_[grid[~at_src], extra]
    x_pred = np.empty((len(grid), *x0.shape))
    x_pred[at_src] = x0
    x_later = np.empty((0, *x0.shape))
    if len(later):
        x_later = carry(model, x0, source_time=src, times=later, sde=sde, seed=seed)
        x_pred[~at_src] = x_later[: int((~at_src).sum())]
    path_weights = None
    if lineage is not None:

        def at(t: float) -> np.ndarray:
            if same_time(t, src):
                return x0
            hit = np.flatnonzero(same_time(later, t))
            return x_later[hit[0]]

        path_weights = _path_weights(model, lineage[0], x_all, obs_t, src_idx, knots, at, grid)

    used: str
    pca = None if mapping == "knn" else _pca_loadings(model, adata, expr, gene_idx)
    if mapping == "pca" and isinstance(pca, str):
        raise ValueError(f"mapping='pca' does not apply: {pca}. Use mapping='knn'.")
    if isinstance(pca, tuple):
        used = "pca"
        mean, loadings = pca

        def to_expression(x: np.ndarray) -> np.ndarray:
            return mean[gene_idx] + x @ loadings[gene_idx].T

        logger.info("Mapping predicted cells to genes through the PCA loadings varm['PCs'].")
    else:
        used = "knn"
        if mapping == "auto" and pca is not None:
            logger.info("Not using the PCA loadings: %s.", pca)
        logger.info(
            "Mapping predicted cells to genes by the mean of their %d nearest observed cells.",
            n_neighbors,
        )
        k = min(n_neighbors, adata.n_obs)
        # Neighbours in the model's standardised space.
        z_all = model.scaler.transform(x_all)
        expr_genes = expr[:, gene_idx]
        expr_genes = expr_genes.tocsr() if sparse.issparse(expr_genes) else np.asarray(expr_genes)

        def to_expression(x: np.ndarray) -> np.ndarray:
            idx = kneighbors(
                model.scaler.transform(x), z_all, k, return_distance=False, device=model.device
            )
            rows = np.repeat(np.arange(len(x)), k)
            w = sparse.csr_matrix(
                (np.full(idx.size, 1.0 / k), (rows, idx.ravel())), shape=(len(x), adata.n_obs)
            )
            return _dense(w @ expr_genes)

    stats: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "q25": [], "q75": []}
    lstats: list[list[dict[str, np.ndarray]]] = []  # per time, per lineage
    cells_expr = []
    for x in x_pred:
        e = to_expression(x)
        if return_cells:
            cells_expr.append(e)
        if path_weights is not None:
            w = path_weights[len(lstats)]
            lstats.append([_weighted_summary(e, w[:, g]) for g in range(w.shape[1])])
        stats["mean"].append(e.mean(axis=0))
        stats["std"].append(e.std(axis=0))
        q = np.quantile(e, [0.25, 0.75], axis=0)
        stats["q25"].append(q[0])
        stats["q75"].append(q[1])

    observed = np.unique(obs_t)
    ostats: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "q25": [], "q75": []}
    olstats: list[list[dict[str, np.ndarray]]] = []  # per observed time, per lineage
    oweight: list[np.ndarray] = []
    for t in observed:
        e = _dense(expr[np.flatnonzero(obs_t == t)][:, gene_idx])
        if lineage is not None:
            w_t = lineage[0][obs_t == t]
            known = np.all(np.isfinite(w_t), axis=1)
            w_t = np.where(known[:, None], w_t, 0.0)
            olstats.append([_weighted_summary(e, w_t[:, g]) for g in range(w_t.shape[1])])
            oweight.append(w_t.sum(axis=0))
        ostats["mean"].append(e.mean(axis=0))
        ostats["std"].append(e.std(axis=0))
        q = np.quantile(e, [0.25, 0.75], axis=0)
        ostats["q25"].append(q[0])
        ostats["q75"].append(q[1])

    if copy:
        adata = adata.copy()
    gene_names = np.asarray(adata.var_names[gene_idx]).astype(str)
    result: dict[str, Any] = {
        "genes": gene_names,
        "times": grid,
        **{k: np.vstack(v) for k, v in stats.items()},
        "observed_times": observed,
        **{f"observed_{k}": np.vstack(v) for k, v in ostats.items()},
        "trained_times": np.asarray(model.times, dtype=float),
        "mapping": used,
        "layer": "X" if layer is None else layer,
        "source_time": src,
        "n_cells": len(x0),
        "sde": bool(sde),
        "time_key": model.time_key,
    }
    if lineage is not None:
        probs, groups, groupby, origin, target = lineage
        result.update(
            {
                "lineages": np.asarray(groups, dtype=str),
                "lineage_key": lineage_key,
                "lineage_groupby": groupby,
                "lineage_source": origin,
                "lineage_target_time": target,
                "lineage_weight": probs[src_idx].sum(axis=0),
                "observed_lineage_weight": np.vstack(oweight).T,
            }
        )
        for k in ("mean", "std", "q25", "q75"):
            result[f"lineage_{k}"] = np.stack(
                [np.vstack([per_t[g][k] for per_t in lstats]) for g in range(len(groups))]
            )
            result[f"observed_lineage_{k}"] = np.stack(
                [np.vstack([per_t[g][k] for per_t in olstats]) for g in range(len(groups))]
            )
    adata.uns[key_added] = result
    log_written(
        f"predicted expression of {len(gene_names)} gene(s) at {len(grid)} time(s) ({used})"
        + (
            ""
            if lineage is None
            else f", per lineage of {lineage[2]!r} at {lineage[4]:g} ({', '.join(lineage[1])})"
        ),
        [
            f"'{key_added}', predicted and observed expression summaries"
            + ("" if lineage is None else ", overall and per lineage")
            + " (adata.uns)"
        ],
    )
    if return_cells:
        n = len(x0)
        obs = pd.DataFrame(
            {
                model.time_key: np.repeat(grid, n),
                SOURCE_TIME_KEY: src,
                SOURCE_CELL_KEY: np.tile(names, len(grid)),
            },
            index=pd.Index([f"predicted-{i}" for i in range(n * len(grid))]),
        )
        cells = AnnData(X=np.vstack(cells_expr), obs=obs, var=pd.DataFrame(index=gene_names))
        cells.obsm[model.use_rep] = x_pred.reshape(-1, x_pred.shape[-1])
        cells.uns[PREDICTION_KEY] = {"mapping": used, "layer": result["layer"], "sde": bool(sde)}
        return cells
    return adata if copy else None
