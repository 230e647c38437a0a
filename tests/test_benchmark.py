"""Leave-one-out benchmark and its baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trajflow._anndata import Standardizer
from trajflow._ot import displacement_interpolation, entropic_plan, plan_partners
from trajflow._scoring import HalfSplits
from trajflow.benchmark import (
    METRICS,
    entropic_interpolation,
    held_out_table,
    leave_one_out,
    noise_floor,
    ot_interpolation,
    score_prediction,
    summarize,
)
from trajflow.core.plans import SINKHORN_TOL
from trajflow.metrics import wasserstein

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


def test_score_prediction_user_protocol_scores_in_own_units():
    rng = np.random.default_rng(5)
    ref = rng.normal([10.0, -3.0], [5.0, 0.2], size=(300, 2))
    pred, obs = ref[:80] + [1.0, 0.1], ref[100:180]
    scores = score_prediction(pred, obs, reference=ref)
    assert tuple(scores) == METRICS
    # calibrated: the prediction subsampled to half the observed cells, scored against the rest
    splits = HalfSplits.draw(obs, min_candidate=len(pred), seed=0)
    assert splits.n_half == 40 and splits.n_reference == 40
    assert scores == splits.score(pred)[0]
    # own units: scaling the representation scales W1 and the energy distance
    again = score_prediction(3 * pred - 7, 3 * obs - 7, reference=3 * ref - 7)
    assert again["w1"] == pytest.approx(3 * scores["w1"], rel=1e-9)
    assert again["energy"] == pytest.approx(3 * scores["energy"], rel=1e-9)
    assert again["mmd"] == pytest.approx(scores["mmd"], rel=1e-9)  # bandwidths follow the data
    with pytest.raises(ValueError, match="protocol"):
        score_prediction(pred, obs, reference=ref, protocol="mine")


def test_score_prediction_paper_protocol_standardises_over_the_reference():
    rng = np.random.default_rng(5)
    ref = rng.normal([10.0, -3.0], [5.0, 0.2], size=(300, 2))
    pred, obs = ref[:80] + [1.0, 0.1], ref[100:180]
    scores = score_prediction(pred, obs, reference=ref, protocol="paper")
    space = Standardizer.fit(ref)
    zp, zo = space.transform(pred), space.transform(obs)
    assert scores == pytest.approx(score_prediction(zp, zo, reference=zp), rel=1e-12)
    # the units of the representation do not matter
    again = score_prediction(3 * pred - 7, 3 * obs - 7, reference=3 * ref - 7, protocol="paper")
    assert again == pytest.approx(scores, rel=1e-9)
    one = score_prediction(pred, obs, reference=ref, protocol="paper", metrics=("w1",))
    assert one == {"w1": scores["w1"]}
    with pytest.raises(ValueError, match="Unknown metric"):
        score_prediction(pred, obs, reference=ref, metrics=("w3",))


def test_calibrated_table_has_the_floor_and_does_not_reward_a_shrunk_prediction():
    """A sample of the truth scores at the floor; a prediction shrunk toward the mean (tighter
    than the truth) is worse in unbiased energy, though matched-size W1 prefers it."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(4000, 30))
    observed = truth[:600]
    sample = truth[600:1200]
    shrunk = 0.8 * truth[1200:1800]
    static = truth[1800:2400] + 0.15  # a static-OT stand-in: a little off
    table = held_out_table(
        {"sample": sample, "shrunk": shrunk, "ot-interpolation": static},
        observed, reference=truth,
    )  # fmt: skip
    assert list(table.index) == ["perfect-half", "sample", "shrunk", "ot-interpolation"]
    assert abs(table.loc["perfect-half", "energy"]) < 0.05
    assert abs(table.loc["sample", "energy"]) < 0.05
    assert table.loc["shrunk", "energy"] > 10 * abs(table.loc["sample", "energy"]) + 0.03
    assert table.loc["shrunk", "w1"] < table.loc["sample", "w1"]  # W1's bias at 30 dims
    assert table.loc["ot-interpolation", "closed"] == 0.0
    assert table.loc["perfect-half", "closed"] == 1.0
    assert table.loc["sample", "closed"] > 0.8 and table.loc["shrunk", "closed"] < 0
    assert (table["n_scored"] == 300).all()


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
    # 2 interior times x 2 seeds x (2 methods + 3 baselines + the floor)
    assert len(res) == 24
    assert res.attrs["protocol"] == "user" and res.attrs["n_dims"] == 2
    assert res.attrs["headline"] == "energy"
    for col in (
        "method",
        "seed",
        "holdout_time",
        "w1",
        "w2",
        "mmd",
        "energy",
        "closed",
        "n_scored",
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
    assert mean["entropic-interpolation"] < 0.5 * mean["previous"]
    assert (res.loc[res.method == "ot-cfm", "fit_seconds"] > 0).all()
    closed = res.groupby("method")["closed"].mean()
    assert closed["perfect-half"] == 1.0 and closed["ot-interpolation"] == 0.0
    assert closed["previous"] < 0
    assert (res["n_scored"] == 60).all()
    # the share of predicted cells off the held-out cells' support (the measure predict writes)
    off = res.groupby("method")["off_support"].mean()
    assert np.isnan(off["perfect-half"]) and off["previous"] > 0.15  # unmoved: 4 sd behind
    assert off["ot-cfm"] < 0.1 and off["ot-interpolation"] < 0.1
    table = summarize(res)  # the headline: unbiased energy
    assert list(table.columns[:2]) == ["t=1", "t=2"] and "mean" in table.columns
    assert table.index[0] == "perfect-half" and table.index[-1] == "previous"
    assert table.loc["ot-interpolation", "closed"] == "0%"
    assert table.loc["perfect-half", "off_support"] == "" and table.loc["previous", "off_support"]
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


def test_entropic_plan_meets_its_marginals_and_partners_follow_rows():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(120, 3)), rng.normal(size=(90, 3)) + 2.0
    plan = entropic_plan(a, b)
    # moscot's (ott-jax's) stopping rule: the row marginal within 1e-3 in L1; columns met
    assert np.abs(plan.sum(1) - 1 / 120).sum() < SINKHORN_TOL
    np.testing.assert_allclose(plan.sum(0), 1 / 90, rtol=1e-5)
    # a row's partner is drawn in proportion to the row: a row with one partner always gets it
    one_hot = np.zeros((2, 4))
    one_hot[0, 2], one_hot[1, [0, 3]] = 1.0, [0.5, 0.5]
    draws = np.array([plan_partners(one_hot, rng) for _ in range(400)])
    assert (draws[:, 0] == 2).all() and set(draws[:, 1]) == {0, 3}
    assert 0.4 < (draws[:, 1] == 0).mean() < 0.6
    with pytest.raises(ValueError, match="epsilon"):
        entropic_plan(a, b, epsilon=0.0)


