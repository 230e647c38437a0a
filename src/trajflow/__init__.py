"""trajflow: continuous cell trajectories from snapshot single-cell time courses.

>>> import trajflow
>>> model = trajflow.fit_trajectories(adata, time_key="day")
>>> predicted = model.predict(3.0)
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import benchmark, datasets, metrics, pl, tl
from ._fit import fit_trajectories
from ._methods import METHODS
from ._model import ExtrapolationWarning, Trajectories, TrajectoryModel
from .core import TrainingDivergedError

__all__ = [
    "METHODS",
    "ExtrapolationWarning",
    "TrainingDivergedError",
    "Trajectories",
    "TrajectoryModel",
    "__version__",
    "benchmark",
    "datasets",
    "fit_trajectories",
    "metrics",
    "pl",
    "tl",
]
