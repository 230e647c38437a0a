"""`Trajectories`: per-cell paths on a time grid, and their long-format and AnnData views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

from ._outputs import positions_anndata, time_labels, unique_labels


@dataclass
class Trajectories:
    """Per-cell paths on a time grid, in the user's representation space.

    Attributes
    ----------
    times
        The time grid, shape ``(n_points,)``, in the units of ``obs[time_key]``.
    paths
        Positions, shape ``(n_cells, n_points, n_dims)``.
    source_time
        The time point the cells start from.
    cell_names
        ``obs_names`` of the starting cells, shape ``(n_cells,)``.
    use_rep
        The representation the positions are in (``obsm[use_rep]`` of the fitted AnnData).
    time_key
        The ``obs`` column of the fitted AnnData holding the times.
    var_names
        For ``use_rep="X"``: the modelled genes' names (:meth:`to_anndata` puts the positions
        in ``X`` under them). Default: none.
    """

    times: np.ndarray
    paths: np.ndarray
    source_time: float
    cell_names: np.ndarray
    use_rep: str = "X"
    time_key: str = "time"
    var_names: list[str] | None = None

    def __repr__(self) -> str:
        # a summary, not the arrays: a notebook cell ending in model.trajectories(...) would
        # otherwise print every position and cell name
        n_cells, n_points, n_dims = self.paths.shape
        return (
            f"Trajectories of {n_cells} cells from {self.time_key}={self.source_time:g}: "
            f"{n_points} time points from {float(self.times[0]):g} to {float(self.times[-1]):g}, "
            f"{n_dims} dimensions of {self.use_rep!r} (.paths, .to_df(), .to_anndata())"
        )

    @property
    def end_points(self) -> np.ndarray:
        """Last position of every path, shape ``(n_cells, n_dims)`` (at ``times[-1]``)."""
        return self.paths[:, -1]

    def _long(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Cell labels, times and positions, one entry per (cell, time point), cell-major."""
        n_cells, n_points, n_dims = self.paths.shape
        cells = np.repeat(np.asarray(unique_labels(self.cell_names), dtype=object), n_points)
        times = np.tile(np.asarray(self.times, dtype=np.float64), n_cells)
        return list(cells), times, self.paths.reshape(n_cells * n_points, n_dims)

    def to_df(self) -> pd.DataFrame:
        """The paths in long format, e.g. for seaborn or a merge with ``adata.obs``.

        Returns
        -------
        pandas.DataFrame
            One row per cell and time point (cell-major: all time points of the first cell,
            then the next), with columns

            ``cell``
                Obs name of the starting cell; when a cell was drawn more than once
                (``n_cells`` larger than the population) later draws get a ``#2``, ``#3``...
                suffix, so each value names one path.
            ``time``
                The time point, in the units of ``obs[time_key]``.
            ``<use_rep>_1`` ... ``<use_rep>_<n_dims>``
                The position, one column per dimension.
        """
        cells, times, x = self._long()
        df = pd.DataFrame({"cell": cells, "time": times})
        dims = pd.DataFrame(x, columns=[f"{self.use_rep}_{i + 1}" for i in range(x.shape[1])])
        return pd.concat([df, dims], axis=1)

    def to_anndata(self) -> AnnData:
        """The paths as cells, e.g. to hand to scanpy.

        Returns
        -------
        anndata.AnnData
            One observation per cell and time point (in the order of :meth:`to_df`), named
            ``"<cell>@t=<time>"``, with ``obs`` columns ``cell`` (as in :meth:`to_df`) and
            ``time_key`` (the time point). The positions are in ``obsm[use_rep]`` (no ``X``),
            or for ``use_rep="X"`` in ``X``, with the genes as ``var_names``.
        """
        cells, times, x = self._long()
        labels = np.tile(time_labels(list(self.times)), len(self.paths))
        names = [f"{c}@t={t}" for c, t in zip(cells, labels, strict=True)]
        obs = pd.DataFrame(
            {"cell": cells, self.time_key: times}, index=pd.Index(unique_labels(names))
        )
        return positions_anndata(x, obs, self.use_rep, self.var_names)
