"""The faults a user can run into: saves into other people's files, killed saves, full disks,
times that are one time point written differently, and promises kept on every path
(docs/reliability.md lists each family with its test)."""

from __future__ import annotations

import errno
import logging
import os

import numpy as np
import pytest
import torch

import trajflow
from trajflow._timecourse import match_time, merge_noisy_times, same_time

from conftest import moving_gaussians

QUICK = {"n_steps": 30, "progress": False}


def fit(adata, **kw):
    return trajflow.fit_trajectories(adata, **{**QUICK, **kw})


# ------------------------------------------------------------- one time point is one time point
def test_float_noise_in_time_labels_is_one_time_point(caplog):
    adata = moving_gaussians(times=(0.0, 0.3, 0.6), n_per_time=60)
    t = adata.obs["time"].to_numpy().copy()
    at_03 = np.flatnonzero(t == 0.3)
    t[at_03[::2]] = 0.1 + 0.2  # 5.6e-17 away from 0.3
    adata.obs["time"] = t
    with caplog.at_level(logging.WARNING, logger="trajflow"):
        model = fit(adata)
    assert model.times == [0.0, 0.3, 0.6]
    assert any("float noise" in r.getMessage() for r in caplog.records)
    assert np.isfinite(model.history["loss"]).all()
    assert max(model.history["loss"]) < 1e3
    assert adata.obs["time"].to_numpy()[at_03[0]] == 0.1 + 0.2  # the user's column is untouched


def test_times_with_a_large_offset_stay_distinct_and_match_the_nearest():
    base = 1e9
    adata = moving_gaussians(times=(0.0, 1.0, 2.0, 3.0), n_per_time=60)
    adata.obs["time"] = adata.obs["time"] + base
    model = fit(adata, holdout=base + 2)
    assert model.times == [base, base + 1, base + 3]
    assert model.holdout == [base + 2]
    pred = model.predict(base + 1.5, n_cells=20)
    src = np.unique(pred.obs["source_time"].to_numpy(dtype=float))
    assert set(src.tolist()) <= {base + 1, base + 3}  # the two neighbours, never base + 2
    # the pushed cells are those of their source time point
    for s in src:
        at_src = adata.obs_names[adata.obs["time"].to_numpy() == s]
        mine = pred.obs["source_cell"][pred.obs["source_time"].to_numpy(dtype=float) == s]
        assert set(mine).issubset(set(at_src))
    assert match_time(base + 1 + 1e-7, model.times, what="t") == base + 1
    with pytest.raises(ValueError, match="not one of the observed"):
        match_time(base + 1.4, model.times, what="t")


def test_float32_times_match_python_fractions():
    adata = moving_gaussians(times=(0.0, 1 / 3, 1.0, 3.0), n_per_time=60)
    adata.obs["time"] = adata.obs["time"].astype(np.float32)
    model = fit(adata, holdout=1 / 3)
    assert len(model.times) == 3 and len(model.holdout) == 1
    pred = model.predict(1.0, source_time=0.0, n_cells=10)
    assert pred.n_obs == 10
    full = fit(adata)
    out = full.predict(2.0, source_time=1 / 3, n_cells=10)
    assert np.allclose(out.obs["source_time"].to_numpy(dtype=float), np.float32(1 / 3))
    traj = full.trajectories(source_time=1 / 3, end_time=1.0, n_points=4, n_cells=5)
    assert traj.paths.shape[:2] == (5, 4)


def test_match_time_takes_the_nearest_and_merge_keeps_the_common_label():
    assert match_time(2.0000001, [1.0, 2.0, 3.0], what="t") == 2.0
    assert bool(same_time(1e9, 1e9 + 1)) is False
    values = np.array([0.3, 0.1 + 0.2, 0.3, 1.0, 1.0])
    merged, groups = merge_noisy_times(values)
    assert merged.tolist() == [0.3, 0.3, 0.3, 1.0, 1.0]
    assert groups == [(0.3, sorted([0.3, 0.1 + 0.2]))]
    assert merge_noisy_times(np.array([1e9, 1e9 + 1]))[1] == []


# ------------------------------------------------------------- never delete what is not ours
@pytest.fixture(scope="module")
def model():
    return fit(moving_gaussians(n_per_time=40))


