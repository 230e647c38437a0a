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
