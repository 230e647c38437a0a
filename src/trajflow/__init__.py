"""trajflow: continuous cell trajectories from snapshot single-cell time courses.

>>> import trajflow
>>> model = trajflow.fit_trajectories(adata, time_key="day")
>>> predicted = model.predict(3.0)
"""

from __future__ import annotations

from . import benchmark, datasets, metrics, tl
from ._fit import fit_trajectories
from ._folders import DiskFullError
from ._methods import METHODS, MethodSpec, register_method
from ._model import ExtrapolationWarning, TrajectoryModel
from ._settings import settings
from ._storage import DamagedModelError
from ._trajectories import Trajectories
from ._version import __version__
from .core import TrainingDivergedError

__all__ = [
    "METHODS",
    "DamagedModelError",
    "DiskFullError",
    "ExtrapolationWarning",
    "MethodSpec",
    "TrainingDivergedError",
    "Trajectories",
    "TrajectoryModel",
    "__version__",
    "benchmark",
    "datasets",
    "fit_trajectories",
    "metrics",
    "pl",
    "register_method",
    "settings",
    "tl",
]


def __getattr__(name: str) -> object:
    # trajflow.pl (matplotlib, scikit-learn's neighbours: ~1.5 s) is imported on first use, so
    # `import trajflow` stays quick for fitting, loading and the CLI
    if name == "pl":
        import importlib

        return importlib.import_module(".pl", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
