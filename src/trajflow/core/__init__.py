"""The torch core: couplings, conditional paths, objectives, training and integration.

It only knows tensors: no AnnData, no pandas, no matplotlib, nothing from the package face.
Everything here runs on any torch device.

- :mod:`.plans`: exact, entropic and unbalanced OT plans, the cost and the weights (every OT
  solve of the package);
- :mod:`.couplings`: the coupling classes, which cell is paired with which (independent, a
  plan's pairs, per-minibatch plans, chains through every time point); :mod:`.bank`: banks of
  minibatch plans solved ahead; :mod:`.strategy`: which coupling a pair of populations gets
  for its size, and building it;
- :mod:`.paths`: where a paired cell is at time ``s`` and how fast it moves (straight, Brownian
  bridge, cubic spline; the metric bend);
- :mod:`.bends`: the metric flow matching corrections that bend paths toward the cells;
- :mod:`.objectives`: one training step's loss (pairwise or multi-marginal);
- :mod:`.trainer`: the optimisation loop; :mod:`.network`, :mod:`.integrate`,
  :mod:`.distributed`, :mod:`.device`; :mod:`.placement`: where a fit trains (device, threads,
  data-parallel, and why), decided once.
"""

from __future__ import annotations

from .couplings import (
    ChainSampler,
    Coupling,
    IndependentCoupling,
    MinibatchOTCoupling,
    PlanCoupling,
)
from .device import resolve_device
from .integrate import integrate_ode, integrate_sde
from .network import VelocityNet
from .objectives import ChainObjective, MixtureObjective, Objective, PairwiseObjective
from .paths import bridge_path, spline_path, straight_path
from .plans import entropic_ot_plan, exact_ot_plan
from .strategy import COUPLINGS, build_chain_sampler, build_coupling
from .trainer import LR_SCHEDULES, TrainConfig, TrainingDivergedError, TrainResult, optimise

__all__ = [
    "COUPLINGS",
    "LR_SCHEDULES",
    "ChainObjective",
    "ChainSampler",
    "Coupling",
    "IndependentCoupling",
    "MinibatchOTCoupling",
    "MixtureObjective",
    "Objective",
    "PairwiseObjective",
    "PlanCoupling",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "VelocityNet",
    "bridge_path",
    "build_chain_sampler",
    "build_coupling",
    "entropic_ot_plan",
    "exact_ot_plan",
    "integrate_ode",
    "integrate_sde",
    "optimise",
    "resolve_device",
    "spline_path",
    "straight_path",
]
