"""Shared plumbing for :mod:`trajflow.pl`: bases and the kNN embedding map, time colours, the
observed-cell background, finishing.

Nothing here writes into the user's AnnData.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Colormap, Normalize, to_rgba_array
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from sklearn.neighbors import KNeighborsRegressor

from .._anndata import get_representation

if TYPE_CHECKING:
    from .._model import TrajectoryModel

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

DEFAULT_CMAP = "viridis"
OBSERVED_COLOR = "#3b4cc0"
PREDICTED_COLOR = "#e66101"
BACKGROUND_COLOR = "#d9d9d9"


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
    * For any other ``obsm`` embedding (``X_umap``, ``X_tsne``, ``X_phate``...), which is a
      non-linear function of the cells that no formula extends to new points, the map is *fitted*:
      a k-nearest-neighbour regression (:class:`sklearn.neighbors.KNeighborsRegressor`,
      inverse-distance weights, Euclidean distance) from the representation (first ``n_dims``
      columns of ``obsm[use_rep]``) to the embedding, trained on the observed cells of ``adata``.
      A new point lands at the distance-weighted average embedding position of its
      ``n_neighbors`` nearest observed cells; an observed cell lands exactly on itself. Points far
      from every observed cell are pulled onto the observed manifold, so read positions on a
      UMAP qualitatively, and use the representation basis for distances.

    Create one with :meth:`fit`.

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
    """

    key: str
    components: tuple[int, int]
    coords: np.ndarray
    linear: bool
    regressor: KNeighborsRegressor | None = None

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
        reg = KNeighborsRegressor(n_neighbors=min(n_neighbors, len(rep)), weights="distance")
        reg.fit(rep, coords)
        return cls(key=key, components=comps, coords=coords, linear=False, regressor=reg)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place representation-space points ``(..., n_dims)`` on the basis: ``(..., 2)``."""
        x = np.asarray(x, dtype=np.float64)
        if self.linear:
            return x[..., list(self.components)]
        flat = x.reshape(-1, x.shape[-1])
        return self.regressor.predict(flat).reshape(*x.shape[:-1], 2)

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


# --------------------------------------------------------------------------- time colours
@dataclass
class TimeColors:
    """A colour scale over real time values, shared by cells, paths and the colour bar."""

    times: list[float]
    cmap: Colormap
    norm: Normalize
    label: str

    @classmethod
    def make(
        cls, times: Sequence[float], label: str, cmap: str | Colormap | None = None
    ) -> TimeColors:
        times = sorted({float(t) for t in times})
        lo, hi = times[0], times[-1]
        if hi == lo:
            hi = lo + 1.0
        cm = colormaps[cmap or DEFAULT_CMAP] if not isinstance(cmap, Colormap) else cmap
        return cls(times=times, cmap=cm, norm=Normalize(lo, hi), label=label)

    def __call__(self, t: float | np.ndarray) -> np.ndarray:
        return self.cmap(self.norm(np.asarray(t, dtype=float)))

    def colorbar(self, ax: Axes, *, alpha: float = 1.0, **kwargs: Any) -> Colorbar:
        """A colour bar labelled with the time key and ticked at the observed time points."""
        sm = ScalarMappable(norm=self.norm, cmap=self.cmap)
        cbar = ax.figure.colorbar(sm, ax=ax, pad=0.02, fraction=0.05, **kwargs)
        cbar.set_label(self.label)
        ticks = self.times if len(self.times) <= 12 else None
        if ticks is not None:
            cbar.set_ticks(ticks)
            cbar.set_ticklabels([format_time(t) for t in ticks])
        cbar.solids.set_alpha(alpha)
        cbar.outline.set_visible(False)
        return cbar


def format_time(t: float) -> str:
    """``2.0`` -> ``'2'``, ``0.333333`` -> ``'0.333'``."""
    return f"{float(t):.4g}" if float(t) != int(t) else f"{int(t)}"


def category_colors(adata: AnnData, key: str) -> tuple[list[str], np.ndarray]:
    """``(categories, RGBA colours)`` of ``obs[key]``, as scanpy colours them: the colours in
    ``adata.uns[f"{key}_colors"]`` when there is one per category, else scanpy's default
    palettes (20, 28 or 102 colours by the number of categories). ``adata`` is not modified."""
    from matplotlib.colors import to_rgba
    from scanpy.plotting import palettes

    col = adata.obs[key]
    cats = (
        [str(c) for c in col.cat.categories]
        if isinstance(col.dtype, pd.CategoricalDtype)
        else [str(c) for c in pd.Categorical(col.dropna().astype(str)).categories]
    )
    stored = adata.uns.get(f"{key}_colors")
    if stored is not None and len(stored) == len(cats):
        colors = list(stored)
    else:
        n = len(cats)
        palette = (
            palettes.default_20
            if n <= 20
            else palettes.default_28
            if n <= 28
            else palettes.default_102
        )
        colors = [palette[i % len(palette)] for i in range(n)]
    return cats, np.array([to_rgba(c) for c in colors])


def lighten(colors: np.ndarray, amount: float) -> np.ndarray:
    """Blend RGBA colours towards white by ``amount`` (0 keeps them, 1 gives white)."""
    out = np.array(colors, dtype=float, copy=True)
    out[..., :3] = out[..., :3] + (1.0 - out[..., :3]) * amount
    return out


def point_size(n: int, scale: float = 1.0) -> float:
    """Scanpy-like default marker area for ``n`` points."""
    return float(np.clip(60_000 / max(n, 1), 2.0, 30.0) * scale)


# --------------------------------------------------------------------------- axes
def new_axes(ax: Axes | None, figsize: tuple[float, float] = (5.6, 4.6)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def style_embedding_axes(ax: Axes, labels: tuple[str, str], *, frameless: bool = True) -> None:
    """Scanpy look: labelled axes, no tick labels (coordinates carry no units), light frame."""
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_xticks([])
    ax.set_yticks([])
    if frameless:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)


def scatter_background(
    ax: Axes,
    adata: AnnData,
    emap: EmbeddingMap,
    tc: TimeColors,
    times: np.ndarray,
    *,
    color: str,
    time_key: str,
    lightness: float,
    size: float | None,
    seed: int,
) -> None:
    """Draw the observed cells of ``adata`` as a light background on ``ax``.

    Cells are drawn in random order (``seed``) so no time point hides the others.

    Parameters
    ----------
    ax
        Axes to draw into.
    adata
        The observed cells (``obs`` is read for ``color``).
    emap
        Where each cell is placed (:attr:`EmbeddingMap.coords`).
    tc
        Time colours (used, with a colour bar, when ``color == time_key``).
    times
        Time of each cell, shape ``(n_obs,)``.
    color
        ``time_key`` to colour by time; another ``obs`` column for categorical colours (with a
        legend) or numeric grey levels (with a colour bar).
    time_key
        The time column's name.
    lightness
        Blend towards white (0: full colour).
    size
        Marker area; default scaled to the number of cells.
    seed
        Seed of the drawing order.
    """
    n = adata.n_obs
    order = np.random.default_rng(seed).permutation(n)
    s = point_size(n) if size is None else size
    xy = emap.coords[order]
    if color == time_key:
        colors = lighten(tc(times[order]), lightness)
        ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=s, linewidths=0, rasterized=True, zorder=1)
        tc.colorbar(ax)
        return
    if color not in adata.obs.columns:
        raise KeyError(f"color={color!r} is not a column of adata.obs.")
    col = adata.obs[color]
    if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
        names, base = category_colors(adata, color)
        codes = pd.Categorical(
            col.astype(object)
            .where(col.notna(), None)
            .map(lambda v: None if v is None else str(v)),
            categories=names,
        ).codes
        # Unlabelled cells (code -1) stay light grey; the legend shows the drawn colours.
        shown = np.vstack([lighten(base, lightness), to_rgba_array(BACKGROUND_COLOR)])
        colors = shown[codes[order]]
        ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=s, linewidths=0, rasterized=True, zorder=1)
        handles = [
            Line2D([], [], ls="", marker="o", color=shown[i], label=name)
            for i, name in enumerate(names)
        ]
        ax.legend(
            handles=handles,
            title=color,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
            fontsize="small",
        )
        return
    values = col.to_numpy(dtype=float)[order]
    sc = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        c=values,
        cmap="Greys",
        s=s,
        linewidths=0,
        alpha=0.6,
        rasterized=True,
        zorder=1,
    )
    cbar = ax.figure.colorbar(sc, ax=ax, pad=0.02, fraction=0.05)
    cbar.set_label(color)


def finish(
    obj: Axes | Figure | SubFigure, *, show: bool | None, save: str | os.PathLike | None
) -> Axes | Figure | SubFigure:
    """Save and/or show when asked, and return ``obj``; by default nothing is shown or saved."""
    fig = obj
    while not isinstance(fig, Figure):  # Axes or SubFigure -> the root Figure
        fig = fig.figure
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
    if show:
        plt.show()
    return obj


def model_or_prediction(
    obj: TrajectoryModel | AnnData,
) -> tuple[TrajectoryModel | None, AnnData | None]:
    from .._model import TrajectoryModel

    if isinstance(obj, TrajectoryModel):
        return obj, None
    if isinstance(obj, AnnData):
        return None, obj
    raise TypeError(
        f"Expected a TrajectoryModel or the AnnData returned by model.predict(), got "
        f"{type(obj).__name__}."
    )


def prediction_keys(pred: AnnData, time_key: str | None, use_rep: str | None) -> tuple[str, str]:
    """Infer ``(time_key, use_rep)`` of an AnnData written by ``TrajectoryModel.predict``."""
    if use_rep is None:
        if len(pred.obsm) != 1:
            raise ValueError(
                f"Cannot tell which obsm key of the prediction holds the positions "
                f"({list(pred.obsm.keys())}); pass use_rep=."
            )
        use_rep = next(iter(pred.obsm.keys()))
    if time_key is None:
        candidates = [c for c in pred.obs.columns if c not in ("source_time", "source_cell")]
        if not candidates:
            raise ValueError("Cannot tell the time column of the prediction; pass time_key=.")
        time_key = candidates[0]
    return time_key, use_rep
