"""device='auto' keeps launch-bound (small) networks on the CPU, even where a GPU is present."""

from __future__ import annotations

import torch

from trajflow.core.device import SMALL_STEP_WORK, training_device


def test_auto_without_gpu_is_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device("auto", hidden=64, batch_size=128) == (torch.device("cpu"), None)


def test_auto_keeps_small_networks_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dev, why = training_device("auto", hidden=64, batch_size=128)
    assert dev == torch.device("cpu") and "launch-bound" in why and "device='cuda'" in why
    big = SMALL_STEP_WORK // 128 + 1
    assert training_device("auto", hidden=big, batch_size=128) == (torch.device("cuda"), None)
    # An explicit request and torchrun (one GPU per process) get the GPU.
    assert training_device("cuda", hidden=64, batch_size=128) == (torch.device("cuda"), None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert training_device("auto", hidden=64, batch_size=128)[0] == torch.device("cuda")


def test_graphs_need_cuda_and_the_setting_is_checked():
    import pytest

    import trajflow
    from trajflow.core import PairwiseObjective, PlanCoupling, TrainConfig, VelocityNet, optimise

    pops = [torch.randn(5, 2), torch.randn(5, 2)]
    obj = PairwiseObjective(pops, [0.0, 1.0], [PlanCoupling(torch.eye(5))], batch_size=4)
    with pytest.raises(ValueError, match="graphs=True needs the networks on a CUDA device"):
        optimise(obj, VelocityNet(2), TrainConfig(n_steps=2), generator=torch.Generator(),
                 progress=False, graphs=True)  # fmt: skip
    assert trajflow.settings.cuda_graphs is True
    with pytest.raises(ValueError, match="cuda_graphs must be True or False"):
        trajflow.settings.cuda_graphs = "yes"
    assert "cuda_graphs=True" in repr(trajflow.settings)


def _gpu_fit(graphs: bool, **kwargs):
    import trajflow
    from trajflow.datasets import simulate

    before = trajflow.settings.cuda_graphs
    trajflow.settings.cuda_graphs = graphs
    try:
        adata = simulate(n_times=4, n_cells=3000, n_dims=5, seed=0)  # banks, streamed
        return trajflow.fit_trajectories(
            adata, device="cuda", n_steps=300, progress=False, seed=1, **kwargs
        )
    finally:
        trajflow.settings.cuda_graphs = before


def test_graphed_gpu_fit_matches_the_eager_one():
    """Only where a GPU is: the replayed graph draws and updates as eager steps do."""
    import warnings

    import numpy as np
    import pytest

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    for kwargs in ({}, {"lr_schedule": "cosine"}, {"method": "sb-cfm"}):
        eager = _gpu_fit(False, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a failed capture warns
            graphed = _gpu_fit(True, **kwargs)
        np.testing.assert_allclose(graphed.history["loss"], eager.history["loss"], rtol=1e-4)
        a, b = graphed.predict(2.0, seed=0), eager.predict(2.0, seed=0)
        np.testing.assert_allclose(a.obsm["X_pca"], b.obsm["X_pca"], atol=1e-3)


def test_placement_is_decided_once():
    from trajflow.core.placement import place

    small = place("cpu", hidden=64, batch_size=128, threads="auto")
    assert (small.device, small.threads, small.parallel, small.reason) == (
        torch.device("cpu"), 1, None, None,
    )  # fmt: skip
    assert (small.world_size, small.rank) == (1, 0)
    big = place("cpu", hidden=SMALL_STEP_WORK, batch_size=2, threads="auto")
    assert big.threads is None  # torch's own setting for large networks
    assert place("cpu", hidden=64, batch_size=128, threads=3).threads == 3
    assert place("cpu", hidden=64, batch_size=128, threads=None).threads is None
