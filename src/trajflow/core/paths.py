"""Conditional probability paths between paired cells (x0, x1) at pair time s in [0, 1].

Each function returns the point ``x_s`` on the path and the conditional velocity ``u_s`` (per
unit of pair time), plus what score matching needs for the Brownian bridge.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Keeps the bridge's 1/sqrt(s(1-s)) terms finite at the end points.
_S_EPS = 1e-4


def straight_path(x0: Tensor, x1: Tensor, s: Tensor, sigma: float, noise: Tensor):
    """Gaussian tube of constant width ``sigma`` around the straight line (I-CFM, OT-CFM).

    ``s`` has shape ``(n, 1)``. Returns ``(x_s, u_s)``.
    """
    xs = (1 - s) * x0 + s * x1 + sigma * noise
    return xs, x1 - x0


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
