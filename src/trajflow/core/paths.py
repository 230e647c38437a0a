"""Conditional probability paths between paired cells (x0, x1) at pair time s in [0, 1].

Each function returns the point ``x_s`` on the path and the conditional velocity ``u_s`` (per
unit of pair time), plus what score matching needs for the Brownian bridge.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Keeps the bridge's 1/sqrt(s(1-s)) terms finite at the end points.
_S_EPS = 1e-4


def straight_path(
    x0: Tensor, x1: Tensor, s: Tensor, sigma: float, noise: Tensor, bend: Tensor | None = None
):
    """Gaussian tube of constant width ``sigma`` around the straight line (I-CFM, OT-CFM).

    ``s`` has shape ``(n, 1)``. Returns ``(x_s, u_s)``. With ``bend`` (per-pair ``c``, shape
    ``(n, d)``) the centre line is the metric flow matching interpolant
    ``(1 - s) x0 + s x1 + s (1 - s) c`` (OT-MFM, :mod:`trajflow.core.manifold`).
    """
    xs = (1 - s) * x0 + s * x1 + sigma * noise
    us = x1 - x0
    if bend is not None:
        xs = xs + s * (1 - s) * bend
        us = us + (1 - 2 * s) * bend
    return xs, us


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
