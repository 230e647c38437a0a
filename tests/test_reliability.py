"""Bad input gets a clear error; the user's data and models are never lost; results reproduce."""

from __future__ import annotations

import copy
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import trajflow
from trajflow.core import PairwiseObjective

from conftest import moving_gaussians

QUICK = {"n_steps": 30, "progress": False}


def fit(adata, **kw):
    return trajflow.fit_trajectories(adata, **{**QUICK, **kw})


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (
            lambda a: a.obs.drop(columns="time", inplace=True),
            KeyError,
            "time_key='time' is not a column",
        ),
        (
            lambda a: a.obs.__setitem__("time", ["d" + str(i % 3) for i in range(a.n_obs)]),
            ValueError,
            "not numbers",
        ),
        (lambda a: a.obs.__setitem__("time", 1.0), ValueError, "at least 2 are needed"),
        (
            lambda a: a.obs.__setitem__("time", [np.nan] + [1.0] * (a.n_obs - 1)),
            ValueError,
            "missing or infinite time",
        ),
        (
            lambda a: a.obsm["X_pca"].__setitem__((0, 0), np.nan),
            ValueError,
            "NaN or infinite values in 1",
        ),
        (lambda a: a.obsm["X_pca"].__setitem__((0, 1), np.inf), ValueError, "NaN or infinite"),
    ],
    ids=[
        "missing-time-key",
        "unparseable-times",
        "one-time-point",
        "nan-time",
        "nan-rep",
        "inf-rep",
    ],
)
def test_bad_adata_errors(mutate, exc, match):
    adata = moving_gaussians(n_per_time=10)
    mutate(adata)
    with pytest.raises(exc, match=match):
        fit(adata)


def test_time_point_with_one_cell():
    adata = moving_gaussians(n_per_time=10)
    adata.obs.loc[adata.obs_names[0], "time"] = 7.0
    with pytest.raises(ValueError, match="Time point 7 has 1 cell"):
        fit(adata)


def test_representation_errors():
    adata = moving_gaussians(n_per_time=10)
    with pytest.raises(KeyError, match="use_rep='X_umap' is not in adata.obsm"):
        fit(adata, use_rep="X_umap")
    with pytest.raises(ValueError, match="n_dims=5 is larger than the representation"):
        fit(adata, n_dims=5)
    with pytest.raises(ValueError, match="n_dims must be an integer >= 1"):
        fit(adata, n_dims=0)
    no_x = ad.AnnData(obs=adata.obs.copy())
    with pytest.raises(ValueError, match="adata.X is empty"):
        fit(no_x)
    with pytest.raises(ValueError, match="adata.X is empty"):
        fit(no_x, use_rep="X")


def test_empty_and_non_anndata():
    with pytest.raises(ValueError, match="no cells"):
        fit(ad.AnnData(np.zeros((0, 3))))
    with pytest.raises(TypeError, match="Expected an AnnData"):
        fit(np.zeros((10, 2)))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_x_dense_or_sparse_without_pca(kind):
    adata = moving_gaussians(n_per_time=15, dim=4)
    del adata.obsm["X_pca"]
    if kind == "sparse":
        adata.X = sparse.csr_matrix(np.abs(adata.X))
    model = fit(adata, n_dims=2)
    assert model.n_dims == 2 and adata.obsm["X_pca"].shape[0] == adata.n_obs


def test_backed_anndata(tmp_path):
    adata = moving_gaussians(n_per_time=15)
    del adata.obsm["X_pca"]
    adata.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    with pytest.raises(ValueError, match="backed"):
        fit(backed)
    with pytest.raises(ValueError, match="backed"):
        fit(backed, use_rep="X")
    backed.file.close()


