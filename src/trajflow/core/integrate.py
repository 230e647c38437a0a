"""Push cells through a learned field: an ODE (torchdiffeq) or an SDE (Euler-Maruyama)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor

Field = Callable[[Tensor, Tensor], Tensor]  # (x, t) -> dx/dt

#: Rows of one network evaluation when many cells are integrated at once: a block's activations
#: stay in cache between the layers (measured on this project's 2-core CPU at 50,000 cells x 30
#: dims, hidden 64: 16,384-row blocks took 0.34 s per evaluation against 0.51 s for all rows
#: at once; issue 27).
FIELD_BLOCK_ROWS = 16_384

FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams", "heun3")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: The default: classic Runge-Kutta in a twelfth of ``n_steps`` (``n_steps`` counts Euler steps:
#: 100 become 9 rk4 steps, 36 field evaluations), its steps ending on every output time. On a
#: default fit of the simulated course (10,000 cells per time point, 30 dims; reference rk4
#: with 400 steps, standardised units, median nearest-neighbour distance 1.9) Euler-100 misses
#: by 1.3e-2 (rms) over one time gap and 9.2e-2 over three, rk4-9 by 5.1e-4 and 1.7e-2, in 2.1 s
#: against Euler's 5.4-5.9 s for 3,000 cells (issue 27; benchmarks/README.md).
AUTO_SOLVER = "auto"
SOLVERS = (AUTO_SOLVER, *FIXED_STEP_SOLVERS, *ADAPTIVE_SOLVERS)
#: Euler steps one rk4 step of ``solver="auto"`` stands for.
EULER_STEPS_PER_RK4_STEP = 12


def blockwise(field: Field, block_rows: int = FIELD_BLOCK_ROWS) -> Field:
    """``field`` evaluated on blocks of at most ``block_rows`` rows, concatenated: the same
    values (each row's evaluation does not depend on the others) in bounded working memory."""

    def evaluate(x: Tensor, t: Tensor) -> Tensor:
        if x.shape[0] <= block_rows:
            return field(x, t)
        return torch.cat(
            [field(x[i : i + block_rows], t) for i in range(0, x.shape[0], block_rows)]
        )

    return evaluate


def _check_solver(solver: str, n_steps: int) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"Unknown solver {solver!r}; use one of {SOLVERS}.")
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")


def _steps_per_interval(t_grid: Tensor, n_steps: int) -> list[int]:
    """About ``n_steps`` steps over the span of ``t_grid``, shared out by each interval's length
    (at least one per interval)."""
    ts = t_grid.tolist()
    total = abs(ts[-1] - ts[0])
    return [
        max(1, round(n_steps * abs(b - a) / total)) if total > 0 else 1
        for a, b in itertools.pairwise(ts)
    ]


def steps_through(t_grid: Tensor, n_steps: int) -> Tensor:
    """The time points of about ``n_steps`` equal steps per interval of ``t_grid`` (shared out by
    length, at least one each), every time of ``t_grid`` among them: a fixed-step solver then
    returns its own steps' ends at the output times, never an interpolation between them."""
    pieces = [t_grid[:1]]
    for k, a, b in zip(_steps_per_interval(t_grid, n_steps), t_grid[:-1], t_grid[1:], strict=True):
        fractions = torch.arange(1, k + 1, dtype=t_grid.dtype, device=t_grid.device) / k
        inner = a + (b - a) * fractions
        inner[-1] = b
        pieces.append(inner)
    return torch.cat(pieces)


@torch.no_grad()
def integrate_ode(
    field: Field,
    x0: Tensor,
    t_grid: Tensor,
    *,
    solver: str = "euler",
    n_steps: int = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Solve ``dx/dt = field(x, t)`` from ``x0`` at ``t_grid[0]``; returns ``(len(t_grid), n, d)``.

    Fixed-step solvers take ``n_steps`` steps over the whole span of ``t_grid`` (which may
    decrease, to integrate backwards); ``"auto"`` (:data:`AUTO_SOLVER`) takes rk4 steps, one per
    :data:`EULER_STEPS_PER_RK4_STEP` of ``n_steps``, ending on every time of ``t_grid``
    (:func:`steps_through`); adaptive solvers use ``rtol``/``atol``.
    """
    # deferred: torchdiffeq imports scipy.integrate, a tenth of `import trajflow`'s time
    from torchdiffeq import odeint

    _check_solver(solver, n_steps)
    span = float(t_grid[-1] - t_grid[0])
    if span == 0:
        return x0.unsqueeze(0).expand(len(t_grid), *x0.shape).clone()
    options = None
    kwargs = {}
    if solver == AUTO_SOLVER:
        k = math.ceil(n_steps / EULER_STEPS_PER_RK4_STEP)
        # built from the times torchdiffeq passes (negated when integrating backwards)
        solver = "rk4"
        options = {"grid_constructor": lambda func, y0, t: steps_through(t, k), "perturb": False}
    elif solver in FIXED_STEP_SOLVERS:
        options = {"step_size": abs(span) / n_steps, "perturb": False}
    else:
        kwargs = {"rtol": rtol, "atol": atol}
    return odeint(lambda t, x: field(x, t), x0, t_grid, method=solver, options=options, **kwargs)


@torch.no_grad()
def integrate_sde(
    drift: Field,
    diffusion: float,
    x0: Tensor,
    t_grid: Tensor,
    *,
    n_steps: int = 100,
    generator: torch.Generator,
) -> Tensor:
    """Euler-Maruyama for ``dx = drift(x, t) dt + diffusion dW``, forward or backward in time.

    Takes ``n_steps`` equal steps over the span of ``t_grid`` (at least one between consecutive
    grid points) and returns the states at ``t_grid``, shape ``(len(t_grid), n, d)``. On a
    decreasing ``t_grid`` the steps run backward (``dt < 0``, noise of variance ``|dt|``): the
    reverse-time SDE, whose drift the caller passes (for a process with probability-flow
    velocity ``v`` and score ``s``, forward drift ``v + diffusion^2 / 2 s``, reverse drift
    ``v - diffusion^2 / 2 s``; Anderson 1982).
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")
    steps = (t_grid[1:] - t_grid[:-1]).tolist()
    if any(d > 0 for d in steps) and any(d < 0 for d in steps):
        raise ValueError("t_grid must be monotonic: SDE sampling runs one way at a time.")
    out = [x0]
    x = x0
    ends = zip(t_grid[:-1].tolist(), t_grid[1:].tolist(), strict=True)
    for k, (a, b) in zip(_steps_per_interval(t_grid, n_steps), ends, strict=True):
        dt = (b - a) / k
        for m in range(k):
            t = torch.tensor(a + m * dt, dtype=x.dtype, device=x.device)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + drift(x, t) * dt + diffusion * (abs(dt) ** 0.5) * noise
        out.append(x)
    return torch.stack(out)
