"""Tools: turn a fitted flow into biology, writing documented keys into the AnnData.

Every function takes the AnnData first and the fitted model second (as scanpy and cellrank
put ``adata`` first), keyword-only options after
that, writes its results to documented ``obs``/``obsm``/``uns`` keys (``key_added=``), logs what it
wrote, and returns ``None`` (or the annotated copy with ``copy=True``).

- :func:`predict_expression`: expression of genes in predicted cells at any time;
- :func:`fate_probabilities`: where each cell of a time point ends up (groups at a later time);
- :func:`ancestors`: where a group of cells came from (density and nearest observed cells).

Growth and death between time points are handled at fit time:
``fit_trajectories(..., growth_key=..., unbalanced=...)``.
"""

from __future__ import annotations

from ._ancestors import ancestors
from ._expression import predict_expression
from ._fates import fate_probabilities

__all__ = ["ancestors", "fate_probabilities", "predict_expression"]
