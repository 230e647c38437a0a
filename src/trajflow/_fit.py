"""`fit_trajectories`: AnnData in, fitted `TrajectoryModel` out.

The pipeline, top to bottom: check the arguments at the door -> the AnnData layer reads a
:class:`~trajflow._timecourse.TimeCourse` -> hold out, standardise -> the clock places the time
points -> the method's recipe builds the objective (:mod:`trajflow._methods`) -> the shared loop
optimises it (data-parallel under torchrun, with checkpoints) -> a
:class:`~trajflow.TrajectoryModel`.
"""

from __future__ import annotations

import logging
import os
import time as _time
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import torch
from anndata import AnnData

from ._anndata import Standardizer, check_anndata, time_course
from ._checkpoint import check_checkpoint_dir, checkpointer, load_checkpoint, with_history
from ._clock import CLOCKS, auto_clock_reason, fit_clock
from ._config import FitConfig
from ._methods import (
    RESTORE_MIN_DIMS,
    build_objective,
    check_method_options,
    check_restore,
    default_restore,
    get_method,
)
from ._model import TrajectoryModel
from ._settings import settings
from ._timecourse import TimeCourse, match_time
from ._validate import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_int,
    check_seed,
    check_times,
)
from .core import (
    COUPLINGS,
    LR_SCHEDULES,
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
    VelocityNet,
    optimise,
)
from .core.device import cpu_threads
from .core.distributed import data_parallel
from .core.integrate import SOLVERS
from .core.network import ACTIVATIONS
from .core.placement import place

logger = logging.getLogger("trajflow")

#: How cells are scaled before training (:class:`~trajflow._anndata.Standardizer`).
SCALINGS = ("global", "per-dimension")


