"""Plots (matplotlib, scanpy look and feel).

Every function takes the AnnData first (then the model or a prediction where it needs one, as
scanpy and cellrank do), keyword-only options after that, accepts ``ax=`` (``fig=`` for the multi-panel :func:`holdout`), returns the Axes (or
Figure), and shows or saves nothing unless asked (``show=True``, ``save=path``). The AnnData is
never modified.

Paths and predictions live in the model's representation space (``obsm[use_rep]``, first
``n_dims`` columns). They are drawn either on two of those dimensions (exact) or on any 2-D
``obsm`` embedding such as ``X_umap`` through a fitted k-nearest-neighbour map
(:class:`EmbeddingMap`).
"""

from __future__ import annotations

from ._benchmark import benchmark
from ._clock import clock
from ._embedding import EmbeddingMap
from ._flow import trajectories
from ._holdout import holdout, prediction
from ._sankey import sankey
from ._velocity import velocity

__all__ = [
    "EmbeddingMap",
    "benchmark",
    "clock",
    "holdout",
    "prediction",
    "sankey",
    "trajectories",
    "velocity",
]
from ._biology import ancestors, fates, gene_trends  # noqa: F401
