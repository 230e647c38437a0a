"""Tools: turn a fitted flow into biology, writing documented keys into the AnnData.

Every function takes the AnnData first and the fitted model second (as scanpy and cellrank
put ``adata`` first) and keyword-only options after that. Tools that annotate cells write
documented ``obs``/``obsm``/``uns`` keys (``key_added=``), log what they wrote, and return
``None`` (or the annotated copy with ``copy=True``); tools that answer with a table or matrices
(:func:`cell_transition`, :func:`couplings`, :func:`realtime_kernel`) return it.

- :func:`predict_expression`: expression of genes in predicted cells at any time;
- :func:`fate_probabilities`: where each cell of a time point ends up (groups at a later time);
- :func:`ancestors`: where a group of cells came from (density and nearest observed cells);
- :func:`descendants`: where a group of cells goes (the mirror of :func:`ancestors`);
- :func:`cell_transition`: group-to-group table between two time points (forward or backward);
- :func:`couplings` / :func:`realtime_kernel`: cell-to-cell transition matrices for CellRank;
- :func:`velocity`: each cell's velocity at its own time, in scVelo's ``obsm`` convention.

Growth and death between time points are handled at fit time:
``fit_trajectories(..., growth_key=..., unbalanced=...)``.
"""

from __future__ import annotations

from ._ancestors import ancestors, descendants
from ._expression import predict_expression
from ._fates import fate_probabilities
from ._transitions import cell_transition, couplings, realtime_kernel
from ._velocity import velocity

__all__ = [
    "ancestors",
    "cell_transition",
    "couplings",
    "descendants",
    "fate_probabilities",
    "predict_expression",
    "realtime_kernel",
    "velocity",
]