def test_holdout_errors():
    adata = moving_gaussians(n_per_time=10, times=(0.0, 1.0, 2.0))
    with pytest.raises(ValueError, match=r"holdout time 5\.0 is not one of the observed"):
        fit(adata, holdout=5.0)
    with pytest.raises(ValueError, match="leaves 1 time point"):
        fit(adata, holdout=[0.0, 1.0])
    # Holding out the last time point is allowed for fitting (predicting it extrapolates).
    model = fit(adata, holdout=2.0)
    with pytest.warns(trajflow.ExtrapolationWarning):
        model.predict(2.0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"method": "flow-magic"}, "Unknown method 'flow-magic'"),
        ({"method": "sb-cfm", "sigma": 0.0}, "sigma must be > 0 for method='sb-cfm'"),
        ({"sigma": -1.0}, "sigma must be a finite number >= 0"),
        ({"restore": -0.1}, "restore must be a finite number >= 0"),
        ({"method": "sb-cfm", "restore": 0.3}, "restore= needs straight paths"),
        ({"n_steps": 0}, "n_steps must be an integer >= 1"),
        ({"batch_size": -5}, "batch_size must be an integer >= 1"),
        ({"solver_steps": 0}, "solver_steps must be an integer >= 1"),
        ({"solver": "leapfrog"}, "solver must be one of"),
        ({"coupling": "sometimes"}, "coupling must be one of"),
        ({"device": "tpu9"}, "Unknown device|not available"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        fit(moving_gaussians(n_per_time=10), **kw)


def test_model_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        trajflow.TrajectoryModel.load(tmp_path / "nothing")
    model = fit(moving_gaussians(n_per_time=10))
    path = model.save(tmp_path / "m")
    (path / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete.*weights.pt"):
        trajflow.TrajectoryModel.load(path)
    path = model.save(tmp_path / "m2")
    state = json.loads((path / "config.json").read_text())
    state["format_version"] = 99
    (path / "config.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="format 99"):
        trajflow.TrajectoryModel.load(path)


def test_model_on_adata_with_other_dimension():
    model = fit(moving_gaussians(n_per_time=10, dim=3), n_dims=3)
    other = moving_gaussians(n_per_time=10, dim=2)
    with pytest.raises(ValueError, match="fitted on 3 dimensions"):
        model.velocity(other, 1.0)
    del other.obsm["X_pca"]
    with pytest.raises(KeyError, match="fitted on adata.obsm"):
        model.representation(other)
    with pytest.raises(ValueError, match="shape"):
        model.velocity(np.zeros((4, 2)), 1.0)


def test_predict_argument_errors():
    model = fit(moving_gaussians(n_per_time=10))
    with pytest.raises(TypeError, match="must be a number"):
        model.predict("tomorrow")
    with pytest.raises(ValueError, match="finite"):
        model.predict(float("nan"))
    with pytest.raises(ValueError, match="n_cells must be an integer >= 1"):
        model.predict(1.0, n_cells=0)
    with pytest.raises(ValueError, match="n_points"):
        model.trajectories(n_points=1)


# ------------------------------------------------------------------ nothing lost
def _snapshot(adata):
    return {
        "X": adata.X.copy(),
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obsm": {k: np.array(v, copy=True) for k, v in adata.obsm.items()},
        "layers": {k: np.array(v, copy=True) for k, v in adata.layers.items()},
        "uns": copy.deepcopy(dict(adata.uns)),
    }


def _assert_same(before, adata):
    np.testing.assert_array_equal(before["X"], adata.X)
    pd.testing.assert_frame_equal(before["obs"], adata.obs)
    pd.testing.assert_frame_equal(before["var"], adata.var)
    assert before["obsm"].keys() == adata.obsm.keys()
    for k, v in before["obsm"].items():
        np.testing.assert_array_equal(v, adata.obsm[k])
    assert before["layers"].keys() == adata.layers.keys()
    assert before["uns"].keys() == adata.uns.keys()


def test_fit_predict_benchmark_leave_adata_untouched():
    adata = moving_gaussians(n_per_time=40)
    adata.layers["counts"] = adata.X.copy()
    adata.uns["note"] = {"keep": [1, 2]}
    adata.obs["time"] = adata.obs["time"].astype("category")
    before = _snapshot(adata)
    model = fit(adata, holdout=1.0)
    model.predict(1.0)
    model.trajectories(n_cells=5)
    model.velocity(adata, 0.5)
    trajflow.benchmark.leave_one_out(
        adata, methods=("ot-cfm",), seeds=(0,), n_dims=2, fit_kwargs={"n_steps": 20}, progress=False
    )
    _assert_same(before, adata)


def test_only_documented_keys_written_when_pca_computed():
    adata = moving_gaussians(n_per_time=20, dim=4)
    del adata.obsm["X_pca"]
    before = _snapshot(adata)
    fit(adata, n_dims=2)
    assert set(adata.obsm.keys()) == {"X_pca"} and set(adata.varm.keys()) == {"PCs"}
    assert set(adata.uns.keys()) == {"pca", "trajflow_pca"}
    np.testing.assert_array_equal(before["X"], adata.X)
    pd.testing.assert_frame_equal(before["obs"], adata.obs)


def test_nan_loss_stops_with_last_finite_model():
    adata = moving_gaussians(n_per_time=30)
    with pytest.raises(trajflow.TrainingDivergedError, match="became nan|became inf") as info:
        trajflow.fit_trajectories(adata, lr=1e12, n_steps=400, progress=False)
    model = info.value.model
    assert isinstance(model, trajflow.TrajectoryModel)
    params = torch.cat([p.flatten() for p in model._velocity_net.parameters()])
    assert torch.isfinite(params).all()
    assert np.all(np.isfinite(model.predict(1.0).obsm["X_pca"]))


def interrupt_after(mp: pytest.MonkeyPatch, steps: int) -> None:
    """Make training raise KeyboardInterrupt (Ctrl-C) in the step after ``steps`` steps."""
    calls = {"n": 0}
    original = PairwiseObjective.loss

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > steps:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    mp.setattr(PairwiseObjective, "loss", interrupted)


def test_keyboard_interrupt_returns_partial_model(monkeypatch):
    interrupt_after(monkeypatch, 120)
    with pytest.warns(UserWarning, match="interrupted"):
        model = trajflow.fit_trajectories(
            moving_gaussians(n_per_time=30), n_steps=1000, progress=False
        )
    assert model.history["interrupted"] and model.history["steps_done"] == 120
    assert np.all(np.isfinite(model.predict(1.5).obsm["X_pca"]))


def test_save_is_atomic_and_refuses_overwrite(tmp_path, monkeypatch):
    model = fit(moving_gaussians(n_per_time=10))
    path = model.save(tmp_path / "m")
    original = (path / "config.json").read_text()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save(path, overwrite=True)
    monkeypatch.undo()
    assert (path / "config.json").read_text() == original  # the old model survived
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary debris
    state = json.loads(original)
    for key in ("trajflow_version", "config", "scaler", "times", "format_version"):
        assert key in state
    assert state["config"]["use_rep"] == "X_pca"


def test_checkpoint_and_resume_match_uninterrupted(tmp_path):
    adata = moving_gaussians(n_per_time=30)
    kw = {"n_steps": 300, "progress": False, "seed": 3}
    full = trajflow.fit_trajectories(adata, **kw)
    ckpt = tmp_path / "ckpt"
    # A run that checkpoints and stops half way...
    trajflow.fit_trajectories(
        adata, **{**kw, "n_steps": 150}, checkpoint_dir=ckpt, checkpoint_every=50
    )
    assert (ckpt / "trainer_state.pt").is_file()
    assert trajflow.TrajectoryModel.load(ckpt).history["steps_done"] == 150
    # ...resumed to the full length keeps the whole loss record. (Its 150-step cosine schedule
    # differs from the 300-step one, so weights are compared in the constant-schedule test.)
    resumed = trajflow.fit_trajectories(adata, **kw, resume_from=ckpt)
    np.testing.assert_array_equal(resumed.history["loss_step"], full.history["loss_step"])
    assert resumed.history["steps_done"] == 300
    with pytest.raises(ValueError, match="settings differ"):
        trajflow.fit_trajectories(adata, **{**kw, "method": "i-cfm"}, resume_from=ckpt)
    with pytest.raises(FileNotFoundError, match="not a trajflow checkpoint"):
        trajflow.fit_trajectories(adata, **kw, resume_from=tmp_path)


@pytest.mark.parametrize(
    ("schedule", "coupling", "stop"),
    [("constant", "auto", 60), ("cosine", "auto", 60), ("constant", "bank", 60),
     ("constant", "bank", 210)],
)  # fmt: skip
def test_resume_reproduces_uninterrupted_fit(tmp_path, monkeypatch, schedule, coupling, stop):
    if coupling == "bank":  # a streaming bank, whole from step 187: resumed mid-ramp and after
        from trajflow.core import bank

        monkeypatch.setattr(bank, "BANK_BATCH", 10)
        monkeypatch.setattr(bank, "STREAM_CHUNK", 1)
    adata = moving_gaussians(n_per_time=30)
    kw = {"n_steps": 250, "progress": False, "lr_schedule": schedule, "coupling": coupling}
    full = trajflow.fit_trajectories(adata, **kw)
    # Interrupt the same fit after `stop` steps; its last checkpoint (losses are checked, and
    # checkpoints written, every 50 steps) is 10 steps before.
    with pytest.MonkeyPatch.context() as mp, pytest.warns(UserWarning, match="interrupted"):
        interrupt_after(mp, stop)
        trajflow.fit_trajectories(adata, **kw, checkpoint_dir=tmp_path / "c", checkpoint_every=25)
    assert trajflow.TrajectoryModel.load(tmp_path / "c").history["steps_done"] == stop - 10
    resumed = trajflow.fit_trajectories(adata, **kw, resume_from=tmp_path / "c")
    np.testing.assert_allclose(
        resumed.predict(1.5).obsm["X_pca"], full.predict(1.5).obsm["X_pca"], rtol=0, atol=1e-6
    )
    assert resumed.history["loss"] == pytest.approx(full.history["loss"], rel=1e-6)
    again = trajflow.fit_trajectories(adata, **kw)  # threads solving the bank change nothing
    np.testing.assert_array_equal(again.predict(1.5).obsm["X_pca"], full.predict(1.5).obsm["X_pca"])


def test_resume_refuses_every_setting_that_changes_the_model(tmp_path):
    from trajflow._checkpoint import RESUME_MUST_MATCH

    adata = moving_gaussians(n_per_time=30)
    adata.obs["growth"] = 1.0
    kw = {"n_steps": 20, "progress": False, "seed": 0}
    trajflow.fit_trajectories(adata, **kw, checkpoint_dir=tmp_path / "c", checkpoint_every=10)
    changed = {
        "method": "i-cfm", "n_dims": 1, "scaling": "per-dimension", "clock": "distance",
        "holdout": 1.0, "sigma": 0.3, "batch_size": 64, "hidden": 32, "n_layers": 2,
        "activation": "relu", "coupling": "full", "growth_key": "growth", "unbalanced": 1.0,
        "seed": 1, "time_key": "t2", "use_rep": "X_other", "restore": 0.3,
    }  # fmt: skip
    adata.obs["t2"] = adata.obs["time"]
    adata.obsm["X_other"] = adata.obsm["X_pca"].copy()
    assert set(changed) == set(RESUME_MUST_MATCH)  # a new must-match setting gets a case here
    for name, value in changed.items():
        with pytest.raises(ValueError, match=f"settings differ .*{name}: checkpoint"):
            trajflow.fit_trajectories(adata, **{**kw, name: value}, resume_from=tmp_path / "c")
    # the call's own settings are honoured: optimisation and how predictions integrate
    resumed = trajflow.fit_trajectories(
        adata, **{**kw, "n_steps": 30}, lr=5e-4, weight_decay=0.0, lr_schedule="constant",
        solver="rk4", solver_steps=7, resume_from=tmp_path / "c",
    )  # fmt: skip
    assert resumed.history["steps_done"] == 30
    assert {k: resumed.config[k] for k in ("lr", "weight_decay", "lr_schedule")} == {
        "lr": 5e-4, "weight_decay": 0.0, "lr_schedule": "constant",
    }  # fmt: skip
    assert (resumed.config["solver"], resumed.config["solver_steps"]) == ("rk4", 7)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resumed_fit_trains_at_the_lr_it_is_given(tmp_path, schedule):
    adata = moving_gaussians(n_per_time=30)
    kw = {"progress": False, "lr_schedule": schedule, "seed": 0}
    trajflow.fit_trajectories(adata, n_steps=100, **kw, checkpoint_dir=tmp_path / "c")
    saved = trajflow.TrajectoryModel.load(tmp_path / "c").predict(1.5, seed=0).obsm["X_pca"]
    moved = {}
    for lr in (1e-12, 1e-3):  # 1e-3: the saved fit's own
        resumed = trajflow.fit_trajectories(
            adata, n_steps=200, lr=lr, **kw, resume_from=tmp_path / "c"
        )
        moved[lr] = np.abs(resumed.predict(1.5, seed=0).obsm["X_pca"] - saved).max()
    # a negligible lr leaves the weights where the checkpoint had them; the saved lr moves them
    assert moved[1e-12] < 1e-4 < moved[1e-3]


def test_resume_on_the_cpu_from_a_gpu_graphed_checkpoint(tmp_path):
    """A CUDA-graph fit saves a capturable optimiser with a tensor learning rate; the CPU resumes
    it with its own kernel options."""
    adata = moving_gaussians(n_per_time=20)
    kw = {"n_steps": 100, "progress": False, "lr_schedule": "cosine"}
    with pytest.MonkeyPatch.context() as mp, pytest.warns(UserWarning, match="interrupted"):
        interrupt_after(mp, 60)
        trajflow.fit_trajectories(adata, **kw, checkpoint_dir=tmp_path / "c", checkpoint_every=25)
    state_file = tmp_path / "c" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=True)
    for group in state["optimizer"]["param_groups"]:  # as a graphed GPU fit writes them
        group.update(capturable=True, foreach=True, fused=None, lr=torch.tensor(group["lr"]))
    model = trajflow.TrajectoryModel.load(tmp_path / "c")
    model.save(tmp_path / "c", overwrite=True, extra={state_file.name: state})  # re-checksummed
    resumed = trajflow.fit_trajectories(adata, **kw, resume_from=tmp_path / "c")
    assert resumed.history["steps_done"] == 100
    assert np.all(np.isfinite(resumed.predict(1.5).obsm["X_pca"]))


# ------------------------------------------------------------------ reproducible
def test_same_seed_same_result_and_global_rng_untouched():
    adata = moving_gaussians(n_per_time=40)
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = trajflow.fit_trajectories(adata, method="sb-cfm", n_steps=100, progress=False, seed=7)
    b = trajflow.fit_trajectories(adata, method="sb-cfm", n_steps=100, progress=False, seed=7)
    np.testing.assert_array_equal(a.predict(1.5).obsm["X_pca"], b.predict(1.5).obsm["X_pca"])
    np.testing.assert_array_equal(
        a.predict(2.0, sde=True).obsm["X_pca"], b.predict(2.0, sde=True).obsm["X_pca"]
    )
    c = trajflow.fit_trajectories(adata, method="sb-cfm", n_steps=100, progress=False, seed=8)
    assert not np.array_equal(a.predict(1.5).obsm["X_pca"], c.predict(1.5).obsm["X_pca"])
    res1 = trajflow.benchmark.leave_one_out(
        adata, methods=("ot-cfm",), seeds=(0,), n_dims=2, fit_kwargs={"n_steps": 50}, progress=False
    )
    res2 = trajflow.benchmark.leave_one_out(
        adata, methods=("ot-cfm",), seeds=(0,), n_dims=2, fit_kwargs={"n_steps": 50}, progress=False
    )
    np.testing.assert_array_equal(res1["w1"], res2["w1"])
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert (
        after[0] == np_state[0]
        and np.array_equal(after[1], np_state[1])
        and after[2] == np_state[2]
    )
