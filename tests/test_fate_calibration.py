"""Fate probabilities that are not falsely certain (issue 26): the kernel of
tl.fate_probabilities and its calibration on a course whose early fates are undecided."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import trajflow as tf

FAST = {"n_steps": 300, "progress": False, "solver_steps": 40}


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny networks: one torch thread


@pytest.fixture(scope="module")
def course():
    """The simulated branching course: at time 0 the branch is not chosen yet (its true
    largest fate probability averages about 0.58), by time 3 it is."""
    adata = tf.datasets.simulate(n_times=4, n_cells=300, n_dims=5, seed=0)
    return adata, tf.fit_trajectories(adata, seed=0, **FAST)


@pytest.mark.parametrize("through", ["observed", "direct"])
def test_undecided_early_cells_do_not_get_certain_fates(course, through):
    adata, model = course
    res = tf.tl.fate_probabilities(adata, model, groupby="fate", through=through, copy=True)
    probs = res.obsm["fate_probabilities"]
    t = adata.obs["time"].to_numpy()
    top0 = probs[t == 0].max(axis=1)
    # One deterministic ODE path per cell made about 70% of these "certain" with
    # through="direct" (the 30-nearest-cells kernel at the target).
    assert np.mean(top0 > 0.99) < 0.05
    assert top0.mean() < 0.8
    # ... while the fates still resolve as the branches separate: time-2 cells are mostly right
    up = (adata.obs["fate"] == "up").to_numpy()
    col = list(res.uns["fate_probabilities"]["groups"]).index("up")
    assert np.mean((probs[t == 2, col] > 0.5) == up[t == 2]) > 0.7
    assert res.uns["fate_probabilities"]["kernel_share"] == 0.05


def test_the_kernel_covers_the_same_share_of_cells_at_any_sampling_depth():
    """Sampling five times more cells (some beyond the 2,000-cell reference subset) must not
    make the fates more certain."""
    from trajflow.tl._fate_kernel import calibrated_assign
    from trajflow.tl._transitions import soft_assign

    rng = np.random.default_rng(0)
    ends = rng.normal(size=(200, 3))
    spread = {}
    for name, assign in (
        ("calibrated", lambda e, y: calibrated_assign(e, y, n_neighbors=30, share=0.05)),
        ("nearest 30", lambda e, y: soft_assign(e, y, 30)),
    ):
        for m in (800, 4000):
            y = rng.normal(size=(m, 3))
            w = assign(ends, y).tocsr()
            # weighted mean squared distance from each end point to where its mass lands
            d2 = (
                (ends[np.repeat(np.arange(len(ends)), np.diff(w.indptr))] - y[w.indices]) ** 2
            ).sum(1)
            spread[name, m] = float(np.sum(w.data * d2) / len(ends))
    assert spread["calibrated", 4000] > 0.85 * spread["calibrated", 800]
    assert spread["nearest 30", 4000] < 0.6 * spread["nearest 30", 800]  # what it replaces
    w = calibrated_assign(ends, rng.normal(size=(5000, 3)), n_neighbors=30, share=0.05)
    np.testing.assert_allclose(np.asarray(w.sum(axis=1)).ravel(), 1.0)
    assert w.shape == (200, 5000) and len(np.unique(w.indices)) <= 2000  # reference subset


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan")])
def test_kernel_share_is_checked(course, bad):
    adata, model = course
    with pytest.raises(ValueError, match="kernel_share"):
        tf.tl.fate_probabilities(adata, model, groupby="fate", kernel_share=bad, copy=True)


def test_a_small_lineage_keeps_its_share_of_the_fate_mass(course):
    """The 10% of last-time-point cells furthest up the branch form their own group: the
    balanced kernel hands them about 10% of every earlier time point's fate mass."""
    adata, model = course
    adata = adata.copy()
    t = adata.obs["time"].to_numpy()
    last = t == 3
    z1 = adata.obsm["X_latent"][:, 1]
    labels = np.where(z1 >= np.quantile(z1[last], 0.9), "far up", "rest").astype(object)
    labels[~last] = None
    adata.obs["group"] = pd.Categorical(labels, categories=["far up", "rest"])
    tf.tl.fate_probabilities(adata, model, groupby="group")
    probs = adata.obsm["fate_probabilities"]
    for s in (0, 1, 2):
        share = probs[t == s, 0].mean()
        assert 0.07 < share < 0.13, (s, share)


def test_balance_is_sinkhorn_on_the_kernels_support():
    """balance scales the sparse kernel as dense Sinkhorn on the same support does: the
    result is the dense iteration's to rounding, and once rows are normalised every column
    receives the same mass (within tol)."""
    from trajflow._neighbors import kneighbors
    from trajflow.tl._fate_kernel import balance

    rng = np.random.default_rng(0)
    ends, targets = rng.normal(size=(300, 3)), rng.normal(size=(80, 3))
    dist, idx = kneighbors(ends, targets, 40)
    w = np.exp(-0.5 * (dist / np.median(dist, axis=1, keepdims=True)) ** 2)
    tol, target = 1e-4, 300 / 80
    out = balance(w, idx, 80, tol=tol, n_iter=2000)
    dense = np.zeros((300, 80))
    np.put_along_axis(dense, idx, w, axis=1)
    assert (dense.sum(axis=0) > 0).all()  # every column reached
    v = np.ones(80)
    for _ in range(2000):  # the textbook iteration, dense, with the same stopping rule
        col = v * (dense.T @ (1.0 / (dense @ v)))
        if np.max(np.abs(col / target - 1)) < tol:
            break
        v *= target / col
    np.testing.assert_allclose(out, np.take_along_axis(dense * v, idx, axis=1), rtol=1e-9)
    scaled = out / out.sum(axis=1, keepdims=True)
    mass = np.bincount(idx.ravel(), weights=scaled.ravel(), minlength=80)
    np.testing.assert_allclose(mass, target, rtol=tol)
