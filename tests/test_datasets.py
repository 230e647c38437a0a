"""The data set loaders: conversions tested on small source files written here in the public
files' formats, the lookup order (path > TRAJFLOW_DATA_DIR > cache > download) with
``pooch.retrieve`` faked, and each loader on the shared file when present. No network."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import shutil
from collections import OrderedDict
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pooch
import pytest

from trajflow import datasets
from trajflow.datasets import _convert, _registry

from conftest import shared_file

# --- small source files in the public files' formats ------------------------------------------


def _write_npz(path, n=30):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        pcs=rng.normal(size=(n, 100)),
        sample_labels=np.repeat(np.arange(5), n // 5),
        delta_embedding=rng.normal(size=(n, 100)),
        embedding=rng.normal(size=(n, 2)),
    )


def _object_npy(path, groups):
    """An object ``.npy`` of shape (1, k), one array per time point, as TIGON stores them."""
    array = np.empty((1, len(groups)), dtype=object)
    for i, group in enumerate(groups):
        array[0, i] = group
    np.save(path, array, allow_pickle=True)


def write_eb(folder: Path) -> None:
    """NLSB's ``test_rna.npz`` (3 cells per time point) and ``val_rna.npz`` (2)."""
    rng = np.random.default_rng(1)
    start = 0
    for name, per_time in (("test_rna.npz", 3), ("val_rna.npz", 2)):
        n = 5 * per_time
        np.savez(
            folder / name,
            X=rng.normal(50, 5, size=(n, 100)),
            ts=np.repeat(np.arange(5), per_time),
            v=rng.normal(size=(n, 100)),
            idx=np.arange(start, start + n)[::-1],
        )
        start += n


EMT_LABELS = ["3d", "0d", "8h", "1d", "7d", "0d", "8h", "3d", "1d", "8h", "0d", "3d", "7d", "1d"]


def write_emt(folder: Path) -> None:
    """DeepRUOT's ``emt.csv``, TIGON's ``AE_EMT_time.csv`` and ``EMT.npy``. The 3-d embedding
    of each cell is its first three latent coordinates, so its alignment can be checked."""
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(len(EMT_LABELS), 10)).round(6)
    table = pd.DataFrame(x, columns=[f"x{i + 1}" for i in range(10)])
    table.insert(0, "samples", [datasets.EMT_DEEPRUOT_SAMPLES[lab] for lab in EMT_LABELS])
    table.to_csv(folder / "emt.csv", index=False)
    names = [f"Mix1_CELL{i:02d}" for i in range(len(EMT_LABELS))]
    pd.DataFrame({"x": EMT_LABELS}, index=names).to_csv(folder / "AE_EMT_time.csv")
    labels = np.array(EMT_LABELS)
    _object_npy(folder / "EMT.npy", [x[labels == lab, :3] for lab in datasets.EMT_TIMES])


KLEIN_DAYS = [0] * 5 + [2] * 3 + [4] * 4 + [7] * 4


def write_klein(folder: Path) -> None:
    """tmscc's ``profile.txt`` (genes x cells counts) and ``labels.txt`` (one day per line)."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(3.0, size=(25, len(KLEIN_DAYS)))
    genes = [f"Gene{i}" for i in range(25)]
    cells = [f"cell-{i}" for i in range(len(KLEIN_DAYS))]
    pd.DataFrame(counts, index=genes, columns=cells).to_csv(folder / "profile.txt")
    (folder / "labels.txt").write_text("".join(f"{d}\n" for d in KLEIN_DAYS))


WEINREB_SIZES = (4, 6, 8)


def write_weinreb(folder: Path) -> None:
    """TIGON's ``Lineage.npy``: one cells x 2 array per day (2, 4, 6)."""
    rng = np.random.default_rng(4)
    _object_npy(folder / "Lineage.npy", [rng.normal(size=(n, 2)) for n in WEINREB_SIZES])


