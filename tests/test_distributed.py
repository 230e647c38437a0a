"""Data-parallel training: two gloo processes on loopback give the same model quality as one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

import trajflow
from trajflow.core.distributed import DistributedContext, process_device
from trajflow.metrics import wasserstein

from conftest import moving_gaussians

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    adata = moving_gaussians(n_per_time=250, seed=1)
    data = tmp_path / "course.h5ad"
    adata.write_h5ad(data)
    # gloo on the CPU, also on a GPU machine (two NCCL ranks cannot share one GPU).
    fit_args = ["fit", str(data), "--n-dims", "2", "--n-steps", "800", "--holdout", "2", "--quiet"]
    fit_args += ["--device", "cpu"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "trajflow.cli", *fit_args, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
    ]
    double = subprocess.run(
        [*launch, "-m", "trajflow.cli", *fit_args, "--out", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr[-3000:]

    one = trajflow.TrajectoryModel.load(tmp_path / "one", device="cpu")
    two = trajflow.TrajectoryModel.load(tmp_path / "two", device="cpu")
    assert one.history["world_size"] == 1 and two.history["world_size"] == 2
    truth = adata.obsm["X_pca"][adata.obs["time"] == 2.0]
    previous = adata.obsm["X_pca"][adata.obs["time"] == 1.0]
    w_one = wasserstein(one.predict(2.0).obsm["X_pca"], truth)
    w_two = wasserstein(two.predict(2.0).obsm["X_pca"], truth)
    w_prev = wasserstein(previous, truth)
    assert w_one < 0.3 * w_prev and w_two < 0.3 * w_prev, (w_one, w_two, w_prev)
    print(f"W1 one process {w_one:.3f}, two processes {w_two:.3f}, previous {w_prev:.3f}")
    assert abs(w_two - w_one) < 0.1, (w_one, w_two)
    # Different processes drew different pairs, so the two models are not copies of each other.
    assert not np.allclose(one.predict(2.0).obsm["X_pca"], two.predict(2.0).obsm["X_pca"])


def test_more_processes_than_gpus_is_a_clear_error():
    context = DistributedContext(rank=1, world_size=2, local_rank=torch.cuda.device_count())
    with pytest.raises(ValueError, match="nproc_per_node"):
        process_device(torch.device("cuda"), context)
    assert process_device(torch.device("cpu"), context) == torch.device("cpu")
