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
from matplotlib.colors import Colormap, ListedColormap, Normalize, to_rgba_array
from matplotlib.figure import Figure, SubFigure
from matplotlib.legend import Legend
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.transforms import offset_copy
from sklearn.neighbors import KNeighborsRegressor

from .._anndata import get_representation
from .._outputs import SOURCE_CELL_KEY, SOURCE_TIME_KEY

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
#: How points the embedding map cannot place are drawn (``unplaceable="fade"``).
FADED_COLOR = "#9a9a9a"
FADED_ALPHA = 0.45
#: Up to this many distinct time points get a discrete legend; more get a colour bar.
MAX_DISCRETE_TIMES = 12
#: Calibration of :class:`EmbeddingMap`'s placeability checks: a point is placeable when it is
#: no farther from the observed cells than this quantile of the observed cells themselves.
PLACEABLE_QUANTILE = 0.99
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
        self.max_distance = max(float(np.quantile(dist[:, 0], q)), tiny)
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


# --------------------------------------------------------------------------- time colours
@dataclass
class TimeColors:
    """A colour scale over real time values, shared by cells, paths and the time key.

    With few distinct time points (at most :data:`MAX_DISCRETE_TIMES`, 12) the key is a legend
    with one entry per time point, and the time points are spread evenly over the colour map
    (by rank, so unevenly spaced times such as days 0, 1/3, 1, 3, 7 stay distinguishable); a
    time between two of them gets the colour in between. With more time points the colour is
    linear in time and the key is a continuous colour bar.
    """

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
        t = np.asarray(t, dtype=float)
        if self.discrete and len(self.times) > 1:
            pos = np.interp(t, self.times, np.linspace(0.0, 1.0, len(self.times)))
            return np.asarray(self.cmap(pos))
        return np.asarray(self.cmap(self.norm(t)))

    @property
    def discrete(self) -> bool:
        """Whether the key is a legend (few time points) rather than a colour bar."""
        return len(self.times) <= MAX_DISCRETE_TIMES

    def colorbar(
        self, ax: Axes, *, alpha: float = 1.0, lightness: float = 0.0, **kwargs: Any
    ) -> Colorbar:
        """A colour bar labelled with the time key and ticked at the observed time points.

        ``lightness`` blends the bar towards white as :func:`lighten` blends the cells, so the
        bar shows the colours drawn.
        """
        cmap = self.cmap
        if lightness:
            cmap = ListedColormap(lighten(self.cmap(np.linspace(0, 1, 256)), lightness))
        sm = ScalarMappable(norm=self.norm, cmap=cmap)
        kwargs = {"pad": 0.02, "fraction": 0.05, **kwargs}
        cbar = ax.figure.colorbar(sm, ax=ax, **kwargs)
        cbar.set_label(self.label)
        ticks = self.times if len(self.times) <= MAX_DISCRETE_TIMES else None
        if ticks is not None:
            cbar.set_ticks(ticks)
            cbar.set_ticklabels([format_time(t) for t in ticks])
        cbar.solids.set_alpha(alpha)
        cbar.outline.set_visible(False)
        return cbar

    def handles(self, *, lightness: float = 0.0, paths: bool = False) -> list[Any]:
        """Legend handles, one per time point: a dot in the cells' colour (blended towards
        white by ``lightness``, as drawn), and, with ``paths``, a line in the paths' (full)
        colour under it."""
        out: list[Any] = []
        for t in self.times:
            full = self(t)
            dot = Line2D([], [], ls="", marker="o", markersize=7, color=lighten(full, lightness))
            if paths:
                line = Line2D([], [], color=full, lw=2.0)
                out.append((line, dot))
            else:
                out.append(dot)
        return out

    def key(
        self,
        ax: Axes,
        *,
        lightness: float = 0.0,
        paths: bool = False,
        title: str | None = None,
        extra: Sequence[tuple[Any, str]] = (),
    ) -> Legend | Colorbar:
        """The time key of ``ax``: a legend outside on the right with one entry per time point
        (few time points), else a colour bar. ``extra`` adds ``(handle, label)`` entries to
        the legend (discrete only)."""
        if not self.discrete:
            cbar = self.colorbar(ax, lightness=0.0 if paths else lightness)
            if paths and lightness:  # one bar for both: the paths' colours, cells paler
                cbar.set_label(f"{title or self.label} (cells: paler shade)")
            elif title:
                cbar.set_label(title)
            return cbar
        handles = self.handles(lightness=lightness, paths=paths)
        labels = [format_time(t) for t in self.times]
        for h, lab in extra:
            handles.append(h)
            labels.append(lab)
        return add_legend(
            ax,
            handles,
            labels,
            title=title or self.label,
            where="right",
            handler_map={tuple: HandlerTuple(ndivide=1)},
        )


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


