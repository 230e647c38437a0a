"""Inputs checked once, at the public door: numpy numbers welcome, bad values named."""

from __future__ import annotations

import numpy as np
import pytest

import trajflow
from trajflow._validate import check_float, check_int, check_seeds, check_times

from conftest import moving_gaussians

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"n_steps": 20, "batch_size": 16, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def model():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    fitted = trajflow.fit_trajectories(moving_gaussians(n_per_time=40), **FAST)
    torch.set_num_threads(before)
    return fitted


def test_validators_normalise_numpy_numbers_to_plain_python():
    for value in (3, np.int8(3), np.int64(3), np.uint16(3)):
        out = check_int("n", value)
        assert out == 3 and type(out) is int
    for value in (0.5, np.float16(0.5), np.float32(0.5), np.float64(0.5), 1, np.int64(1)):
        assert type(check_float("x", value)) is float
    assert check_seeds(np.arange(3)) == [0, 1, 2] and check_seeds(range(2)) == [0, 1]
    assert check_times("holdout", np.array([2.0, 1.0])) == [1.0, 2.0]


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"seed": "1"}, TypeError, "seed must be an integer"),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
        ({"seed": 1.0}, TypeError, "seed must be an integer"),
        ({"n_steps": 0}, ValueError, "n_steps must be an integer >= 1"),
        ({"n_steps": 10.0}, TypeError, "n_steps must be an integer"),
        ({"n_steps": True}, TypeError, "n_steps must be an integer"),
        ({"hidden": np.float32(32)}, TypeError, "hidden must be an integer"),
        ({"holdout": "day1"}, TypeError, "holdout must be a number or a sequence"),
        ({"holdout": ["1", 2.0]}, TypeError, "each entry of holdout must be a number"),
        ({"holdout": 7.0}, ValueError, "holdout time 7.0 is not one of the observed"),
        ({"lr": 0}, ValueError, "lr must be a finite number > 0"),
        ({"lr": np.float32("nan")}, ValueError, "lr must be a finite number"),
        ({"sigma": -0.1}, ValueError, "sigma must be a finite number >= 0"),
        ({"sigma": "0.1"}, TypeError, "sigma must be a finite number"),
        ({"unbalanced": 0.0}, ValueError, "unbalanced must be a finite number > 0"),
        ({"solver": "leapfrog"}, ValueError, "solver must be one of"),
        ({"activation": "sigmoid"}, ValueError, "activation must be one of"),
        ({"coupling": "greedy"}, ValueError, "coupling must be one of"),
        ({"clock": "wall"}, ValueError, "clock must be one of"),
        ({"progress": "no"}, TypeError, "progress must be True or False"),
        ({"n_dims": 0}, ValueError, "n_dims must be an integer >= 1"),
        ({"time_key": 3}, TypeError, "time_key must be a string"),
        ({"method": "flow"}, ValueError, "Unknown method 'flow'"),
    ],
)
def test_fit_names_the_bad_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        trajflow.fit_trajectories(moving_gaussians(n_per_time=20), **{**FAST, **kwargs})


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"n_cells": True}, TypeError, "n_cells must be an integer"),
        ({"n_cells": 0}, ValueError, "n_cells must be an integer >= 1"),
        ({"n_steps": 0}, ValueError, "n_steps must be an integer >= 1"),
        ({"n_steps": 2.5}, TypeError, "n_steps must be an integer"),
        ({"seed": "1"}, TypeError, "seed must be an integer"),
        ({"sde": 1}, TypeError, "sde must be True or False"),
        ({"solver": "leapfrog"}, ValueError, "solver must be one of"),
        ({"source_time": "0"}, TypeError, "source_time must be a number"),
        ({"source_time": 0.5}, ValueError, "source_time 0.5 is not one of"),
    ],
)
def test_predict_names_the_bad_argument(model, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        model.predict(1.0, **kwargs)
    with pytest.raises(TypeError, match="time must be a number"):
        model.predict("1.0")


def test_numpy_numbers_work_everywhere_on_the_model(model):
    pred = model.predict(
        np.float32(1.5), n_cells=np.int64(7), seed=np.int64(3), n_steps=np.int64(10)
    )
    assert pred.n_obs == 7
    paths = model.trajectories(n_points=np.int64(10), n_cells=np.int32(4), end_time=np.float64(2))
    assert paths.paths.shape == (4, 10, 2)
    assert model.velocity(np.zeros((2, 2)), time=np.float32(1.0)).shape == (2, 2)
    with pytest.raises(ValueError, match="n_points must be an integer >= 2"):
        model.trajectories(n_points=1)


def test_leave_one_out_takes_numpy_seeds_and_names_bad_arguments():
    from trajflow.benchmark import leave_one_out

    adata = moving_gaussians(n_per_time=30, times=(0.0, 1.0, 2.0))
    kw = {"methods": ["ot-cfm"], "n_dims": np.int64(2), "progress": False, "device": "cpu"}
    kw["fit_kwargs"] = {"n_steps": 10, "clock": "time"}
    table = leave_one_out(adata, seeds=np.arange(2), **kw)
    assert sorted(table["seed"].unique()) == [0, 1] and table["seed"].map(type).eq(int).all()
    with pytest.raises(ValueError, match="seeds is empty"):
        leave_one_out(adata, seeds=[], **kw)
    with pytest.raises(TypeError, match="seeds must be a sequence"):
        leave_one_out(adata, seeds=3, **kw)
    with pytest.raises(TypeError, match="holdout_times must be a number"):
        leave_one_out(adata, seeds=[0], holdout_times="one", **kw)


def test_threads_are_scoped_to_the_fit(monkeypatch):
    import torch

    import trajflow._fit as fit_module

    seen = []
    original = fit_module.optimise

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "optimise", spy)
    torch.set_num_threads(2)  # the one_thread fixture restores the caller's setting
    adata = moving_gaussians(n_per_time=20)
    trajflow.fit_trajectories(adata, **FAST)  # threads="auto": the default network gets one
    trajflow.fit_trajectories(adata, threads=np.int64(2), **FAST)
    trajflow.fit_trajectories(adata, threads=None, **FAST)
    trajflow.fit_trajectories(adata, threads="auto", hidden=512, batch_size=512, n_steps=2,
                              progress=False, device="cpu")  # fmt: skip
    assert seen == [1, 2, 2, 2]
    assert torch.get_num_threads() == 2  # restored after every fit
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        trajflow.fit_trajectories(adata, threads=0, **FAST)