WRITERS = {"eb": write_eb, "emt": write_emt, "klein": write_klein, "weinreb": write_weinreb}
N_CELLS = {"eb": 25, "emt": len(EMT_LABELS), "klein": len(KLEIN_DAYS), "weinreb": 18}


def _sources(tmp_path: Path, key: str) -> Path:
    folder = tmp_path / f"{key}-sources"
    folder.mkdir()
    WRITERS[key](folder)
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- conversions ------------------------------------------------------------------------------


def test_eb_nlsb_conversion(tmp_path):
    folder = _sources(tmp_path, "eb")
    adata = datasets.eb_nlsb_to_anndata(folder / "test_rna.npz", folder / "val_rna.npz")
    assert adata.shape == (25, 100) and adata.X.dtype == np.float32
    with np.load(folder / "test_rna.npz") as test, np.load(folder / "val_rna.npz") as val:
        x = np.concatenate([test["X"], val["X"]]).astype(np.float32)
        v = np.concatenate([test["v"], val["v"]]).astype(np.float32)
        rows = np.concatenate([test["idx"], val["idx"]])
    np.testing.assert_array_equal(adata.X, x)
    np.testing.assert_array_equal(adata.obsm["X_pca"], x)
    np.testing.assert_array_equal(adata.obsm["velocity_pca"], v)
    assert list(adata.obs_names[:2]) == [f"eb_{rows[0]}", f"eb_{rows[1]}"]
    assert (adata.obs["eb_velocity_v5_row"].to_numpy() == rows).all()
    assert adata.obs["time"].tolist()[:6] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert adata.obs["nlsb_split"].value_counts().to_dict() == {"test": 15, "val": 10}
    first = adata.obs.iloc[0]
    assert (first["day_range"], first["day_mid"]) == ("Day 00-03", 1.5)
    assert list(adata.obs["day_range"].cat.categories) == list(datasets.EB_DAY_RANGES)
    assert json.loads(adata.uns["provenance"])["source"].startswith("github:take-koshizuka/NLSB@")


def test_emt_conversion(tmp_path):
    folder = _sources(tmp_path, "emt")
    adata = datasets.emt_to_anndata(
        folder / "emt.csv", folder / "AE_EMT_time.csv", folder / "EMT.npy"
    )
    assert adata.shape == (14, 10) and list(adata.var_names[:2]) == ["AE1", "AE2"]
    assert adata.obs_names[0] == "Mix1_CELL00"
    assert adata.obs["time_label"].astype(str).tolist() == EMT_LABELS
    assert adata.obs["time"].tolist() == [datasets.EMT_TIMES[lab] for lab in EMT_LABELS]
    assert adata.obs["time"].iloc[2] == pytest.approx(1 / 3)
    # each time point's rows of TIGON's embedding land on that time point's cells, in order
    np.testing.assert_array_equal(adata.obsm["X_ae3_tigon"], adata.X[:, :3])
    # X_pca: all 10 PCs, an exact rotation of the centred latent
    pcs = adata.obsm["X_pca"].astype(np.float64)
    centred = adata.X.astype(np.float64) - adata.X.mean(axis=0)
    np.testing.assert_allclose(np.linalg.norm(pcs, axis=1), np.linalg.norm(centred, axis=1))
    assert (np.diff(pcs.var(axis=0)) <= 1e-9).all()
    without = datasets.emt_to_anndata(folder / "emt.csv", folder / "AE_EMT_time.csv")
    assert "X_ae3_tigon" not in without.obsm
    np.testing.assert_array_equal(without.obsm["X_pca"], adata.obsm["X_pca"])


def test_emt_files_must_line_up(tmp_path):
    folder = _sources(tmp_path, "emt")
    table = pd.read_csv(folder / "emt.csv")
    table.iloc[[0, 1]] = table.iloc[[1, 0]].to_numpy()  # swap a 3d row and a 0d row
    table.to_csv(folder / "emt.csv", index=False)
    with pytest.raises(ValueError, match="do not line up"):
        datasets.emt_to_anndata(folder / "emt.csv", folder / "AE_EMT_time.csv")


