"""Training checkpoints: a loadable model plus what resuming needs, written as the fit goes.

A checkpoint directory is a saved :class:`~trajflow.TrajectoryModel` with one more file,
:data:`TRAINER_STATE_FILE`: the step, the optimiser state, the generator state, the moving
average of the weights (if any) and the loss history so far. ``fit_trajectories(...,
resume_from=dir)`` loads it into fresh networks and continues; with the same data and settings it
ends with the same model as an uninterrupted fit (on the CPU).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ._config import RESUME_MUST_MATCH as _RESUME_MUST_MATCH
from ._folders import check_writable, is_model_folder
from ._model import TrajectoryModel
from .core import TrainResult, VelocityNet

logger = logging.getLogger("trajflow")

#: File in a checkpoint directory with what resuming needs beyond the model itself.
TRAINER_STATE_FILE = "trainer_state.pt"

#: Settings a checkpoint must share with the fit that resumes it: everything that changes the
#: model, its training data or the pairs it draws (derived from the roles of
#: :class:`~trajflow._config.FitConfig`'s fields). The rest are the resuming call's:
#: :data:`~trajflow._config.THIS_CALL` (the optimisation, how predictions integrate), plus
#: device, threads, progress and the checkpoint options.
RESUME_MUST_MATCH = _RESUME_MUST_MATCH
#: What a checkpoint written before a setting existed was fitted with.
_LEGACY = {"scaling": "per-dimension", "restore": 0.0}


def check_checkpoint_dir(path: str | os.PathLike) -> None:
    """Refuse, before training starts, a ``checkpoint_dir`` that cannot be written or that holds
    files other than a trajflow checkpoint (saving would replace them)."""
    path = Path(path)
    check_writable(path, argument="checkpoint_dir")
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(
            f"checkpoint_dir={str(path)!r} is a file, not a folder. Pass a new or empty folder, or "
            "the folder of an earlier fit's checkpoint."
        )
    if any(path.iterdir()) and not (
        is_model_folder(path) and (path / TRAINER_STATE_FILE).is_file()
    ):
        raise FileExistsError(
            f"checkpoint_dir={str(path)!r} holds files that are not a trajflow checkpoint, and "
            "checkpoints replace the folder. Pass a new or empty folder (your files are left "
            "as they are)."
        )


def load_checkpoint(
    path: str | os.PathLike | None,
    config: dict[str, Any],
    *,
    velocity_net: VelocityNet,
    score_net: VelocityNet | None,
    generator: torch.Generator,
) -> dict[str, Any] | None:
    """Load the checkpoint at ``path`` into the fresh networks and generator and return its
    trainer state (``None`` when ``path`` is None). Refuses a checkpoint whose settings in
    :data:`RESUME_MUST_MATCH` differ from ``config``."""
    if path is None:
        return None
    state_file = Path(path) / TRAINER_STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(
            f"resume_from={str(path)!r} is not a trajflow checkpoint (no {TRAINER_STATE_FILE}); "
            "pass the checkpoint_dir of an earlier fit."
        )
    saved = TrajectoryModel.load(path, device="cpu")
    mismatched = {
        k: (saved.config.get(k, _LEGACY.get(k)), config[k])
        for k in RESUME_MUST_MATCH
        if saved.config.get(k, _LEGACY.get(k)) != config[k]
    }
    if mismatched:
        detail = ", ".join(
            f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items()
        )
        raise ValueError(
            f"Cannot resume from {path}: settings differ ({detail}). Resume with the "
            "checkpoint's settings, or start a new fit without resume_from."
        )
    velocity_net.load_state_dict(saved._velocity_net.state_dict())
    if score_net is not None:
        score_net.load_state_dict(saved._score_net.state_dict())
    trainer_state = torch.load(state_file, map_location="cpu", weights_only=True)
    generator.set_state(trainer_state["generator"])
    logger.info("Resuming from %s at step %d", path, trainer_state["step"])
    return trainer_state


def with_history(result: TrainResult, resume: dict[str, Any] | None) -> TrainResult:
    """``result`` with the loss history of the checkpoint it resumed from put in front."""
    if not resume:
        return result
    return TrainResult(
        initial_loss=resume["initial_loss"],
        losses=resume["losses"] + result.losses,
        loss_steps=resume["loss_steps"] + result.loss_steps,
        steps_done=result.steps_done,
        interrupted=result.interrupted,
    )


def checkpointer(
    directory: str | os.PathLike,
    every: int,
    *,
    n_steps: int,
    resume: dict[str, Any] | None,
    generator: torch.Generator,
    make_model: Callable[[TrainResult], TrajectoryModel],
) -> Callable[[int, dict[str, Any]], None]:
    """The ``on_check`` callback of :func:`~trajflow.core.trainer.optimise` that saves a
    checkpoint to ``directory`` about every ``every`` steps and at the last step, replacing the
    previous one (atomically: :meth:`TrajectoryModel.save`)."""
    last_saved: list[float] = [resume["step"] if resume else 0]

    def on_check(step: int, state: dict[str, Any]) -> None:
        if last_saved[0] == float("inf") or (step - last_saved[0] < every and step != n_steps):
            return
        so_far = with_history(state["result"], resume)
        trainer_state = {
            "step": step,
            "optimizer": state["optimizer"],
            "generator": generator.get_state(),
            "ema": state["ema"],
            "losses": so_far.losses,
            "loss_steps": so_far.loss_steps,
            "initial_loss": so_far.initial_loss,
        }
        try:
            make_model(so_far).save(
                directory, overwrite=True, extra={TRAINER_STATE_FILE: trainer_state}
            )
        except OSError as err:
            # the model in memory is worth more than its checkpoints: train on without them
            warnings.warn(
                f"Could not write the checkpoint at step {step} ({err}); training goes on "
                "without checkpoints and the fitted model is returned as usual. The last "
                "checkpoint written, if any, is left as it was.",
                RuntimeWarning,
                stacklevel=2,
            )
            last_saved[0] = float("inf")
            return
        last_saved[0] = step

    return on_check
