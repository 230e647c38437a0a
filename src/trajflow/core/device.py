"""Pick the torch device from a user string, and how many CPU threads a fit uses."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use 'auto'.")
    return dev


#: Network width x pairs per pair of time points up to which a CPU fit uses one thread (4x the
#: default 64 x 128): such steps are many small kernels, where extra intra-op threads only add
#: synchronisation, and on a busy machine every kernel waits for the slowest thread
#: (benchmarks/threads.py).
SMALL_STEP_WORK = 128 * 256


def auto_threads(device: torch.device, hidden: int, batch_size: int) -> int | None:
    """Intra-op CPU threads for a fit: 1 for small networks on the CPU, else ``None`` (leave
    torch's setting)."""
    if device.type != "cpu":
        return None
    return 1 if hidden * batch_size <= SMALL_STEP_WORK else None


def training_device(
    device: str | torch.device, *, hidden: int, batch_size: int
) -> tuple[torch.device, str | None]:
    """The device a fit trains on, and why when ``"auto"`` passed over an available GPU.

    ``"auto"`` keeps the CPU for networks up to :data:`SMALL_STEP_WORK` (width x pairs per pair
    of time points, 4x the default): their training step is a chain of tiny kernels whose launch
    cost dominates on a GPU. Measured on the default EB fit: 2.8 ms per step on an H100 against
    0.99 ms on two CPU cores (benchmarks/README.md, GPU section). Larger networks, an explicit
    ``"cuda"`` and torchrun (one GPU per process) get the GPU.
    """
    dev = resolve_device(device)
    if not (isinstance(device, str) and device == "auto" and dev.type == "cuda"):
        return dev, None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or hidden * batch_size > SMALL_STEP_WORK:
        return dev, None
    return torch.device("cpu"), (
        f"device='auto' trains on the CPU: a {hidden}-unit network with batches of "
        f"{batch_size} is launch-bound on a GPU (slower per step than the CPU); pass "
        "device='cuda' to use the GPU anyway"
    )


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` torch intra-op threads inside the block and restore the previous number after
    (``None``: leave it alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