def test_entropic_interpolation_pushes_every_cell_once():
    rng = np.random.default_rng(1)
    x0 = rng.normal(size=(200, 2))
    x1 = x0[rng.permutation(200)] + [4.0, 0.0]
    mid = entropic_interpolation(x0, x1, 0.25, seed=3)
    assert mid.shape == x0.shape
    # every source cell moves a quarter of the shift (its partner is near x0 + shift)
    np.testing.assert_allclose((mid - x0).mean(0), [1.0, 0.0], atol=0.05)
    again = entropic_interpolation(x0, x1, 0.25, seed=3)
    np.testing.assert_array_equal(mid, again)
    with pytest.raises(ValueError, match="fraction"):
        entropic_interpolation(x0, x1, 1.5)


def test_entropic_interpolation_on_real_data_beats_previous(eb_adata):
    """EB in its 50 PCs' own units: moscot-style entropic interpolation between days 1 and 3
    predicts day 2 as well as the exact interpolation does, and far better than day 1."""
    x = np.asarray(eb_adata.obsm["X_pca"][:, :50], dtype=float)
    t = eb_adata.obs["time"].to_numpy()
    x1, x2, x3 = x[t == 1], x[t == 2], x[t == 3]
    ent = wasserstein(entropic_interpolation(x1, x3, 0.5), x2)
    exact = wasserstein(ot_interpolation(x1, x3, 0.5), x2)
    assert ent < 0.9 * wasserstein(x1, x2) and abs(ent - exact) < 0.05 * exact, (ent, exact)


