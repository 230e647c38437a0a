"""Shared fixtures. Real data is read from TRAJFLOW_DATA_DIR (default ../shared/data); tests
that need it skip cleanly when it is absent."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("TRAJFLOW_DATA_DIR", REPO.parent / "shared" / "data"))


def shared_file(name: str) -> Path:
    path = DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"shared data {name} not found in {DATA_DIR} (set TRAJFLOW_DATA_DIR)")
    return path


@contextlib.contextmanager
def _one_torch_thread():
    """Tiny networks: one torch thread is fastest and avoids oversubscribing a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """One torch thread for one test."""
    with _one_torch_thread():
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """One torch thread for a whole module, its module-scoped fits included (use through
    ``pytestmark = pytest.mark.usefixtures("one_thread_module")``)."""
    with _one_torch_thread():
        yield


@pytest.fixture(scope="session")
def eb_path() -> Path:
    return shared_file("eb_moon2019_nlsb_subset.h5ad")


@pytest.fixture
def eb_adata(eb_path) -> ad.AnnData:
    return ad.read_h5ad(eb_path)


@pytest.fixture(scope="session")
def klein_path() -> Path:
    return shared_file("klein2015_mesc_lif_withdrawal_subset.h5ad")


@pytest.fixture(scope="session")
def emt_path() -> Path:
    return shared_file("emt_a549_tgfb1_ae_latent.h5ad")


def moving_gaussians(
    times=(0.0, 1.0, 2.0, 3.0),
    n_per_time: int = 200,
    dim: int = 2,
    speed: float = 2.0,
    seed: int = 0,
) -> ad.AnnData:
    """Gaussian clouds (sd 0.5) whose centre moves along the first axis at ``speed`` per unit time."""
    rng = np.random.default_rng(seed)
    xs, ts = [], []
    for t in times:
        centre = np.zeros(dim)
        centre[0] = speed * t
        xs.append(rng.normal(centre, 0.5, size=(n_per_time, dim)))
        ts.append(np.full(n_per_time, t))
    x = np.concatenate(xs)
    obs = pd.DataFrame({"time": np.concatenate(ts)}, index=[f"cell{i}" for i in range(len(x))])
    adata = ad.AnnData(X=x.copy(), obs=obs)
    adata.obsm["X_pca"] = x
    return adata


@pytest.fixture
def gaussians() -> ad.AnnData:
    return moving_gaussians()