@pytest.mark.parametrize("sparse_x", [False, True])
def test_nan_in_x_with_the_automatic_pca_is_trajflows_error(sparse_x):
    # issue 26: scikit-learn's raw message (HistGradientBoostingClassifier...) leaked through
    from scipy import sparse

    adata = moving_gaussians(n_per_time=30, dim=6)
    del adata.obsm["X_pca"]
    x = np.asarray(adata.X, dtype=np.float32)
    x[3, 4] = np.nan
    x[40, 0] = np.inf
    adata.X = sparse.csr_matrix(x) if sparse_x else x
    with pytest.raises(ValueError, match="adata.X has NaN or infinite values in 2 cells") as err:
        trajflow.fit_trajectories(adata, **FAST)
    assert "HistGradientBoosting" not in str(err.value) and "use_rep" in str(err.value)
    assert "X_pca" not in adata.obsm and "trajflow_pca" not in adata.uns  # nothing written


def test_tools_refuse_a_view_instead_of_turning_it_into_a_copy(model):
    import warnings

    adata = moving_gaussians(n_per_time=40)
    adata.obs["group"] = np.where(adata.obsm["X_pca"][:, 1] > 0, "up", "down")
    view = adata[adata.obs["time"] <= 2]
    calls = {
        "velocity": lambda: trajflow.tl.velocity(view, model),
        "descendants": lambda: trajflow.tl.descendants(
            view, model, cells=view.obs["time"] == 0, target_time=1
        ),
        "cell_transition": lambda: trajflow.tl.cell_transition(
            view, model, source_time=0, target_time=1, groupby="group"
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ImplicitModificationWarning either
        for name, call in calls.items():
            with pytest.raises(ValueError, match=r"adata is a view .*adata\[mask\]\.copy\(\)"):
                call()
            assert view.is_view, name
        # the ways out named in the messages work without writing into the view
        out = trajflow.tl.velocity(view, model, copy=True)
        assert "trajflow_velocity_pca" in out.obsm and view.is_view
        table = trajflow.tl.cell_transition(
            view, model, source_time=0, target_time=1, groupby="group", key_added=None
        )
        assert table.shape == (2, 2) and view.is_view