def fit_trajectories(
    adata: AnnData,
    *,
    time_key: str = "time",
    use_rep: str = "X_pca",
    n_dims: int | None = None,
    scaling: Literal["global", "per-dimension"] = "global",
    method: str = "ot-cfm",
    clock: Literal["auto", "time", "distance"] = "auto",
    holdout: float | Sequence[float] | None = None,
    sigma: float | None = None,
    restore: float | None = None,
    n_steps: int = 3000,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    lr_schedule: Literal["constant", "cosine"] = "cosine",
    hidden: int = 64,
    n_layers: int = 3,
    activation: str = "selu",
    coupling: Literal["auto", "full", "bank", "minibatch"] = "auto",
    growth_key: str | None = None,
    unbalanced: float | None = None,
    solver: str = "auto",
    solver_steps: int = 100,
    device: str | torch.device = "auto",
    threads: int | Literal["auto"] | None = "auto",
    seed: int = 0,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    resume_from: str | os.PathLike | None = None,
) -> TrajectoryModel:
    """Learn a continuous flow of cells through a snapshot time course.

    One time-conditioned velocity network is trained by conditional flow matching jointly over
    all consecutive pairs of training time points. Cells are centred and scaled first
    (``scaling``); the scaler is stored in the model, so every output is in the
    representation's own units.
    Every numeric argument accepts Python and numpy numbers alike.

    Parameters
    ----------
    adata
        Annotated data matrix, one cell per row. Not modified, except that a PCA is written
        where scanpy writes it (``obsm['X_pca']``, ``varm['PCs']``, ``uns['pca']``, plus
        ``var['highly_variable']`` when trajflow picked the genes and ``uns['trajflow_pca']``)
        when ``use_rep='X_pca'`` is missing. A view is refused then (writing would turn it into
        a copy): pass ``adata[mask].copy()``.
    time_key
        Column of ``adata.obs`` with each cell's time point: numbers, or labels that parse as
        numbers (categorical ``"0", "2", "4"`` works).
    use_rep
        ``obsm`` key of the representation to model, or ``"X"``. When ``"X_pca"`` is missing it
        is computed with scanpy's recipe on a copy of ``X``: ``normalize_total`` + ``log1p`` if
        ``X`` holds raw counts, 2,000 highly variable genes (``flavor="seurat"``) when there
        are more, then a 50-component PCA.
    n_dims
        Use the first ``n_dims`` columns of the representation. Default: all of them, up to the
        first 50 (scanpy's PCA default; logged). The TorchCFM paper protocol uses 5.
    scaling
        How cells are put on the network's scale before training (outputs are always in the
        representation's own units). ``"global"`` (default): centre, then divide every
        dimension by one number (the root mean variance), which keeps the representation's
        geometry: a noise PC stays small beside PC1. ``"per-dimension"``: whiten each dimension
        to unit variance, as the TorchCFM paper protocol does (gives noise PCs the weight of
        the first).
    method
        ``"ot-cfm"`` (exact OT couplings, straight paths), ``"sb-cfm"`` (entropic OT couplings,
        Brownian bridges; also learns the score so it can be sampled as an SDE) or ``"i-cfm"``
        (independent couplings; the baseline). ``"ot-mfm"`` (exact OT pairs joined by paths
        bent toward dense regions of the training cells, :mod:`trajflow.core.bends`;
        Kapusniak et al. 2024; trains on every cell, its bends solved once per pair of the
        full or bank plan; no ``unbalanced``). Multi-marginal methods (no growth weights, unbalanced OT
        or per-minibatch plans: a clear error says so): ``"mmfm"`` / ``"mmfm-hermite"``
        (natural / local cubic splines through chains of exact OT couplings across all
        training time points, :mod:`trajflow.core.paths`; Rohbeck et al. 2024) and
        ``"mmfm-metric"`` (splines with the OT-MFM bend); ``"ot-cfm-hermite"`` (half of each
        step on ot-cfm's straight paths, half on Hermite splines through the same exact plans:
        its held-out predictions close the most of static OT's gap to a perfect one,
        benchmarks/README.md). See ``trajflow.METHODS`` for
        references; :func:`trajflow.register_method` adds a method.
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
        ``d`` units is ``2 sigma^2 d``. In the scaled units the network trains in (``scaling``).
    restore
        Methods with straight paths (``ot-cfm``, ``i-cfm``, ``ot-mfm``, ``ot-cfm-hermite``):
        the width of a Gaussian offset added to the source cell of every training pair and
        shed along its path, so the field learns to bring cells that drift off the data back
        onto the next time point. Without it, cells pushed across several time points can
        leave the data (every day-0 cell of EB-50 pushed to day 4: 16% off the observed cells'
        support). ``None`` (default): the method's (0.3 for ``ot-cfm`` and ``ot-cfm-hermite``,
        0 for the others) on 5 or more dimensions, none on fewer, where the data fill the
        space and the offset would blur the populations (Weinreb's 2-dim course: W1 0.582 ->
        0.676); 0 turns it off. Its root-mean-square width over the dimensions, in the scaled
        units the network trains in (like ``sigma``); per dimension it follows the cells'
        spread within their time points, so narrow directions get a narrow offset. Refused for
        methods without straight paths.
    n_steps, batch_size, lr, weight_decay, lr_schedule
        Optimisation: AdamW steps, pairs drawn per pair of time points per step, learning rate,
        weight decay, and ``"constant"`` or ``"cosine"`` learning-rate decay.
    hidden, n_layers, activation
        The velocity MLP: width, number of hidden layers, activation.
    coupling
        ``"auto"`` solves the OT plan between whole populations once when they are small
        (``n_a * n_b <= 4e6``) and draws pairs from it every step; larger populations are cut
        into random 128-cell minibatches covering every cell twice, each pair of minibatches is
        solved once before training (``"bank"``: exact assignment, or batched Sinkhorn on the
        device), and steps draw from those pairs, so a step costs the same at any size.
        ``"full"``/``"bank"`` force one; ``"minibatch"`` solves a fresh plan for every minibatch
        at every step, as TorchCFM does (a CPU solver in the training loop; for comparison).
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
        :data:`~trajflow.core.plans.UNBALANCED_EXACT_REG`; ``sb-cfm``: its own).
    solver, solver_steps
        How predictions are integrated: ``"auto"`` (default: classic Runge-Kutta in a twelfth of
        ``solver_steps``, 9 steps for the default 100, its steps ending on every output time;
        closer to the exact flow than 100 Euler steps in a third of the network evaluations,
        :data:`~trajflow.core.integrate.AUTO_SOLVER`) or a torchdiffeq method (``"euler"``,
        ``"rk4"``, ``"dopri5"``...), and the number of steps over a prediction's span (Euler
        steps under ``"auto"``). SDE samples always take ``solver_steps`` Euler-Maruyama steps.
    device
        ``"auto"``: the CPU for networks up to 4x the default size (their training step is
        launch-bound on a GPU: 2.8 ms per step on an H100 against 0.99 ms on two CPU cores for
        the default EB fit; the choice is logged), CUDA when available for larger ones or under
        torchrun. ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` force a device.
    threads
        Intra-op CPU threads torch uses during the fit, restored afterwards. ``"auto"``
        (default): one thread on the CPU for networks up to the default size (their steps are
        many small kernels: one thread is as fast on an idle machine and far faster on a busy
        one, see benchmarks/README.md), torch's own setting otherwise. An integer sets it;
        ``None`` leaves torch's setting alone.
    seed
        Seeds network initialisation and pair sampling. Global RNG state is left untouched.
    progress
        Show a progress bar over training steps (on the first process only under torchrun).
    checkpoint_dir, checkpoint_every
        Save a resumable checkpoint (a loadable model plus optimiser and sampler state) to
        ``checkpoint_dir`` about every ``checkpoint_every`` steps, replacing the previous one.
        The folder must be new, empty or an earlier checkpoint (a folder of other files is
        refused before training, as is one that cannot be written). When a checkpoint cannot
        be written during the fit (a full disk), a ``RuntimeWarning`` says so and training goes
        on without checkpoints: the fitted model is still returned.
    resume_from
        A ``checkpoint_dir`` written by an earlier call with the same data and settings: training
        continues from its step, and ends with the same model as an uninterrupted fit (on CPU).
        Every setting that changes the model, its data or the pairs it draws must match the
        checkpoint's (``method``, ``time_key``, ``use_rep``, ``n_dims``, ``scaling``,
        ``clock``, ``holdout``, ``sigma``, ``restore``, ``batch_size``, ``hidden``, ``n_layers``,
        ``activation``, ``coupling``, ``growth_key``, ``unbalanced``, ``seed``), or the resume
        is refused naming each difference; ``n_steps``, ``lr``, ``lr_schedule``,
        ``weight_decay``, ``solver`` and ``solver_steps`` are this call's (a longer ``n_steps``
        trains on; a resumed cosine schedule follows this call's ``n_steps`` and ``lr``).

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
    TrajectoryModel
        The fitted :class:`~trajflow.TrajectoryModel`.

    Examples
    --------
    >>> model = trajflow.fit_trajectories(adata, time_key="day")
    >>> pred = model.predict(3.0)  # AnnData of predicted cells at day 3
    """
    # The call's options as one record: the signature's parameters are FitConfig's fields, with
    # its defaults (tests/test_config.py), so they are gathered rather than restated.
    given = FitConfig(**{name: value for name, value in locals().items() if name != "adata"})
    check_anndata(adata)
    opt = _checked(given)
    spec = get_method(opt.method)
    # ---- where to train, decided once: device, threads, data-parallel under torchrun
    placement = place(opt.device, hidden=opt.hidden, batch_size=opt.batch_size, threads=opt.threads)
    if placement.reason:
        logger.info(placement.reason)
    dev, parallel = placement.device, placement.parallel
    world, rank = placement.world_size, placement.rank
    progress = opt.progress and rank == 0

    with cpu_threads(placement.threads):  # scoped: the caller's setting is back after the fit
        # ---- AnnData layer -> time course -> training populations, standardised
        course, growth = time_course(
            adata, time_key=opt.time_key, use_rep=opt.use_rep, n_dims=opt.n_dims,
            growth_key=opt.growth_key,
        )  # fmt: skip
        holdout = [match_time(t, course.times, what="holdout time") for t in opt.holdout]
        train = course.without(holdout)
        if growth is not None:
            growth = [g for t, g in zip(course.times, growth, strict=True) if t in train.times]
        per_dimension = opt.scaling == "per-dimension"
        scaler = Standardizer.fit(np.concatenate(train.populations), per_dimension=per_dimension)
        logger.info(
            "training on %d dimensions of %s, %s", course.n_dims, opt.use_rep,
            "each whitened (scaling='per-dimension')" if per_dimension
            else f"one global scale {scaler.scale[0]:.3g} (scaling='global')",
        )  # fmt: skip
        z_pops = [scaler.transform(p).astype(np.float32) for p in train.populations]
        if opt.restore is None:
            opt = replace(opt, restore=default_restore(opt.method, course.n_dims))
            if spec.default_restore and not opt.restore:
                logger.info(
                    "no restoring offset: %s's default (restore=%g) applies from %d dimensions "
                    "on; pass restore= to set one",
                    opt.method, spec.default_restore, RESTORE_MIN_DIMS,
                )  # fmt: skip
        cells = TimeCourse(times=train.times, populations=z_pops, cell_names=train.cell_names)

        # ---- the clock: one unit of flow time = the mean spacing of all observed time points
        # (held-out included), so sigma means the same for every leave-one-out split
        unit = (course.times[-1] - course.times[0]) / (len(course.times) - 1)
        model_clock = fit_clock(opt.clock, train.times, z_pops, origin=course.times[0], unit=unit)
        taus = [float(x) for x in model_clock(train.times)]
        if opt.clock == "auto":
            logger.info(
                "clock='auto' chose %r (%s)", model_clock.kind, auto_clock_reason(model_clock)
            )

        # ---- the method's recipe: couplings / chains, bends, the step loss
        t0 = _time.perf_counter()
        objective = build_objective(
            spec, z_pops, taus, train.times, sigma=opt.sigma,
            batch_size=-(-opt.batch_size // world),  # each process draws its share of the batch
            coupling=opt.coupling, unbalanced=opt.unbalanced, growth=growth, seed=opt.seed,
            device=dev, n_steps=opt.n_steps, restore=opt.restore,
        )  # fmt: skip
        net_size = (course.n_dims, opt.hidden, opt.n_layers, opt.activation)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(opt.seed)
            vnet = VelocityNet(*net_size).to(dev)
            snet = VelocityNet(*net_size).to(dev) if spec.learns_score else None
        generator = torch.Generator(device=dev).manual_seed(opt.seed + rank)

        # What the model records: the saved options, with n_dims and holdout as resolved
        config = replace(opt, n_dims=course.n_dims, holdout=holdout).saved()
        # genes in X: predictions hand them back in X under their names
        var_names = list(adata.var_names[: course.n_dims]) if opt.use_rep == "X" else None

        def make_model(result: TrainResult) -> TrajectoryModel:
            """The model as it stands after ``result`` (also for checkpoints and failures)."""
            history = {
                "initial_loss": result.initial_loss, "loss": result.losses,
                "loss_step": result.loss_steps, "steps_done": result.steps_done,
                "interrupted": result.interrupted, "fit_seconds": _time.perf_counter() - t0,
                "world_size": world,
            }  # fmt: skip
            return TrajectoryModel(
                velocity_net=vnet, score_net=snet, config=config, scaler=scaler, cells=cells,
                observed_times=course.times, clock=model_clock, history=history, device=dev,
                var_names=var_names,
            )  # fmt: skip

        # ---- optimise, resumable; a diverged fit still hands back its last finite model
        resume = load_checkpoint(
            opt.resume_from, config, velocity_net=vnet, score_net=snet, generator=generator
        )
        on_check = None
        if opt.checkpoint_dir is not None and rank == 0:
            on_check = checkpointer(
                opt.checkpoint_dir, opt.checkpoint_every, n_steps=opt.n_steps, resume=resume,
                generator=generator, make_model=make_model,
            )  # fmt: skip
        train_config = TrainConfig(
            n_steps=opt.n_steps, lr=opt.lr, weight_decay=opt.weight_decay,
            lr_schedule=opt.lr_schedule, ema=spec.ema,
        )  # fmt: skip
        try:
            result = optimise(
                objective,
                data_parallel(vnet, dev) if parallel else vnet,
                train_config,
                generator=generator,
                score_net=data_parallel(snet, dev) if parallel and snet is not None else snet,
                progress=progress,
                resume=resume,
                on_check=on_check,
                graphs=dev.type == "cuda" and not parallel and settings.cuda_graphs,
            )
        except TrainingDivergedError as err:
            err.model = make_model(with_history(err.result, resume))
            raise
        model = make_model(with_history(result, resume))
        logger.info(
            "Fitted %s on %d time points (%d cells) in %.1f s",
            opt.method, len(train.times), sum(len(p) for p in z_pops), model.history["fit_seconds"],
        )  # fmt: skip
        return model


def _checked(given: FitConfig) -> FitConfig:
    """The door: every option checked and made a plain Python value, once (``sigma`` resolved
    for the method). Raises ``TypeError`` / ``ValueError`` naming the option."""
    for name in ("time_key", "use_rep"):
        if not isinstance(getattr(given, name), str):
            raise TypeError(f"{name} must be a string, got {getattr(given, name)!r}.")
    get_method(given.method)
    check_choice("clock", given.clock, CLOCKS)
    n_dims = check_optional_int("n_dims", given.n_dims)
    check_choice("scaling", given.scaling, SCALINGS)
    holdout = check_times("holdout", given.holdout)
    sigma = None if given.sigma is None else check_float("sigma", given.sigma, minimum=0)
    n_steps = check_int("n_steps", given.n_steps)
    batch_size = check_int("batch_size", given.batch_size)
    lr = check_float("lr", given.lr, minimum=0, strict=True)
    weight_decay = check_float("weight_decay", given.weight_decay, minimum=0)
    check_choice("lr_schedule", given.lr_schedule, LR_SCHEDULES)
    hidden, n_layers = check_int("hidden", given.hidden), check_int("n_layers", given.n_layers)
    check_choice("activation", given.activation, ACTIVATIONS)
    check_choice("coupling", given.coupling, COUPLINGS)
    growth_key = given.growth_key
    if growth_key is not None and not isinstance(growth_key, str):
        raise TypeError(f"growth_key must be an obs column name or None, got {growth_key!r}.")
    unbalanced = given.unbalanced
    if unbalanced is not None:
        unbalanced = check_float("unbalanced", unbalanced, minimum=0, strict=True)
    check_choice("solver", given.solver, SOLVERS)
    solver_steps = check_int("solver_steps", given.solver_steps)
    seed, progress = check_seed(given.seed), check_bool("progress", given.progress)
    checkpoint_every = check_int("checkpoint_every", given.checkpoint_every)
    if given.checkpoint_dir is not None:
        check_checkpoint_dir(given.checkpoint_dir)
    threads = given.threads
    if threads != "auto" and threads is not None:
        threads = check_int("threads", threads)
    sigma = check_method_options(
        given.method, sigma=sigma, coupling=given.coupling, unbalanced=unbalanced,
        growth=growth_key is not None,
    )  # fmt: skip
    restore = None if given.restore is None else check_float("restore", given.restore, minimum=0)
    restore = check_restore(given.method, restore)
    return replace(
        given, n_dims=n_dims, holdout=holdout, sigma=sigma, restore=restore, n_steps=n_steps,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, hidden=hidden,
        n_layers=n_layers, unbalanced=unbalanced, solver_steps=solver_steps, seed=seed,
        progress=progress, checkpoint_every=checkpoint_every, threads=threads,
    )  # fmt: skip