def add_legend(
    ax: Axes,
    handles: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    where: str = "right",
    title: str | None = None,
    ncols: int = 1,
    **kwargs: Any,
) -> Legend:
    """Add a legend to ``ax`` without removing the legends already there.

    ``where``: ``"right"`` (outside, top right of the axes, scanpy's place), ``"right-bottom"``
    (outside, bottom right, for a second key), ``"below"`` (outside, centred under the x label)
    or ``"inside"`` (``loc="best"``, light frame).
    """
    old = [c for c in ax.get_children() if isinstance(c, Legend)]
    if where == "right":
        place = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "frameon": False}
    elif where == "right-bottom":
        place = {"loc": "lower left", "bbox_to_anchor": (1.02, 0.0), "frameon": False}
    elif where == "below":
        # Anchored a fixed distance (points) under the axes, so it clears the x label.
        below = offset_copy(ax.transAxes, fig=ax.figure, y=-20, units="points")
        place = {
            "loc": "upper center",
            "bbox_to_anchor": (0.5, 0.0),
            "bbox_transform": below,
            "frameon": False,
        }
    elif where == "inside":
        place = {"loc": "best", "framealpha": 0.85}
    else:
        raise ValueError(
            f"where must be 'right', 'right-bottom', 'below' or 'inside', got {where!r}."
        )
    args = {"handles": list(handles)}
    if labels is not None:
        args["labels"] = list(labels)
    leg = ax.legend(
        **args,
        title=title,
        ncols=ncols,
        fontsize="small",
        title_fontsize="small",
        alignment="left",
        **{**place, **kwargs},
    )
    for prev in old:  # ax.legend() replaces ax.legend_; keep the earlier ones drawn
        if prev is not leg and prev not in ax.artists:
            ax.add_artist(prev)
            prev.set_clip_on(False)  # add_artist clips to the axes; legends sit outside them
    return leg


def legends(ax: Axes) -> list[Legend]:
    """Every legend drawn on ``ax`` (the current one and those kept by :func:`add_legend`)."""
    return [c for c in ax.get_children() if isinstance(c, Legend)]


def faded_handle(
    emap: EmbeddingMap, *, line: bool = False, verb: str = "faded", share: str = ""
) -> Line2D:
    """The legend entry (labelled handle) for points the map cannot place; ``share`` is
    appended to the label (e.g. ``" (12 % of path segments)"``)."""
    if line:
        h = Line2D([], [], color=FADED_COLOR, lw=1.0, ls=(0, (2, 1.5)), alpha=FADED_ALPHA + 0.2)
    else:
        h = Line2D([], [], ls="", marker="o", markersize=5, mfc="none", mec=FADED_COLOR, alpha=0.9)
    h.set_label(emap.unplaceable_note(verb) + share)
    return h


