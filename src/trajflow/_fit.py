"""`fit_trajectories`: AnnData in, fitted `TrajectoryModel` out."""

from __future__ import annotations

import logging
import math
import os
import time as _time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from anndata import AnnData
from pandas.api.types import is_numeric_dtype as pd_is_numeric

from ._anndata import Standardizer, check_anndata, get_representation, parse_times
from ._clock import check_clock, fit_clock
from ._methods import get_method
from ._model import TrajectoryModel
from ._timecourse import TimeCourse, as_time_list, match_time
from .core import (
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
    VelocityNet,
    build_coupling,
    resolve_device,
    train_flow,
)
from .core.couplings import MAX_FULL_PLAN_ENTRIES
from .core.distributed import data_parallel, init_distributed, process_device
from .core.integrate import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS
from .core.manifold import support_bends

logger = logging.getLogger("trajflow")

DEFAULT_N_DIMS = 5


def _check_positive(name: str, value: Any, kind: type = int) -> None:
    ok = isinstance(value, kind | np.integer) if kind is int else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {value!r}.")


def _growth_weights(adata: AnnData, growth_key: str) -> np.ndarray:
    """``adata.obs[growth_key]`` as positive finite floats, or a clear error."""
    if not isinstance(growth_key, str) or growth_key not in adata.obs.columns:
        cols = ", ".join(map(repr, adata.obs.columns[:10])) or "none"
        raise KeyError(
            f"growth_key={growth_key!r} is not a column of adata.obs (columns: {cols}). Add a "
            "column of per-cell growth factors (e.g. adata.obs['growth'] = np.exp(rate)) first."
        )
    col = adata.obs[growth_key]
    if not pd_is_numeric(col) or col.dtype == bool:
        raise TypeError(f"adata.obs[{growth_key!r}] must hold numbers (growth factors).")
    values = col.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        n_bad = int((~np.isfinite(values) | (values <= 0)).sum())
        raise ValueError(
            f"adata.obs[{growth_key!r}] has {n_bad} missing, infinite or non-positive values; "
            "growth factors must be positive (1 = no net growth). Use exp(rate) for a log-rate."
        )
    return values


#: Cells per time point that methods with bent paths (ot-mfm) train on: their exact OT plans are
#: solved in full, so larger populations are subsampled once (2,000 x 2,000 = the full-plan limit).
MAX_BEND_CELLS = math.isqrt(MAX_FULL_PLAN_ENTRIES)


