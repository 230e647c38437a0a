"""fit_trajectories and TrajectoryModel end to end on small synthetic and real data."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import trajflow
from trajflow.metrics import energy_distance, wasserstein

from conftest import moving_gaussians

FAST = {"n_steps": 400, "batch_size": 64, "progress": False}


@pytest.mark.parametrize("method", ["ot-cfm", "sb-cfm", "i-cfm"])
def test_each_method_trains(gaussians, method):
    model = trajflow.fit_trajectories(gaussians, method=method, **FAST)
    loss = model.history["loss"]
    assert model.history["steps_done"] == 400 and np.isfinite(loss).all()
    assert model.method == method and model.n_dims == 2
    if method != "sb-cfm":
        # SB-CFM's score target (1 - 2s) / (2 sqrt(s (1 - s))) sigma eps has a heavy tail near
        # s = 0 and 1, so its batch loss is too noisy to compare; the push below checks it.
        assert np.mean(loss[-3:]) < 0.7 * model.history["initial_loss"]
    x = gaussians.obsm["X_pca"]
    t = gaussians.obs["time"].to_numpy()
    pushed = model.predict(1.0, source_time=0.0).obsm["X_pca"]
    assert wasserstein(pushed, x[t == 1.0]) < 0.3 * wasserstein(x[t == 0.0], x[t == 1.0])


@pytest.mark.parametrize("method", ["ot-cfm", "sb-cfm"])
def test_predicts_held_out_gaussian(method):
    adata = moving_gaussians(n_per_time=300)
    model = trajflow.fit_trajectories(
        adata, method=method, holdout=2.0, n_steps=800, progress=False
    )
    assert model.times == [0.0, 1.0, 3.0] and model.holdout == [2.0]
    pred = model.predict(2.0)
    assert pred.n_obs == 300 and pred.obs["time"].eq(2.0).all()
    # from both neighbours of the held-out time: 1 pushed forward, 3 pushed backward
    assert set(pred.obs["source_time"]) <= {1.0, 3.0}
    assert pred.obs["source_time"].eq(3.0).sum() == 150  # half each
    truth = adata.obsm["X_pca"][adata.obs["time"] == 2.0]
    previous = adata.obsm["X_pca"][adata.obs["time"] == 1.0]
    w_pred = wasserstein(pred.obsm["X_pca"], truth)
    assert w_pred < 0.35, w_pred  # the clouds are 2 apart; sampling noise alone is ~0.1
    assert w_pred < 0.25 * wasserstein(previous, truth)


def test_sde_sampling_for_sb_cfm(gaussians):
    model = trajflow.fit_trajectories(
        gaussians, method="sb-cfm", sigma=0.5, n_steps=600, progress=False
    )
    ode = model.predict(2.0).obsm["X_pca"]
    sde = model.predict(2.0, sde=True, seed=1).obsm["X_pca"]
    truth = gaussians.obsm["X_pca"][gaussians.obs["time"] == 2.0]
    assert wasserstein(sde, truth) < 0.5
    assert not np.allclose(ode, sde)
    ot_model = trajflow.fit_trajectories(gaussians, n_steps=50, progress=False)
    with pytest.raises(ValueError, match="score network"):
        ot_model.predict(2.0, sde=True)


def test_trajectories_and_velocity(gaussians):
    model = trajflow.fit_trajectories(gaussians, n_steps=600, progress=False)
    traj = model.trajectories(n_points=7, n_cells=25)
    assert traj.paths.shape == (25, 7, 2) and traj.times[0] == 0.0 and traj.times[-1] == 3.0
    assert traj.source_time == 0.0 and len(traj.cell_names) == 25
    # Cells travel about speed * 3 = 6 along the first axis.
    assert np.mean(traj.end_points[:, 0] - traj.paths[:, 0, 0]) == pytest.approx(6.0, abs=0.8)
    v = model.velocity(np.array([[2.0, 0.0], [4.0, 0.0]]), 1.5)
    assert v.shape == (2, 2) and np.all(np.abs(v[:, 0] - 2.0) < 0.7)
    assert model.velocity(gaussians, 1.0).shape == (gaussians.n_obs, 2)
    back = model.trajectories(source_time=3.0, end_time=0.0, n_points=3, n_cells=50)
    assert np.mean(back.end_points[:, 0]) == pytest.approx(0.0, abs=0.8)


def test_predict_options_and_extrapolation(gaussians):
    model = trajflow.fit_trajectories(gaussians, n_steps=100, progress=False)
    pred = model.predict(1.5, source_time=0.0, n_cells=10, seed=3)
    assert pred.n_obs == 10 and (pred.obs["source_time"] == 0.0).all()
    assert pred.obs["source_cell"].isin(gaussians.obs_names).all()
    with pytest.warns(trajflow.ExtrapolationWarning, match="outside the trained range"):
        model.predict(4.0)
    with pytest.raises(ValueError, match="not one of the observed time points"):
        model.predict(2.0, source_time=0.5)


def test_outputs_are_in_user_space():
    adata = moving_gaussians()
    adata.obsm["X_pca"] = adata.obsm["X_pca"] * 100 + 1000  # far from standardised
    model = trajflow.fit_trajectories(adata, n_steps=300, progress=False)
    pred = model.predict(1.0).obsm["X_pca"]
    truth = adata.obsm["X_pca"][adata.obs["time"] == 1.0]
    assert np.abs(pred.mean(0) - truth.mean(0)).max() < 60  # clouds 200 apart, sd 50


def test_save_load_round_trip(gaussians, tmp_path):
    model = trajflow.fit_trajectories(gaussians, method="sb-cfm", n_steps=100, progress=False)
    path = model.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["cells.npz", "config.json", "weights.pt"]
    # On the model's own device the round trip is exact (SDE noise included, same generator).
    loaded = trajflow.TrajectoryModel.load(path, device=model.device)
    np.testing.assert_array_equal(
        loaded.predict(1.5).obsm["X_pca"], model.predict(1.5).obsm["X_pca"]
    )
    np.testing.assert_array_equal(
        loaded.predict(2.0, sde=True, seed=4).obsm["X_pca"],
        model.predict(2.0, sde=True, seed=4).obsm["X_pca"],
    )
    # A GPU-trained model loads onto the CPU; the ODE agrees to float32 rounding.
    on_cpu = trajflow.TrajectoryModel.load(path, device="cpu")
    np.testing.assert_allclose(
        on_cpu.predict(1.5).obsm["X_pca"], model.predict(1.5).obsm["X_pca"], atol=1e-5
    )
    assert loaded.config == model.config and loaded.times == model.times
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(path)
    model.save(path, overwrite=True)


def test_categorical_and_string_times():
    adata = moving_gaussians(times=(0.0, 2.0, 4.0), n_per_time=60)
    adata.obs["day"] = pd.Categorical(adata.obs["time"].map(lambda t: f"{t:g}"))
    model = trajflow.fit_trajectories(adata, time_key="day", n_steps=50, progress=False)
    assert model.times == [0.0, 2.0, 4.0]
    assert model.predict(3.0).obs["day"].eq(3.0).all()
    # missing labels in a categorical or string column (e.g. after ad.concat) are missing
    # values, not labels 'nan' or '' that "are not numbers"
    for blank in (np.nan, ""):
        bad = adata.copy()
        bad.obs["day"] = bad.obs["day"].astype(str)
        bad.obs.loc[bad.obs_names[:3], "day"] = blank
        bad.obs["day"] = bad.obs["day"].astype("category")
        with pytest.raises(ValueError, match="has 3 missing or infinite time values") as err:
            trajflow.fit_trajectories(bad, time_key="day", n_steps=5, progress=False)
        # the suggested fix is runnable as printed
        fix = str(err.value).split("(adata = ")[1].split(") or fill")[0]
        kept = eval(fix, {"adata": bad, "np": np, "pd": pd})
        assert kept.n_obs == adata.n_obs - 3
    # labels with a number in them: the printed recipe gives the numbers (not 'day-2' -> -2)
    named = adata.copy()
    named.obs["label"] = [f"day-{t:g}" for t in named.obs["time"]]
    with pytest.raises(ValueError, match="not numbers") as err:
        trajflow.fit_trajectories(named, time_key="label", n_steps=5, progress=False)
    recipe = str(err.value).split("e.g. for labels with a number in them: ")[1].split("; ")[0]
    exec(recipe, {"adata": named})
    np.testing.assert_array_equal(named.obs["time_num"], named.obs["time"])
    with pytest.raises(KeyError, match="Did you mean time_key='day'"):
        trajflow.fit_trajectories(adata, time_key="Day", n_steps=5, progress=False)


def test_pca_computed_from_counts_without_touching_x():
    rng = np.random.default_rng(0)
    n_genes = 60
    base = rng.gamma(2.0, 2.0, size=n_genes)
    blocks, times = [], []
    for t in (0.0, 1.0, 2.0):
        rates = base * np.exp(0.8 * t * (np.arange(n_genes) < 20))
        blocks.append(rng.poisson(rates, size=(80, n_genes)))
        times += [t] * 80
    counts = sparse.csr_matrix(np.concatenate(blocks).astype(np.float32))
    adata = ad.AnnData(
        X=counts, obs=pd.DataFrame({"time": times}, index=[f"c{i}" for i in range(240)])
    )
    before = adata.X.copy()
    model = trajflow.fit_trajectories(adata, n_dims=3, n_steps=50, progress=False)
    assert "X_pca" in adata.obsm and adata.uns["trajflow_pca"]["log_normalised"]
    assert (before != adata.X).nnz == 0  # X itself is untouched
    assert model.n_dims == 3


def test_use_rep_x_and_default_n_dims():
    adata = moving_gaussians(dim=3, n_per_time=40)
    model = trajflow.fit_trajectories(adata, use_rep="X", n_steps=20, progress=False)
    assert model.n_dims == 3 and model.use_rep == "X"
    assert model.predict(1.0).X.shape == (40, 3)
    # a gene matrix (here sparse, 80 columns) through use_rep='X': the first 50 columns are
    # modelled, with a warning that this is rarely what a user wants
    rng = np.random.default_rng(0)
    genes = sparse.csr_matrix(rng.poisson(1.0, size=(adata.n_obs, 80)).astype(np.float32))
    wide = ad.AnnData(X=genes, obs=adata.obs.copy())
    with pytest.warns(UserWarning, match="only its first 50, in adata.var order"):
        model = trajflow.fit_trajectories(wide, use_rep="X", n_steps=5, progress=False)
    assert model.n_dims == 50
    np.testing.assert_allclose(model.scaler.mean, genes[:, :50].toarray().mean(0), rtol=1e-6)
    # a DataFrame in obsm (anndata allows one) is read like an array
    adata.obsm["X_df"] = pd.DataFrame(adata.obsm["X_pca"], index=adata.obs_names)
    model = trajflow.fit_trajectories(adata, use_rep="X_df", n_dims=2, n_steps=5, progress=False)
    assert model.n_dims == 2


def test_use_rep_x_predictions_are_genes_in_x(tmp_path):
    """A fit on genes (use_rep='X') hands its predictions and paths back as genes: in X,
    under the genes' names, not as a nameless obsm['X']; the names survive save / load."""
    adata = moving_gaussians(dim=4, n_per_time=30)
    adata.var_names = ["Gata1", "Runx1", "Spi1", "Cd34"]
    model = trajflow.fit_trajectories(adata, use_rep="X", n_dims=3, n_steps=20, progress=False)
    pred = model.predict([1.0, 1.5])
    assert list(pred.var_names) == ["Gata1", "Runx1", "Spi1"] and "X" not in pred.obsm
    assert pred.X.shape == (60, 3) and np.isfinite(pred.X).all()
    np.testing.assert_allclose(model.representation(pred), pred.X)
    paths = model.trajectories(n_points=3).to_anndata()
    assert list(paths.var_names) == ["Gata1", "Runx1", "Spi1"] and paths.X.shape == (90, 3)
    model.save(tmp_path / "m")
    loaded = trajflow.TrajectoryModel.load(tmp_path / "m")
    assert list(loaded.predict(1.0).var_names) == ["Gata1", "Runx1", "Spi1"]
    # an obsm representation keeps its positions in obsm, with no X
    other = trajflow.fit_trajectories(adata, n_dims=2, n_steps=5, progress=False).predict(1.0)
    assert other.X is None and other.obsm["X_pca"].shape == (30, 2)


