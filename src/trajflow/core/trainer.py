"""Train one time-conditioned velocity network jointly over all consecutive pairs of populations."""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .couplings import Coupling, PlanCoupling
from .paths import bridge_path, straight_path

PathKind = Literal["straight", "bridge"]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite. The network keeps its last finite weights.

    ``result`` holds the training record up to the failure; :func:`trajflow.fit_trajectories`
    also attaches the ``model`` with the last finite weights.
    """

    def __init__(self, message: str, result: TrainResult | None = None):
        super().__init__(message)
        self.result = result
        self.model = None


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`train_flow`.

    ``sigma`` is the width of the Gaussian tube around straight paths (``path="straight"``), or the
    diffusion per unit of time of the Brownian bridge (``path="bridge"``), in standardised units.
    ``batch_size`` counts pairs drawn *per pair of time points* per step.
    """

    n_steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    path: PathKind = "straight"
    sigma: float = 0.1
    lr_schedule: Literal["constant", "cosine"] = "constant"
    check_every: int = 50

    def __post_init__(self) -> None:
        for name in ("n_steps", "batch_size", "check_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
        if self.path not in ("straight", "bridge"):
            raise ValueError(f"path must be 'straight' or 'bridge', got {self.path!r}.")
        if self.path == "bridge" and not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 for the Brownian bridge, got {self.sigma!r}.")
        if self.path == "straight" and not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma!r}.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}."
            )


@dataclass
class TrainResult:
    """What happened during training."""

    initial_loss: float | None = None
    losses: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    steps_done: int = 0
    interrupted: bool = False


def train_flow(
    populations: Sequence[Tensor],
    times: Sequence[float],
    couplings: Sequence[Coupling],
    velocity_net: nn.Module,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    score_net: nn.Module | None = None,
    progress: bool = True,
    start_step: int = 0,
    optimizer_state: dict | None = None,
    on_check: Callable[[int, dict], None] | None = None,
    bends: Sequence[Tensor] | None = None,
) -> TrainResult:
    """Conditional flow matching over the consecutive pairs ``(populations[k], populations[k+1])``.

    Every step draws ``config.batch_size`` pairs from each coupling, places them on their
    conditional path at a uniform pair time, maps that to the absolute time
    ``times[k] + s * (times[k+1] - times[k])`` and regresses the network on the conditional
    velocity (divided by the span, so velocities are per unit of absolute time). All pairs go
    through the network in one batched call.

    A ``KeyboardInterrupt`` stops training and returns what was trained so far
    (``interrupted=True``). A non-finite loss restores the last finite weights and raises
    :class:`TrainingDivergedError`. ``on_check(step, state)`` is called every
    ``config.check_every`` steps with the optimiser state (used for checkpointing).

    ``bends`` (metric flow matching, OT-MFM): one ``(n_support, d)`` tensor per coupling, the
    correction ``c`` of every support pair of that coupling's fixed plan (a
    :class:`PlanCoupling`, in :meth:`~PlanCoupling.support_pairs` order); the straight paths
    then become ``(1 - s) x0 + s x1 + s (1 - s) c`` (only with ``config.path == "straight"``).
    """
    if len(populations) != len(times) or len(couplings) != len(times) - 1:
        raise ValueError("Need one coupling per consecutive pair of populations.")
    if bends is not None:
        if config.path != "straight" or len(bends) != len(couplings):
            raise ValueError("bends need straight paths and one tensor per coupling.")
        for coupling, bend in zip(couplings, bends, strict=True):
            if not isinstance(coupling, PlanCoupling) or len(bend) != coupling.n_support:
                raise ValueError("bends need fixed plans, one correction per support pair.")
    device = populations[0].device
    dim = populations[0].shape[1]
    bs = config.batch_size
    n_pairs = len(couplings)
    starts = torch.tensor(times[:-1], dtype=torch.float32, device=device).repeat_interleave(bs)
    spans = torch.tensor(
        [b - a for a, b in itertools.pairwise(times)], dtype=torch.float32, device=device
    ).repeat_interleave(bs)[:, None]
    # Bridge noise per pair grows with the square root of the span: one Brownian motion overall.
    pair_sigma = config.sigma * spans.sqrt() if config.path == "bridge" else None

    nets = [velocity_net] + ([score_net] if score_net is not None else [])

    def step_loss(step: int) -> Tensor:
        x0s, x1s, cs = [], [], []
        for k, coupling in enumerate(couplings):
            if bends is None:
                i, j = coupling.sample(bs, generator)
            else:
                support = coupling.sample_support(bs, generator)
                rows, cols = coupling.support_pairs()
                i, j = rows[support], cols[support]
                cs.append(bends[k][support])
            x0s.append(populations[k][i])
            x1s.append(populations[k + 1][j])
        x0, x1 = torch.cat(x0s), torch.cat(x1s)
        bend = torch.cat(cs) if cs else None
        s = torch.rand(n_pairs * bs, 1, generator=generator, device=device)
        noise = torch.randn(n_pairs * bs, dim, generator=generator, device=device)
        if config.path == "straight":
            xs, us = straight_path(x0, x1, s, config.sigma, noise, bend)
        else:
            xs, us, lam = bridge_path(x0, x1, s, pair_sigma, noise)
        t = starts[:, None] + s.clamp(0, 1) * spans
        loss = (velocity_net(xs, t) - us / spans).pow(2).mean()
        if score_net is not None:
            loss = loss + (lam * score_net(xs, t) + noise).pow(2).mean()
        return loss

    return optimise(
        step_loss,
        nets,
        config,
        progress=progress,
        start_step=start_step,
        optimizer_state=optimizer_state,
        on_check=on_check,
    )