def test_klein_conversion(tmp_path):
    folder = _sources(tmp_path, "klein")
    adata = datasets.klein_to_anndata(folder / "profile.txt", folder / "labels.txt")
    counts = pd.read_csv(folder / "profile.txt", index_col=0).T.to_numpy()
    assert adata.shape == (16, 25) and adata.var_names[0] == "Gene0"
    assert adata.obs_names[0] == "cell-0"
    np.testing.assert_array_equal(adata.X, counts.astype(np.float32))
    assert adata.obs["day"].tolist() == KLEIN_DAYS
    assert adata.obs["time"].tolist() == [float(d) for d in KLEIN_DAYS]
    expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(adata.layers["log1p_cp10k"], expected, rtol=1e-6)
    pcs = adata.obsm["X_pca"]
    assert pcs.shape == (16, 16) and pcs.dtype == np.float32  # at most min(cells, genes) PCs
    ratio = adata.uns["pca_explained_variance_ratio"]
    assert ratio.shape == (16,) and ratio.sum() == pytest.approx(1.0)
    assert (np.diff(ratio) <= 1e-12).all()


def test_weinreb_conversion(tmp_path):
    folder = _sources(tmp_path, "weinreb")
    adata = datasets.weinreb_to_anndata(folder / "Lineage.npy")
    assert adata.shape == (18, 2) and list(adata.var_names) == ["dim1", "dim2"]
    assert adata.obs["day"].value_counts().sort_index().to_dict() == {2: 4, 4: 6, 6: 8}
    assert adata.obs_names[-1] == "larry_17"
    np.testing.assert_array_equal(adata.X, adata.obsm["X_pca"])
    groups = np.load(folder / "Lineage.npy", allow_pickle=True)[0]
    np.testing.assert_array_equal(adata.X, np.concatenate(list(groups)).astype(np.float32))


def test_object_npy_unpickles_arrays_only(tmp_path):
    _object_npy(tmp_path / "bad.npy", [OrderedDict(a=1), np.zeros((2, 2))])
    with pytest.raises(pickle.UnpicklingError, match="not an array"):
        datasets.weinreb_to_anndata(tmp_path / "bad.npy")
    np.save(tmp_path / "plain.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="TIGON"):
        datasets.weinreb_to_anndata(tmp_path / "plain.npy")


def test_pca_orientation_does_not_depend_on_svd_signs():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 6)) * np.arange(6, 0, -1)
    scores, ratio = _convert._pca(x, 4)
    centred = x - x.mean(axis=0)
    loadings = np.linalg.lstsq(centred, scores, rcond=None)[0]  # (6, 4)
    biggest = loadings[np.abs(loadings).argmax(axis=0), np.arange(4)]
    assert (biggest > 0).all() and ratio.shape == (4,) and (np.diff(ratio) < 0).all()
    flipped, _ = _convert._pca(x, 4, signs=(-1, 1))
    np.testing.assert_allclose(flipped, scores * [-1, 1, 1, 1])


# --- the real registry ------------------------------------------------------------------------


def test_registry_pins_commits_and_hashes():
    assert set(datasets.LOADERS) == set(datasets.SOURCES) == set(datasets.SHARED_FILES)
    assert set(datasets.LOADERS) == {"eb", "emt", "klein", "weinreb"}
    fnames = [s.fname for sources in datasets.SOURCES.values() for s in sources]
    assert len(set(fnames)) == len(fnames)
    for sources in datasets.SOURCES.values():
        for s in sources:
            assert re.fullmatch(r"[0-9a-f]{40}", s.commit) and re.fullmatch(
                r"[0-9a-f]{64}", s.sha256
            )
            assert s.url == f"https://raw.githubusercontent.com/{s.repo}/{s.commit}/{s.path}"
    for key, loader in datasets.LOADERS.items():
        assert f":func:`{loader.__name__}`" in datasets.__doc__ and loader.__name__ == key
        assert "Examples\n    --------" in loader.__doc__


