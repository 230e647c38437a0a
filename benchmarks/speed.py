"""Training speed of trajflow vs a TorchCFM-style reference loop, measured in one run.

For the EB subset (first 5 PCs, standardised) and synthetic time courses, both trained with the
same network (MLP 3x64 SELU), batch size (128 pairs per pair of time points), number of steps
and AdamW (lr 1e-3, weight decay 1e-5), this measures:

- time per training step (the training loop only) and end-to-end fit time;
- leave-one-out wall time (holdouts 1, 2, 3; one seed) and W1 at every holdout, scored the
  same way for both (first ``n_dims`` dims standardised over all cells, exact W1);
- the throughput ratio: reference seconds per step / trajflow seconds per step.

trajflow is ``fit_trajectories`` with its defaults (``coupling="auto"``, ``progress=False``).
The reference is written here (torchcfm is not imported) and does what TorchCFM's examples
and ``shared/bench/reference_torchcfm.py`` do: at every step, for each pair of time points,
draw 128 cells from each population, solve the exact OT plan between them with POT ``emd`` on
the CPU, draw 128 pairs from the plan with ``np.random.choice`` and regress on the straight
path (sigma 0.1); constant learning rate, as in TorchCFM.

Run::

    .venv/bin/python benchmarks/speed.py                      # CPU, writes results/speed_cpu.json
    .venv/bin/python benchmarks/speed.py --device cuda        # on a GPU machine
    .venv/bin/python benchmarks/speed.py --n-steps 300 --large-cells 0   # quick check
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import ot
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS_DIR,
    format_table,
    machine_info,
    resolve_device,
    sync,
    synthetic_timecourse,
    time_training,
    write_json,
)

import trajflow
from trajflow._anndata import Standardizer, get_representation, parse_times
from trajflow.benchmark import leave_one_out
from trajflow.datasets import EB_SUBSET_FILE, data_dir
from trajflow.metrics import wasserstein

BATCH_SIZE = 128
SIGMA = 0.1


# --------------------------------------------------------------------------- reference loop
def reference_mlp(dim: int, width: int = 64) -> nn.Module:
    """TorchCFM's example network: (x, t) -> v, 3 hidden layers of 64, SELU."""
    return nn.Sequential(
        nn.Linear(dim + 1, width),
        nn.SELU(),
        nn.Linear(width, width),
        nn.SELU(),
        nn.Linear(width, width),
        nn.SELU(),
        nn.Linear(width, dim),
    )