def test_checkpoint_dir_with_the_users_files_is_refused_before_training(tmp_path):
    folder = tmp_path / "analysis"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match="not a trajflow checkpoint"):
        fit(moving_gaussians(n_per_time=40), checkpoint_dir=folder, checkpoint_every=10)
    assert (folder / "notes.txt").read_text() == "my notes"
    # a new folder, then the same folder again (an earlier checkpoint) are fine
    fit(moving_gaussians(n_per_time=40), checkpoint_dir=tmp_path / "ck", checkpoint_every=10)
    fit(moving_gaussians(n_per_time=40), checkpoint_dir=tmp_path / "ck", checkpoint_every=10)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_checkpoint_dir_is_refused_at_the_door(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="checkpoint_dir"):
            fit(moving_gaussians(n_per_time=40), checkpoint_dir=ro / "ck")
    finally:
        ro.chmod(0o700)


def test_read_only_check_is_made_at_the_door(tmp_path, monkeypatch):
    # as root the permission bits do not bind: the check itself is what is tested here
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if "ro" in str(p) else real(p, mode))
    (tmp_path / "ro").mkdir()
    with pytest.raises(PermissionError, match="checkpoint_dir=.*no permission"):
        trajflow.fit_trajectories(
            moving_gaussians(n_per_time=40), n_steps=10_000, progress=False,
            checkpoint_dir=tmp_path / "ro" / "ck",
        )  # fmt: skip


def test_overwrite_never_replaces_a_file_or_a_users_folder(model, tmp_path):
    data = tmp_path / "data.h5ad"
    data.write_bytes(b"the user's data")
    with pytest.raises(FileExistsError, match="is a file, not a trajflow model folder"):
        model.save(data, overwrite=True)
    assert data.read_bytes() == b"the user's data"
    assert not list(tmp_path.glob(".data.h5ad*"))
    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "fig1.png").write_bytes(b"png")
    with pytest.raises(FileExistsError, match="not a trajflow model folder"):
        model.save(folder, overwrite=True)
    assert (folder / "fig1.png").read_bytes() == b"png"
    model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)  # a model folder is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5ad", "figures", "m"]


def test_a_save_killed_between_its_renames_is_named_by_load_and_the_next_save(
    model, tmp_path, monkeypatch, caplog
):
    path = tmp_path / "m"
    model.save(path)
    real_rename = os.rename
    calls = []

    def die_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after moving the old model aside
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", die_on_second)
    with pytest.raises(KeyboardInterrupt):
        model.save(path, overwrite=True)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not path.exists()
    with pytest.raises(
        FileNotFoundError, match=r"interrupted save left the previous model at .*\.m\.old"
    ):
        trajflow.TrajectoryModel.load(path)
    with caplog.at_level(logging.WARNING, logger="trajflow"):
        model.save(path, overwrite=True)
    assert any(".m.old" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    trajflow.TrajectoryModel.load(path)


def test_stale_temporary_folders_of_killed_saves_are_cleaned(model, tmp_path):
    path = tmp_path / "m"
    stale = tmp_path / ".m.abc123"
    stale.mkdir()
    (stale / "weights.pt").write_bytes(b"half")
    (stale / ".trajflow-save").write_text("999999999")  # a process that no longer exists
    users = tmp_path / ".m.mine"
    users.mkdir()  # not marked: not trajflow's, kept
    model.save(path)
    assert not stale.exists() and users.exists()


def test_a_full_disk_is_an_oserror_that_says_so(model, tmp_path, monkeypatch):
    import shutil

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1024))
    with pytest.raises(trajflow.DiskFullError, match="disk holding .* is full") as info:
        model.save(tmp_path / "m")
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())  # nothing half-written left behind

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", enospc)
    monkeypatch.setattr(torch, "save", lambda *a, **k: None)
    with pytest.raises(trajflow.DiskFullError):
        model.save(tmp_path / "m")


def test_a_fit_whose_checkpoint_cannot_be_written_keeps_its_model(tmp_path, monkeypatch):
    def enospc(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trajflow.TrajectoryModel, "save", enospc)
    with pytest.warns(RuntimeWarning, match="training goes on without checkpoints"):
        m = fit(moving_gaussians(n_per_time=40), checkpoint_dir=tmp_path / "ck", checkpoint_every=5)
    assert m.history["steps_done"] == QUICK["n_steps"]


