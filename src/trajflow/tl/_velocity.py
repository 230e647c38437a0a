"""Per-cell velocity of the learned flow, written where scVelo and CellRank look for it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

from .._anndata import check_anndata, parse_times
from .._consumers import adata_first, check_key, check_model, check_not_view, log_written

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def _basis_name(use_rep: str) -> str:
    """scVelo's basis name of an obsm key: ``'X_pca'`` -> ``'pca'``."""
    return use_rep[2:] if use_rep.startswith("X_") else use_rep


def velocity(
    adata: AnnData,
    model: TrajectoryModel,
    *,
    key_added: str = "trajflow_velocity",
    copy: bool = False,
) -> AnnData | None:
    """The learned velocity of every cell at its own time point, written to ``obsm``.

    Each cell ``x`` observed at time ``t`` gets ``dx/dt`` of the flow at ``(x, t)``, in the units
    of ``obsm[use_rep]`` per unit of ``obs[time_key]``, for the model's ``n_dims`` dimensions.
    The key follows scVelo's ``{vkey}_{basis}`` convention, so
    ``scv.pl.velocity_embedding_stream(adata, basis="pca", vkey="trajflow_velocity")`` draws it
    on the representation (a PCA's first two components). For a UMAP,
    :func:`trajflow.pl.velocity` draws the field with the uncertainty of the map shown.

    Parameters
    ----------
    adata
        The cells, with ``obs[model.time_key]`` and ``obsm[model.use_rep]``.
    model
        A fitted :class:`~trajflow.TrajectoryModel`.
    key_added
        scVelo's ``vkey``: the result goes to ``obsm[f"{key_added}_{basis}"]``, where ``basis``
        is ``use_rep`` without its ``X_`` prefix.
    copy
        Annotate and return a copy of ``adata`` instead of writing in place.

    Returns
    -------
    anndata.AnnData or None
        ``None``, or the annotated copy when ``copy=True``. Writes

        ``adata.obsm[f"{key_added}_{basis}"]``
            ``(n_obs, n_dims)`` velocities (e.g. ``obsm['trajflow_velocity_pca']``); columns
            beyond ``n_dims`` of the representation are not modelled and not written.
        ``adata.uns[key_added]``
            ``use_rep``, ``n_dims``, ``time_key``, ``method``, ``units``.

    Raises
    ------
    TypeError
        When ``adata`` or ``model`` is not what it should be (an AnnData first, a fitted
        :class:`~trajflow.TrajectoryModel` second).
    KeyError
        When ``adata`` lacks ``obs[time_key]`` or ``obsm[use_rep]``.
    ValueError
        When ``key_added`` is empty, the representation is narrower than ``n_dims`` or not
        finite, or ``adata`` is a view and ``copy=False`` (writing would silently turn it into
        a copy).

    Examples
    --------
    >>> tf.tl.velocity(adata, model)
    >>> scv.pl.velocity_embedding_stream(adata, basis="pca", vkey="trajflow_velocity")
    """
    adata, model = adata_first(adata, model, "trajflow.tl.velocity")
    model = check_model(model)
    check_anndata(adata)
    check_key(key_added)
    key = f"{key_added}_{_basis_name(model.use_rep)}"
    if not copy:
        check_not_view(
            adata,
            "trajflow.tl.velocity",
            f"obsm[{key!r}]",
            "pass copy=True to get an annotated copy",
        )
    obs_t = parse_times(adata, model.time_key)
    x_all = model.representation(adata)
    out = np.empty_like(x_all)
    for t in np.unique(obs_t):
        at = obs_t == t
        out[at] = model.velocity(x_all[at], float(t))
    if copy:
        adata = adata.copy()
    adata.obsm[key] = out
    adata.uns[key_added] = {
        "use_rep": model.use_rep,
        "n_dims": model.n_dims,
        "time_key": model.time_key,
        "method": model.method,
        "units": f"obsm[{model.use_rep!r}] units per unit of obs[{model.time_key!r}]",
    }
    log_written(
        f"velocity of {adata.n_obs} cells at their own time points",
        [f"'{key}', velocity (adata.obsm)", f"'{key_added}', settings (adata.uns)"],
    )
    return adata if copy else None
