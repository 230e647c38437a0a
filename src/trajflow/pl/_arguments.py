"""Argument helpers of the plots: a model or a prediction, a prediction's keys, ``unplaceable=``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anndata import AnnData

from .._outputs import SOURCE_CELL_KEY, SOURCE_TIME_KEY

if TYPE_CHECKING:
    from .._model import TrajectoryModel


def check_unplaceable(value: str) -> str:
    if value not in ("fade", "hide", "show"):
        raise ValueError(f"unplaceable must be 'fade', 'hide' or 'show', got {value!r}.")
    return value


def model_or_prediction(
    obj: TrajectoryModel | AnnData,
) -> tuple[TrajectoryModel | None, AnnData | None]:
    from .._model import TrajectoryModel

    if isinstance(obj, TrajectoryModel):
        return obj, None
    if isinstance(obj, AnnData):
        return None, obj
    raise TypeError(
        f"Expected a TrajectoryModel or the AnnData returned by model.predict(), got "
        f"{type(obj).__name__}."
    )


def prediction_keys(pred: AnnData, time_key: str | None, use_rep: str | None) -> tuple[str, str]:
    """Infer ``(time_key, use_rep)`` of an AnnData written by ``TrajectoryModel.predict``."""
    if use_rep is None:
        if len(pred.obsm) != 1:
            raise ValueError(
                f"Cannot tell which obsm key of the prediction holds the positions "
                f"({list(pred.obsm.keys())}); pass use_rep=."
            )
        use_rep = next(iter(pred.obsm.keys()))
    if time_key is None:
        candidates = [c for c in pred.obs.columns if c not in (SOURCE_TIME_KEY, SOURCE_CELL_KEY)]
        if not candidates:
            raise ValueError("Cannot tell the time column of the prediction; pass time_key=.")
        time_key = candidates[0]
    return time_key, use_rep
