"""Helpers shared by the benchmark scripts: machine description, synthetic time courses, peak
memory, timing of trajflow's training loop, tables and JSON output.

Not a benchmark itself; imported by ``speed.py``, ``scaling.py`` and ``metrics_size.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """What the numbers were measured on (CPU model, cores, RAM, load, versions, GPU)."""
    import ot

    import trajflow

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": cores,
        "ram_gb": _ram_gb(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pot": ot.__version__,
        "trajflow": trajflow.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": str(device) if device is not None else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def resolve_device(name: str) -> torch.device | None:
    """``torch.device(name)``, or ``None`` (with a message) when CUDA is asked for but absent."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {name}: CUDA is not available on this machine; nothing to measure.")
        return None
    return torch.device(name)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage``; KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024**2


def current_rss_mb() -> float:
    """Current resident set size of this process, in MiB."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 1024**2
    except ImportError:  # pragma: no cover
        return float("nan")


def cuda_peak_mb(device: torch.device) -> float | None:
    """Peak CUDA memory allocated by torch on ``device`` so far, in MiB (``None`` off CUDA)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1024**2


def sync(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock timings are honest on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_timecourse(
    n_cells: int, n_dims: int, *, n_times: int = 5, seed: int = 0, key: str = "X_pca"
) -> AnnData:
    """A branching time course: ``n_cells`` in total over ``n_times`` equal time points.

    Cells at time ``t`` (0, 1, ...) come from two branches whose centres move apart along a
    curve in the first dimensions; every dimension gets Gaussian noise (std 0.3) and the higher
    dimensions drift slowly, so all ``n_dims`` carry some signal. Stored float32 in
    ``obsm[key]`` with ``obs['time']``; ``X`` is left empty to keep atlas-sized inputs small.
    """
    rng = np.random.default_rng(seed)
    per = n_cells // n_times
    xs, ts = [], []
    drift = rng.normal(scale=0.15, size=n_dims).astype(np.float32)
    for t in range(n_times):
        branch = rng.integers(0, 2, size=per) * 2 - 1  # -1 or +1
        x = rng.normal(scale=0.3, size=(per, n_dims)).astype(np.float32)
        x[:, 0] += t
        if n_dims > 1:
            x[:, 1] += branch * 0.35 * t**1.3
        if n_dims > 2:
            x[:, 2] += np.sin(t) + 0.2 * branch * t
        x += drift * t
        xs.append(x)
        ts.append(np.full(per, float(t)))
    obs = pd.DataFrame({"time": np.concatenate(ts)}, index=pd.RangeIndex(per * n_times).astype(str))
    return AnnData(obs=obs, obsm={key: np.concatenate(xs)})


class TrainTimer:
    """Seconds spent inside trajflow's training loop (``optimise``), per call."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.steps: list[int] = []


@contextlib.contextmanager
def time_training(device: torch.device | None = None) -> Iterator[TrainTimer]:
    """Wrap ``trajflow._fit.optimise`` so that every fit records how long its training loop
    took (set-up such as solving full OT plans is then ``fit time - loop time``)."""
    import trajflow._fit as fit_module

    original = fit_module.optimise
    timer = TrainTimer()

    def timed(*args: Any, **kwargs: Any) -> Any:
        if device is not None:
            sync(device)
        t0 = time.perf_counter()
        result = original(*args, **kwargs)
        if device is not None:
            sync(device)
        timer.seconds.append(time.perf_counter() - t0)
        resume = kwargs.get("resume")
        timer.steps.append(result.steps_done - (resume["step"] if resume else 0))
        return result

    fit_module.optimise = timed
    try:
        yield timer
    finally:
        fit_module.optimise = original


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-markdown table of ``rows`` (floats to 4 significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (creating the folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return path
