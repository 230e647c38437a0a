"""Leave-one-out benchmark and its baselines."""

from __future__ import annotations

import numpy as np
import pytest

from trajflow._anndata import Standardizer
from trajflow._ot import displacement_interpolation
from trajflow.benchmark import (
    METRICS,
    leave_one_out,
    noise_floor,
    ot_interpolation,
    score_prediction,
    summarize,
)
from trajflow.metrics import energy_distance, mmd, wasserstein

from conftest import moving_gaussians


def test_ot_interpolation_midpoint_of_shift():
    x = np.random.default_rng(0).normal(size=(100, 2))
    mid = ot_interpolation(x, x + np.array([4.0, 0.0]), 0.25)
    assert mid.shape == (100, 2)
    # Pairs are resampled from the plan, so only resampling noise separates it from x + 1.
    assert wasserstein(mid, x + np.array([1.0, 0.0])) < 0.3
    np.testing.assert_allclose(mid.mean(0), x.mean(0) + np.array([1.0, 0.0]), atol=0.15)
    with pytest.raises(ValueError, match="fraction"):
        ot_interpolation(x, x, 1.5)


def test_ot_interpolation_samples_the_displacement_interpolation():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 2)), rng.normal(3.0, 1.0, size=(25, 2))
    points, weights = displacement_interpolation(a, b, 0.3)
    draws = ot_interpolation(a, b, 0.3, n_cells=40, seed=4)
    k = np.random.default_rng(4).choice(len(points), size=40, p=weights)
    np.testing.assert_array_equal(draws, points[k])


def test_score_prediction_standardises_over_the_reference():
    rng = np.random.default_rng(5)
    ref = rng.normal([10.0, -3.0], [5.0, 0.2], size=(300, 2))
    pred, obs = ref[:80] + [1.0, 0.1], ref[100:180]
    scores = score_prediction(pred, obs, reference=ref)
    assert tuple(scores) == METRICS
    space = Standardizer.fit(ref)
    zp, zo = space.transform(pred), space.transform(obs)
    assert scores == {
        "w1": wasserstein(zp, zo, p=1),
        "w2": wasserstein(zp, zo, p=2),
        "mmd": mmd(zp, zo),
        "energy": energy_distance(zp, zo),
    }
    # the units of the representation do not matter
    again = score_prediction(3 * pred - 7, 3 * obs - 7, reference=3 * ref - 7)
    assert again == pytest.approx(scores, rel=1e-9)
    assert score_prediction(pred, obs, reference=ref, metrics=("w1",)) == {"w1": scores["w1"]}
    with pytest.raises(ValueError, match="Unknown metric"):
        score_prediction(pred, obs, reference=ref, metrics=("w3",))


def test_leave_one_out_rows_and_scores():
    adata = moving_gaussians(times=(0.0, 1.0, 2.0, 3.0), n_per_time=120)
    before = adata.copy()
    res = leave_one_out(
        adata,
        methods=("ot-cfm", "i-cfm"),
        seeds=(0, 1),
        n_dims=2,
        fit_kwargs={"n_steps": 300},
        progress=False,
    )
    # 2 interior times x 2 seeds x (2 methods + 2 baselines)
    assert len(res) == 16
    for col in (
        "method",
        "seed",
        "holdout_time",
        "w1",
        "w2",
        "mmd",
        "fit_seconds",
        "trajflow_version",
        "torch_version",
        "device",
    ):
        assert col in res.columns
    assert set(res["holdout_time"]) == {1.0, 2.0}
    mean = res.groupby("method")["w1"].mean()
    assert mean["ot-cfm"] < 0.5 * mean["previous"]
    assert mean["ot-interpolation"] < 0.5 * mean["previous"]
    assert (res.loc[res.method == "ot-cfm", "fit_seconds"] > 0).all()
    table = summarize(res)
    assert list(table.columns[:2]) == ["t=1", "t=2"] and "mean" in table.columns
    assert table.index[-1] == "previous"
    np.testing.assert_array_equal(adata.obsm["X_pca"], before.obsm["X_pca"])
    assert list(adata.obsm.keys()) == ["X_pca"] and not adata.uns


def test_leave_one_out_validation():
    adata = moving_gaussians(n_per_time=30)
    with pytest.raises(ValueError, match="not interior"):
        leave_one_out(adata, holdout_times=[0.0], n_dims=2, progress=False)
    with pytest.raises(ValueError, match="Unknown method"):
        leave_one_out(adata, methods=("flow-magic",), n_dims=2, progress=False)
    with pytest.raises(ValueError, match="not one of the observed"):
        leave_one_out(adata, holdout_times=[1.5], n_dims=2, progress=False)
    with pytest.raises(ValueError, match="fit_kwargs may not set"):
        leave_one_out(adata, n_dims=2, fit_kwargs={"seed": 3}, progress=False)
    two = moving_gaussians(times=(0.0, 1.0), n_per_time=30)
    with pytest.raises(ValueError, match="at least 3 time points"):
        leave_one_out(two, n_dims=2, progress=False)


def test_noise_floor_shrinks_with_sample_size():
    rng = np.random.default_rng(0)
    small, spread = noise_floor(rng.normal(size=(100, 2)), n_repeats=3)
    large, _ = noise_floor(rng.normal(size=(1000, 2)), n_repeats=3)
    assert 0 < large < small < 1.0 and spread >= 0
