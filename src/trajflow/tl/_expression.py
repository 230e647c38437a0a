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
            ``sde``; ``time_key``.

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
        ``mapping="pca"`` does not apply, both ``copy`` and ``return_cells`` are set, or
        ``mapping``, ``n_neighbors``, ``n_cells`` or ``key_added`` is invalid.

    Examples
    --------
    >>> tf.tl.predict_expression(adata, model, times=np.linspace(0, 7, 29),
    ...                          genes=["Zfp42", "Pou5f1"], layer="log1p_cp10k")
    >>> tf.pl.gene_trends(adata, genes=["Zfp42", "Pou5f1"])
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
    x0 = x_all[in_src]
    names = np.asarray(adata.obs_names)[in_src]
    if n_cells is not None:
        if isinstance(n_cells, bool) or not isinstance(n_cells, int | np.integer) or n_cells < 1:
            raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}.")
        pick = np.random.default_rng(seed).choice(len(x0), size=n_cells, replace=n_cells > len(x0))
        x0, names = x0[pick], names[pick]

    # Representation units throughout; the source time itself is the source cells, unmoved.
    x_pred = np.empty((len(grid), *x0.shape))
    x_pred[at_src] = x0
    if (~at_src).any():
        x_pred[~at_src] = carry(model, x0, source_time=src, times=grid[~at_src], sde=sde, seed=seed)

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
            idx = kneighbors(model.scaler.transform(x), z_all, k, return_distance=False)
            rows = np.repeat(np.arange(len(x)), k)
            w = sparse.csr_matrix(
                (np.full(idx.size, 1.0 / k), (rows, idx.ravel())), shape=(len(x), adata.n_obs)
            )
            return _dense(w @ expr_genes)

    stats: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "q25": [], "q75": []}
    cells_expr = []
    for x in x_pred:
        e = to_expression(x)
        if return_cells:
            cells_expr.append(e)
        stats["mean"].append(e.mean(axis=0))
        stats["std"].append(e.std(axis=0))
        q = np.quantile(e, [0.25, 0.75], axis=0)
        stats["q25"].append(q[0])
        stats["q75"].append(q[1])

    observed = np.unique(obs_t)
    ostats: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "q25": [], "q75": []}
    for t in observed:
        e = _dense(expr[np.flatnonzero(obs_t == t)][:, gene_idx])
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
    adata.uns[key_added] = result
    log_written(
        f"predicted expression of {len(gene_names)} gene(s) at {len(grid)} time(s) ({used})",
        [f"'{key_added}', predicted and observed expression summaries (adata.uns)"],
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