def check_unplaceable(value: str) -> str:
    if value not in ("fade", "hide", "show"):
        raise ValueError(f"unplaceable must be 'fade', 'hide' or 'show', got {value!r}.")
    return value


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
    key: bool = True,
    key_paths: bool = False,
    key_extra: Sequence[tuple[Any, str]] = (),
) -> None:
    """Draw the observed cells of ``adata`` as a light background on ``ax``, with its key.

    Cells are drawn in random order (``seed``) so no time point hides the others. The key shows
    the colours as drawn (blended towards white by ``lightness``): outside on the right, a
    legend with one entry per time point (few time points) or per category, else a colour bar.

    Parameters
    ----------
    ax
        Axes to draw into.
    adata
        The observed cells (``obs`` is read for ``color``).
    emap
        Where each cell is placed (:attr:`EmbeddingMap.coords`).
    tc
        Time colours (used when ``color == time_key``).
    times
        Time of each cell, shape ``(n_obs,)``.
    color
        ``time_key`` to colour by time; another ``obs`` column for categorical colours (with a
        legend) or numeric grey levels (with a colour bar); a gene of ``var_names`` for its
        expression in ``X`` (grey levels).
    time_key
        The time column's name.
    lightness
        Blend towards white (0: full colour).
    size
        Marker area; default scaled to the number of cells.
    seed
        Seed of the drawing order.
    key
        Draw the legend / colour bar.
    key_paths
        Time key only: each entry also shows the full time colour as a line (for paths drawn
        in it).
    key_extra
        Time key only: more ``(handle, label)`` entries for its legend.
    """
    n = adata.n_obs
    order = np.random.default_rng(seed).permutation(n)
    s = point_size(n) if size is None else size
    xy = emap.coords[order]
    if color == time_key:
        colors = lighten(tc(times[order]), lightness)
        ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=s, linewidths=0, rasterized=True, zorder=1)
        if key:
            tc.key(ax, lightness=lightness, paths=key_paths, extra=key_extra)
        return
    if color in adata.obs.columns:
        col = adata.obs[color]
    elif color in adata.var_names:  # a gene: its expression in X, as scanpy colours by genes
        if not adata.var_names.is_unique:
            raise ValueError(
                f"color={color!r}: adata.var_names are not unique, so the gene is ambiguous; "
                "run adata.var_names_make_unique() first."
            )
        col = pd.Series(np.asarray(adata.obs_vector(color), dtype=float), index=adata.obs_names)
    else:
        raise KeyError(
            f"color={color!r} is neither a column of adata.obs nor a gene in adata.var_names."
        )
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
        if key:
            handles = [
                Line2D([], [], ls="", marker="o", markersize=7, color=shown[i], label=name)
                for i, name in enumerate(names)
            ]
            if (codes < 0).any():
                handles.append(
                    Line2D([], [], ls="", marker="o", markersize=7, color=shown[-1], label="NA")
                )
            add_legend(ax, handles, title=color, where="right", ncols=1 if len(names) <= 14 else 2)
        return
    values = col.to_numpy(dtype=float)[order]
    # grey levels between the 1st and 99th percentiles (scanpy's vmax='p99' habit): one outlier
    # (a raw count of 2,000 among tens) would otherwise leave every other cell white
    finite = values[np.isfinite(values)]
    low, high, below, above = 0.0, 1.0, False, False
    if len(finite):
        # observed values, not interpolated ones: with ~100 cells an interpolated 99th
        # percentile still leans towards a lone outlier
        low = float(np.percentile(finite, 1, method="higher"))
        high = float(np.percentile(finite, 99, method="lower"))
        if not high > low:
            low, high = float(finite.min()), float(finite.max())
        below, above = bool(finite.min() < low), bool(finite.max() > high)
    clipped = below or above
    sc = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        c=values,
        vmin=low,
        vmax=high if high > low else None,
        cmap="Greys",
        s=s,
        linewidths=0,
        alpha=0.6,
        rasterized=True,
        zorder=1,
    )
    if key:
        extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
            (below, above), "neither"
        )
        cbar = ax.figure.colorbar(sc, ax=ax, pad=0.02, fraction=0.05, extend=extend)
        cbar.solids.set_alpha(0.6)  # as the cells are drawn
        cbar.set_label(color + (" (1st-99th percentile)" if clipped else ""))


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
        candidates = [c for c in pred.obs.columns if c not in (SOURCE_TIME_KEY, SOURCE_CELL_KEY)]
        if not candidates:
            raise ValueError("Cannot tell the time column of the prediction; pass time_key=.")
        time_key = candidates[0]
    return time_key, use_rep
