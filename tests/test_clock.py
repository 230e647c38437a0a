"""The model's clock (observed time -> flow time): time, distance and auto."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import trajflow
from trajflow import _clock
from trajflow._anndata import Standardizer
from trajflow._clock import (
    Clock,
    distance_clock,
    fit_clock,
    leave_one_out_scores,
    time_clock,
)
from trajflow._ot import displacement_interpolation, exact_plan_support, w2
from trajflow._timecourse import subsample_indices
from trajflow.benchmark import ot_interpolation
from trajflow.metrics import wasserstein

pytestmark = pytest.mark.usefixtures("one_thread")


def clouds(centres, times=None, n: int = 150, seed: int = 0) -> tuple[list[float], list]:
    """2-D Gaussian clouds (sd 0.3) centred at ``(c, 0)`` for each ``c`` in ``centres``."""
    rng = np.random.default_rng(seed)
    times = list(times if times is not None else range(len(centres)))
    pops = [rng.normal([c, 0.0], 0.3, size=(n, 2)) for c in centres]
    return [float(t) for t in times], pops


def as_adata(times, pops) -> ad.AnnData:
    x = np.concatenate(pops)
    t = np.concatenate([np.full(len(p), tt) for tt, p in zip(times, pops, strict=True)])
    adata = ad.AnnData(
        X=x.copy(), obs=pd.DataFrame({"time": t}, index=[f"c{i}" for i in range(len(x))])
    )
    adata.obsm["X_pca"] = x
    return adata


# a population that slows down smoothly: it covers 4, 2, 1, 0.5 per unit of time
SLOWING = (0.0, 4.0, 6.0, 7.0, 7.5)


def test_clock_interpolates_knots_and_extrapolates_linearly():
    clock = Clock("distance", [0.0, 1.0, 3.0], [0.0, 2.0, 2.5])
    np.testing.assert_allclose(clock([0.0, 1.0, 3.0]), [0.0, 2.0, 2.5])
    grid = np.linspace(-1, 4, 201)
    assert np.all(np.diff(clock(grid)) > 0)  # monotone, also outside the knots
    np.testing.assert_allclose(clock(-1.0), -2.0)  # slope of the first segment
    np.testing.assert_allclose(clock(4.0), 2.75)  # slope of the last segment
    # rate is the derivative
    inner = np.linspace(0.05, 2.95, 30)
    numeric = (clock(inner + 1e-5) - clock(inner - 1e-5)) / 2e-5
    np.testing.assert_allclose(clock.rate(inner), numeric, rtol=1e-4)
    assert Clock.from_dict(json.loads(json.dumps(clock.to_dict()))).taus == clock.taus


def test_clock_rejects_non_increasing_knots():
    with pytest.raises(ValueError, match="increasing"):
        Clock("distance", [0.0, 1.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="increasing"):
        Clock("distance", [0.0, 1.0, 2.0], [0.0, 1.0, 1.0])


def test_time_clock_is_affine():
    clock = time_clock([2.0, 4.0, 8.0], origin=0.0, unit=2.0)
    np.testing.assert_allclose(clock([0.0, 2.0, 5.0, 8.0, 10.0]), [0.0, 1.0, 2.5, 4.0, 5.0])
    np.testing.assert_allclose(clock.rate([1.0, 9.0]), [0.5, 0.5])


def test_distance_clock_follows_cumulative_distance():
    times, pops = clouds(SLOWING)
    clock = distance_clock(times, pops, origin=0.0, unit=1.0)
    # ends agree with the time clock; knots in proportion to the distance travelled
    np.testing.assert_allclose([clock.taus[0], clock.taus[-1]], [0.0, 4.0])
    gaps = np.diff(clock.taus) / np.diff(clock.taus).sum()
    np.testing.assert_allclose(gaps, np.diff(SLOWING) / SLOWING[-1], atol=0.03)


def test_auto_chooses_distance_for_uneven_speed():
    times, pops = clouds(SLOWING)
    scores = leave_one_out_scores(times, pops)
    assert scores["distance"] < 0.8 * scores["time"]
    assert fit_clock("auto", times, pops, origin=0.0, unit=1.0).kind == "distance"
    # even speed: the two clocks score within noise of each other and are nearly the same map,
    # so whichever wins places every time within a few percent of the time clock
    times, pops = clouds((0.0, 2.0, 4.0, 6.0, 8.0))
    clock = fit_clock("auto", times, pops, origin=0.0, unit=1.0)
    assert set(clock.scores) == {"time", "distance"}
    assert abs(clock.scores["time"] - clock.scores["distance"]) < 0.05 * clock.scores["time"]
    grid = np.linspace(0, 4, 41)
    np.testing.assert_allclose(clock(grid), grid, atol=0.1)
    # three time points: nothing to compare on, so the time clock
    times, pops = clouds(SLOWING[:3])
    assert fit_clock("auto", times, pops, origin=0.0, unit=1.0).kind == "time"


def test_ot_plan_of_a_shift_is_the_shift():
    """The one OT owner (trajflow._ot): the exact plan of a translated cloud pairs every point
    with its own image, and the interpolation moves along it."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 2))
    perm = rng.permutation(40)
    b = a[perm] + [3.0, 0.0]
    i, j, weights = exact_plan_support(a, b)
    assert len(i) == 40 and weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(b[j] - a[i], np.tile([3.0, 0.0], (40, 1)), atol=1e-12)
    np.testing.assert_allclose(weights, 1 / 40)
    points, w = displacement_interpolation(a, b, 0.25, support=(i, j, weights))
    np.testing.assert_allclose(points, a[i] + [0.75, 0.0])
    assert w is weights
    start, _ = displacement_interpolation(a, b, 0.0)
    np.testing.assert_array_equal(start, a[i])
    assert w2(a, b) == pytest.approx(3.0)


