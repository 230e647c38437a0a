"""The kNN embedding map: how points of the model's representation are placed on a 2-D plotting
basis (exactly on the representation itself, by a fitted kNN regression on any other ``obsm``
embedding), and which of them it cannot place. Basis names and axis labels.

Nothing here writes into the user's AnnData.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from anndata import AnnData
from sklearn.neighbors import KNeighborsRegressor

from .._anndata import get_representation
from .._scoring import SUPPORT_QUANTILE, Support

#: Axis-label prefixes for common ``obsm`` keys (scanpy's conventions).
_BASIS_LABELS = {
    "X_pca": "PC",
    "X_umap": "UMAP",
    "X_tsne": "tSNE",
    "X_diffmap": "DC",
    "X_phate": "PHATE",
    "X_draw_graph_fa": "FA",
    "X_draw_graph_fr": "FR",
    "X_spring": "SPRING",
    "X": "X",
}

#: Calibration of :class:`EmbeddingMap`'s placeability checks: a point is placeable when it is
#: no farther from the observed cells than this quantile of the observed cells themselves (the
#: support measure's quantile: "far" is :class:`trajflow._scoring.Support` at factor 1).
PLACEABLE_QUANTILE = SUPPORT_QUANTILE
#: A segment between two mapped points is a jump when the embedding stretches it this many
#: times more than it stretches neighbouring observed cells.
JUMP_FACTOR = 3.0
#: Observed cells used to calibrate the checks (a seeded subsample on larger data).
_CALIBRATION_CELLS = 3000


def basis_label(key: str) -> str:
    """``'X_umap'`` -> ``'UMAP'``, ``'X_pca'`` -> ``'PC'``, ``'X_latent'`` -> ``'latent'``."""
    if key in _BASIS_LABELS:
        return _BASIS_LABELS[key]
    return key[2:] if key.startswith("X_") else key


def obsm_key(adata: AnnData, basis: str) -> str:
    """Resolve a scanpy-style basis name (``'umap'`` or ``'X_umap'``) to an ``obsm`` key."""
    if basis == "X" or basis in adata.obsm:
        return basis
    if f"X_{basis}" in adata.obsm:
        return f"X_{basis}"
    keys = ", ".join(map(repr, adata.obsm.keys())) or "none"
    raise KeyError(
        f"basis={basis!r} is neither an obsm key nor a scanpy basis name (available obsm keys: "
        f"{keys}). Compute it first, e.g. sc.tl.umap(adata), or pass basis=None for the model's "
        "representation."
    )


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "toarray"):
        x = x.toarray()
    return np.asarray(x, dtype=np.float64)


@dataclass
class EmbeddingMap:
    """How points of the model's representation space are placed on a 2-D plotting basis.

    * When the basis *is* the model's representation (``basis=None``, or e.g. ``'pca'`` for a model
      fitted with ``use_rep='X_pca'``), the map is exact and linear: it picks two coordinates.
      Every point is placeable.
    * For any other ``obsm`` embedding (``X_umap``, ``X_tsne``, ``X_phate``...), which is a
      non-linear function of the cells that no formula extends to new points, the map is *fitted*:
      a k-nearest-neighbour regression (:class:`sklearn.neighbors.KNeighborsRegressor`,
      inverse-distance weights, Euclidean distance) from the representation (first ``n_dims``
      columns of ``obsm[use_rep]``) to the embedding, trained on the observed cells of ``adata``.
      A new point lands at the distance-weighted average embedding position of its
      ``n_neighbors`` nearest observed cells; an observed cell lands exactly on itself.

    Such a map can only place points that lie among the observed cells. :meth:`place` says, for
    each point, whether it can (``placeable``), by two checks calibrated on the observed cells
    themselves (:data:`PLACEABLE_QUANTILE`, 99 %):

    * **far**: its distance (in the representation) to the nearest observed cell exceeds
      :attr:`max_distance`, the distance that 99 % of observed cells stay within of their own
      nearest other observed cell (in units of the typical, median, nearest-neighbour distance
      :attr:`typical_distance`, ``max_distance / typical_distance`` is usually 2 to 3);
    * **between clusters**: its nearest observed cells lie in different places on the embedding,
      so their average lands away from all of them, in empty space: the embedding distance from
      where it lands to the nearest of those cells exceeds :attr:`max_spread`, what 99 % of
      observed cells give when each is placed from its neighbours without itself.

    :meth:`jumps` flags consecutive points (path steps, velocity arrows) that the embedding tears
    apart: their distance on the embedding is more than :data:`JUMP_FACTOR` (3) times what the
    embedding makes of the same distance between neighbouring observed cells, as when a path
    leaves one UMAP cluster and the next point lands in another.

    The plots fade (or hide) what the map cannot place and say so on the figure; on the
    representation basis (exact) nothing is faded. Create one with :meth:`fit`.

    Attributes
    ----------
    key
        ``obsm`` key of the basis.
    components
        The two (0-based) columns of the basis that are plotted.
    coords
        Plotted positions of ``adata``'s cells, shape ``(n_obs, 2)``.
    linear
        Whether the map is the exact coordinate projection (no regression).
    regressor
        The fitted :class:`~sklearn.neighbors.KNeighborsRegressor`, or ``None`` when ``linear``.
    typical_distance
        Median distance (representation units) from an observed cell to its nearest other
        observed cell (``nan`` when ``linear``).
    max_distance
        Representation distance to the nearest observed cell beyond which a point is far
        (``inf`` when ``linear``).
    max_spread
        Embedding distance from a point's landing position to the nearest of its neighbours
        beyond which it lies between clusters (``inf`` when ``linear``).
    step_scale
        ``(representation, embedding)`` median distance from an observed cell to its
        ``n_neighbors``-th nearest one, both measured on the same pairs: the scales of
        :meth:`jumps` (``None`` when ``linear``).
    """

    key: str
    components: tuple[int, int]
    coords: np.ndarray
    linear: bool
    regressor: KNeighborsRegressor | None = None
    typical_distance: float = float("nan")
    max_distance: float = float("inf")
    max_spread: float = float("inf")
    step_scale: tuple[float, float] | None = None

    @classmethod
    def fit(
        cls,
        adata: AnnData,
        *,
        use_rep: str,
        n_dims: int,
        basis: str | None = None,
        components: Sequence[int] = (1, 2),
        n_neighbors: int = 15,
    ) -> EmbeddingMap:
        """Build the map from the representation (``obsm[use_rep][:, :n_dims]``) to ``basis``.

        Parameters
        ----------
        adata
            The observed cells; read, never modified.
        use_rep, n_dims
            The model's representation (``model.use_rep``, ``model.n_dims``).
        basis
            ``obsm`` key or scanpy basis name (``'umap'``); ``None`` for the representation.
        components
            The two basis columns to plot, 1-based as in scanpy (``(1, 2)`` is PC1/PC2).
        n_neighbors
            Neighbours of the kNN regression (non-linear bases only).

        Returns
        -------
        EmbeddingMap
            The map, with its placeability thresholds calibrated on ``adata``'s cells.
        """
        comps = _check_components(components)
        rep = get_representation(adata, use_rep, n_dims, allow_pca=False)
        key = use_rep if basis is None else obsm_key(adata, basis)
        if key == use_rep:
            if max(comps) >= n_dims:
                raise ValueError(
                    f"components={tuple(components)} asks for dimension {max(comps) + 1} of "
                    f"{use_rep!r}, but the model only uses its first {n_dims}."
                )
            return cls(key=key, components=comps, coords=rep[:, list(comps)], linear=True)
        emb = _as_array(adata.X if key == "X" else adata.obsm[key])
        if emb.ndim != 2 or emb.shape[1] <= max(comps):
            raise ValueError(
                f"obsm[{key!r}] has shape {emb.shape}; it needs at least {max(comps) + 1} columns "
                f"for components={tuple(components)}."
            )
        coords = emb[:, list(comps)]
        k = min(n_neighbors, len(rep))
        reg = KNeighborsRegressor(n_neighbors=k, weights="distance")
        reg.fit(rep, coords)
        emap = cls(key=key, components=comps, coords=coords, linear=False, regressor=reg)
        if len(rep) > 2:
            emap._calibrate(rep)
        return emap

    def _calibrate(self, rep: np.ndarray) -> None:
        """Set the thresholds from the observed cells (each against the others)."""
        n = len(rep)
        rng = np.random.default_rng(0)
        sub = rng.choice(n, _CALIBRATION_CELLS, replace=False) if n > _CALIBRATION_CELLS else None
        query = rep if sub is None else rep[sub]
        k = min(self.regressor.n_neighbors + 1, n)
        dist, idx = self.regressor.kneighbors(query, n_neighbors=k)
        dist, idx = dist[:, 1:], idx[:, 1:]  # leave each cell out (the first is itself)
        own = self.coords if sub is None else self.coords[sub]
        q = PLACEABLE_QUANTILE
        tiny = 1e-12
        self.typical_distance = float(np.median(dist[:, 0]))
        # "Far" is the support measure's own calibration (one owner: _scoring.Support), at
        # factor 1: the map places only points as near the cells as 99% of them are to each other.
        self.max_distance = Support.fit(rep, factor=1.0).threshold
        _, gap = self._land(dist, idx)
        self.max_spread = max(float(np.quantile(gap, q)), tiny)
        far_pair = np.linalg.norm(self.coords[idx[:, -1]] - own, axis=1)
        self.step_scale = (
            max(float(np.median(dist[:, -1])), tiny),
            max(float(np.median(far_pair)), tiny),
        )

    def _land(self, dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landing positions (inverse-distance weights, as the regressor) and the embedding
        distance from each to the nearest of its neighbours."""
        with np.errstate(divide="ignore"):
            w = 1.0 / dist
        exact = np.isinf(w)
        rows = exact.any(axis=1)
        w[rows] = exact[rows]  # a point on an observed cell lands on it (sklearn's rule)
        w /= w.sum(axis=1, keepdims=True)
        nbr = self.coords[idx]  # (n, k, 2)
        pos = np.einsum("nk,nkd->nd", w, nbr)
        gap = np.linalg.norm(nbr - pos[:, None, :], axis=-1).min(axis=1)
        return pos, gap

    def place(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Place representation-space points ``(..., n_dims)`` on the basis.

        Returns
        -------
        xy : numpy.ndarray
            Positions, shape ``(..., 2)`` (as :meth:`transform`).
        placeable : numpy.ndarray
            Boolean, shape ``(...)``: ``False`` where the map cannot place the point (far from
            every observed cell, or between clusters; see the class docstring). All ``True`` on
            a linear map.
        """
        x = np.asarray(x, dtype=np.float64)
        if self.linear:
            return x[..., list(self.components)], np.ones(x.shape[:-1], dtype=bool)
        flat = x.reshape(-1, x.shape[-1])
        dist, idx = self.regressor.kneighbors(flat)
        pos, gap = self._land(dist, idx)
        ok = (dist[:, 0] <= self.max_distance) & (gap <= self.max_spread)
        return pos.reshape(*x.shape[:-1], 2), ok.reshape(x.shape[:-1])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place representation-space points ``(..., n_dims)`` on the basis: ``(..., 2)``."""
        return self.place(x)[0]

    def jumps(self, x0: np.ndarray, x1: np.ndarray, xy0: np.ndarray, xy1: np.ndarray) -> np.ndarray:
        """Whether the embedding tears the step from ``x0`` to ``x1`` (representation points,
        ``(..., n_dims)``; placed at ``xy0`` and ``xy1``, ``(..., 2)``): its embedding length,
        in units of the embedding scale of neighbouring observed cells, exceeds
        :data:`JUMP_FACTOR` times its representation length in units of theirs (or times 1 for
        steps shorter than that). Always ``False`` on a linear map.

        Returns
        -------
        numpy.ndarray
            Boolean, shape ``(...)``.
        """
        if self.linear or self.step_scale is None:
            return np.zeros(np.shape(x0)[:-1], dtype=bool)
        rep_scale, emb_scale = self.step_scale
        rep_len = np.linalg.norm(np.asarray(x1) - np.asarray(x0), axis=-1) / rep_scale
        emb_len = np.linalg.norm(np.asarray(xy1) - np.asarray(xy0), axis=-1) / emb_scale
        return emb_len > JUMP_FACTOR * np.maximum(rep_len, 1.0)

    def unplaceable_note(self, verb: str = "faded") -> str:
        """The legend text for faded points: what the user sees, and why (two lines)."""
        return (
            f"{verb}: the {basis_label(self.key)} cannot place these points\n"
            "(far from any observed cell, or between clusters)"
        )

    @property
    def axis_labels(self) -> tuple[str, str]:
        prefix = basis_label(self.key)
        return tuple(f"{prefix}{c + 1}" for c in self.components)  # type: ignore[return-value]


def _check_components(components: Sequence[int]) -> tuple[int, int]:
    comps = tuple(int(c) for c in components)
    if len(comps) != 2 or min(comps) < 1 or comps[0] == comps[1]:
        raise ValueError(
            f"components must be two different 1-based column numbers, e.g. (1, 2); got {components!r}."
        )
    return comps[0] - 1, comps[1] - 1