def reference_fit(
    pops: dict[float, torch.Tensor], n_steps: int, seed: int, device: torch.device
) -> tuple[nn.Module, float]:
    """Train like TorchCFM's OT-CFM examples on consecutive pairs of ``pops`` (time -> cells).

    Returns the network and the seconds spent in the training loop.
    """
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)  # torchcfm draws plan entries with np.random.choice
    times = sorted(pops)
    dim = next(iter(pops.values())).shape[1]
    net = reference_mlp(dim).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
    a = b = ot.unif(BATCH_SIZE)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        xs, ts, us = [], [], []
        for t_a, t_b in itertools.pairwise(times):
            pa, pb = pops[t_a], pops[t_b]
            x0 = pa[torch.randint(len(pa), (BATCH_SIZE,), device=device)]
            x1 = pb[torch.randint(len(pb), (BATCH_SIZE,), device=device)]
            # OTPlanSampler.get_map + sample_map: plan on the CPU, pairs by np.random.choice
            cost = torch.cdist(x0, x1) ** 2
            plan = ot.emd(a, b, cost.detach().cpu().numpy())
            p = plan.flatten()
            p = p / p.sum()
            choice = rng.choice(plan.size, p=p, size=BATCH_SIZE, replace=True)
            i, j = np.divmod(choice, plan.shape[1])
            x0, x1 = x0[torch.as_tensor(i, device=device)], x1[torch.as_tensor(j, device=device)]
            # sample_location_and_conditional_flow (straight path, sigma 0.1)
            s = torch.rand(BATCH_SIZE, device=device)
            xt = s[:, None] * x1 + (1 - s[:, None]) * x0 + SIGMA * torch.randn_like(x0)
            span = t_b - t_a
            xs.append(xt)
            ts.append(t_a + s * span)
            us.append((x1 - x0) / span)
        xt, tt, ut = torch.cat(xs), torch.cat(ts), torch.cat(us)
        loss = ((net(torch.cat([xt, tt[:, None]], 1)) - ut) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(device)
    return net, time.perf_counter() - t0


@torch.no_grad()
def reference_predict(
    net: nn.Module, x: torch.Tensor, t_from: float, t_to: float, n_steps: int = 100
) -> np.ndarray:
    """Push ``x`` from ``t_from`` to ``t_to`` with ``n_steps`` Euler steps (as torchdiffeq)."""
    dt = (t_to - t_from) / n_steps
    for k in range(n_steps):
        t = torch.full((len(x), 1), t_from + k * dt, device=x.device)
        x = x + dt * net(torch.cat([x, t], 1))
    return x.cpu().numpy()


# --------------------------------------------------------------------------- one data set
def space(adata: ad.AnnData, n_dims: int, use_rep: str) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's space: first ``n_dims`` dims standardised over all cells; and times."""
    rep = get_representation(adata, use_rep, n_dims)
    return Standardizer.fit(rep).transform(rep).astype(np.float32), parse_times(adata, "time")


def bench_dataset(
    name: str,
    adata: ad.AnnData,
    *,
    n_dims: int,
    n_steps: int,
    holdouts: list[float],
    device: torch.device,
    use_rep: str = "X_pca",
) -> dict[str, Any]:
    """Full fit (all time points) and leave-one-out for trajflow and the reference."""
    x, times_all = space(adata, n_dims, use_rep)
    times = sorted(np.unique(times_all).tolist())
    out: dict[str, Any] = {
        "dataset": name,
        "n_cells": int(adata.n_obs),
        "n_dims": n_dims,
        "n_time_points": len(times),
        "n_steps": n_steps,
        "batch_size_per_pair": BATCH_SIZE,
    }
    print(f"\n== {name}: {adata.n_obs} cells, {len(times)} time points, {n_dims} dims", flush=True)

    # trajflow, full fit
    with time_training(device) as timer:
        t0 = time.perf_counter()
        trajflow.fit_trajectories(
            adata,
            n_dims=n_dims,
            scaling="per-dimension",  # the protocol's whitened space, as the reference uses
            use_rep=use_rep,
            n_steps=n_steps,
            device=device,
            progress=False,
        )
        sync(device)
        tf_fit = time.perf_counter() - t0
    tf_loop = timer.seconds[0]
    out["trajflow"] = {
        "fit_seconds": tf_fit,
        "loop_seconds": tf_loop,
        "setup_seconds": tf_fit - tf_loop,
        "step_ms": 1000 * tf_loop / n_steps,
    }
    print(f"trajflow  fit {tf_fit:.2f} s, {1000 * tf_loop / n_steps:.2f} ms/step", flush=True)

    # reference, full fit (data preparation counted in its end-to-end time)
    t0 = time.perf_counter()
    pops = {t: torch.as_tensor(x[times_all == t], device=device) for t in times}
    _, ref_loop = reference_fit(pops, n_steps, seed=0, device=device)
    ref_fit = time.perf_counter() - t0
    out["reference"] = {
        "fit_seconds": ref_fit,
        "loop_seconds": ref_loop,
        "setup_seconds": ref_fit - ref_loop,
        "step_ms": 1000 * ref_loop / n_steps,
    }
    print(f"reference fit {ref_fit:.2f} s, {1000 * ref_loop / n_steps:.2f} ms/step", flush=True)
    out["step_throughput_ratio"] = ref_loop / tf_loop
    out["fit_time_ratio"] = ref_fit / tf_fit

    if not holdouts:
        return out
    # leave-one-out, trajflow
    with time_training(device) as timer:
        t0 = time.perf_counter()
        frame = leave_one_out(
            adata,
            methods=["ot-cfm"],
            seeds=[0],
            protocol="paper",
            n_dims=n_dims,
            use_rep=use_rep,
            holdout_times=holdouts,
            baselines=False,
            fit_kwargs={"n_steps": n_steps},
            device=str(device),
            progress=False,
        )
        tf_loo = time.perf_counter() - t0
    tf_w1 = {float(r.holdout_time): float(r.w1) for r in frame.itertuples()}
    out["trajflow"].update(
        loo_wall_seconds=tf_loo,
        loo_w1=tf_w1,
        loo_step_ms=1000 * sum(timer.seconds) / sum(timer.steps),
    )
    print(f"trajflow  leave-one-out {tf_loo:.1f} s, W1 {tf_w1}", flush=True)

    # leave-one-out, reference (same split, same scoring space, W1 included in the wall time)
    t0 = time.perf_counter()
    ref_w1, loops = {}, []
    for hold in holdouts:
        keep = {t: p for t, p in pops.items() if t != hold}
        net, loop = reference_fit(keep, n_steps, seed=0, device=device)
        loops.append(loop)
        prev = max(t for t in keep if t < hold)
        pred = reference_predict(net, keep[prev], prev, hold)
        ref_w1[float(hold)] = wasserstein(pred, x[times_all == hold])
    ref_loo = time.perf_counter() - t0
    out["reference"].update(
        loo_wall_seconds=ref_loo,
        loo_w1=ref_w1,
        loo_step_ms=1000 * sum(loops) / (n_steps * len(holdouts)),
    )
    print(f"reference leave-one-out {ref_loo:.1f} s, W1 {ref_w1}", flush=True)
    out["loo_wall_ratio"] = ref_loo / tf_loo
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--n-steps", type=int, default=3000, help="training steps (trajflow default)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for both (default 1: on a loaded 2-core machine two "
        "threads thrash; 0 keeps torch's default)",
    )
    p.add_argument("--eb", default=str(data_dir() / EB_SUBSET_FILE), help="EB subset .h5ad")
    p.add_argument(
        "--synthetic-cells",
        type=int,
        default=5000,
        help="cells of the small synthetic time course (5 time points, 5 dims; full OT plan)",
    )
    p.add_argument(
        "--large-cells",
        type=int,
        default=100_000,
        help="cells of the large synthetic time course (per-minibatch plans; full fit only, "
        "no leave-one-out); 0 skips it",
    )
    p.add_argument(
        "--large-steps",
        type=int,
        default=1000,
        help="steps for the large one (timing only, default 1000)",
    )
    p.add_argument("--holdouts", type=float, nargs="*", default=[1.0, 2.0, 3.0])
    p.add_argument("--out", default=None, help="JSON path (default results/speed_<device>.json)")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    if device is None:
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = machine_info(device)
    print(
        f"machine: {info['cpu_model']}, {info['cpu_cores']} cores, {info['ram_gb']} GB RAM, "
        f"load {info['load_average_at_start']}, torch threads {info['torch_threads']}"
    )

    # Warm up both code paths (lazy initialisation, allocator) so the first timing is not off.
    warm = synthetic_timecourse(500, 5)
    trajflow.fit_trajectories(warm, n_steps=20, device=device, progress=False)
    x_warm, t_warm = space(warm, 5, "X_pca")
    reference_fit(
        {t: torch.as_tensor(x_warm[t_warm == t], device=device) for t in np.unique(t_warm)},
        20,
        seed=0,
        device=device,
    )

    results = []
    eb = ad.read_h5ad(args.eb)
    results.append(
        bench_dataset(
            "EB (5 PCs)", eb, n_dims=5, n_steps=args.n_steps, holdouts=args.holdouts, device=device
        )
    )
    if args.synthetic_cells > 0:
        results.append(
            bench_dataset(
                f"synthetic {args.synthetic_cells} cells",
                synthetic_timecourse(args.synthetic_cells, 5),
                n_dims=5,
                n_steps=args.n_steps,
                holdouts=args.holdouts,
                device=device,
            )
        )
    if args.large_cells > 0:
        results.append(
            bench_dataset(
                f"synthetic {args.large_cells} cells",
                synthetic_timecourse(args.large_cells, 5),
                n_dims=5,
                n_steps=args.large_steps,
                holdouts=[],
                device=device,
            )
        )

    rows = []
    for r in results:
        tf, ref = r["trajflow"], r["reference"]
        rows.append(
            {
                "data": r["dataset"],
                "steps": r["n_steps"],
                "trajflow ms/step": tf["step_ms"],
                "reference ms/step": ref["step_ms"],
                "step ratio": r["step_throughput_ratio"],
                "trajflow fit s": tf["fit_seconds"],
                "reference fit s": ref["fit_seconds"],
                "trajflow LOO s": tf.get("loo_wall_seconds"),
                "reference LOO s": ref.get("loo_wall_seconds"),
                "trajflow W1 t=2": tf.get("loo_w1", {}).get(2.0),
                "reference W1 t=2": ref.get("loo_w1", {}).get(2.0),
            }
        )
    print()
    print(format_table(rows, list(rows[0])))
    target = all(
        r["step_throughput_ratio"] >= 3 for r in results if r.get("trajflow", {}).get("loo_w1")
    )
    print(f"\ntarget (step ratio >= 3x where W1 is compared): {'met' if target else 'missed'}")
    out = args.out or RESULTS_DIR / f"speed_{device.type}.json"
    write_json(out, {"machine": info, "args": vars(args), "results": results, "table": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
