"""Where a default-size training step spends its time: device kernel time against host time.

Fits OT-CFM on the EB subset (trajflow's defaults, time clock) once to warm up, once timed and
once under ``torch.profiler``, and prints per step: the kernel time on the device, the number of
kernels launched, the host time, and the ops that take most host time. Per-step figures include
the fit's set-up (the exact OT plans), and the profiler itself inflates host time. On a GPU a step whose
kernel time is far below its host time is bound by Python and kernel launches, not arithmetic.

Run::

    .venv/bin/python benchmarks/profile_step.py --device cuda
    .venv/bin/python benchmarks/profile_step.py              # CPU: kernel columns are empty
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anndata as ad
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import resolve_device

import trajflow
from trajflow.datasets import EB_SUBSET_FILE, data_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--n-steps", type=int, default=500)
    parser.add_argument("--eb", type=Path, default=None, help="EB subset .h5ad")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device is None:
        return
    adata = ad.read_h5ad(args.eb or data_dir() / EB_SUBSET_FILE)
    kw = {
        "progress": False, "device": str(device), "clock": "time",
        "n_dims": 5, "scaling": "per-dimension",  # the step profiled before the new defaults
    }  # fmt: skip
    trajflow.fit_trajectories(adata, n_steps=100, **kw)  # warm-up (CUDA context, allocator)
    n = args.n_steps
    t0 = time.perf_counter()
    trajflow.fit_trajectories(adata, n_steps=n, **kw)
    wall = time.perf_counter() - t0
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        trajflow.fit_trajectories(adata, n_steps=n, **kw)
    events = prof.key_averages()
    host_ms = sum(e.self_cpu_time_total for e in events) / 1000
    wall_ms = 1000 * wall
    print(f"device {device}, {n} steps, EB subset ({adata.n_obs} cells, 5 dims)")
    print(f"fit without profiler: {wall:.2f} s ({wall_ms / n:.3f} ms per step, set-up included)")
    print(f"per step under the profiler: host {host_ms / n:.3f} ms")
    kernels = [e for e in events if e.device_type.name == "CUDA"]
    if kernels:
        # Two readings of device time: the kernel events themselves, and what the profiler
        # attributes to the host ops that launched them (the table's "Self CUDA" column).
        by_kernel = sum(e.self_device_time_total for e in kernels) / 1000
        by_op = sum(e.self_device_time_total for e in events if e.device_type.name == "CPU") / 1000
        launches = sum(e.count for e in events if e.key.startswith("cudaLaunchKernel"))
        print(
            f"device time per step: {by_kernel / n:.3f} ms (kernel events), "
            f"{by_op / n:.3f} ms (attributed to ops); {launches / n:.0f} kernel launches"
        )
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
