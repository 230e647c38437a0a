"""Nearest observed cells and kernel sums for the tools, in bounded memory (numpy in and out).

Every tool that matches carried cells to observed cells (the couplings, transitions, fates,
ancestors, expression, the support measure) searches through :func:`kneighbors`; the ancestors'
density sums a Gaussian kernel through :func:`gaussian_sums`. Both work block by block, so no
``(n, m)`` matrix is ever held (issue 27: the ancestors' dense kernel took 6.7 GB at 50,000
cells per time point).
"""

from __future__ import annotations

import numpy as np

#: Entries of one block of distances (float64: 64 MB).
BLOCK_ENTRIES = 2**23


def _block_rows(n_columns: int) -> int:
    return max(1, BLOCK_ENTRIES // max(n_columns, 1))


def gaussian_sums(points: np.ndarray, centres: np.ndarray, bandwidth: float) -> np.ndarray:
    """``sum_j exp(-|points[i] - centres[j]|^2 / (2 bandwidth^2))`` for every point, blockwise.

    The squared distances come from one matrix product per block (``|a|^2 + |b|^2 - 2 a.b``,
    float64, clipped at 0); they match scipy's ``cdist(..., "sqeuclidean")`` to about 1e-12 of
    the squared norms, far below what moves a kernel weight.
    """
    points = np.ascontiguousarray(points, dtype=np.float64)
    centres = np.ascontiguousarray(centres, dtype=np.float64)
    out = np.empty(len(points))
    c2 = np.einsum("ij,ij->i", centres, centres)
    scale = -0.5 / bandwidth**2
    step = _block_rows(len(centres))
    for start in range(0, len(points), step):
        block = points[start : start + step]
        sq = np.einsum("ij,ij->i", block, block)[:, None] + c2[None, :]
        sq -= 2.0 * (block @ centres.T)
        np.maximum(sq, 0.0, out=sq)
        sq *= scale
        np.exp(sq, out=sq)
        out[start : start + step] = sq.sum(axis=1)
    return out


def kneighbors(
    query: np.ndarray,
    reference: np.ndarray,
    k: int,
    *,
    return_distance: bool = True,
) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
    """The ``k`` nearest reference points of every query point (exact, Euclidean).

    scikit-learn's search (``NearestNeighbors``, ``algorithm="auto"``: a k-d tree up to 15
    dimensions, its blocked brute force above, chunked to its working memory). A torch search
    (float64 matrix product and top-k per block) was measured against it on this project's
    2-core machine, 20,000 x 20,000 cells x 30 dims, k=30: 26.8 s against scikit-learn's 13.2 s
    (float32: 16.4 s, and 0.01% of neighbours wrong); scipy's cKDTree took minutes at 30 dims.

    Parameters
    ----------
    query, reference
        Points ``(n, d)`` and ``(m, d)``.
    k
        Neighbours per query point, ``1 <= k <= m``.
    return_distance
        Also return the distances.

    Returns
    -------
    ``(distances, indices)``, each ``(n, k)`` and ascending (or the indices alone), as
    ``NearestNeighbors.kneighbors``.
    """
    from sklearn.neighbors import NearestNeighbors

    if not 1 <= k <= len(reference):
        raise ValueError(f"k must be between 1 and the {len(reference)} reference points, got {k}.")
    index = NearestNeighbors(n_neighbors=k).fit(reference)
    return index.kneighbors(query, return_distance=return_distance)