def test_clock_numbers_are_pinned(monkeypatch):
    """The clock decides every model's internal time, so its numbers must not drift: values of
    the implementation before the OT and subsampling helpers were shared (populations above
    MAX_CLOCK_CELLS, so subsampling is exercised; the auto check at the same size)."""
    monkeypatch.setattr(_clock, "MAX_CLOCK_CELLS", 100)
    monkeypatch.setattr(_clock, "CHECK_CELLS", 100)
    rng = np.random.default_rng(5)
    sizes = (150, 90, 170, 120, 130)
    pops = [rng.normal(k * 0.7, 1.0 + 0.1 * k, (n, 3)) for k, n in enumerate(sizes)]
    times = [0.0, 1.0, 2.5, 3.0, 5.0]
    auto = fit_clock("auto", times, pops, origin=0.0, unit=1.0)
    assert auto.kind == "time"
    assert auto.scores == pytest.approx(
        {"time": 0.848354009183879, "distance": 0.9394781458041749}, rel=1e-9
    )
    distance = fit_clock("distance", times, pops, origin=0.0, unit=1.0)
    assert distance.taus == pytest.approx(
        [0.0, 1.1799687801139023, 2.5165302764097834, 3.6803242258703834, 5.0], rel=1e-9
    )


def test_clock_subsample_is_the_shared_one(monkeypatch):
    x = np.arange(30.0).reshape(15, 2)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(
        _clock._subsample(x, rng_a, 10), x[subsample_indices(15, 10, rng_b)]
    )
    # small populations: all cells in order, rng untouched
    np.testing.assert_array_equal(_clock._subsample(x, rng_a, 15), x)
    assert rng_a.random() == rng_b.random()


def test_unknown_clock_is_a_clear_error(gaussians):
    with pytest.raises(ValueError, match="clock must be one of.*auto.*got 'speed'"):
        trajflow.fit_trajectories(gaussians, clock="speed", n_steps=5, progress=False)


def test_distance_clock_model_predicts_slowing_population_better():
    """Held out t=1 of the slowing course: the time clock puts it half way (x=3); the distance
    clock follows the deceleration and lands nearer the truth (x=4)."""
    times, pops = clouds(SLOWING)
    adata = as_adata(times, pops)
    kwargs = {"holdout": 1.0, "n_steps": 400, "progress": False, "seed": 0}
    by_time = trajflow.fit_trajectories(adata, clock="time", **kwargs)
    by_auto = trajflow.fit_trajectories(adata, **kwargs)
    assert by_time.clock.kind == "time" and by_auto.clock.kind == "distance"
    assert by_auto.config["clock"] == "auto"
    truth = pops[1]
    # One-sided forward pushes: the clock alone decides where they land (predict's default
    # also pools backward pushes from t=2, which hides part of the clock's effect).
    w_time = wasserstein(by_time.predict(1.0, source_time=0.0).obsm["X_pca"], truth)
    w_auto = wasserstein(by_auto.predict(1.0, source_time=0.0).obsm["X_pca"], truth)
    assert w_auto < 0.7 * w_time
    centre = by_auto.predict(1.0, source_time=0.0).obsm["X_pca"][:, 0].mean()
    assert 3.4 < centre < 4.6