def test_restore_brings_cells_that_drift_off_the_data_back():
    """ot-cfm's restoring offset (0.3, its default from 5 dimensions on) teaches the field to
    carry a cell lying off the data back toward the next population; without it (restore=0)
    the cell keeps its offset."""
    adata = moving_gaussians(dim=2, n_per_time=100)  # moves along x; y sd 0.5
    off = np.array([[0.0, 2.0], [0.0, -2.0]])  # 4 sd off the population at time 0
    kw = {"n_steps": 300, "progress": False}
    y = {}
    for restore in (0.3, 0.0):
        model = trajflow.fit_trajectories(adata, restore=restore, **kw)
        y[restore] = np.abs(model.push(off, source_time=0.0, times=1.0)[:, 1])
    assert model.config["restore"] == 0.0
    # the default offset applies from 5 dimensions on (in 2 it blurs the populations)
    assert trajflow.fit_trajectories(adata, n_steps=1, progress=False).config["restore"] == 0.0
    five = moving_gaussians(dim=5, n_per_time=20)
    assert trajflow.fit_trajectories(five, n_steps=1, progress=False).config["restore"] == 0.3
    assert (
        trajflow.fit_trajectories(five, n_dims=4, n_steps=1, progress=False).config["restore"]
        == 0.0
    )
    assert (y[0.0] > 1.6).all() and (y[0.3] < 0.8 * y[0.0]).all()
    for method in ("sb-cfm", "mmfm"):
        with pytest.raises(
            ValueError, match=f"restore= needs straight paths, but method='{method}'"
        ):
            trajflow.fit_trajectories(adata, method=method, restore=0.3, n_steps=1, progress=False)
    with pytest.raises(ValueError, match="restore"):
        trajflow.fit_trajectories(adata, restore=-1.0, n_steps=1, progress=False)
    # the methods without straight paths fit as before (no offset)
    assert (
        trajflow.fit_trajectories(adata, method="sb-cfm", n_steps=1, progress=False).config[
            "restore"
        ]
        == 0.0
    )