def test_leave_one_out_protocols():
    """The user protocol scores in own units on every dimension; the paper protocol takes the
    first 5, whitens the fits and scores standardised."""
    rng = np.random.default_rng(0)
    adata = moving_gaussians(dim=7, times=(0.0, 1.0, 2.0), n_per_time=60)
    adata.obsm["X_pca"] = adata.obsm["X_pca"] * np.geomspace(10, 0.1, 7) + rng.normal(size=7)
    kw = {"methods": ("ot-cfm",), "seeds": (0,), "fit_kwargs": {"n_steps": 50}, "progress": False}
    user = leave_one_out(adata, **kw)
    paper = leave_one_out(adata, protocol="paper", **kw)
    assert (user.attrs["protocol"], user.attrs["n_dims"]) == ("user", 7)
    assert (paper.attrs["protocol"], paper.attrs["n_dims"]) == ("paper", 5)
    x = np.asarray(adata.obsm["X_pca"], dtype=float)
    t = adata.obs["time"].to_numpy()
    prev = {m: f.set_index("method").loc["previous", "w1"] for m, f in (("u", user), ("p", paper))}
    assert prev["u"] == pytest.approx(score_prediction(x[t == 0], x[t == 1], reference=x)["w1"])
    z = Standardizer.fit(x[:, :5]).transform(x[:, :5])
    assert prev["p"] == pytest.approx(score_prediction(z[t == 0], z[t == 1], reference=z)["w1"])
    assert (paper.attrs["headline"], paper.attrs["gap_metric"]) == ("w1_all", "w1")
    # the paper's headline is computed as published: W1 against every held-out cell
    w1_all = paper.set_index("method").loc["previous", "w1_all"]
    assert w1_all == pytest.approx(wasserstein(z[t == 0], z[t == 1]))
    with pytest.raises(ValueError, match="protocol"):
        leave_one_out(adata, protocol="torchcfm", **kw)
    narrow = moving_gaussians(dim=2, times=(0.0, 1.0, 2.0), n_per_time=30)
    assert leave_one_out(narrow, protocol="paper", **kw).attrs["n_dims"] == 2


def test_summarize_one_seed_prints_no_spread():
    """A one-seed table must not print "± 0.000" (there is no spread to report)."""
    rows = [
        {"method": m, "seed": s, "holdout_time": t, "w1": w, "fit_seconds": 1.0}
        for m, base in (("a", 1.0), ("b", 2.0))
        for s in (0, 1)
        for t, w in ((1.0, base), (2.0, base + 0.5 + s))
    ]
    frame = pd.DataFrame(rows)
    one = summarize(frame[frame.seed == 0])
    assert "±" not in " ".join(one.astype(str).to_numpy().ravel())
    assert one.loc["a", "t=2"] == "1.500" and one.loc["a", "mean"] == "1.250"
    two = summarize(frame)
    assert two.loc["a", "t=2"] == "2.000 ± 0.707" and two.loc["a", "mean"].startswith("1.500 ± ")


def test_entropic_interpolation_reuses_a_plan():
    """leave_one_out solves the entropic plan once per held-out time: reusing it changes nothing."""
    from trajflow.benchmark import entropic_interpolation

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 1.0
    plan = entropic_plan(a, b)
    for seed in (0, 1):
        fresh = entropic_interpolation(a, b, 0.5, seed=seed)
        reused = entropic_interpolation(a, b, 0.5, seed=seed, plan=plan)
        np.testing.assert_array_equal(fresh, reused)
    with pytest.raises(ValueError, match=r"plan has shape \(30, 40\), expected \(40, 30\)"):
        entropic_interpolation(a, b, 0.5, plan=plan.T)
