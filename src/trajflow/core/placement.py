"""Where a fit trains, decided once: the device, the CPU threads, data-parallel or not, and why.

:func:`place` is the one call a fit makes: it reads the user's ``device`` and ``threads``, the
network's size (``"auto"`` keeps small networks on the CPU, :func:`~.device.training_device`)
and torchrun's environment (one device per process, :mod:`.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .device import auto_threads, training_device
from .distributed import DistributedContext, init_distributed, process_device


@dataclass(frozen=True)
class Placement:
    """Where a fit trains.

    Attributes
    ----------
    device
        This process's device.
    threads
        Intra-op CPU threads during the fit (``None``: torch's own setting).
    parallel
        The process group under torchrun, else ``None``.
    reason
        Why ``device="auto"`` passed over an available GPU (a log line), else ``None``.
    """

    device: torch.device
    threads: int | None
    parallel: DistributedContext | None
    reason: str | None

    @property
    def world_size(self) -> int:
        """Processes training together (1 outside torchrun)."""
        return self.parallel.world_size if self.parallel else 1

    @property
    def rank(self) -> int:
        """This process's rank (0 outside torchrun)."""
        return self.parallel.rank if self.parallel else 0


def place(
    device: str | torch.device, *, hidden: int, batch_size: int, threads: int | str | None
) -> Placement:
    """Decide where a fit of a ``hidden``-wide network drawing ``batch_size`` pairs trains.

    ``threads="auto"`` gives one thread to small networks on the CPU
    (:func:`~.device.auto_threads`); an integer sets it; ``None`` leaves torch's setting.
    Under torchrun this joins the process group (one device per process).
    """
    dev, reason = training_device(device, hidden=hidden, batch_size=batch_size)
    parallel = init_distributed(dev)
    dev = process_device(dev, parallel)
    n_threads = auto_threads(dev, hidden, batch_size) if threads == "auto" else threads
    return Placement(device=dev, threads=n_threads, parallel=parallel, reason=reason)