def test_eb_default_fit_beats_baseline(eb_adata, caplog):
    """Real data, defaults (all 50 of EB's first PCs, one global scale): day 2 held out is
    predicted better than day 1 predicts it, in the PCs' own units; the fit says what it used."""
    with caplog.at_level(logging.INFO, logger="trajflow"):
        model = trajflow.fit_trajectories(eb_adata, holdout=2.0, progress=False)
    assert model.n_dims == 50 and model.scaling == "global"
    assert "n_dims=50, scaling='global'" in repr(model)
    assert "using the first 50 of 100 dimensions of adata.obsm['X_pca']" in caplog.text
    assert "training on 50 dimensions of X_pca, one global scale" in caplog.text
    # the clock's log line says what it compared and by which rule
    assert "clock='auto' chose 'time' (held-out W1 in training units, time" in caplog.text
    assert "only when it is more than 1% lower" in caplog.text
    x = eb_adata.obsm["X_pca"][:, :50]
    t = eb_adata.obs["time"].to_numpy()
    pred = model.predict(2.0, source_time=1.0).obsm["X_pca"]
    w_model, w_prev = wasserstein(pred, x[t == 2]), wasserstein(x[t == 1], x[t == 2])
    e_model, e_prev = energy_distance(pred, x[t == 2]), energy_distance(x[t == 1], x[t == 2])
    assert w_model < 0.95 * w_prev and e_model < 0.5 * e_prev, (w_model, w_prev, e_model, e_prev)


