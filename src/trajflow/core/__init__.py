"""The torch core: couplings, conditional paths, the velocity network, training and integration.

It only knows tensors: no AnnData, no pandas. Everything here runs on any torch device.
"""

from __future__ import annotations

from .couplings import (
    Coupling,
    IndependentCoupling,
    MinibatchOTCoupling,
    PlanCoupling,
    build_coupling,
    entropic_ot_plan,
    exact_ot_plan,
)
from .device import resolve_device
from .integrate import integrate_ode, integrate_sde
from .network import VelocityNet
from .paths import bridge_path, straight_path
from .trainer import TrainConfig, TrainingDivergedError, TrainResult, train_flow

__all__ = [
    "Coupling",
    "IndependentCoupling",
    "MinibatchOTCoupling",
    "PlanCoupling",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "VelocityNet",
    "bridge_path",
    "build_coupling",
    "entropic_ot_plan",
    "exact_ot_plan",
    "integrate_ode",
    "integrate_sde",
    "resolve_device",
    "straight_path",
    "train_flow",
]