# ------------------------------------------------------------- every promise, on every path
def test_load_and_resume_leave_the_global_torch_stream_alone(model, tmp_path):
    model.save(tmp_path / "m")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    trajflow.TrajectoryModel.load(tmp_path / "m")
    assert torch.equal(before, torch.random.get_rng_state())
    adata = moving_gaussians(n_per_time=40)
    fit(adata, checkpoint_dir=tmp_path / "ck", checkpoint_every=10)
    before = torch.random.get_rng_state()
    fit(adata, resume_from=tmp_path / "ck", n_steps=40)
    assert torch.equal(before, torch.random.get_rng_state())


def test_nan_in_a_column_the_model_does_not_use_is_fine_everywhere():
    adata = moving_gaussians(n_per_time=40, dim=3)
    m = fit(adata, n_dims=2)
    adata.obsm["X_pca"] = adata.obsm["X_pca"].copy()
    adata.obsm["X_pca"][:5, 2] = np.nan
    v = m.velocity(adata, 1.0)
    assert v.shape == (adata.n_obs, 2) and np.isfinite(v).all()
    mask = (adata.obs["time"] == 0).to_numpy()
    assert np.isfinite(m.push(adata[mask], source_time=0, times=1)).all()
    trajflow.tl.velocity(adata, m)
    adata.obsm["X_pca"][0, 1] = np.nan  # a used column is still refused
    with pytest.raises(ValueError, match="NaN or infinite"):
        m.velocity(adata, 1.0)


def test_settings_take_numpy_numbers():
    old = trajflow.settings.verbosity
    try:
        trajflow.settings.verbosity = np.int64(1)
        assert trajflow.settings.verbosity == "warning"
        trajflow.settings.verbosity = np.str_("info")
        assert trajflow.settings.verbosity == "info"
        with pytest.raises(ValueError, match="verbosity"):
            trajflow.settings.verbosity = np.int64(7)
    finally:
        trajflow.settings.verbosity = old


# ------------------------------------------------------------- outputs that cannot mislead
def test_extrapolation_warning_points_at_the_users_line(model):
    with pytest.warns(trajflow.ExtrapolationWarning) as record:
        model.predict(10.0, n_cells=5)  # this line
    assert record[0].filename == __file__
    with pytest.warns(trajflow.ExtrapolationWarning) as record:
        model.push(np.zeros((3, 2)), source_time=0, times=9.0)
    assert record[0].filename == __file__


def test_pl_prediction_of_several_times_draws_only_the_asked_one(model):
    import matplotlib

    matplotlib.use("Agg")
    adata = moving_gaussians(n_per_time=40)
    pred = model.predict([1.5, 2.5], n_cells=30)
    ax = trajflow.pl.prediction(adata, pred, time=2.5, show=False)
    legend = " ".join(
        t.get_text() for lg in ax.figure.legends + [ax.get_legend()] if lg for t in lg.get_texts()
    )
    assert "(n=30)" in legend and "(n=60)" not in legend
    with pytest.raises(ValueError, match="holds no cells at time=7"):
        trajflow.pl.prediction(adata, pred, time=7.0, show=False)


def test_every_prediction_says_how_far_it_lies_from_the_observed_cells(model):
    from trajflow._scoring import Support

    pred = model.predict(2.0, source_time=1.0)
    assert {"support_distance", "off_support"} <= set(pred.obs.columns)
    assert pred.obs["off_support"].mean() < 0.05  # one trained gap: on the data
    assert pred.uns["trajflow"]["off_support_share"] == pred.obs["off_support"].mean()
    # the calibration: the observed cells themselves sit well inside the threshold
    obs2 = moving_gaussians(n_per_time=40).obsm["X_pca"][80:120]
    assert (model.support_for(2.0).distance(obs2) <= 1).mean() > 0.95
    with pytest.warns(trajflow.ExtrapolationWarning):
        far = model.predict(12.0, n_cells=20)
    assert far.obs["off_support"].all()  # far past the last time point: flagged, not hidden
    # several times: one share per time
    with pytest.warns(trajflow.ExtrapolationWarning):
        both = model.predict([1.5, 12.0], n_cells=10)
    assert both.uns["trajflow"]["off_support_share"][1] == 1.0
    ref = np.random.default_rng(0).normal(size=(500, 3))
    s = Support.fit(ref)
    assert (s.distance(ref[:50]) == 0).all() and s.distance(ref[:1] + 100.0)[0] > 1