def _subsample(populations: Sequence[np.ndarray], max_cells: int, seed: int) -> list[np.ndarray]:
    """Sorted indices of at most ``max_cells`` cells of each population, drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    return [
        np.sort(rng.choice(len(p), max_cells, replace=False))
        if len(p) > max_cells
        else np.arange(len(p))
        for p in populations
    ]


def fit_trajectories(
    adata: AnnData,
    *,
    time_key: str = "time",
    use_rep: str = "X_pca",
    n_dims: int | None = None,
    method: str = "ot-cfm",
    clock: Literal["auto", "time", "distance"] = "auto",
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
    growth_key: str | None = None,
    unbalanced: float | None = None,
    solver: str = "euler",
    solver_steps: int = 100,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    resume_from: str | os.PathLike | None = None,
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
        (independent couplings; the baseline). ``"ot-mfm"`` (exact OT pairs joined by paths
        bent toward dense regions of the training cells, :mod:`trajflow.core.manifold`;
        Kapusniak et al. 2024; trains on at most 2,000 cells per time point, subsampled once by
        ``seed``; no ``unbalanced``). Multi-marginal methods
        (:mod:`trajflow.core.multimarginal`; no checkpoints, growth or unbalanced OT):
        ``"mmfm"`` / ``"mmfm-hermite"`` (natural / local cubic splines through chains of exact OT
        couplings across all training time points; Rohbeck et al. 2024) and ``"mmfm-metric"``
        (splines with the OT-MFM bend). See ``trajflow.METHODS`` for references.
    clock
        How observed time maps to the flow's time, i.e. where between two training time points
        an unobserved time is placed. ``"time"``: in proportion to time (every gap crossed at
        constant speed). ``"distance"``: training time points are placed at their cumulative W2
        distance from the first, and times in between by a monotone cubic through them, so the
        population's speed follows its trend across time points (helps when sampling is uneven
        in progress). ``"auto"`` (default): the clock that best places each interior training
        time point when it is held out (model-free OT interpolation of its neighbours); the
        distance clock must win by 1%, and with fewer than 4 training time points it is
        ``"time"``. The chosen clock is ``model.clock`` (``model.clock.scores``: the held-out
        W1 of each). See :mod:`trajflow._clock`.
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
    growth_key
        Column of ``adata.obs`` with each cell's growth factor per unit of ``obs[time_key]``:
        the expected number of descendants it has one unit of time later (e.g.
        ``exp(growth_rate)``, from proliferation and apoptosis gene scores as Waddington-OT's
        ``cell_growth_rate``). Positive numbers. The source marginal of the coupling between
        time points ``t0 < t1`` is then proportional to ``g ** (t1 - t0)``, so proliferating
        cells are paired with more descendants. Default ``None``: every cell weighs the same.
    unbalanced
        Mass relaxation ``reg_m`` of unbalanced OT (``None``, the default: balanced OT). The
        coupling's marginal constraints become a KL penalty of weight ``reg_m`` (in units of the
        squared Euclidean cost between standardised cells), so cells may appear or vanish
        between time points instead of being forced onto far-away targets; smaller values
        relax more, large values approach balanced OT (try 0.1-10). Only for methods with an
        OT coupling (``ot-cfm``: entropic regularisation
        :data:`~trajflow.core.couplings.UNBALANCED_EXACT_REG`; ``sb-cfm``: its own).
    solver, solver_steps
        How predictions are integrated: a torchdiffeq method (``"euler"``, ``"rk4"``,
        ``"dopri5"``...) and, for fixed-step methods, the number of steps over a prediction's span.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...
    seed
        Seeds network initialisation and pair sampling. Global RNG state is left untouched.
    progress
        Show a progress bar over training steps (on the first process only under torchrun).
    checkpoint_dir, checkpoint_every
        Save a resumable checkpoint (a loadable model plus optimiser and sampler state) to
        ``checkpoint_dir`` about every ``checkpoint_every`` steps, replacing the previous one.
    resume_from
        A ``checkpoint_dir`` written by an earlier call with the same data and settings: training
        continues from its step, and ends with the same model as an uninterrupted fit (on CPU).

    Notes
    -----
    Launched under ``torchrun --nproc_per_node=N``, the fit trains data-parallel with
    DistributedDataParallel (``gloo`` on CPU, ``nccl`` on GPU): each process draws
    ``batch_size / N`` pairs per pair of time points per step and gradients are averaged, so the
    total batch is unchanged; only the first process writes checkpoints.
    A ``KeyboardInterrupt`` during training returns the model trained so far
    (``model.history['interrupted']`` is True). A NaN or infinite loss raises
    :class:`~trajflow.TrainingDivergedError` whose ``model`` attribute holds the model with the
    last finite weights.

    Returns
    -------
    The fitted :class:`~trajflow.TrajectoryModel`.

    Examples
    --------
    >>> model = trajflow.fit_trajectories(adata, time_key="day")
    >>> pred = model.predict(3.0)  # AnnData of predicted cells at day 3
    """
    spec = get_method(method)
    check_clock(clock)
    check_anndata(adata)
    for name, value in (
        ("n_steps", n_steps),
        ("batch_size", batch_size),
        ("hidden", hidden),
        ("n_layers", n_layers),
        ("solver_steps", solver_steps),
    ):
        _check_positive(name, value)
    if solver not in FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS:
        raise ValueError(
            f"Unknown solver {solver!r}; use one of {FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS}."
        )
    sigma = spec.default_sigma if sigma is None else sigma
    if (
        not isinstance(sigma, int | float)
        or not np.isfinite(sigma)
        or sigma < 0
        or (spec.path == "bridge" and sigma == 0)
    ):
        raise ValueError(
            f"sigma must be a finite number {'> 0' if spec.path == 'bridge' else '>= 0'} for "
            f"method={method!r}, got {sigma!r}."
        )
    if unbalanced is not None and (
        isinstance(unbalanced, bool)
        or not isinstance(unbalanced, int | float)
        or not np.isfinite(unbalanced)
        or unbalanced <= 0
    ):
        raise ValueError(
            f"unbalanced (the mass relaxation reg_m) must be a positive finite number, or None "
            f"for balanced OT; got {unbalanced!r}. Try unbalanced=1.0."
        )
    if unbalanced is not None and spec.coupling not in ("exact", "entropic"):
        raise ValueError(
            f"unbalanced= needs an OT coupling, but method={method!r} uses a "
            f"{spec.coupling!r} coupling; use method='ot-cfm' or 'sb-cfm'."
        )
    if (growth_key is not None or unbalanced is not None) and spec.path not in (
        "straight",
        "bridge",
    ):
        raise ValueError(
            f"growth_key= and unbalanced= are not supported by method={method!r}; use "
            "'ot-cfm', 'ot-mfm', 'sb-cfm' or 'i-cfm'."
        )
    bent = spec.bend and spec.path != "spline"  # OT-MFM: bends on the pairwise trainer
    if bent and (unbalanced is not None or coupling == "minibatch"):
        # The bends are solved once per pair of a fixed, sparse exact plan.
        raise ValueError(
            f"method={method!r} needs one fixed exact OT plan per pair of time points, so it "
            "supports neither unbalanced= nor coupling='minibatch'; use method='ot-cfm'."
        )
    dev = resolve_device(device)
    # Under torchrun: join the process group, one device per process (see core.distributed).
    parallel = init_distributed(dev)
    dev = process_device(dev, parallel)
    world, rank = (parallel.world_size, parallel.rank) if parallel else (1, 0)
    progress = progress and rank == 0
    times = parse_times(adata, time_key)
    growth = None if growth_key is None else _growth_weights(adata, growth_key)
    if n_dims is None:
        rep_full = get_representation(adata, use_rep, None)
        n_dims = min(DEFAULT_N_DIMS, rep_full.shape[1])
        rep = rep_full[:, :n_dims]
    else:
        rep = get_representation(adata, use_rep, n_dims)
    course = TimeCourse.from_arrays(rep, times, np.asarray(adata.obs_names), time_key=time_key)
    holdout_times = [
        match_time(t, course.times, what="Held-out time") for t in as_time_list(holdout)
    ]
    train = course.without(holdout_times)
    if growth is not None:
        growth_pops = (
            TimeCourse.from_arrays(growth[:, None], times, np.asarray(adata.obs_names))
            .without(holdout_times)
            .populations
        )

    scaler = Standardizer.fit(np.concatenate(train.populations))
    # One unit of internal time = the mean spacing of all observed time points (held-out included),
    # so sigma means the same for every leave-one-out split.
    origin = course.times[0]
    unit = (course.times[-1] - course.times[0]) / (len(course.times) - 1)
    z_pops = [scaler.transform(p).astype(np.float32) for p in train.populations]
    model_clock = fit_clock(clock, train.times, z_pops, origin=origin, unit=unit)
    taus = [float(x) for x in model_clock(train.times)]
    if clock == "auto":
        logger.info("clock='auto' chose %r (held-out W1 %s)", model_clock.kind, model_clock.scores)
    cells = TimeCourse(times=train.times, populations=z_pops, cell_names=train.cell_names)

    config = TrainConfig(
        n_steps=n_steps,
        batch_size=-(-batch_size // world),  # each process draws its share of the batch
        lr=lr,
        weight_decay=weight_decay,
        path=spec.path if spec.path != "spline" else "straight",
        sigma=float(sigma),
        lr_schedule=lr_schedule,
    )
    train_pops = z_pops
    if bent:  # full plans for the bends: large populations are subsampled once, by seed
        keep = _subsample(z_pops, MAX_BEND_CELLS, seed)
        train_pops = [p[i] for p, i in zip(z_pops, keep, strict=True)]
        if growth is not None:
            growth_pops = [g[i] for g, i in zip(growth_pops, keep, strict=True)]
    tensors = [torch.as_tensor(p, device=dev) for p in train_pops]
    t0 = _time.perf_counter()
    couplings = []
    for k in range(len(tensors) - 1 if spec.path != "spline" else 0):
        span = taus[k + 1] - taus[k]
        reg = 2 * sigma**2 * span if spec.coupling == "entropic" else None
        source_weights = None
        if growth is not None:  # growth factor per unit time, raised to the pair's span
            source_weights = growth_pops[k][:, 0] ** (train.times[k + 1] - train.times[k])
        couplings.append(
            build_coupling(
                spec.coupling,
                tensors[k],
                tensors[k + 1],
                reg=reg,
                strategy="full" if bent else coupling,
                reg_m=unbalanced,
                source_weights=source_weights,
            )
        )
    bends = None
    if bent:
        # Seeded by `seed` alone: every process of a distributed fit needs the same bends.
        bend_gen = torch.Generator(device=dev).manual_seed(seed)
        support = [c.support_pairs() for c in couplings]
        bends = support_bends(tensors, support, eps=spec.bend_eps, generator=bend_gen)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        vnet = VelocityNet(rep.shape[1], hidden, n_layers, activation).to(dev)
        snet = (
            VelocityNet(rep.shape[1], hidden, n_layers, activation).to(dev)
            if spec.learns_score
            else None
        )
    generator = torch.Generator(device=dev).manual_seed(seed + rank)

    model_config = {
        "method": method,
        "clock": clock,
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
        "growth_key": growth_key,
        "unbalanced": None if unbalanced is None else float(unbalanced),
        "solver": solver,
        "solver_steps": solver_steps,
        "seed": seed,
    }

    def make_model(result: TrainResult, fit_seconds: float) -> TrajectoryModel:
        """The model as it stands after ``result`` (also used for checkpoints and failures)."""
        history = {
            "initial_loss": result.initial_loss,
            "loss": result.losses,
            "loss_step": result.loss_steps,
            "steps_done": result.steps_done,
            "interrupted": result.interrupted,
            "fit_seconds": fit_seconds,
            "world_size": world,
        }
        return TrajectoryModel(
            velocity_net=vnet,
            score_net=snet,
            config=model_config,
            scaler=scaler,
            cells=cells,
            observed_times=course.times,
            clock=model_clock,
            history=history,
            device=dev,
        )

    try:  # whichever trainer runs, a diverged fit still hands back its last finite model
        if spec.path == "spline":  # multi-marginal flow matching: its own trainer, same VelocityNet
            if checkpoint_dir is not None or resume_from is not None:
                raise ValueError(f"Checkpointing is not supported for method={method!r} yet.")
            from .core.multimarginal import MultiMarginalConfig, train_multimarginal

            mm_config = MultiMarginalConfig(
                n_steps=n_steps,
                batch_size=batch_size,
                lr=lr,
                weight_decay=weight_decay,
                sigma=float(sigma),
                spline=spec.spline,
                lr_schedule=lr_schedule,
                ema=spec.ema,
                bend=spec.bend,
                bend_eps=spec.bend_eps,
            )
            result = train_multimarginal(
                tensors, taus, vnet, mm_config, generator=generator, progress=progress
            )
        else:
            expected = {key: model_config[key] for key in _RESUME_MUST_MATCH}
            resume = _load_checkpoint(
                resume_from, expected, vnet=vnet, snet=snet, generator=generator
            )
            on_check = None
            if checkpoint_dir is not None and rank == 0:
                _check_positive("checkpoint_every", checkpoint_every)
                last_saved = [resume["step"] if resume else 0]

                def on_check(step: int, state: dict) -> None:
                    if step - last_saved[0] < checkpoint_every and step != n_steps:
                        return
                    so_far = state["result"]
                    if resume:  # keep the whole loss history in the checkpoint
                        so_far = TrainResult(
                            initial_loss=resume["initial_loss"],
                            losses=resume["losses"] + so_far.losses,
                            loss_steps=resume["loss_steps"] + so_far.loss_steps,
                            steps_done=so_far.steps_done,
                        )
                    trainer_state = {
                        "step": step,
                        "optimizer": state["optimizer"],
                        "generator": generator.get_state(),
                        "losses": so_far.losses,
                        "loss_steps": so_far.loss_steps,
                        "initial_loss": so_far.initial_loss,
                    }
                    make_model(so_far, _time.perf_counter() - t0).save(
                        checkpoint_dir, overwrite=True, extra={TRAINER_STATE_FILE: trainer_state}
                    )
                    last_saved[0] = step

            result = train_flow(
                tensors,
                taus,
                couplings,
                data_parallel(vnet, dev) if parallel else vnet,
                config,
                generator=generator,
                score_net=data_parallel(snet, dev) if parallel and snet is not None else snet,
                progress=progress,
                start_step=resume["step"] if resume else 0,
                optimizer_state=resume["optimizer"] if resume else None,
                on_check=on_check,
                bends=bends,
            )
            if resume:
                result.losses[:0] = resume["losses"]
                result.loss_steps[:0] = resume["loss_steps"]
                result.initial_loss = resume["initial_loss"]
    except TrainingDivergedError as err:
        err.model = make_model(err.result, _time.perf_counter() - t0)
        raise
    fit_seconds = _time.perf_counter() - t0
    logger.info(
        "Fitted %s on %d time points (%d cells) in %.1f s",
        method,
        len(train.times),
        sum(len(p) for p in z_pops),
        fit_seconds,
    )
    return make_model(result, fit_seconds)


#: Settings a checkpoint must share with the fit that resumes it (n_steps may grow, lr may change).
_RESUME_MUST_MATCH = (
    "method",
    "time_key",
    "use_rep",
    "n_dims",
    "holdout",
    "sigma",
    "batch_size",
    "hidden",
    "n_layers",
    "activation",
)

#: File in a checkpoint directory with what resuming needs beyond the model itself.
TRAINER_STATE_FILE = "trainer_state.pt"


def _load_checkpoint(
    path: str | os.PathLike | None,
    expected: dict[str, Any],
    *,
    vnet: VelocityNet,
    snet: VelocityNet | None,
    generator: torch.Generator,
) -> dict[str, Any] | None:
    """Load a checkpoint into the fresh networks and generator; return the trainer state."""
    if path is None:
        return None
    state_file = Path(path) / TRAINER_STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(
            f"{path} is not a trajflow checkpoint (no {TRAINER_STATE_FILE}); pass the "
            "checkpoint_dir of an earlier fit."
        )
    saved = TrajectoryModel.load(path, device="cpu")
    mismatched = {
        k: (saved.config.get(k), v) for k, v in expected.items() if saved.config.get(k) != v
    }
    if mismatched:
        detail = ", ".join(
            f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items()
        )
        raise ValueError(f"Cannot resume from {path}: settings differ ({detail}).")
    vnet.load_state_dict(saved._velocity_net.state_dict())
    if snet is not None:
        snet.load_state_dict(saved._score_net.state_dict())
    trainer_state = torch.load(state_file, map_location="cpu", weights_only=True)
    generator.set_state(trainer_state["generator"])
    logger.info("Resuming from %s at step %d", path, trainer_state["step"])
    return trainer_state