def optimise(
    step_loss: Callable[[int], Tensor],
    nets: Sequence[nn.Module],
    config: TrainConfig,
    *,
    progress: bool = True,
    start_step: int = 0,
    optimizer_state: dict | None = None,
    on_check: Callable[[int, dict], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> TrainResult:
    """The optimisation loop shared by every trainer: AdamW over all parameters of ``nets``,
    optional cosine decay, ``step_loss(step)`` minimised for steps ``start_step .. n_steps - 1``.

    Every ``config.check_every`` steps the mean loss is recorded and checked: a non-finite loss
    restores the last finite weights of ``nets`` and raises :class:`TrainingDivergedError`;
    ``on_check(step, state)`` then gets the optimiser state (for checkpoints). A
    ``KeyboardInterrupt`` ends training with ``interrupted=True``. ``after_step()`` runs after
    every optimiser step (e.g. to update an EMA copy). ``config`` needs ``n_steps``, ``lr``,
    ``weight_decay``, ``lr_schedule`` and ``check_every``.
    """
    params = [p for net in nets for p in net.parameters()]
    device = params[0].device
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    schedule = None
    if config.lr_schedule == "cosine":
        for group in optimizer.param_groups:  # a resumed optimiser carries its decayed lr
            group["lr"] = config.lr

        def cosine(k: int) -> float:
            return 0.5 * (
                1 + math.cos(math.pi * min(k + start_step, config.n_steps) / config.n_steps)
            )

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)

    last_good = [copy.deepcopy(n.state_dict()) for n in nets]
    result = TrainResult(steps_done=start_step)
    running = torch.zeros((), device=device)
    since_check = 0
    bar = tqdm(
        total=config.n_steps, initial=start_step, disable=not progress, desc="training", leave=False
    )
    try:
        for step in range(start_step, config.n_steps):
            loss = step_loss(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            if after_step is not None:
                after_step()
            if result.initial_loss is None:
                result.initial_loss = float(loss.detach())
            running = running + loss.detach()
            since_check += 1
            result.steps_done = step + 1
            bar.update(1)
            if since_check == config.check_every or step + 1 == config.n_steps:
                mean_loss = float(running) / since_check
                running.zero_()
                since_check = 0
                if not math.isfinite(mean_loss):
                    for net, state in zip(nets, last_good, strict=True):
                        net.load_state_dict(state)
                    raise TrainingDivergedError(
                        f"The training loss became {mean_loss} near step {step + 1}. The model "
                        "keeps its last finite weights. Lower lr, check the input for extreme "
                        "values, or use fewer dimensions.",
                        result,
                    )
                last_good = [copy.deepcopy(n.state_dict()) for n in nets]
                result.losses.append(mean_loss)
                result.loss_steps.append(step + 1)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                if on_check is not None:
                    on_check(step + 1, {"optimizer": optimizer.state_dict(), "result": result})
    except KeyboardInterrupt:
        result.interrupted = True
        warnings.warn(
            f"Training interrupted after {result.steps_done} of {config.n_steps} steps; "
            "the model keeps what was trained so far.",
            stacklevel=2,
        )
    finally:
        bar.close()
    return result
