"""Pick the torch device from a user string, and how many CPU threads a fit uses."""

from __future__ import annotations

import contextlib
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
