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
