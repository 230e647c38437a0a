"""The time-conditioned velocity network."""

from __future__ import annotations

import torch
from torch import Tensor, nn

_ACTIVATIONS = {"selu": nn.SELU, "silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
#: Names of the activations :class:`VelocityNet` knows.
ACTIVATIONS = tuple(_ACTIVATIONS)


class VelocityNet(nn.Module):
    """MLP ``(x, t) -> v`` with ``n_layers`` hidden layers of width ``hidden``.

    Time enters as an extra input column. Used both for the velocity field and, for SB-CFM,
    for the score.
    """

    def __init__(self, dim: int, hidden: int = 64, n_layers: int = 3, activation: str = "selu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}."
            )
        if hidden < 1 or n_layers < 1:
            raise ValueError(f"hidden and n_layers must be >= 1, got {hidden} and {n_layers}.")
        self.dim, self.hidden, self.n_layers, self.activation = dim, hidden, n_layers, activation
        layers: list[nn.Module] = []
        width_in = dim + 1
        for _ in range(n_layers):
            layers += [nn.Linear(width_in, hidden), _ACTIVATIONS[activation]()]
            width_in = hidden
        layers.append(nn.Linear(width_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """``x``: ``(n, dim)``; ``t``: a scalar or ``(n,)`` / ``(n, 1)`` tensor of times."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.reshape(-1, 1).expand(x.shape[0], 1) if t.numel() == 1 else t.reshape(-1, 1)
        return self.net(torch.cat([x, t], dim=1))
