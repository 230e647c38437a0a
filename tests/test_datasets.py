"""The EB loader: local copies first, npz conversion tested on a small archive."""

from __future__ import annotations

import numpy as np
import pytest

from trajflow import datasets


def _write_npz(path, n=30):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        pcs=rng.normal(size=(n, 100)),
        sample_labels=np.repeat(np.arange(5), n // 5),
        delta_embedding=rng.normal(size=(n, 100)),
        embedding=rng.normal(size=(n, 2)),
    )


def test_npz_conversion(tmp_path):
    path = tmp_path / "eb_velocity_v5.npz"
    _write_npz(path)
    adata = datasets.eb_npz_to_anndata(path)
    assert adata.shape == (30, 100) and adata.obsm["X_pca"].shape == (30, 100)
    assert sorted(adata.obs["time"].unique()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert adata.obsm["velocity_pca"].shape == (30, 100) and adata.obsm["X_phate"].shape == (30, 2)
    assert list(adata.obs["day_range"].cat.categories) == sorted(datasets.EB_DAYS)


def test_npz_missing_keys(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, data=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="missing"):
        datasets.eb_npz_to_anndata(path)


def test_eb_lookup_order(tmp_path, monkeypatch):
    npz = tmp_path / "eb_velocity_v5.npz"
    _write_npz(npz)
    assert datasets.eb(npz).n_obs == 30
    monkeypatch.setenv("TRAJFLOW_EB_PATH", str(npz))
    assert datasets.eb().n_obs == 30
    monkeypatch.delenv("TRAJFLOW_EB_PATH")
    monkeypatch.setenv("TRAJFLOW_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("TRAJFLOW_CACHE_DIR", str(tmp_path))
    assert datasets.eb().n_obs == 30  # found in the cache
    monkeypatch.setenv("TRAJFLOW_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="download=False"):
        datasets.eb(download=False)
    with pytest.raises(FileNotFoundError, match="No EB data"):
        datasets.eb(tmp_path / "missing.h5ad")


def test_eb_shared_copy(eb_path, monkeypatch):
    monkeypatch.setenv("TRAJFLOW_DATA_DIR", str(eb_path.parent))
    adata = datasets.eb(download=False)
    assert adata.n_obs == 2750 and "X_pca" in adata.obsm


def test_simulate_is_seeded_documented_and_has_a_known_answer():
    import trajflow

    a = trajflow.datasets.simulate(n_times=5, n_cells=200, n_dims=8, seed=3)
    b = trajflow.datasets.simulate(n_times=5, n_cells=200, n_dims=8, seed=3)
    np.testing.assert_array_equal(a.obsm["X_pca"], b.obsm["X_pca"])
    assert a.shape == (1000, 0) and a.obsm["X_pca"].shape == (1000, 8)
    assert sorted(a.obs["time"].unique()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    last = (a.obs["time"] == 4).to_numpy()
    # at the last time point the branch coordinate has split and names the fate
    branch = a.obsm["X_latent"][last, 1]
    up = (a.obs["fate"][last] == "up").to_numpy()
    assert (branch[up] > 0).all() and (branch[~up] < 0).all() and 0.3 < up.mean() < 0.7
    # the embedding keeps the latent geometry: W has orthonormal rows
    w = a.uns["simulation"]["W"]
    np.testing.assert_allclose(w @ w.T, np.eye(3), atol=1e-10)
    v = trajflow.datasets.simulated_velocity(a, a.obsm["X_latent"][:4], time=1.0)
    assert v.shape == (4, 8)
    with pytest.raises(ValueError, match="n_dims must be an integer >= 3"):
        trajflow.datasets.simulate(n_dims=2)


def test_simulated_fates_can_be_scored(one_thread):
    import trajflow

    adata = trajflow.datasets.simulate(n_times=4, n_cells=150, n_dims=5, seed=0)
    model = trajflow.fit_trajectories(adata, n_steps=300, progress=False, device="cpu", seed=0)
    trajflow.tl.fate_probabilities(adata, model, source_time=2, target_time=3, groupby="fate")
    at2 = (adata.obs["time"] == 2).to_numpy()
    predicted = adata.obs["fate_probabilities_fate"][at2].astype(str).to_numpy()
    truth = adata.obs["fate"][at2].astype(str).to_numpy()
    assert (predicted == truth).mean() > 0.7  # chance is 0.5
