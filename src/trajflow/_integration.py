"""How a fitted model integrates cells: its checked integrator options and the one ODE / SDE solve.

:class:`~trajflow.TrajectoryModel`'s verbs (``push``, ``predict``, ``trajectories``) check their
options with :func:`integration_options` and integrate standardised cells through observed times
with :func:`integrate_cells` (the ODE, or the SDE forward or backward in time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._clock import Clock
from ._validate import check_bool, check_choice, check_optional_int, check_seed
from .core import VelocityNet, integrate_ode, integrate_sde
from .core.integrate import SOLVERS, blockwise


@dataclass(frozen=True)
class Integrator:
    """Checked integration options: SDE or ODE, the SDE's seed, the solver and its steps."""

    sde: bool
    seed: int
    solver: str
    n_steps: int


def integration_options(
    sde: Any,
    seed: Any,
    solver: Any,
    n_steps: Any,
    *,
    learns_score: bool,
    method: str,
    config: Mapping[str, Any],
) -> Integrator:
    """The checked integration options, with the fit's solver and steps (``config``) filled in."""
    sde = check_bool("sde", sde)
    seed = check_seed(seed)
    if sde and not learns_score:
        raise ValueError(
            f"sde=True needs a score network, which method={method!r} does not learn; "
            "fit with method='sb-cfm' or use sde=False."
        )
    if solver is not None:
        check_choice("solver", solver, SOLVERS)
    n_steps = check_optional_int("n_steps", n_steps)
    solver = config["solver"] if solver is None else solver
    n_steps = int(config["solver_steps"]) if n_steps is None else n_steps
    return Integrator(sde=sde, seed=seed, solver=solver, n_steps=n_steps)


def _drift(
    velocity_net: VelocityNet,
    score_net: VelocityNet | None,
    sigma: float,
    sde: bool,
    backward: bool = False,
) -> Callable[[Tensor, Tensor], Tensor]:
    if not sde:
        return blockwise(lambda x, t: velocity_net(x, t))
    # the SDE's drift is the probability-flow velocity plus sigma^2/2 times the score; run
    # backward in time, the reverse-time SDE's drift subtracts it (Anderson 1982)
    half_g2 = (-0.5 if backward else 0.5) * sigma**2
    return blockwise(lambda x, t: velocity_net(x, t) + half_g2 * score_net(x, t))


def integrate_cells(
    z0: np.ndarray,
    t_from: float,
    t_grid: np.ndarray,
    *,
    velocity_net: VelocityNet,
    score_net: VelocityNet | None,
    clock: Clock,
    sigma: float,
    device: torch.device,
    options: Integrator,
) -> np.ndarray:
    """Integrate standardised cells from ``t_from`` through ``t_grid`` (observed time units).

    Returns the positions at every time of ``t_grid``, shape ``(len(t_grid), n_cells, n_dims)``,
    float64.
    """
    taus = np.atleast_1d(clock(np.asarray(t_grid, dtype=float)))
    # The solver needs the start time first; drop it from the output if the caller did not ask.
    tau_from = float(clock(t_from))
    prepend = not np.isclose(taus[0], tau_from)
    if prepend:
        taus = np.concatenate([[tau_from], taus])
    grid = torch.as_tensor(taus, dtype=torch.float32, device=device)
    x = torch.as_tensor(np.asarray(z0, dtype=np.float32), device=device)
    drift = _drift(velocity_net, score_net, sigma, options.sde, backward=taus[-1] < taus[0])
    if options.sde:
        gen = torch.Generator(device=device).manual_seed(options.seed)
        out = integrate_sde(drift, sigma, x, grid, n_steps=options.n_steps, generator=gen)
    else:
        out = integrate_ode(drift, x, grid, solver=options.solver, n_steps=options.n_steps)
    out = out[1:] if prepend else out
    return out.cpu().numpy().astype(np.float64)