def test_clock_survives_save_load_and_velocity_uses_its_rate(tmp_path):
    times, pops = clouds(SLOWING)
    model = trajflow.fit_trajectories(
        as_adata(times, pops), clock="distance", n_steps=100, progress=False
    )
    model.save(tmp_path / "m")
    loaded = trajflow.TrajectoryModel.load(tmp_path / "m", device="cpu")
    assert loaded.clock.to_dict() == model.clock.to_dict()
    np.testing.assert_allclose(
        loaded.predict(2.5).obsm["X_pca"], model.predict(2.5).obsm["X_pca"], rtol=1e-5
    )
    # velocity (per unit of observed time) is the flow's displacement over a short step
    dt = 1e-3
    paths = model.trajectories(source_time=2.0, end_time=2.0 + dt, n_points=2, n_cells=20).paths
    finite = (paths[:, 1] - paths[:, 0]) / dt
    np.testing.assert_allclose(model.velocity(paths[:, 0], 2.0), finite, rtol=0.02, atol=0.02)
    # the distance clock runs fast early: the same network step covers more observed time later
    assert model.clock.rate(0.5) > 2 * model.clock.rate(3.5)


def test_model_saved_without_clock_loads_with_time_clock(tmp_path):
    times, pops = clouds((0.0, 2.0, 4.0))
    model = trajflow.fit_trajectories(as_adata(times, pops), n_steps=50, progress=False)
    model.save(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    state = json.loads(config.read_text())
    del state["clock"]
    del state["integrity"]  # models of that age had no checksums either
    state["time_origin"], state["time_unit"] = 0.0, 1.0
    config.write_text(json.dumps(state))
    loaded = trajflow.TrajectoryModel.load(tmp_path / "m", device="cpu")
    assert loaded.clock.kind == "time"
    np.testing.assert_allclose(
        loaded.predict(1.0).obsm["X_pca"], model.predict(1.0).obsm["X_pca"], rtol=1e-5
    )


def test_distance_clock_places_emt_held_out_days_better(emt_path):
    """Real data, model-free: EMT (days 0, 1/3, 1, 3, 7) moves fast early and slowly later.
    With each interior day held out, OT interpolation of its neighbours at the distance clock's
    fraction beats the time fraction, and clock='auto' picks the distance clock every time."""
    adata = ad.read_h5ad(emt_path)
    t = adata.obs["time"].astype(float).to_numpy()
    z = Standardizer.fit(adata.obsm["X_pca"][:, :5]).transform(adata.obsm["X_pca"][:, :5])
    days = sorted(set(t))
    pops = [z[t == d] for d in days]
    better = 0
    for k in range(1, len(days) - 1):
        rest_t = [d for i, d in enumerate(days) if i != k]
        rest_p = [p for i, p in enumerate(pops) if i != k]
        auto = fit_clock("auto", rest_t, rest_p, origin=0.0, unit=1.0)
        assert auto.kind == "distance"
        lo, mid, hi = auto([days[k - 1], days[k], days[k + 1]])
        by_distance = ot_interpolation(pops[k - 1], pops[k + 1], (mid - lo) / (hi - lo))
        by_time = ot_interpolation(
            pops[k - 1], pops[k + 1], (days[k] - days[k - 1]) / (days[k + 1] - days[k - 1])
        )
        better += wasserstein(by_distance, pops[k]) < wasserstein(by_time, pops[k])
    assert better == len(days) - 2


def test_clock_plot(tmp_path):
    import matplotlib.pyplot as plt

    times, pops = clouds(SLOWING)
    model = trajflow.fit_trajectories(
        as_adata(times, pops), holdout=2.0, n_steps=20, progress=False
    )
    ax = trajflow.pl.clock(model, save=tmp_path / "clock.png")
    assert (tmp_path / "clock.png").stat().st_size > 0
    # the chosen (distance) clock runs above the diagonal for a slowing population
    curve = ax.get_lines()[-1]
    x, y = curve.get_data()
    assert np.all(y[1:-1] > (x[1:-1] - x[0]) / (x[-1] - x[0]))
    held = ax.collections[-1].get_offsets()
    assert held.shape == (1, 2) and held[0, 0] == 2.0
    assert "distance clock" in [t.get_text() for t in ax.get_legend().get_texts()][1]
    plt.close(ax.figure)


def test_auto_check_runs_on_smaller_subsamples(monkeypatch):
    """The auto check compares the clocks on CHECK_CELLS-cell subsamples; the distance clock it
    picks is the one built from MAX_CLOCK_CELLS-cell distances (as clock='distance' gives)."""
    rng = np.random.default_rng(1)
    pops = [rng.normal(k**1.5, 0.5, (300, 2)) for k in range(5)]  # accelerating: distance wins
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    monkeypatch.setattr(_clock, "CHECK_CELLS", 50)
    auto = fit_clock("auto", times, pops, origin=0.0, unit=1.0)
    distance = fit_clock("distance", times, pops, origin=0.0, unit=1.0)
    assert auto.kind == "distance"
    assert auto.taus == distance.taus
    monkeypatch.setattr(_clock, "CHECK_CELLS", 300)
    assert fit_clock("auto", times, pops, origin=0.0, unit=1.0).scores != auto.scores
