"""The tools' bulk internals (issue 27): blocked exact neighbours, blockwise kernel sums and
network evaluations, and the tools' integrator, each against the plain computation it replaces
(small sizes; the speed lives in benchmarks/post_fit.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

import trajflow as tf
from trajflow import _neighbors
from trajflow._neighbors import gaussian_sums, kneighbors
from trajflow.core import VelocityNet
from trajflow.core.integrate import blockwise
from trajflow.tl._carry import bulk_solver, carry

pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny networks: one torch thread


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(_neighbors, "BLOCK_ENTRIES", 500)  # many blocks, a ragged last one


@pytest.mark.parametrize("k", [1, 7, 60])
def test_kneighbors_equal_brute_force(k):
    rng = np.random.default_rng(0)
    query, reference = rng.normal(size=(203, 12)), rng.normal(size=(60, 12)) * 2 + 0.5
    dist, idx = kneighbors(query, reference, k)
    full = cdist(query, reference)
    order = np.argsort(full, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_allclose(dist, np.take_along_axis(full, order, axis=1), rtol=1e-10)
    np.testing.assert_array_equal(kneighbors(query, reference, k, return_distance=False), idx)
    sk_dist, sk_idx = NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(query)
    np.testing.assert_array_equal(idx, sk_idx)
    np.testing.assert_allclose(dist, sk_dist, rtol=1e-10)


@pytest.mark.parametrize("k", [1, 7, 60])
def test_torch_search_equals_brute_force(small_blocks, k):
    """The search a CUDA model runs, here on the CPU: the same neighbours, in order."""
    rng = np.random.default_rng(2)
    query, reference = rng.normal(size=(203, 12)), rng.normal(size=(60, 12)) * 2 + 0.5
    dist, idx = _neighbors.torch_kneighbors(query, reference, k, device="cpu")
    full = cdist(query, reference)
    order = np.argsort(full, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_allclose(dist, np.take_along_axis(full, order, axis=1), rtol=1e-10)


def test_nearest_distances_equal_brute_force(small_blocks):
    """The support measure's search (float32 products, the nearest point's distance then in
    float64): the exact distances, far from the origin too, and 0 for a reference point."""
    rng = np.random.default_rng(3)
    query = rng.normal(size=(203, 12)) * 3 + 200.0
    reference = rng.normal(size=(60, 12)) * 2 + 200.5
    got = _neighbors.nearest_distances(query, reference)
    np.testing.assert_allclose(got, cdist(query, reference).min(axis=1), rtol=1e-10)
    assert (_neighbors.nearest_distances(reference, reference) == 0).all()


def test_kneighbors_searches_on_a_cuda_device_by_torch(monkeypatch):
    calls = []
    search = _neighbors.torch_kneighbors

    def spy(query, reference, k, *, device):
        calls.append(device)
        return search(query, reference, k, device="cpu")

    monkeypatch.setattr(_neighbors, "torch_kneighbors", spy)
    rng = np.random.default_rng(3)
    query, reference = rng.normal(size=(20, 4)), rng.normal(size=(30, 4))
    for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
        idx = kneighbors(query, reference, 5, return_distance=False, device=device)
        np.testing.assert_array_equal(idx, kneighbors(query, reference, 5, return_distance=False))
    assert calls == ["cuda", "cuda:1", torch.device("cuda", 0)]
    kneighbors(query, reference, 5, device=torch.device("cpu"))  # a CPU keeps scikit-learn's
    assert len(calls) == 3


def test_the_tools_search_on_the_models_device(monkeypatch):
    seen = []
    search = _neighbors.kneighbors

    def spy(*args, device=None, **kwargs):
        seen.append(device)
        return search(*args, device=device, **kwargs)

    from trajflow.tl import _ancestors, _fate_kernel, _transitions

    for module in (_ancestors, _fate_kernel, _transitions):
        monkeypatch.setattr(module, "kneighbors", spy)
    adata = tf.datasets.simulate(n_times=3, n_cells=60, n_dims=4)
    model = tf.fit_trajectories(adata, n_steps=20, progress=False)
    tf.tl.couplings(adata, model)
    tf.tl.fate_probabilities(adata, model, groupby="fate")
    tf.tl.ancestors(adata, model, cells=adata.obs["time"].to_numpy() == 2, target_time=0)
    assert len(seen) >= 3 and all(d == model.device for d in seen)


def test_kneighbors_refuses_k_beyond_the_reference():
    with pytest.raises(ValueError, match="k must be between 1 and the 3 reference points"):
        kneighbors(np.zeros((2, 2)), np.zeros((3, 2)), 4)


def test_blockwise_gaussian_sums_equal_the_dense_kernel(small_blocks):
    rng = np.random.default_rng(1)
    points, centres = rng.normal(size=(97, 5)), rng.normal(size=(41, 5))
    dense = np.exp(-0.5 * cdist(points, centres, "sqeuclidean") / 0.7**2).sum(axis=1)
    np.testing.assert_allclose(gaussian_sums(points, centres, 0.7), dense, rtol=1e-12)


def test_blockwise_field_equals_one_evaluation():
    torch.manual_seed(0)
    net = VelocityNet(6, hidden=16).eval()
    x, t = torch.randn(1001, 6), torch.tensor(0.3)
    with torch.no_grad():
        whole = net(x, t)
        blocks = blockwise(net, block_rows=128)(x, t)
    torch.testing.assert_close(blocks, whole, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def sim_and_model():
    adata = tf.datasets.simulate(n_times=4, n_cells=150, n_dims=6, seed=3)
    model = tf.fit_trajectories(adata, seed=0, n_steps=400, progress=False)
    return adata, model


def test_auto_solves_closer_to_the_flow_than_euler_for_the_model_and_the_tools(sim_and_model):
    """The default ``solver="auto"`` (rk4 in a twelfth of the steps) lands nearer the fine solve
    than 100 Euler steps, over one gap and over three; the tools push a model fitted with the old
    Euler default by ``"auto"`` (:func:`bulk_solver`) and a default model as it is."""
    adata, model = sim_and_model
    assert model.config["solver"] == "auto"
    assert bulk_solver(model, sde=False) == {}
    old = tf.TrajectoryModel.__new__(tf.TrajectoryModel)
    old.config = {**model.config, "solver": "euler"}
    assert bulk_solver(old, sde=False) == {"solver": "auto"}
    assert bulk_solver(old, sde=True) == {}
    x0 = adata.obsm["X_pca"][adata.obs["time"].to_numpy() == 0]
    for end in (1, 3):
        fine = model.push(x0, source_time=0, times=end, solver="rk4", n_steps=400)
        euler = model.push(x0, source_time=0, times=end, solver="euler")
        tools = carry(model, x0, source_time=0, times=end)
        np.testing.assert_array_equal(tools, model.push(x0, source_time=0, times=end))
        np.testing.assert_allclose(
            tools, model.push(x0, source_time=0, times=end, solver="rk4", n_steps=9), atol=1e-5
        )
        err_euler = np.linalg.norm(euler - fine, axis=1).mean()
        err_tools = np.linalg.norm(tools - fine, axis=1).mean()
        assert err_tools < err_euler, (end, err_tools, err_euler)
        at_end = adata.obsm["X_pca"][adata.obs["time"].to_numpy() == end]
        gap = np.median(kneighbors(at_end, at_end, 2)[0][:, 1])  # nearest-neighbour distance
        assert err_euler < 0.5 * gap  # both well inside a neighbour distance


def test_ancestors_density_and_probability_as_the_dense_computation(sim_and_model):
    adata, model = sim_and_model
    adata = adata.copy()
    t = adata.obs["time"].to_numpy()
    chosen = (t == 3) & (adata.obs["fate"] == "up").to_numpy()
    tf.tl.ancestors(adata, model, cells=chosen, target_time=1, n_neighbors=10)
    back = model.scaler.transform(adata.uns["ancestors"]["positions"])
    z_tgt = model.scaler.transform(adata.obsm["X_pca"][t == 1])
    bw = adata.uns["ancestors"]["bandwidth"]
    dens = np.exp(-0.5 * cdist(z_tgt, back, "sqeuclidean") / bw**2).sum(axis=1)
    np.testing.assert_allclose(
        adata.obs["ancestors_density"].to_numpy()[t == 1], dens / dens.max(), rtol=1e-10
    )
    idx = NearestNeighbors(n_neighbors=10).fit(z_tgt).kneighbors(back, return_distance=False)
    prob = np.bincount(idx.ravel(), minlength=len(z_tgt)) / idx.size
    np.testing.assert_allclose(adata.obs["ancestors"].to_numpy()[t == 1], prob)


def test_couplings_match_the_old_path_within_the_solver_error(sim_and_model):
    """Against the old path (the fit's Euler, then the same soft matching): rows move by a few
    percent of their mass at most, where the more accurate solve changes a neighbour."""
    from trajflow.tl._transitions import flow_transitions, soft_assign

    adata, model = sim_and_model
    t = adata.obs["time"].to_numpy()
    x = adata.obsm["X_pca"]
    new = flow_transitions(
        model, x[t == 1], 1.0, x[t == 2], 2.0, n_neighbors=10, sde=False, n_samples=1, seed=0
    )
    ends = model.push(x[t == 1], source_time=1, times=2)
    old = soft_assign(model.scaler.transform(ends), model.scaler.transform(x[t == 2]), 10)
    tv = 0.5 * np.asarray(abs(new - old).sum(axis=1)).ravel()
    assert tv.mean() < 0.02 and tv.max() < 0.2, (tv.mean(), tv.max())