def test_download_passes_the_known_hash_and_url(tmp_path, monkeypatch):
    folder = _sources(tmp_path, "weinreb")
    calls = []

    def fake_retrieve(url, known_hash=None, fname=None, path=None, progressbar=False, **kw):
        calls.append({"url": url, "known_hash": known_hash, "fname": fname, "path": path})
        target = Path(path) / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "Lineage.npy", target)
        return str(target)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    monkeypatch.setenv("TRAJFLOW_DATA_DIR", str(tmp_path / "nodata"))
    monkeypatch.setenv("TRAJFLOW_CACHE_DIR", str(tmp_path / "cache"))
    adata = datasets.weinreb()
    assert adata.n_obs == 18
    assert calls == [
        {
            "url": "https://raw.githubusercontent.com/yutongo/TIGON/"
            "1ed92cfcc250415fc01b4d344a308b0680cc9635/Input/Lineage.npy",
            "known_hash": "sha256:b963f114d2d215767f88aa4daf15d591941502d40961308ecd4cc66682c86607",
            "fname": "tigon_Lineage.npy",
            "path": tmp_path / "cache",
        }
    ]


# --- the lookup order: path > TRAJFLOW_DATA_DIR > cache > download -----------------------------


def _tiny_h5ad(path: Path, n: int) -> Path:
    obs = pd.DataFrame({"time": np.arange(n, dtype=float)}, index=[f"c{i}" for i in range(n)])
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_pca"] = np.zeros((n, 2))
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize("key", sorted(WRITERS))
def test_lookup_order(key, tmp_path, monkeypatch):
    folder = _sources(tmp_path, key)
    # register the small files' hashes in place of the real ones (same URLs and cache names)
    sources = tuple(
        dataclasses.replace(s, sha256=_sha256(folder / s.name)) for s in datasets.SOURCES[key]
    )
    monkeypatch.setitem(datasets.SOURCES, key, sources)
    calls = []

    def fake_retrieve(url, known_hash=None, fname=None, path=None, progressbar=False, **kw):
        source = next(s for s in sources if s.url == url)
        assert known_hash == f"sha256:{source.sha256}" and fname == source.fname
        calls.append(url)
        Path(path).mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / source.name, Path(path) / fname)
        return os.fspath(Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    monkeypatch.delenv("TRAJFLOW_EB_PATH", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRAJFLOW_DATA_DIR", str(data))
    monkeypatch.setenv("TRAJFLOW_CACHE_DIR", str(cache))
    loader = datasets.LOADERS[key]
    shared_name = datasets.SHARED_FILES[key]

    # nothing local and download=False: a clear error naming where it looked and how to fix it
    with pytest.raises(FileNotFoundError) as err:
        loader(download=False)
    message = str(err.value)
    for part in ("download=False", str(data / shared_name), str(cache), "TRAJFLOW_DATA_DIR"):
        assert part in message
    assert sources[0].url in message and f"{key}(download=True)" in message
    assert calls == []

    # download: every source file, by its URL and known hash, into the cache; then converted
    adata = loader()
    assert calls == [s.url for s in sources] and adata.n_obs == N_CELLS[key]
    assert sorted(p.name for p in cache.iterdir()) == sorted(s.fname for s in sources)
    expected = _registry._CONVERTERS[key](*(folder / s.name for s in sources))
    np.testing.assert_array_equal(adata.obsm["X_pca"], expected.obsm["X_pca"])
    assert adata.obs.equals(expected.obs)

    # cache: no further download, with or without download=False
    assert loader().n_obs == N_CELLS[key] and loader(download=False).n_obs == N_CELLS[key]
    assert len(calls) == len(sources)

    # a cached file with the wrong hash is not used
    first = cache / sources[0].fname
    first.write_bytes(first.read_bytes() + b"\n")
    with pytest.raises(FileNotFoundError, match="wrong sha256"):
        loader(download=False)
    assert loader().n_obs == N_CELLS[key] and calls[-1] == sources[0].url  # downloaded again

    # the shared file in TRAJFLOW_DATA_DIR comes before the cache
    _tiny_h5ad(data / shared_name, 3)
    assert loader(download=False).n_obs == 3

    # path comes first: a .h5ad, or a folder holding the source files by their own names
    assert loader(_tiny_h5ad(tmp_path / "mine.h5ad", 2)).n_obs == 2
    assert loader(folder).n_obs == N_CELLS[key]
    with pytest.raises(FileNotFoundError, match=f"No {_registry._TITLES[key]} data at"):
        loader(tmp_path / "missing.h5ad")
    with pytest.raises(FileNotFoundError, match=sources[0].name):
        loader(tmp_path)  # a folder without the source files


def test_emt_optional_source(tmp_path, monkeypatch):
    folder = _sources(tmp_path, "emt")
    (folder / "EMT.npy").unlink()
    adata = datasets.emt(folder)
    assert adata.n_obs == len(EMT_LABELS) and "X_ae3_tigon" not in adata.obsm


# --- EB: compatibility with TrajectoryNet's eb_velocity_v5.npz and TRAJFLOW_EB_PATH -----------


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
    with pytest.raises(ValueError, match="not an NLSB EB split"):
        datasets.eb_nlsb_to_anndata(path, path)


def test_eb_path_and_env(tmp_path, monkeypatch):
    npz = tmp_path / "eb_velocity_v5.npz"
    _write_npz(npz)
    assert datasets.eb(npz).n_obs == 30
    monkeypatch.setenv("TRAJFLOW_EB_PATH", str(npz))
    monkeypatch.setenv("TRAJFLOW_DATA_DIR", str(tmp_path))
    _tiny_h5ad(tmp_path / datasets.EB_SUBSET_FILE, 3)
    assert datasets.eb().n_obs == 30  # TRAJFLOW_EB_PATH before the data folder
    monkeypatch.setenv("TRAJFLOW_EB_PATH", str(tmp_path / "gone.npz"))
    assert datasets.eb().n_obs == 3  # a TRAJFLOW_EB_PATH that does not exist is passed over
    (tmp_path / datasets.EB_SUBSET_FILE).unlink()
    monkeypatch.setenv("TRAJFLOW_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="TRAJFLOW_EB_PATH"):
        datasets.eb(download=False)
    with pytest.raises(FileNotFoundError, match="No EB data"):
        datasets.eb(tmp_path / "missing.h5ad")


# --- the shared files -------------------------------------------------------------------------

SHARED = {
    "eb": ((2750, 100), {0.0: 550, 1.0: 550, 2.0: 550, 3.0: 550, 4.0: 550}),
    "emt": ((3133, 10), {0.0: 577, 1 / 3: 885, 1.0: 788, 3.0: 754, 7.0: 129}),
    "klein": ((1000, 900), {0.0: 359, 2.0: 101, 4.0: 248, 7.0: 292}),
    "weinreb": ((10998, 2), {2.0: 1429, 4.0: 3781, 6.0: 5788}),
}


@pytest.mark.parametrize("key", sorted(SHARED))
def test_loader_reads_the_shared_file(key, monkeypatch):
    path = shared_file(datasets.SHARED_FILES[key])
    monkeypatch.setenv("TRAJFLOW_DATA_DIR", str(path.parent))
    monkeypatch.delenv("TRAJFLOW_EB_PATH", raising=False)
    adata = datasets.LOADERS[key](download=False)
    shape, counts = SHARED[key]
    assert adata.shape == shape and adata.obsm["X_pca"].shape[0] == shape[0]
    assert adata.obs["time"].value_counts().sort_index().to_dict() == pytest.approx(counts)
    assert "source" in json.loads(adata.uns["provenance"])


@pytest.mark.parametrize("key", sorted(SHARED))
def test_real_sources_reproduce_the_shared_file(key):
    """Runs only where TRAJFLOW_SOURCE_DIR holds the real public source files under their own
    names (``test_rna.npz``, ``emt.csv``, ``profile.txt``, ``Lineage.npy``, ...)."""
    folder = Path(os.environ.get("TRAJFLOW_SOURCE_DIR", "/nonexistent"))
    for s in datasets.SOURCES[key]:
        if not (folder / s.name).is_file() or _sha256(folder / s.name) != s.sha256:
            pytest.skip(f"the real {s.name} is not in TRAJFLOW_SOURCE_DIR")
    want = ad.read_h5ad(shared_file(datasets.SHARED_FILES[key]))
    got = datasets.LOADERS[key](folder)
    assert got.obs_names.equals(want.obs_names) and got.var_names.equals(want.var_names)
    pd.testing.assert_frame_equal(got.obs, want.obs)
    np.testing.assert_array_equal(got.X, want.X)
    np.testing.assert_allclose(got.obsm["X_pca"], want.obsm["X_pca"], rtol=0, atol=1e-5)
    for name in want.layers:
        np.testing.assert_allclose(got.layers[name], want.layers[name], rtol=1e-6)


# --- the simulation ---------------------------------------------------------------------------


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


def test_simulate_counts_are_sparse_seeded_and_follow_the_time_course():
    from scipy import sparse

    import trajflow

    kw = {"n_times": 4, "n_cells": 150, "n_dims": 6, "seed": 5}
    a = trajflow.datasets.simulate(**kw, n_genes=300)
    b = trajflow.datasets.simulate(**kw, n_genes=300)
    plain = trajflow.datasets.simulate(**kw)
    x = a.X
    assert sparse.isspmatrix_csr(x) and x.dtype == np.float32 and x.shape == (600, 300)
    assert (x != b.X).nnz == 0  # seeded
    assert (x != trajflow.datasets.simulate(**{**kw, "seed": 6}, n_genes=300).X).nnz > 0
    assert np.array_equal(x.data, np.round(x.data)) and x.data.min() >= 1  # counts, no zeros
    assert 0.05 < x.nnz / np.prod(x.shape) < 0.6  # sparse, as counts are
    assert 600 < np.median(np.asarray(x.sum(axis=1)).ravel()) < 1600  # ~1,000 per cell
    # the counts option changes nothing else: same cells, times, fates and latent states
    assert "X_pca" not in a.obsm and list(a.var_names[:2]) == ["gene-0", "gene-1"]
    pd.testing.assert_frame_equal(a.obs, plain.obs)
    np.testing.assert_array_equal(a.obsm["X_latent"], plain.obsm["X_latent"])
    np.testing.assert_array_equal(a.uns["simulation"]["W"], plain.uns["simulation"]["W"])
    assert plain.X is None and "n_genes" not in plain.uns["simulation"]
    # the time course is in the counts: the genes that load most on progress rise over time
    sim = a.uns["simulation"]
    assert sim["loadings"].shape == (3, 300) and sim["baseline"].shape == (300,)
    rising = np.argsort(sim["loadings"][0])[-20:]
    t = a.obs["time"].to_numpy()
    share = np.asarray(x[:, rising].sum(axis=1)).ravel() / np.asarray(x.sum(axis=1)).ravel()
    means = [share[t == s].mean() for s in range(4)]
    assert all(np.diff(means) > 0), means
    with pytest.raises(ValueError, match="n_genes"):
        trajflow.datasets.simulate(n_genes=1)
