"""Metrics against closed forms, and their basic properties (property-based)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trajflow._timecourse import subsample_indices
from trajflow.metrics import _exact_wasserstein, energy_distance, mmd, wasserstein


def test_point_masses():
    a, b = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])
    assert wasserstein(a, b) == pytest.approx(5.0)
    assert wasserstein(a, b, p=2) == pytest.approx(5.0)
    assert energy_distance(a, b, unbiased=False) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="at least 2 points per side.*unbiased=False"):
        energy_distance(a, b)


def test_shifted_samples_1d():
    x = np.random.default_rng(0).normal(size=300)
    assert wasserstein(x, x + 1.5) == pytest.approx(1.5)
    assert wasserstein(x, x + 1.5, p=2) == pytest.approx(1.5)


def test_w1_matches_scipy_on_unequal_sizes():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=70), rng.exponential(size=45)
    assert wasserstein(a, b) == pytest.approx(scipy.stats.wasserstein_distance(a, b), rel=1e-6)


def test_identical_samples_are_zero_and_distinct_positive():
    x = np.random.default_rng(2).normal(size=(50, 3))
    for f in (wasserstein, partial(mmd, unbiased=False), partial(energy_distance, unbiased=False)):
        assert f(x, x) == pytest.approx(0.0, abs=1e-9)
        assert f(x, x + 1.0) > 0.1
    for f in (mmd, energy_distance):
        assert f(x, x + 1.0) > 0.1


@pytest.mark.parametrize("f", [energy_distance, mmd])
def test_unbiased_estimators_are_zero_in_expectation_and_do_not_reward_shrinking(f):
    """Two independent samples of one distribution: the U-statistic averages ~0 while the
    V-statistic sits clearly above 0; a sample shrunk toward its mean is not rewarded."""
    rng = np.random.default_rng(0)
    u, v, shrunk = [], [], []
    for _ in range(30):
        a, b = rng.normal(size=(40, 20)), rng.normal(size=(40, 20))
        u.append(f(a, b))
        v.append(f(a, b, unbiased=False))
        shrunk.append(f(0.85 * a, b))
    u, v, shrunk = np.array(u), np.array(v), np.array(shrunk)
    assert abs(u.mean()) < 3 * u.std() / np.sqrt(len(u))
    assert v.mean() > 5 * abs(u.mean()) and v.mean() > 0
    assert shrunk.mean() > u.mean() + 3 * u.std() / np.sqrt(len(u))
    # the V-statistic's bias is of the size of the shrinkage's penalty: it cannot tell them apart
    assert np.mean(u < 0) > 0.2  # unbiased: negative about as often as a sampling error says


def test_unbiased_energy_is_the_u_statistic():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(9, 3)) + 0.3
    from scipy.spatial.distance import cdist, pdist

    expected = 2 * cdist(a, b).mean() - pdist(a).mean() - pdist(b).mean()
    assert energy_distance(a, b) == pytest.approx(expected)


@pytest.mark.parametrize("f", [wasserstein, mmd, energy_distance])
def test_bad_inputs(f):
    with pytest.raises(ValueError, match="empty"):
        f(np.zeros((0, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="same number of dimensions"):
        f(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        f(np.array([[np.nan, 0.0]]), np.zeros((3, 2)))


def test_wasserstein_rejects_unknown_p():
    with pytest.raises(ValueError, match="p must be"):
        wasserstein(np.zeros((2, 1)), np.ones((2, 1)), p=3)


finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
clouds = arrays(np.float64, st.tuples(st.integers(1, 12), st.just(2)), elements=finite)
lines = arrays(np.float64, st.integers(1, 15), elements=finite)


@settings(max_examples=40, deadline=None)
@given(a=clouds, b=clouds)
def test_w1_symmetric(a, b):
    assert wasserstein(a, b) == pytest.approx(wasserstein(b, a), rel=1e-7, abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(a=clouds)
def test_w1_zero_for_identical(a):
    assert wasserstein(a, a.copy()) == pytest.approx(0.0, abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(a=clouds, b=clouds, c=st.floats(0.01, 10))
def test_w1_scales_with_data(a, b, c):
    assert wasserstein(c * a, c * b) == pytest.approx(c * wasserstein(a, b), rel=1e-6, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(a=lines, b=lines)
def test_w1_matches_1d_closed_form(a, b):
    assert wasserstein(a, b) == pytest.approx(
        scipy.stats.wasserstein_distance(a, b), rel=1e-6, abs=1e-6
    )


def test_large_populations_are_subsampled_with_spread():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(600, 2)), rng.normal(size=(500, 2)) + [1.0, 0.0]
    exact = wasserstein(a, b, max_size=None)
    value, spread = wasserstein(a, b, max_size=300, n_repeats=4, return_spread=True)
    assert spread > 0 and abs(value - exact) < 0.15
    assert wasserstein(a, b, return_spread=True) == (pytest.approx(exact), 0.0)
    assert wasserstein(a, b, max_size=300, seed=1) == wasserstein(a, b, max_size=300, seed=1)
    with pytest.raises(ValueError, match="max_size"):
        wasserstein(a, b, max_size=1)


def test_kernel_metrics_subsample_large_inputs():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(900, 2)), rng.normal(size=(800, 2)) + [2.0, 0.0]
    for f in (mmd, energy_distance):
        exact, approx = f(a, b, max_size=None), f(a, b, max_size=400)
        assert approx == pytest.approx(exact, rel=0.15)
        assert f(a, b, max_size=400, seed=2) == f(a, b, max_size=400, seed=2)


def test_kernel_metrics_subsample_with_the_shared_helper():
    """mmd and energy draw their subsamples with subsample_indices: a then b, one rng."""
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(700, 2)), rng.normal(size=(300, 2)) + [1.0, 0.0]
    draw = np.random.default_rng(9)
    sa, sb = a[subsample_indices(700, 400, draw)], b[subsample_indices(300, 400, draw)]
    assert mmd(a, b, max_size=400, seed=9) == mmd(sa, sb, max_size=None)
    draw = np.random.default_rng(9)
    sa, sb = a[subsample_indices(700, 400, draw)], b[subsample_indices(300, 400, draw)]
    assert energy_distance(a, b, max_size=400, seed=9) == energy_distance(sa, sb, max_size=None)


def test_wasserstein_subsamples_draw_both_sides_every_repeat():
    """Pinned draw order (the scores published so far depend on it): each repeat draws a
    subsample of a, then of b, even a side within max_size (a permutation)."""
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(500, 2)), rng.normal(size=(200, 2)) + [0.5, 0.0]
    draw = np.random.default_rng(2)
    values = []
    for _ in range(3):
        sa = a[draw.choice(500, size=300, replace=False)]
        sb = b[draw.choice(200, size=200, replace=False)]
        values.append(_exact_wasserstein(sa, sb, 1))
    assert wasserstein(a, b, max_size=300, n_repeats=3, seed=2) == float(np.mean(values))


def test_parallel_solves_keep_order_and_results(monkeypatch):
    """Independent solves run on threads; results come back in order and equal the serial ones."""
    import os

    from trajflow.core import parallel

    assert parallel.solver_workers(cap=1) == 1
    items = [(k, k + 1) for k in range(12)]
    assert parallel.parallel_map(pow, items) == [pow(*item) for item in items]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(90, 3)), rng.normal(size=(80, 3)) + 0.5
    threaded = wasserstein(a, b, max_size=30, n_repeats=4, seed=1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert parallel.solver_workers() == 1
    assert wasserstein(a, b, max_size=30, n_repeats=4, seed=1) == threaded
