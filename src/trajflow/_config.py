"""The options of :func:`~trajflow.fit_trajectories`, in one place.

:class:`FitConfig` has one field per option, with its default and its role on resume:

- :data:`MATCH`: changes the model, its training data or the pairs it draws; saved in the
  model's ``config.json``, and a checkpoint must share it with the fit that resumes it;
- :data:`CALL`: the resuming call's own (the optimisation, how predictions integrate); saved;
- :data:`RUN`: how and where this run goes (device, threads, progress, checkpoints); not saved.

Everything else is derived from the fields: :func:`fit_defaults`, :data:`RESUME_MUST_MATCH`,
:data:`THIS_CALL`, :data:`SAVED` (the keys of a model's ``config`` entry) and the names
:func:`check_option_names` accepts. ``fit_trajectories`` keeps its explicit keyword-only
signature (for users and their editors); a test keeps its names, defaults and annotations equal
to the fields, and its docstring documenting every one.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

#: Role of an option that changes the model, its data or the pairs it draws (saved; a resumed
#: checkpoint must match it).
MATCH = "must-match"
#: Role of an option that is the resuming call's own (saved with the model).
CALL = "this-call"
#: Role of an option about how and where this run goes (not saved).
RUN = "run"
ROLES = (MATCH, CALL, RUN)


# Each field's metadata: its role.
_MATCH, _CALL, _RUN = ({"role": role} for role in ROLES)


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """The options of one :func:`~trajflow.fit_trajectories` call (documented there).

    Each field's ``metadata["role"]`` is one of :data:`ROLES`. The fields are in the order of
    the signature.
    """

    time_key: str = field(default="time", metadata=_MATCH)
    use_rep: str = field(default="X_pca", metadata=_MATCH)
    n_dims: int | None = field(default=None, metadata=_MATCH)
    scaling: Literal["global", "per-dimension"] = field(default="global", metadata=_MATCH)
    method: str = field(default="ot-cfm", metadata=_MATCH)
    clock: Literal["auto", "time", "distance"] = field(default="auto", metadata=_MATCH)
    holdout: float | Sequence[float] | None = field(default=None, metadata=_MATCH)
    sigma: float | None = field(default=None, metadata=_MATCH)
    restore: float | None = field(default=None, metadata=_MATCH)
    n_steps: int = field(default=3000, metadata=_CALL)
    batch_size: int = field(default=128, metadata=_MATCH)
    lr: float = field(default=1e-3, metadata=_CALL)
    weight_decay: float = field(default=1e-5, metadata=_CALL)
    lr_schedule: Literal["constant", "cosine"] = field(default="cosine", metadata=_CALL)
    hidden: int = field(default=64, metadata=_MATCH)
    n_layers: int = field(default=3, metadata=_MATCH)
    activation: str = field(default="selu", metadata=_MATCH)
    coupling: Literal["auto", "full", "bank", "minibatch"] = field(default="auto", metadata=_MATCH)
    growth_key: str | None = field(default=None, metadata=_MATCH)
    unbalanced: float | None = field(default=None, metadata=_MATCH)
    solver: str = field(default="auto", metadata=_CALL)
    solver_steps: int = field(default=100, metadata=_CALL)
    device: str | torch.device = field(default="auto", metadata=_RUN)
    threads: int | Literal["auto"] | None = field(default="auto", metadata=_RUN)
    seed: int = field(default=0, metadata=_MATCH)  # the seed builds the coupling banks
    progress: bool = field(default=True, metadata=_RUN)
    checkpoint_dir: str | os.PathLike | None = field(default=None, metadata=_RUN)
    checkpoint_every: int = field(default=500, metadata=_RUN)
    resume_from: str | os.PathLike | None = field(default=None, metadata=_RUN)

    def saved(self) -> dict[str, Any]:
        """The options a model records (its ``config`` entry): the :data:`SAVED` ones."""
        return {name: getattr(self, name) for name in SAVED}


def _with_role(*roles: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(FitConfig) if f.metadata["role"] in roles)


#: Every option's name, in the order of the signature.
OPTIONS = _with_role(*ROLES)
#: Settings a checkpoint must share with the fit that resumes it.
RESUME_MUST_MATCH = _with_role(MATCH)
#: Saved settings that are the resuming call's own (a longer ``n_steps`` trains on).
THIS_CALL = _with_role(CALL)
#: The keys of a fitted model's ``config`` entry (``config.json``).
SAVED = _with_role(MATCH, CALL)


def fit_defaults() -> dict[str, Any]:
    """Every option of :func:`~trajflow.fit_trajectories` with its default, in signature order."""
    return {f.name: f.default for f in fields(FitConfig)}


def check_option_names(
    kwargs: Mapping[str, Any] | Iterable[str], *, where: str = "fit_kwargs"
) -> None:
    """Refuse a name that is not an option of :func:`~trajflow.fit_trajectories`.

    Parameters
    ----------
    kwargs
        The options given (a mapping, or its keys).
    where
        The argument they came in, named in the error (``"fit_kwargs"``).

    Raises
    ------
    TypeError
        For a name that is no option (or not a string), naming ``where`` and the closest
        option (difflib), or listing them all when none is close. A ``TypeError``, as Python
        raises for an unexpected keyword argument.
    """
    for name in kwargs:
        if not isinstance(name, str):
            raise TypeError(f"{where} keys must be option names (strings), got {name!r}.")
        if name in OPTIONS:
            continue
        close = difflib.get_close_matches(name, OPTIONS, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"the options are {', '.join(OPTIONS)}."
        raise TypeError(f"{where} sets {name!r}, which is not an option of fit_trajectories; {fix}")
