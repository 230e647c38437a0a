"""`fit_trajectories`: AnnData in, fitted `TrajectoryModel` out."""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from anndata import AnnData

from ._anndata import Standardizer, check_anndata, get_representation, parse_times
from ._methods import get_method
from ._model import TrajectoryModel
from ._timecourse import TimeCourse, as_time_list, match_time
from .core import TrainConfig, VelocityNet, build_coupling, resolve_device, train_flow
from .core.integrate import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS

logger = logging.getLogger("trajflow")

DEFAULT_N_DIMS = 5


def _check_positive(name: str, value: Any, kind: type = int) -> None:
    ok = isinstance(value, kind | np.integer) if kind is int else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {value!r}.")


def fit_trajectories(
    adata: AnnData,
    *,
    time_key: str = "time",
    use_rep: str = "X_pca",
    n_dims: int | None = None,
    method: str = "ot-cfm",
    holdout: float | Sequence[float] | None = None,
    sigma: float | None = None,
    n_steps: int = 3000,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    lr_schedule: Literal["constant", "cosine"] = "cosine",
    hidden: int = 64,
    n_layers: int = 3,
    activation: str = "selu",
    coupling: Literal["auto", "full", "minibatch"] = "auto",
    solver: str = "euler",
    solver_steps: int = 100,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = True,
) -> TrajectoryModel:
    """Learn a continuous flow of cells through a snapshot time course.

    One time-conditioned velocity network is trained by conditional flow matching jointly over
    all consecutive pairs of training time points. Cells are standardised per dimension first;
    the scaler is stored in the model, so every output is in the representation's own units.

    Parameters
    ----------
    adata
        Annotated data matrix, one cell per row. Not modified, except that a PCA is written to
        ``obsm['X_pca']`` and ``uns['trajflow_pca']`` when ``use_rep='X_pca'`` is missing.
    time_key
        Column of ``adata.obs`` with each cell's time point: numbers, or labels that parse as
        numbers (categorical ``"0", "2", "4"`` works).
    use_rep
        ``obsm`` key of the representation to model, or ``"X"``. When ``"X_pca"`` is missing it
        is computed with scanpy (after ``normalize_total`` + ``log1p`` on a copy if ``X`` holds raw
        counts) and written to ``obsm['X_pca']``.
    n_dims
        Use the first ``n_dims`` columns of the representation. Default: 5, or all when the
        representation has fewer.
    method
        ``"ot-cfm"`` (exact OT couplings, straight paths), ``"sb-cfm"`` (entropic OT couplings,
        Brownian bridges; also learns the score so it can be sampled as an SDE) or ``"i-cfm"``
        (independent couplings; the baseline).
    holdout
        Time point(s) excluded from training. The pair of training time points around a gap
        covers the whole span.
    sigma
        ``ot-cfm``/``i-cfm``: width of the Gaussian tube around each straight path (default 0.1).
        ``sb-cfm``: Brownian diffusion per unit of time, where one unit is the mean spacing of the
        observed time points (default 1.0); the entropic OT regularisation of a pair spanning
        ``d`` units is ``2 sigma^2 d``. In standardised units.
    n_steps, batch_size, lr, weight_decay, lr_schedule
        Optimisation: AdamW steps, pairs drawn per pair of time points per step, learning rate,
        weight decay, and ``"constant"`` or ``"cosine"`` learning-rate decay.
    hidden, n_layers, activation
        The velocity MLP: width, number of hidden layers, activation.
    coupling
        ``"auto"`` solves the OT plan between whole populations once when they are small
        (``n_a * n_b <= 4e6``) and draws pairs from it every step; larger pairs solve a plan per
        minibatch. ``"full"``/``"minibatch"`` force one.
    solver, solver_steps
        How predictions are integrated: a torchdiffeq method (``"euler"``, ``"rk4"``,
        ``"dopri5"``...) and, for fixed-step methods, the number of steps over a prediction's span.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...
    seed
        Seeds network initialisation and pair sampling. Global RNG state is left untouched.
    progress
        Show a progress bar over training steps.

    Returns
    -------
    The fitted :class:`~trajflow.TrajectoryModel`.

    Examples
    --------
    >>> model = trajflow.fit_trajectories(adata, time_key="day")
    >>> pred = model.predict(3.0)  # AnnData of predicted cells at day 3
    """
    spec = get_method(method)
    check_anndata(adata)
    for name, value in (("n_steps", n_steps), ("batch_size", batch_size), ("hidden", hidden),
                        ("n_layers", n_layers), ("solver_steps", solver_steps)):
        _check_positive(name, value)
    if solver not in FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS:
        raise ValueError(f"Unknown solver {solver!r}; use one of {FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS}.")
    sigma = spec.default_sigma if sigma is None else sigma
    if not isinstance(sigma, int | float) or not np.isfinite(sigma) or sigma < 0 or (
        spec.path == "bridge" and sigma == 0
    ):
        raise ValueError(
            f"sigma must be a finite number {'> 0' if spec.path == 'bridge' else '>= 0'} for "
            f"method={method!r}, got {sigma!r}."
        )
    dev = resolve_device(device)
    times = parse_times(adata, time_key)
    if n_dims is None:
        rep_full = get_representation(adata, use_rep, None)
        n_dims = min(DEFAULT_N_DIMS, rep_full.shape[1])
        rep = rep_full[:, :n_dims]
    else:
        rep = get_representation(adata, use_rep, n_dims)
    course = TimeCourse.from_arrays(rep, times, np.asarray(adata.obs_names), time_key=time_key)
    holdout_times = [match_time(t, course.times, what="Held-out time") for t in as_time_list(holdout)]
    train = course.without(holdout_times)

    scaler = Standardizer.fit(np.concatenate(train.populations))
    # One unit of internal time = the mean spacing of all observed time points (held-out included),
    # so sigma means the same for every leave-one-out split.
    origin = course.times[0]
    unit = (course.times[-1] - course.times[0]) / (len(course.times) - 1)
    taus = [(t - origin) / unit for t in train.times]
    z_pops = [scaler.transform(p).astype(np.float32) for p in train.populations]
    cells = TimeCourse(times=train.times, populations=z_pops, cell_names=train.cell_names)

    config = TrainConfig(
        n_steps=n_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        path=spec.path if spec.path != "spline" else "straight",
        sigma=float(sigma),
        lr_schedule=lr_schedule,
    )
    tensors = [torch.as_tensor(p, device=dev) for p in z_pops]
    t0 = _time.perf_counter()
    couplings = []
    for k in range(len(tensors) - 1 if spec.path != "spline" else 0):
        span = taus[k + 1] - taus[k]
        reg = 2 * sigma**2 * span if spec.coupling == "entropic" else None
        couplings.append(build_coupling(spec.coupling, tensors[k], tensors[k + 1], reg=reg, strategy=coupling))
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        vnet = VelocityNet(rep.shape[1], hidden, n_layers, activation).to(dev)
        snet = VelocityNet(rep.shape[1], hidden, n_layers, activation).to(dev) if spec.learns_score else None
    generator = torch.Generator(device=dev).manual_seed(seed)
    if spec.path == "spline":  # multi-marginal flow matching: its own trainer, same VelocityNet
        from .core.multimarginal import MultiMarginalConfig, train_multimarginal

        mm_config = MultiMarginalConfig(
            n_steps=n_steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            sigma=float(sigma), spline=spec.spline, lr_schedule=lr_schedule, ema=spec.ema,
            bend=spec.bend,
        )
        result = train_multimarginal(tensors, taus, vnet, mm_config, generator=generator, progress=progress)
    else:
        result = train_flow(
            tensors, taus, couplings, vnet, config, generator=generator, score_net=snet, progress=progress
        )
    fit_seconds = _time.perf_counter() - t0
    model_config = {
        "method": method,
        "time_key": time_key,
        "use_rep": use_rep,
        "n_dims": int(rep.shape[1]),
        "holdout": holdout_times,
        "sigma": float(sigma),
        "n_steps": n_steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "lr_schedule": lr_schedule,
        "hidden": hidden,
        "n_layers": n_layers,
        "activation": activation,
        "coupling": coupling,
        "solver": solver,
        "solver_steps": solver_steps,
        "seed": seed,
    }
    history = {
        "initial_loss": result.initial_loss,
        "loss": result.losses,
        "loss_step": result.loss_steps,
        "steps_done": result.steps_done,
        "interrupted": result.interrupted,
        "fit_seconds": fit_seconds,
    }
    model = TrajectoryModel(
        velocity_net=vnet,
        score_net=snet,
        config=model_config,
        scaler=scaler,
        cells=cells,
        observed_times=course.times,
        time_origin=origin,
        time_unit=unit,
        history=history,
        device=dev,
    )
    logger.info(
        "Fitted %s on %d time points (%d cells) in %.1f s", method, len(train.times),
        sum(len(p) for p in z_pops), fit_seconds,
    )
    return model
