"""Conditional probability paths: where a paired cell is at time s, and how fast it moves.

Three families, all linear in the cells they join:

- :func:`straight_path`: a Gaussian tube around the straight line between a pair ``(x0, x1)``
  (I-CFM, OT-CFM);
- :func:`bridge_path`: the Brownian bridge between a pair (SB-CFM, [SF]2M), with what score
  matching needs;
- :func:`spline_path`: a Gaussian tube around a cubic spline through a *chain* of cells, one per
  time point (multi-marginal flow matching; Rohbeck, De Brouwer, Bunne, Huetter, Biton, Chen,
  Theis & Richmond 2024, ICLR 2025). A gap left by a held-out time point is then bridged along
  a curve whose bend is informed by the time points beyond the gap.

Straight and spline paths can both be bent toward dense regions of the cells by the metric flow
matching term ``s (1 - s) c`` (:func:`bend_term`; the corrections ``c`` come from
:mod:`trajflow.core.bends`).

Every spline is a cubic Hermite spline through the chain at the knot times, with tangents that
are a fixed linear map of the chain points, so a point on the path and its velocity are both
*linear* in the chain, with weights that depend only on the time. Two tangent rules:
``"natural"`` (the C2 natural cubic spline, zero curvature at both ends; every tangent depends
on the whole chain), ``"hermite"`` (local quadratic tangents, the derivative of the parabola
through three consecutive points, one-sided at the ends) and ``"catmull-rom"`` (the chord
through both neighbours, the end secants at the ends, as in a non-uniform Catmull-Rom spline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

SplineKind = Literal["natural", "hermite", "catmull-rom"]
SPLINE_KINDS = ("natural", "hermite", "catmull-rom")

# Keeps the bridge's 1/sqrt(s(1-s)) terms finite at the end points.
_S_EPS = 1e-4


def straight_path(
    x0: Tensor,
    x1: Tensor,
    s: Tensor,
    sigma: float,
    noise: Tensor,
    bend: Tensor | None = None,
    restore: Tensor | None = None,
):
    """Gaussian tube of constant width ``sigma`` around the straight line (I-CFM, OT-CFM).

    ``s`` has shape ``(n, 1)``. Returns ``(x_s, u_s)``. With ``bend`` (per-pair ``c``, shape
    ``(n, d)``) the centre line is the metric flow matching interpolant
    ``(1 - s) x0 + s x1 + s (1 - s) c`` (OT-MFM, :mod:`trajflow.core.bends`). With ``restore``
    (a per-pair offset ``e``, shape ``(n, d)``) the path starts at ``x0 + e`` and sheds the
    offset on its way: ``x_s`` gains ``(1 - s) e`` and ``u_s`` loses ``e``, so the field
    learns to carry a cell that lies off the source population back onto the target one.
    """
    xs = (1 - s) * x0 + s * x1 + sigma * noise
    us = x1 - x0
    if bend is not None:
        dx, du = bend_term(s, bend)
        xs = xs + dx
        us = us + du
    if restore is not None:
        xs = xs + (1 - s) * restore
        us = us - restore
    return xs, us


def bend_term(s: Tensor, bend: Tensor) -> tuple[Tensor, Tensor]:
    """The metric flow matching bend ``s (1 - s) c`` of a path and its velocity ``(1 - 2 s) c``
    per unit of pair time ``s`` (OT-MFM, Kapusniak et al. 2024); zero at both ends, so it never
    moves the cells a path joins."""
    return s * (1 - s) * bend, (1 - 2 * s) * bend


def bridge_path(x0: Tensor, x1: Tensor, s: Tensor, sigma: float, noise: Tensor):
    """Brownian bridge with diffusion ``sigma`` per unit of pair time (SB-CFM, [SF]2M).

    Returns ``(x_s, u_s, lam)`` where ``u_s`` is the probability-flow velocity of the bridge and
    ``lam = sigma * sqrt(s (1 - s))`` is the bridge's standard deviation, so the conditional score
    is ``-noise / lam`` and the score-matching loss is ``|lam * score(x_s) + noise|^2``.
    """
    s = s.clamp(_S_EPS, 1 - _S_EPS)
    root = torch.sqrt(s * (1 - s))
    lam = sigma * root
    xs = (1 - s) * x0 + s * x1 + lam * noise
    us = (1 - 2 * s) / (2 * root) * sigma * noise + (x1 - x0)
    return xs, us, lam


def spline_tangent_matrix(knots: Sequence[float], kind: SplineKind = "natural") -> Tensor:
    """The ``(K, K)`` matrix ``A`` with tangents ``m = A @ y`` of the cubic spline through
    values ``y`` at increasing ``knots``.

    Parameters
    ----------
    knots
        ``K >= 2`` strictly increasing times.
    kind
        ``"natural"`` (C2 natural cubic spline), ``"hermite"`` (local three-point parabola
        tangents) or ``"catmull-rom"`` (the chord through both neighbours). With two knots each
        is the straight line.

    Returns
    -------
    A float64 tensor ``A`` of shape ``(K, K)``.
    """
    t = np.asarray(knots, dtype=np.float64)
    k = len(t)
    if k < 2 or np.any(np.diff(t) <= 0):
        raise ValueError(f"knots must be at least 2 strictly increasing times, got {list(knots)}.")
    if kind not in SPLINE_KINDS:
        raise ValueError(f"Unknown spline kind {kind!r}; use one of {SPLINE_KINDS}.")
    h = np.diff(t)
    # secant slopes d_j = (y_{j+1} - y_j) / h_j as a (K-1, K) linear map of y
    secant = np.zeros((k - 1, k))
    for j in range(k - 1):
        secant[j, j], secant[j, j + 1] = -1 / h[j], 1 / h[j]
    if k == 2:
        return torch.as_tensor(np.repeat(secant, 2, axis=0))
    if kind == "hermite":
        a = np.zeros((k, k))
        for j in range(1, k - 1):
            a[j] = (h[j] * secant[j - 1] + h[j - 1] * secant[j]) / (h[j - 1] + h[j])
        c0 = (secant[1] - secant[0]) / (h[0] + h[1])
        a[0] = secant[0] - h[0] * c0
        cn = (secant[-1] - secant[-2]) / (h[-2] + h[-1])
        a[-1] = secant[-1] + h[-1] * cn
        return torch.as_tensor(a)
    if kind == "catmull-rom":
        # the chord over both neighbours: a long gap's slope weighs as much as its length, so a
        # fast short step does not fling the curve past a slow long one (the parabola's
        # tangent weighs the short step more); the end tangents are the end secants
        a = np.zeros((k, k))
        a[0], a[-1] = secant[0], secant[-1]
        for j in range(1, k - 1):
            a[j] = (h[j - 1] * secant[j - 1] + h[j] * secant[j]) / (h[j - 1] + h[j])
        return torch.as_tensor(a)
    # natural cubic spline in Hermite form: T m = R y
    tmat = np.zeros((k, k))
    rmat = np.zeros((k, k))
    tmat[0, 0], tmat[0, 1] = 2.0, 1.0
    rmat[0] = 3 * secant[0]
    tmat[-1, -2], tmat[-1, -1] = 1.0, 2.0
    rmat[-1] = 3 * secant[-1]
    for j in range(1, k - 1):
        tmat[j, j - 1] = 1 / h[j - 1]
        tmat[j, j] = 2 * (1 / h[j - 1] + 1 / h[j])
        tmat[j, j + 1] = 1 / h[j]
        rmat[j] = 3 * (secant[j - 1] / h[j - 1] + secant[j] / h[j])
    return torch.as_tensor(np.linalg.solve(tmat, rmat))


def spline_weights(
    knots: Tensor, tangents: Tensor | None, segment: Tensor, s: Tensor
) -> tuple[Tensor, Tensor]:
    """Weights of the chain points in the spline's position and velocity.

    Parameters
    ----------
    knots
        ``(K,)`` knot times.
    tangents
        ``(K, K)`` tangent matrix from :func:`spline_tangent_matrix` (same dtype as ``knots``),
        or None for piecewise straight segments (OT-CFM's paths).
    segment
        ``(n,)`` long tensor: the segment ``j`` (between knots ``j`` and ``j + 1``) of each point.
    s
        ``(n,)`` or ``(n, 1)`` fraction of the way through the segment, in ``[0, 1]``.

    Returns
    -------
    ``(w, dw)``, each ``(n, K)``: the point is ``w @ chain`` and its velocity (per unit of knot
    time) is ``dw @ chain``.
    """
    s = s.reshape(-1, 1).to(knots.dtype)
    h = (knots[segment + 1] - knots[segment]).reshape(-1, 1)
    n_knots = len(knots)
    left = torch.nn.functional.one_hot(segment, n_knots).to(knots.dtype)
    right = torch.nn.functional.one_hot(segment + 1, n_knots).to(knots.dtype)
    if tangents is None:
        return (1 - s) * left + s * right, (right - left) / h
    s2, s3 = s * s, s * s * s
    h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
    d00, d10, d01, d11 = 6 * s2 - 6 * s, 3 * s2 - 4 * s + 1, -6 * s2 + 6 * s, 3 * s2 - 2 * s
    m_left, m_right = tangents[segment], tangents[segment + 1]
    w = h00 * left + h01 * right + h * (h10 * m_left + h11 * m_right)
    dw = (d00 * left + d01 * right) / h + d10 * m_left + d11 * m_right
    return w, dw


def spline_path(
    chain: Tensor,
    knots: Tensor,
    tangents: Tensor | None,
    segment: Tensor,
    s: Tensor,
    sigma: float,
    noise: Tensor,
) -> tuple[Tensor, Tensor]:
    """A Gaussian tube of width ``sigma`` around the cubic spline through each chain.

    Parameters
    ----------
    chain
        ``(n, K, d)``: one cell per knot for each of ``n`` chains.
    knots, tangents, segment, s
        As in :func:`spline_weights`.
    sigma, noise
        Tube width and ``(n, d)`` standard normal noise.

    Returns
    -------
    ``(x_t, u_t)``: points on the paths and their conditional velocities (per unit of knot
    time), each ``(n, d)``.
    """
    w, dw = spline_weights(knots, tangents, segment, s)
    w, dw = w.to(chain.dtype), dw.to(chain.dtype)
    xt = torch.einsum("nk,nkd->nd", w, chain) + sigma * noise
    ut = torch.einsum("nk,nkd->nd", dw, chain)
    return xt, ut
