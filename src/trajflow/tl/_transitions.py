"""Cell-to-cell transitions of the learned flow: couplings for CellRank, group-to-group tables.

One owner, :func:`flow_transitions`, turns the flow into a row-stochastic matrix between the
observed cells of two time points: every cell of one time point is carried through the flow to
the other and spread over its nearest observed cells there with Gaussian weights. Everything
else here (:func:`couplings`, :func:`realtime_kernel`, :func:`cell_transition`) is a view of it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._anndata import check_anndata, group_labels, parse_times
from .._consumers import (
    adata_first,
    check_key,
    check_model,
    check_neighbors,
    check_not_view,
    observed_time,
)
from .._neighbors import kneighbors
from .._timecourse import same_time
from ._carry import carry

if TYPE_CHECKING:
    from .._model import TrajectoryModel

logger = logging.getLogger("trajflow")

#: A row of :func:`cell_transition` about fewer cells than this is a fraction of very few cells:
#: its size is logged as a warning (a 1-cell group reads 1.000 -> one group).
FEW_CELLS = 10


def _check_samples(n_samples: int | None, sde: bool) -> int:
    if n_samples is None:
        return 10 if sde else 1
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    return int(n_samples)


def soft_assign(
    ends: np.ndarray, targets: np.ndarray, k: int, *, device: Any = None
) -> sparse.csr_matrix:
    """Row-stochastic ``(len(ends), len(targets))``: each end point spread over its ``k``
    nearest targets with Gaussian weights.

    The bandwidth of each end point is the median distance to its neighbours (adaptive, as
    diffusion maps and UMAP do), so a point inside a dense cluster splits its mass among close
    cells and a point between two clusters splits it between both.

    Parameters
    ----------
    ends
        The points to assign, shape ``(n, d)``.
    targets
        The observed cells the points are spread over, ``(m, d)``, same space.
    k
        Targets that share each point (at most ``m``); found exactly
        (:func:`trajflow._neighbors.kneighbors`).
    device
        Where the neighbours are searched (the model's device; on CUDA, by torch there).

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(n, m)``, ``k`` entries per row, rows summing to 1.
    """
    dist, idx = kneighbors(ends, targets, k, device=device)
    h = np.median(dist, axis=1, keepdims=True)
    h = np.where(h > 1e-12, h, 1.0)
    w = np.exp(-0.5 * (dist / h) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(len(ends)), idx.shape[1])
    return sparse.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(len(ends), len(targets)))


def flow_transitions(
    model: TrajectoryModel,
    x_from: np.ndarray,
    t_from: float,
    x_to: np.ndarray,
    t_to: float,
    *,
    n_neighbors: int,
    sde: bool,
    n_samples: int,
    seed: int,
) -> sparse.csr_matrix:
    """Row ``i``: where cell ``x_from[i]`` at ``t_from`` is at ``t_to``, as weights over ``x_to``.

    ``t_to`` may be earlier (the flow run backwards). Neighbours are found in the model's
    standardised space; SDE draws are averaged. The ODE is solved as the tools solve it
    (:func:`~trajflow.tl._carry.carry`: ``solver="auto"``, rk4 in a twelfth of the steps).

    Parameters
    ----------
    model
        The fitted model.
    x_from, x_to
        Cells at ``t_from`` and the observed cells at ``t_to``, in the units of
        ``obsm[use_rep]``, shapes ``(n, n_dims)`` and ``(m, n_dims)``.
    t_from, t_to
        Their times, in the units of ``obs[time_key]``.
    n_neighbors
        Observed cells that share each carried cell (:func:`soft_assign`).
    sde
        Sample the SDE instead of the ODE (backward in time: its reverse-time SDE).
    n_samples
        Pushes averaged per cell, seeded ``seed``, ``seed + 1``, ...
    seed
        Seed of the first push.

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(n, m)``, rows summing to 1.
    """
    k = min(n_neighbors, len(x_to))
    targets = model.scaler.transform(x_to)
    out = sparse.csr_matrix((len(x_from), len(x_to)))
    for s in range(n_samples):
        ends = carry(model, x_from, source_time=t_from, times=t_to, sde=sde, seed=seed + s)
        out = out + soft_assign(model.scaler.transform(ends), targets, k, device=model.device)
    return (out / n_samples).tocsr()


def _time_values(adata: AnnData, time_key: str) -> tuple[np.ndarray, list[Any], list[float]]:
    """``(numeric times per cell, the column's own labels, their numeric values)`` in time order."""
    obs_t = parse_times(adata, time_key)
    values = sorted({float(t) for t in np.unique(obs_t)})
    col = adata.obs[time_key]
    labels: list[Any] = []
    for v in values:
        first = col.to_numpy()[np.flatnonzero(same_time(obs_t, v))[0]]
        labels.append(first.item() if hasattr(first, "item") else first)
    return obs_t, labels, values


def couplings(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    pairs: Literal["sequential", "triu"] = "sequential",
    n_neighbors: int = 30,
    sde: bool | None = None,
    n_samples: int | None = None,
    seed: int = 0,
) -> dict[tuple[Any, Any], AnnData]:
    """Transition matrices between observed time points, in CellRank's ``couplings`` format.

    For each pair of observed time points ``(t1, t2)``, every cell of ``t1`` is carried by the
    flow to ``t2`` and spread over its ``n_neighbors`` nearest observed cells at ``t2`` with
    Gaussian weights (bandwidth: the median distance to those neighbours; Euclidean distance in
    the model's standardised space). With the SDE the matrices are averaged over ``n_samples``
    draws. Row ``i`` is then the probability that cell ``i`` of ``t1`` becomes each cell of
    ``t2``: the matrices are row-stochastic and sparse (``n_neighbors`` entries per row).

    Pass the result to ``cellrank.kernels.RealTimeKernel(adata, time_key=...,
    couplings=...)``, or use :func:`realtime_kernel`, which does that for you.

    Parameters
    ----------
    adata
        The cells, with ``obs[model.time_key]`` and ``obsm[model.use_rep]``. Not modified.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    pairs
        ``"sequential"``: consecutive observed time points ``(t1, t2), (t2, t3), ...``;
        ``"triu"``: every earlier/later pair (CellRank's two policies).
    n_neighbors
        Observed cells at the later time point that share each pushed cell.
    sde
        Sample the SDE. Default: ``True`` when the model learned a score (``sb-cfm``).
    n_samples
        SDE draws averaged per pair. Default: 10 with the SDE, 1 with the ODE.
    seed
        Seed of the SDE noise.

    Returns
    -------
    dict[tuple, anndata.AnnData]
        ``{(t1, t2): AnnData}``, keys in the time column's own values (its categories when it
        is categorical), each AnnData with ``X`` a CSR matrix ``(cells at t1, cells at t2)``,
        ``obs_names`` the cells of ``t1`` and ``var_names`` the cells of ``t2``, in
        ``adata``'s order.

    Raises
    ------
    TypeError
        When ``adata`` or ``model`` is not what it should be (an AnnData first, a fitted
        :class:`~trajflow.TrajectoryModel` second).
    KeyError
        When ``adata`` lacks ``obs[time_key]`` or ``obsm[use_rep]``.
    ValueError
        When ``adata`` has fewer than two time points, ``pairs`` is unknown, ``sde=True`` for
        a model without a score, or ``n_neighbors`` or ``n_samples`` is invalid.

    Examples
    --------
    >>> cpl = tf.tl.couplings(adata, model)
    >>> import cellrank as cr
    >>> adata.obs["day"] = adata.obs["day"].astype("category")  # CellRank wants categories
    >>> kernel = cr.kernels.RealTimeKernel(adata, time_key="day", couplings=cpl)
    """
    adata, model = adata_first(adata, model, "trajflow.tl.couplings")
    model = check_model(model)
    check_anndata(adata)
    n_neighbors = check_neighbors(n_neighbors)
    if pairs not in ("sequential", "triu"):
        raise ValueError(f"pairs must be 'sequential' or 'triu', got {pairs!r}.")
    sde = model.learns_score if sde is None else bool(sde)
    n_samples = _check_samples(n_samples, sde)
    obs_t, labels, values = _time_values(adata, model.time_key)
    if len(values) < 2:
        raise ValueError(
            f"adata.obs[{model.time_key!r}] has one time point ({values}); couplings need two."
        )
    x_all = model.representation(adata)
    names = np.asarray(adata.obs_names)
    index = range(len(values))
    keys = (
        [(i, i + 1) for i in index[:-1]]
        if pairs == "sequential"
        else [(i, j) for i in index for j in index if i < j]
    )
    out: dict[tuple[Any, Any], AnnData] = {}
    for i, j in keys:
        src, tgt = same_time(obs_t, values[i]), same_time(obs_t, values[j])
        matrix = flow_transitions(
            model,
            x_all[src],
            values[i],
            x_all[tgt],
            values[j],
            n_neighbors=n_neighbors,
            sde=sde,
            n_samples=n_samples,
            seed=seed,
        )
        out[labels[i], labels[j]] = AnnData(
            X=matrix,
            obs=pd.DataFrame(index=pd.Index(names[src].astype(str))),
            var=pd.DataFrame(index=pd.Index(names[tgt].astype(str))),
        )
    logger.info(
        "couplings of %d time-point pairs from the flow (%d neighbours%s)",
        len(out),
        n_neighbors,
        f", {n_samples} SDE draws" if sde else "",
    )
    return out


def realtime_kernel(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    pairs: Literal["sequential", "triu"] = "sequential",
    n_neighbors: int = 30,
    sde: bool | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    key_added: str = "trajflow_time",
    **kernel_kwargs: Any,
) -> Any:
    """A ``cellrank.kernels.RealTimeKernel`` on trajflow's dynamics.

    CellRank's kernel wants a categorical time column; when ``obs[model.time_key]`` is numeric,
    an ordered categorical copy is written to ``adata.obs[key_added]`` (the user's column is not
    changed). The couplings come from :func:`couplings`. Call
    ``kernel.compute_transition_matrix()`` next, then GPCCA (``cellrank.estimators.GPCCA``) for
    macrostates, fate probabilities and lineage drivers.

    Parameters
    ----------
    adata
        The cells, with ``obs[model.time_key]`` and ``obsm[model.use_rep]``.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    pairs, n_neighbors, sde, n_samples, seed
        As in :func:`couplings`.
    key_added
        Column for the categorical copy of a numeric time column.
    **kernel_kwargs
        Passed to ``RealTimeKernel``.

    Returns
    -------
    ``cellrank.kernels.RealTimeKernel``
        The kernel (transition matrix not yet computed), on ``adata`` with ``policy=pairs``.
        Writes ``adata.obs[key_added]`` (an ordered categorical copy of the time column) when
        ``obs[model.time_key]`` is not categorical.

    Raises
    ------
    ImportError
        When CellRank is not installed.
    TypeError
        As in :func:`couplings`.
    KeyError
        As in :func:`couplings`.
    ValueError
        As in :func:`couplings`, and for an empty ``key_added`` or a view whose time column
        is numeric (writing the categorical copy would silently turn it into a copy).

    Examples
    --------
    >>> kernel = tf.tl.realtime_kernel(adata, model)
    >>> kernel.compute_transition_matrix(conn_kwargs={"use_rep": "X_pca"})  # kNN for self-steps
    >>> g = cellrank.estimators.GPCCA(kernel)
    """
    try:
        from cellrank.kernels import RealTimeKernel
    except ImportError as err:
        raise ImportError(
            "trajflow.tl.realtime_kernel needs CellRank: pip install cellrank. "
            "trajflow.tl.couplings gives the same matrices without it."
        ) from err
    adata, model = adata_first(adata, model, "trajflow.tl.realtime_kernel")
    model = check_model(model)
    check_key(key_added)
    column = adata.obs.get(model.time_key)
    if column is not None and not isinstance(column.dtype, pd.CategoricalDtype):
        check_not_view(
            adata,
            "trajflow.tl.realtime_kernel",
            f"obs[{key_added!r}] (a categorical copy of the time column for CellRank)",
            "make the time column categorical before subsetting",
        )
    cpl = couplings(
        adata, model, pairs=pairs, n_neighbors=n_neighbors, sde=sde, n_samples=n_samples, seed=seed
    )
    time_key = model.time_key
    if not isinstance(adata.obs[time_key].dtype, pd.CategoricalDtype):
        _, labels, _ = _time_values(adata, time_key)
        adata.obs[key_added] = pd.Categorical(
            np.asarray(adata.obs[time_key]), categories=labels, ordered=True
        )
        logger.info(
            "added\n    '%s', ordered categorical copy of obs[%r] for CellRank (adata.obs)",
            key_added,
            time_key,
        )
        time_key = key_added
    return RealTimeKernel(adata, time_key=time_key, couplings=cpl, policy=pairs, **kernel_kwargs)


def _group_matrix(labels: np.ndarray, groups: list[str]) -> sparse.csr_matrix:
    """One-hot ``(n_cells, n_groups)``; unlabelled cells get an empty row."""
    code = pd.Index(groups).get_indexer(labels)
    keep = code >= 0
    return sparse.csr_matrix(
        (np.ones(keep.sum()), (np.flatnonzero(keep), code[keep])), shape=(len(labels), len(groups))
    )


def _ordered_groups(adata: AnnData, groupby: str, present: np.ndarray) -> list[str]:
    col = adata.obs[groupby]
    seen = {str(v) for v in present}
    order = (
        [str(c) for c in col.cat.categories]
        if isinstance(col.dtype, pd.CategoricalDtype)
        else sorted(seen)
    )
    return [g for g in order if g in seen]


def cell_transition(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    source_time: float,
    target_time: float,
    groupby: str,
    target_groupby: str | None = None,
    forward: bool = True,
    n_neighbors: int = 30,
    sde: bool | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    key_added: str | None = "cell_transition",
) -> pd.DataFrame:
    """Group-to-group transition table between two observed time points (moscot's question).

    ``forward=True`` (where do they go): row ``a``, column ``b`` is the fraction of the cells of
    group ``a`` at ``source_time`` that the flow carries into group ``b`` at ``target_time``;
    every row sums to 1. ``forward=False`` (where did they come from): row ``b``, column ``a``
    is the fraction of the cells of group ``b`` at ``target_time`` that came from group ``a``
    at ``source_time`` (the flow run backwards from ``target_time``); every row sums to 1.
    Cells are matched to observed cells as in :func:`couplings`.

    Cells go straight from one time point to the other, as moscot's ``cell_transition`` reads
    one coupling. With observed time points in between, this is
    :func:`fate_probabilities`' ``through="direct"``: with the ODE each cell takes one path, so
    the fractions can be more clear-cut than those of :func:`fate_probabilities`' default
    ``through="observed"``, which chains the steps through every observed time point in between
    (averaged per group, its table can differ from this one; on data with known fates the
    chained version is the better calibrated).

    Parameters
    ----------
    adata
        The cells, with ``obs[model.time_key]``, ``obsm[model.use_rep]`` and the groups.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    source_time
        The earlier observed time point, in the units of ``obs[time_key]``.
    target_time
        The later observed time point, in the units of ``obs[time_key]``.
    groupby
        Column of ``adata.obs`` with the groups at ``source_time`` (and at ``target_time``
        unless ``target_groupby`` is given). Cells without a label are left out.
    target_groupby
        Column with the groups at ``target_time``. Default: ``groupby``.
    forward
        Direction of the question, see above.
    n_neighbors, sde, n_samples, seed
        As in :func:`couplings`.
    key_added
        Also store the table and its settings in ``adata.uns[key_added]`` (``None``: return
        only).

    Returns
    -------
    pandas.DataFrame
        The table: index the groups the rows are about, columns the other time point's groups,
        values fractions (rows sum to 1; ``NaN`` for a group whose mass all lands on
        unlabelled cells); ``frame.attrs`` records the direction and times and the group
        sizes, ``row_sizes`` and ``column_sizes`` (``{group: number of labelled cells}`` at
        the rows' and the columns' time point: a row of a 1-cell group reads 1.000 too; rows
        of fewer than :data:`FEW_CELLS` cells are named in a logged warning), and
        ``frame.index.name``/``frame.columns.name`` say which time each axis is. Unless
        ``key_added=None``, also writes ``adata.uns[key_added]`` (``table``, ``rows``,
        ``columns``, ``row_sizes`` and ``column_sizes`` as integer arrays in the order of
        ``rows`` / ``columns``, the other ``attrs``, ``n_neighbors``, ``sde``, ``n_samples``).

    Raises
    ------
    TypeError
        When ``adata`` or ``model`` is not what it should be (an AnnData first, a fitted
        :class:`~trajflow.TrajectoryModel` second), or a time is not a number.
    KeyError
        When ``adata`` lacks ``obs[groupby]``, ``obs[target_groupby]``, ``obs[time_key]`` or
        ``obsm[use_rep]``.
    ValueError
        When a time is not an observed time point, ``target_time`` is not later than
        ``source_time``, no cell of a time point has a label, ``forward=False`` with the SDE,
        ``n_neighbors``, ``n_samples`` or ``key_added`` is invalid, or ``adata`` is a view and
        ``key_added`` is not ``None`` (writing would silently turn it into a copy).

    Examples
    --------
    >>> tf.tl.cell_transition(adata, model, source_time=2, target_time=7, groupby="cluster")
    """
    adata, model = adata_first(adata, model, "trajflow.tl.cell_transition")
    model = check_model(model)
    check_anndata(adata)
    n_neighbors = check_neighbors(n_neighbors)
    if key_added is not None:
        check_key(key_added)
        check_not_view(
            adata,
            "trajflow.tl.cell_transition",
            f"uns[{key_added!r}]",
            "pass key_added=None to only return the table",
        )
    # a model with a score is sampled as its SDE both ways (backward: the reverse-time SDE)
    sde = model.learns_score if sde is None else bool(sde)
    n_samples = _check_samples(n_samples, sde)
    obs_t = parse_times(adata, model.time_key)
    src = observed_time(source_time, obs_t, what="source_time", time_key=model.time_key)
    tgt = observed_time(target_time, obs_t, what="target_time", time_key=model.time_key)
    if tgt <= src:
        raise ValueError(
            f"target_time={tgt:g} must be later than source_time={src:g}; for where cells "
            "came from, keep the times in order and pass forward=False."
        )
    target_groupby = groupby if target_groupby is None else target_groupby
    lab_src = group_labels(adata, groupby).to_numpy()
    lab_tgt = group_labels(adata, target_groupby).to_numpy()
    at_src, at_tgt = same_time(obs_t, src), same_time(obs_t, tgt)
    ls, lt = lab_src[at_src], lab_tgt[at_tgt]
    for t, labels, col in ((src, ls, groupby), (tgt, lt, target_groupby)):
        if pd.isna(labels).all():
            raise ValueError(
                f"No cell at time {t:g} has a label in adata.obs[{col!r}]; annotate the cells of "
                "both time points (e.g. cluster them)."
            )
    # group_labels gives strings, None where unlabelled (which _group_matrix leaves out)
    groups_src = _ordered_groups(adata, groupby, ls[pd.notna(ls)])
    groups_tgt = _ordered_groups(adata, target_groupby, lt[pd.notna(lt)])
    x_all = model.representation(adata)
    kw = {"n_neighbors": n_neighbors, "sde": sde, "n_samples": n_samples, "seed": seed}
    if forward:
        move = flow_transitions(model, x_all[at_src], src, x_all[at_tgt], tgt, **kw)
        rows, cols, row_groups, col_groups = ls, lt, groups_src, groups_tgt
    else:
        move = flow_transitions(model, x_all[at_tgt], tgt, x_all[at_src], src, **kw)
        rows, cols, row_groups, col_groups = lt, ls, groups_tgt, groups_src
    g_rows, g_cols = _group_matrix(rows, row_groups), _group_matrix(cols, col_groups)
    # How many cells each fraction is about: a 1-cell group's 1.000 is not a 100% certainty.
    row_sizes = np.asarray(g_rows.sum(axis=0), dtype=np.int64).ravel()
    col_sizes = np.asarray(g_cols.sum(axis=0), dtype=np.int64).ravel()
    mass = np.asarray((g_rows.T @ move @ g_cols).todense())
    # Mass that lands on unlabelled cells is dropped; rows are renormalised over labelled ones.
    total = mass.sum(axis=1, keepdims=True)
    table = np.divide(mass, total, out=np.full_like(mass, np.nan), where=total > 0)
    row_time, col_time = (src, tgt) if forward else (tgt, src)
    frame = pd.DataFrame(
        table,
        index=pd.Index(
            row_groups, name=f"{groupby if forward else target_groupby} at {row_time:g}"
        ),
        columns=pd.Index(
            col_groups, name=f"{target_groupby if forward else groupby} at {col_time:g}"
        ),
    )
    frame.attrs.update(
        {
            "forward": bool(forward),
            "source_time": src,
            "target_time": tgt,
            "groupby": groupby,
            "target_groupby": target_groupby,
            "row_sizes": dict(zip(row_groups, row_sizes.tolist(), strict=True)),
            "column_sizes": dict(zip(col_groups, col_sizes.tolist(), strict=True)),
            "question": (
                f"fraction of each {groupby} group at {src:g} that goes to each "
                f"{target_groupby} group at {tgt:g}"
                if forward
                else f"fraction of each {target_groupby} group at {tgt:g} that comes from each "
                f"{groupby} group at {src:g}"
            ),
        }
    )
    few = [
        f"{g} ({n} cell{'s' if n != 1 else ''})"
        for g, n in zip(row_groups, row_sizes, strict=True)
        if n < FEW_CELLS
    ]
    if few:
        logger.warning(
            "cell_transition %g -> %g: the rows of %s are fractions of fewer than %d cells "
            "(frame.attrs['row_sizes'] holds every group's size)",
            src, tgt, ", ".join(few), FEW_CELLS,
        )  # fmt: skip
    if key_added is not None:
        adata.uns[key_added] = {
            "table": frame.to_numpy(),
            "rows": np.asarray(row_groups, dtype=str),
            "columns": np.asarray(col_groups, dtype=str),
            **{k: v for k, v in frame.attrs.items() if not k.endswith("_sizes")},
            "row_sizes": row_sizes,
            "column_sizes": col_sizes,
            "n_neighbors": n_neighbors,
            "sde": sde,
            "n_samples": n_samples,
        }
        logger.info(
            "cell transitions %g -> %g (%s): added\n    '%s', table and settings (adata.uns)",
            src,
            tgt,
            "forward" if forward else "backward",
            key_added,
        )
    return frame
