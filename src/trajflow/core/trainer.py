"""The optimisation loop every flow-matching objective trains with, and its one config."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .graphs import GRAPH_WARMUP, GraphedStep, make_capturable, on_side_stream
from .objectives import Objective


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite. The network keeps its last finite weights.

    ``result`` holds the training record up to the failure; :func:`trajflow.fit_trajectories`
    also attaches the ``model`` with the last finite weights.

    Parameters
    ----------
    message
        What went wrong (the step and loss), shown with the exception.
    result : ``TrainResult`` or None
        The training record up to the failure (losses, steps done), kept as ``result``.
        Default: none. ``model`` starts as ``None`` until the fit attaches one.
    """

    def __init__(self, message: str, result: TrainResult | None = None):
        super().__init__(message)
        self.result = result
        self.model = None


#: Learning-rate schedules of :class:`TrainConfig` (``lr_schedule=``), defined once.
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Settings of :func:`optimise`: AdamW steps, learning rate, weight decay, ``"constant"`` or
    ``"cosine"`` learning-rate decay, how often the loss is recorded and checked, and ``ema``,
    the decay of an exponential moving average of the weights that replaces them at the end
    (0: none)."""

    n_steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_schedule: Literal["constant", "cosine"] = "constant"
    check_every: int = 50
    ema: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_steps", "check_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}."
            )
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}.")


def _adamw(
    params: list[nn.Parameter], config: TrainConfig, device: torch.device, graphs: bool
) -> torch.optim.AdamW:
    """AdamW in its fastest form for the device: on the CPU the fused kernel (one pass over all
    tensors: 0.04 vs 0.13 ms per step of the default network, ~4% of a CPU step; torch >= 2.4),
    else one multi-tensor (foreach) update instead of a Python loop over the tensors. A graphed
    step reads the learning rate from a device tensor the schedule fills in place."""
    kwargs = {"lr": config.lr, "weight_decay": config.weight_decay}
    if device.type == "cpu":
        try:
            return torch.optim.AdamW(params, fused=True, **kwargs)
        except (RuntimeError, ValueError):  # torch < 2.4 has no fused AdamW on the CPU
            pass
    if graphs:
        kwargs["lr"] = torch.tensor(config.lr, device=device)
    return torch.optim.AdamW(params, foreach=True, capturable=graphs, **kwargs)


@dataclass
class TrainResult:
    """What happened during training."""

    initial_loss: float | None = None
    losses: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    steps_done: int = 0
    interrupted: bool = False


def optimise(
    objective: Objective,
    velocity_net: nn.Module,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    score_net: nn.Module | None = None,
    progress: bool = True,
    resume: dict | None = None,
    on_check: Callable[[int, dict], None] | None = None,
    graphs: bool = False,
) -> TrainResult:
    """Minimise ``objective.loss(velocity_net, generator, score_net)`` with AdamW over all
    parameters of both networks, optionally with cosine decay, for steps
    ``resume["step"] .. n_steps - 1`` (from 0 without ``resume``).

    Every ``config.check_every`` steps the mean loss is recorded and checked: a non-finite loss
    restores the last finite weights and raises :class:`TrainingDivergedError`;
    ``on_check(step, state)`` then gets what resuming needs (``state``: ``"optimizer"``,
    ``"ema"`` and ``"result"``; see :func:`trajflow._checkpoint`). A ``KeyboardInterrupt`` ends
    training with ``interrupted=True``. With ``config.ema > 0`` the networks end with the moving
    average of their weights. The networks may be wrapped for data-parallel training; the
    generator's state is the caller's to save.

    Parameters
    ----------
    objective
        What is minimised: its ``loss(velocity_net, generator, score_net)`` is one step's loss.
    velocity_net
        The velocity network, trained in place.
    config
        Steps, learning rate, weight decay, schedule, check interval and ``ema``.
    generator
        Torch generator of everything the objective draws.
    score_net
        The score network trained alongside (methods that learn one), else ``None``.
    progress
        Show a progress bar.
    resume
        A checkpoint to continue from: ``"step"``, ``"optimizer"`` and ``"ema"``. Default:
        start at step 0.
    on_check
        Called as ``on_check(step, state)`` after every recorded (finite) loss. Default: none.
    graphs
        Capture one training step as a CUDA graph and replay it (CUDA only, one process): the
        step's ~100 small kernels then cost one launch, which removes the launch bound of
        small networks on a GPU. Capture waits until ``objective.static`` (streaming banks
        whole), after :data:`~trajflow.core.graphs.GRAPH_WARMUP` eager steps on a side
        stream; if capture fails, training goes on eagerly with a warning. Numbers are those
        of eager steps.

    Returns
    -------
    TrainResult
        The first loss, the recorded mean losses and their steps, the steps done and whether
        training was interrupted.

    Raises
    ------
    TrainingDivergedError
        When a recorded mean loss is NaN or infinite (the networks keep their last finite
        weights).
    """
    nets = [velocity_net] + ([score_net] if score_net is not None else [])
    params = [p for net in nets for p in net.parameters()]
    device = params[0].device
    if graphs and device.type != "cuda":
        raise ValueError(f"graphs=True needs the networks on a CUDA device, not {device}.")
    start_step = resume["step"] if resume else 0
    optimizer = _adamw(params, config, device, graphs)
    if resume:
        chosen = [
            {k: g[k] for k in ("capturable", "foreach", "fused")} for g in optimizer.param_groups
        ]
        optimizer.load_state_dict(resume["optimizer"])
        # The saved groups bring the saving fit's kernel options (keep this device's choice),
        # its decayed lr (a device tensor if it was graphed), weight decay and, under a cosine
        # schedule, its base lr as initial_lr, which LambdaLR would keep: train with this
        # call's settings instead.
        for group, options in zip(optimizer.param_groups, chosen, strict=True):
            group.update(options)
            group.pop("initial_lr", None)
            group["lr"] = config.lr
            group["weight_decay"] = config.weight_decay
        if graphs:
            make_capturable(optimizer, device)  # the lr back to a device tensor
    schedule = None
    if config.lr_schedule == "cosine":

        def cosine(k: int) -> float:
            return 0.5 * (
                1 + math.cos(math.pi * min(k + start_step, config.n_steps) / config.n_steps)
            )

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    ema = None
    if config.ema > 0:
        ema = [p.detach().clone() for p in params]
        if resume and resume.get("ema") is not None:
            for e, saved in zip(ema, resume["ema"], strict=True):
                e.copy_(saved)

    if hasattr(objective, "skip_to"):
        objective.skip_to(start_step)
    last_good = [copy.deepcopy(n.state_dict()) for n in nets]
    result = TrainResult(steps_done=start_step)
    running = torch.zeros((), device=device)
    since_check = 0
    bar = tqdm(
        total=config.n_steps, initial=start_step, disable=not progress, desc="training", leave=False
    )

    def train_step() -> Tensor:
        """One step on the current stream: everything a CUDA graph captures."""
        loss = objective.loss(velocity_net, generator, score_net)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            if ema is not None:
                torch._foreach_lerp_(ema, params, 1 - config.ema)
            running.add_(loss.detach())
        return loss.detach()

    graph: GraphedStep | None = None
    warm = 0  # eager steps on a side stream since the objective became static
    # streams and graphs belong to the networks' GPU, which need not be the current one
    on_device = torch.cuda.device(device) if graphs else contextlib.nullcontext()
    try:
        with on_device:
            for step in range(start_step, config.n_steps):
                ready = graph is None and graphs and getattr(objective, "static", False)
                if ready and warm >= GRAPH_WARMUP:
                    graph = GraphedStep.capture(train_step, optimizer, generator)
                    graphs = ready = graph is not None  # a failed capture: eager from here on
                if graph is not None:
                    graph.replay()
                    loss = graph.loss
                else:
                    optimizer.zero_grad(set_to_none=True)
                    if ready:  # warm-up on a side stream, what capture needs (torch docs)
                        loss = on_side_stream(train_step)
                        warm += 1
                    else:
                        loss = train_step()
                if schedule is not None:
                    schedule.step()
                if result.initial_loss is None:
                    result.initial_loss = float(loss)
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
                        state = {"optimizer": optimizer.state_dict(), "ema": ema, "result": result}
                        on_check(step + 1, state)
    except KeyboardInterrupt:
        result.interrupted = True
        warnings.warn(
            f"Training interrupted after {result.steps_done} of {config.n_steps} steps; "
            "the model keeps what was trained so far.",
            stacklevel=2,
        )
    finally:
        bar.close()
        if hasattr(objective, "close"):
            objective.close()
    if ema is not None and result.steps_done > start_step:
        with torch.no_grad():
            for e, p in zip(ema, params, strict=True):
                p.copy_(e)
    return result