def test_scaling_global_keeps_geometry_and_per_dimension_whitens():
    adata = moving_gaussians(dim=3, n_per_time=60)
    adata.obsm["X_pca"] = adata.obsm["X_pca"] * np.array([10.0, 1.0, 0.1])
    fits = {
        s: trajflow.fit_trajectories(adata, scaling=s, n_steps=20, progress=False)
        for s in ("global", "per-dimension")
    }
    x = np.asarray(adata.obsm["X_pca"])
    one = fits["global"].scaler.scale
    np.testing.assert_allclose(one, np.full(3, np.sqrt(x.var(0).mean())))
    np.testing.assert_allclose(fits["per-dimension"].scaler.scale, x.std(0))
    for model in fits.values():  # outputs stay in the user's units either way
        pred = model.predict(1.0).obsm["X_pca"]
        assert pred[:, 0].std() > 5 * pred[:, 2].std()
    with pytest.raises(ValueError, match="scaling"):
        trajflow.fit_trajectories(adata, scaling="whiten", n_steps=5, progress=False)


def test_standardizer_moments_match_numpy_across_blocks():
    from trajflow._anndata import _MOMENT_BLOCK, Standardizer

    rng = np.random.default_rng(0)
    x = rng.normal(50.0, [1.0, 3.0, 0.0], size=(2 * _MOMENT_BLOCK + 7, 3))  # far from 0
    fit = Standardizer.fit(x)
    np.testing.assert_allclose(fit.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(fit.scale, [*x.std(0)[:2], 1.0], rtol=1e-9)  # constant: 1
    one = Standardizer.fit(x, per_dimension=False).scale
    np.testing.assert_allclose(one, np.sqrt(x.var(0).mean()), rtol=1e-9)
    z = fit.transform(x[:50])
    back = fit.inverse_transform(z)  # a new array, z untouched
    np.testing.assert_allclose(back, x[:50], rtol=1e-12)
    same = fit.inverse_transform(z, copy=False)  # written into z: the same values to the bit
    assert same is z
    np.testing.assert_array_equal(same, back)
