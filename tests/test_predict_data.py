"""Predictions as data: several times in one predict call, and Trajectories as a DataFrame or an
AnnData."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import trajflow

from conftest import moving_gaussians


@pytest.fixture(scope="module")
def data() -> ad.AnnData:
    return moving_gaussians(n_per_time=20, times=(0.0, 1.0, 2.0))


@pytest.fixture(scope="module")
def model(data) -> trajflow.TrajectoryModel:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return trajflow.fit_trajectories(
            data, method="sb-cfm", n_steps=50, progress=False, device="cpu"
        )
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ predict, several times
def test_several_times_stack_into_one_anndata(model, data):
    pred = model.predict([2.0, np.float32(0.5), 1.5])
    assert isinstance(pred, ad.AnnData)
    assert pred.n_obs == 3 * 20 and pred.obsm["X_pca"].shape == (60, 2)
    assert pred.obs_names.is_unique
    # sorted target times, each population in one block
    np.testing.assert_array_equal(pred.obs["time"].to_numpy(), np.repeat([0.5, 1.5, 2.0], 20))
    assert pred.obs_names[0].endswith("@t=0.5") and pred.obs_names[-1].endswith("@t=2")
    # a time between two trained time points draws from both (the later one pushed backward),
    # a trained time point from the nearest earlier one; obs names the source of every cell
    for t, block in pred.obs.groupby("time"):
        sources = {0.5: {0.0, 1.0}, 1.5: {1.0, 2.0}, 2.0: {1.0}}[t]
        assert set(block["source_time"]) <= sources
        for src, part in block.groupby("source_time"):
            population = data.obs_names[data.obs["time"] == src]
            assert set(part["source_cell"]) <= set(population)
        assert list(block.index) == [f"{c}@t={t:g}" for c in block["source_cell"]]
    assert pred.uns["trajflow"]["time"] == [0.5, 1.5, 2.0]
    assert pred.uns["trajflow"]["source_time"] == [0.0, 1.0, 1.0]
    np.testing.assert_array_equal(pred.uns["trajflow"]["backward_source_time"], [1.0, 2.0, np.nan])
    assert pred.uns["trajflow"]["backward_share"] == [0.5, 0.5, 0.0]


def test_each_time_equals_its_single_prediction(model):
    kw = {"n_cells": 7, "seed": 3}
    both = model.predict((1.5, 2.0), **kw)
    for t in (1.5, 2.0):
        alone = model.predict(t, **kw)
        mask = (both.obs["time"] == t).to_numpy()
        np.testing.assert_array_equal(both.obsm["X_pca"][mask], alone.obsm["X_pca"])
        assert list(both.obs_names[mask]) == list(alone.obs_names)
    sde = model.predict(np.array([1.5, 2.0]), sde=True, seed=4)  # 20 each
    alone = model.predict(2.0, sde=True, seed=4)
    np.testing.assert_array_equal(sde.obsm["X_pca"][20:], alone.obsm["X_pca"])


def test_single_time_between_trained_time_points(model, data):
    pred = model.predict(1.5)
    assert pred.n_obs == 20 and pred.obs["time"].eq(1.5).all()
    assert pred.uns["trajflow"] == {
        "method": "sb-cfm",
        "source_time": 1.0,
        "time": 1.5,
        "sde": False,
        "backward_source_time": 2.0,
        "backward_share": 0.5,
        "off_support_share": pred.obs["off_support"].mean(),
    }
    assert list(pred.obs.columns) == [
        "time", "source_time", "source_cell", "support_distance", "off_support"
    ]  # fmt: skip
    assert pred.obs["source_time"].eq(2.0).sum() == 10  # half of the mean of 20 and 20
    assert list(pred.obs_names) == [f"{c}@t=1.5" for c in pred.obs["source_cell"]]
    # a one-element sequence and a 0-d array give the same cells as the number
    for same in ([1.5], np.array(1.5), np.float64(1.5)):
        other = model.predict(same)
        np.testing.assert_array_equal(other.obsm["X_pca"], pred.obsm["X_pca"])
        assert list(other.obs_names) == list(pred.obs_names)
    # the predicted positions are the source cells pushed through the flow, each from its own
    # time point: forward from 1, backward from 2
    for src in (1.0, 2.0):
        mask = pred.obs["source_time"].eq(src).to_numpy()
        cells = data[pred.obs["source_cell"].to_numpy()[mask]]
        np.testing.assert_allclose(
            model.push(cells, source_time=src, times=1.5), pred.obsm["X_pca"][mask], atol=1e-5
        )


def test_explicit_source_time_pushes_only_from_it(model, data):
    pred = model.predict(1.5, source_time=1.0)
    assert pred.n_obs == 20 and pred.obs["source_time"].eq(1.0).all()
    assert set(pred.obs["source_cell"]) == set(data.obs_names[data.obs["time"] == 1.0])
    assert pred.uns["trajflow"]["source_time"] == 1.0
    assert np.isnan(pred.uns["trajflow"]["backward_source_time"])
    assert pred.uns["trajflow"]["backward_share"] == 0.0
    src = data[pred.obs["source_cell"].to_numpy()]
    np.testing.assert_allclose(
        model.push(src, source_time=1.0, times=1.5), pred.obsm["X_pca"], atol=1e-5
    )
    # a trained time point and the ends keep their one source; the SDE draws from both
    # neighbours too (the later ones through its reverse-time SDE)
    assert model.predict(1.0).obs["source_time"].eq(0.0).all()
    assert model.predict(0.0).obs["source_time"].eq(0.0).all()
    sde = model.predict(1.5, sde=True, seed=2)
    assert sde.obs["source_time"].value_counts().to_dict() == {1.0: 10, 2.0: 10}
    assert sde.uns["trajflow"]["sde"] and sde.uns["trajflow"]["backward_source_time"] == 2.0


def test_two_sided_prediction_is_seeded_and_sized(model):
    a = model.predict(0.5, n_cells=40, seed=7)
    b = model.predict(0.5, n_cells=40, seed=7)
    c = model.predict(0.5, n_cells=40, seed=8)
    np.testing.assert_array_equal(a.obsm["X_pca"], b.obsm["X_pca"])
    assert list(a.obs_names) == list(b.obs_names)
    assert not np.array_equal(a.obsm["X_pca"], c.obsm["X_pca"])
    assert a.n_obs == 40
    assert a.obs["source_time"].eq(1.0).sum() == 20  # half pushed backward from 1


def test_two_sided_default_size_is_the_mean_of_the_sources():
    from trajflow._sources import SourcePlan

    plan = SourcePlan(time=1.5, forward=1.0, backward=2.0, backward_share=0.5)
    assert plan.counts(100, 51, None) == (38, 38)  # n = round(75.5) = 76
    assert plan.counts(100, 51, 9) == (5, 4)
    assert SourcePlan(time=1.5, forward=1.0).counts(100, 51, None) == (100, 0)


def test_names_stay_unique_when_cells_are_drawn_twice(model, data):
    pred = model.predict([1.0, 2.0], n_cells=50, seed=1)  # populations have 20 cells
    assert pred.n_obs == 100 and pred.obs_names.is_unique
    assert pred.obs["source_cell"].isin(data.obs_names).all()
    assert pred.obs["source_cell"].duplicated().any()
    assert any("#2@t=" in name for name in pred.obs_names)


def test_written_and_read_back(model, tmp_path):
    pred = model.predict([1.5, 2.0], n_cells=5)
    pred.write_h5ad(tmp_path / "pred.h5ad")
    back = ad.read_h5ad(tmp_path / "pred.h5ad")
    pd.testing.assert_frame_equal(back.obs, pred.obs, check_dtype=False)
    np.testing.assert_array_equal(back.obsm["X_pca"], pred.obsm["X_pca"])


@pytest.mark.parametrize(
    "time,exc,match",
    [
        ([], ValueError, "time is empty"),
        (np.array([]), ValueError, "time is empty"),
        ("1.0", TypeError, "time must be a number"),
        (None, TypeError, "time must be a number"),
        (True, TypeError, "time must be a number"),
        ([1.0, "2"], TypeError, "each entry of time must be a number"),
        ([1.0, None], TypeError, "each entry of time must be a number"),
        ([1.0, float("nan")], ValueError, "each entry of time must be a finite number"),
    ],
)
def test_bad_times_name_the_argument(model, time, exc, match):
    with pytest.raises(exc, match=match):
        model.predict(time)


def test_sde_runs_backwards_in_reverse_time(model, data):
    """sde=True pulls cells back through the reverse-time SDE: seeded, and (unlike the ODE)
    spread by its noise."""
    back = model.predict([0.5, 1.5], source_time=1.0, sde=True, seed=3)
    again = model.predict([0.5, 1.5], source_time=1.0, sde=True, seed=3)
    np.testing.assert_array_equal(back.obsm["X_pca"], again.obsm["X_pca"])
    assert np.isfinite(back.obsm["X_pca"]).all() and back.obs["source_time"].eq(1.0).all()
    x1 = data.obsm["X_pca"][data.obs["time"].to_numpy() == 1.0]
    ode = model.push(x1, source_time=1.0, times=0.5)
    sde = model.push(x1, source_time=1.0, times=0.5, sde=True, seed=3)
    assert not np.allclose(ode, sde)
    paths = model.trajectories(source_time=2.0, end_time=0.0, n_points=3, sde=True, seed=1)
    assert paths.paths.shape[:2] == (20, 3)
    with pytest.warns(trajflow.ExtrapolationWarning, match="time=3"):
        model.predict([1.0, 3.0], n_cells=2)


# ------------------------------------------------------------------ Trajectories as data
def test_trajectories_to_df(model):
    traj = model.trajectories(n_points=5, n_cells=4, seed=2)
    df = traj.to_df()
    assert list(df.columns) == ["cell", "time", "X_pca_1", "X_pca_2"]
    assert len(df) == 4 * 5
    np.testing.assert_array_equal(df["time"].to_numpy(), np.tile(traj.times, 4))
    np.testing.assert_array_equal(df["cell"].to_numpy(), np.repeat(traj.cell_names, 5))
    np.testing.assert_array_equal(df[["X_pca_1", "X_pca_2"]].to_numpy(), traj.paths.reshape(-1, 2))
    second = df[df["cell"] == traj.cell_names[1]]
    np.testing.assert_array_equal(second[["X_pca_1", "X_pca_2"]].to_numpy(), traj.paths[1])
    # printed in a notebook: one summary line, not the arrays
    assert repr(traj).startswith("Trajectories of 4 cells from time=") and "\n" not in repr(traj)
    assert "5 time points" in repr(traj) and len(repr(traj)) < 200


def test_trajectories_to_anndata(model):
    traj = model.trajectories(source_time=1.0, end_time=2.0, n_points=3, n_cells=4, seed=2)
    adata = traj.to_anndata()
    assert adata.shape == (12, 0) and adata.obs_names.is_unique
    assert list(adata.obs.columns) == ["cell", "time"]
    np.testing.assert_array_equal(adata.obsm["X_pca"], traj.paths.reshape(-1, 2))
    np.testing.assert_array_equal(adata.obs["time"].to_numpy(), np.tile([1.0, 1.5, 2.0], 4))
    assert adata.obs_names[0] == f"{traj.cell_names[0]}@t=1"
    assert adata.obs_names[1] == f"{traj.cell_names[0]}@t=1.5"
    np.testing.assert_array_equal(adata[adata.obs["time"] == 2.0].obsm["X_pca"], traj.end_points)


def test_repeated_cells_get_distinct_paths_in_the_tables(model):
    traj = model.trajectories(n_points=2, n_cells=30)  # 20 cells at the first time point
    df, adata = traj.to_df(), traj.to_anndata()
    assert df.groupby("cell").size().eq(2).all() and df["cell"].nunique() == 30
    assert adata.obs_names.is_unique
    np.testing.assert_array_equal(adata.obs["cell"].to_numpy(), df["cell"].to_numpy())


def test_trajectories_built_by_hand_use_defaults():
    traj = trajflow.Trajectories(
        times=np.array([0.0, 1.0]),
        paths=np.arange(12, dtype=float).reshape(2, 2, 3),
        source_time=0.0,
        cell_names=np.array(["a", "b"]),
    )
    assert list(traj.to_df().columns) == ["cell", "time", "X_1", "X_2", "X_3"]
    adata = traj.to_anndata()
    assert list(adata.obs_names) == ["a@t=0", "a@t=1", "b@t=0", "b@t=1"]
    assert list(adata.obs.columns) == ["cell", "time"] and adata.X.shape == (4, 3)
    assert list(adata.var_names) == ["0", "1", "2"] and "X" not in adata.obsm  # genes in X


def test_time_labels_stay_distinct_for_close_times():
    traj = trajflow.Trajectories(
        times=np.array([1.0, 1.0000001]),
        paths=np.zeros((1, 2, 2)),
        source_time=1.0,
        cell_names=np.array(["a"]),
    )
    assert list(traj.to_anndata().obs_names) == ["a@t=1", "a@t=1.0000001"]
