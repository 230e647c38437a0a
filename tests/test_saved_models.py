"""A damaged saved model folder fails at ``TrajectoryModel.load`` with a :class:`DamagedModelError`
that names the damaged file, never with a raw torch / numpy / zip / JSON traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import trajflow
from trajflow import DamagedModelError, TrajectoryModel

from conftest import moving_gaussians

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TrajectoryModel, Path]]:
    """One tiny SB-CFM model (it has a score network too), fitted and saved once per module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # `one_thread` is function-scoped; this fixture is not
    try:
        model = trajflow.fit_trajectories(
            moving_gaussians(n_per_time=40),
            method="sb-cfm",
            clock="time",  # test_model_saved_before_clocks_loads rebuilds the old linear clock
            n_steps=20,
            progress=False,
            device="cpu",
        )
    finally:
        torch.set_num_threads(before)
    yield model, model.save(tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture
def folder(fitted: tuple[TrajectoryModel, Path], tmp_path: Path) -> Path:
    """A private copy of the saved model, free to damage."""
    return Path(shutil.copytree(fitted[1], tmp_path / "model"))


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def write_config(folder: Path, state: dict) -> None:
    (folder / "config.json").write_text(json.dumps(state, indent=2))


def drop_checksums(folder: Path) -> None:
    """Make the folder look saved before checksums were recorded (only per-file checks apply)."""
    state = read_config(folder)
    del state["integrity"]
    write_config(folder, state)


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def assert_damaged(folder: Path, name: str, match: str | None = None) -> DamagedModelError:
    with pytest.raises(DamagedModelError, match=match) as info:
        TrajectoryModel.load(folder, device="cpu")
    message = str(info.value)
    assert name in message and "damaged" in message, message
    assert "save the model again" in message.lower() and "refit" in message, message
    return info.value


def edit_config(folder: Path, edit: Callable[[dict], None]) -> None:
    state = read_config(folder)
    edit(state)
    write_config(folder, state)


# ------------------------------------------------------------------ damage caught by checksums
@pytest.mark.parametrize("name", ["weights.pt", "cells.npz"])
@pytest.mark.parametrize("checksums", [True, False])
def test_truncated_file(folder: Path, name: str, checksums: bool) -> None:
    if not checksums:
        drop_checksums(folder)
    truncate(folder / name)
    assert_damaged(folder, name, match="truncated" if checksums else "cannot be read")


@pytest.mark.parametrize("checksums", [True, False])
def test_garbage_weights(folder: Path, checksums: bool) -> None:
    if not checksums:
        drop_checksums(folder)
    size = (folder / "weights.pt").stat().st_size
    # Same size, so only the checksum (or torch.load itself) can tell.
    (folder / "weights.pt").write_bytes(np.random.default_rng(0).bytes(size))
    assert_damaged(folder, "weights.pt", match="checksum" if checksums else "cannot be read")


@pytest.mark.parametrize("checksums", [True, False])
def test_flipped_byte_in_cells(folder: Path, checksums: bool) -> None:
    if not checksums:
        drop_checksums(folder)
    data = bytearray((folder / "cells.npz").read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside compressed data: only a CRC or the checksum notices
    (folder / "cells.npz").write_bytes(bytes(data))
    assert_damaged(folder, "cells.npz")


@pytest.mark.parametrize("content", [b"", b'{"format_version": 1, "conf', b"\xff\xfe\x00"])
def test_unreadable_config(folder: Path, content: bytes) -> None:
    (folder / "config.json").write_bytes(content)
    assert_damaged(folder, "config.json")


def test_config_not_an_object(folder: Path) -> None:
    (folder / "config.json").write_text("[1, 2, 3]")
    assert_damaged(folder, "config.json", match="not an object")


def test_edited_config_fails_its_checksum(folder: Path) -> None:
    edit_config(folder, lambda s: s["network"].update(hidden=s["network"]["hidden"] + 1))
    assert_damaged(folder, "config.json", match="changed after it was saved")


def test_edited_checksum_record(folder: Path) -> None:
    edit_config(folder, lambda s: s["integrity"]["files"]["cells.npz"].update(size=1))
    assert_damaged(folder, "config.json", match="checksum")
    edit_config(folder, lambda s: s["integrity"].pop("files"))
    assert_damaged(folder, "config.json", match="checksum record")


# ------------------------------------------------------------------ damage caught per file
@pytest.mark.parametrize(
    "key",
    [
        "network",
        "scaler",
        "times",
        "observed_times",
        "config",
        "clock",
        "format_version",
        "network.hidden",
        "network.dim",
        "network.has_score",
        "config.method",
        "config.n_dims",
        "scaler.mean",
        "clock.taus",
    ],
)
@pytest.mark.parametrize("checksums", [True, False])
def test_config_missing_key(folder: Path, key: str, checksums: bool) -> None:
    def remove(state: dict) -> None:
        *parents, last = key.split(".")
        node = state
        for part in parents:
            node = node[part]
        del node[last]
        if not checksums:
            state.pop("integrity")

    edit_config(folder, remove)
    assert_damaged(folder, "config.json")


@pytest.mark.parametrize(
    "key, value",
    [
        ("network.hidden", 0),
        ("network.hidden", "64"),
        ("network.activation", "swish"),
        ("config.method", 5),
        ("config.n_dims", 3),
        ("times", [2.0, 1.0, 0.0]),
        ("times", [0.0]),
        ("scaler.scale", [1.0]),
        ("scaler.scale", [0.0, 1.0]),
        ("clock.taus", [1.0, 0.0]),
        ("history", [1, 2]),
    ],
)
def test_config_invalid_value(folder: Path, key: str, value: object) -> None:
    def change(state: dict) -> None:
        *parents, last = key.split(".")
        node = state
        for part in parents:
            node = node[part]
        node[last] = value
        del state["integrity"]

    edit_config(folder, change)
    assert_damaged(folder, "config.json")


@pytest.mark.parametrize("key", ["hidden", "n_layers", "dim"])
def test_network_size_mismatch(folder: Path, key: str) -> None:
    def change(state: dict) -> None:
        state["network"][key] += 1
        if key == "dim":  # keep config.json consistent with itself: only the weights disagree
            state["config"]["n_dims"] += 1
            for values in state["scaler"].values():
                values.append(1.0)
        del state["integrity"]

    edit_config(folder, change)
    error = assert_damaged(folder, "weights.pt", match="does not match the network")
    assert "config.json" in str(error) and f"{key}=" in str(error)


def test_network_dim_disagrees_with_config(folder: Path) -> None:
    drop_checksums(folder)
    edit_config(folder, lambda s: s["network"].update(dim=s["network"]["dim"] + 1))
    assert_damaged(folder, "config.json", match="n_dims")


def rewrite_weights(folder: Path, edit: Callable[[dict], object]) -> None:
    drop_checksums(folder)
    weights = torch.load(folder / "weights.pt", weights_only=True)
    torch.save(edit(weights), folder / "weights.pt")


def test_weights_without_velocity(folder: Path) -> None:
    rewrite_weights(folder, lambda w: {"score": w["score"]})
    assert_damaged(folder, "weights.pt", match="'velocity'")


def test_weights_not_a_dict(folder: Path) -> None:
    rewrite_weights(folder, lambda w: [1, 2, 3])
    assert_damaged(folder, "weights.pt", match="'velocity'")


def test_declared_score_missing(folder: Path) -> None:
    rewrite_weights(folder, lambda w: {"velocity": w["velocity"]})
    assert_damaged(folder, "weights.pt", match="no score network")


def test_undeclared_score(folder: Path) -> None:
    drop_checksums(folder)
    edit_config(folder, lambda s: s["network"].update(has_score=False))
    assert_damaged(folder, "weights.pt", match="does not declare")


def test_non_finite_weights(folder: Path) -> None:
    def poison(weights: dict) -> dict:
        weights["velocity"]["net.0.weight"][0, 0] = float("nan")
        return weights

    rewrite_weights(folder, poison)
    assert_damaged(folder, "weights.pt", match="non-finite")


def rewrite_cells(folder: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    drop_checksums(folder)
    with np.load(folder / "cells.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    np.savez_compressed(folder / "cells.npz", **arrays)


def test_cells_with_too_few_time_points(folder: Path) -> None:
    def drop_last(arrays: dict[str, np.ndarray]) -> None:
        last = sum(k.startswith("cells_") for k in arrays) - 1
        del arrays[f"cells_{last}"], arrays[f"names_{last}"]

    rewrite_cells(folder, drop_last)
    assert_damaged(folder, "cells.npz", match="time points")


def test_cells_with_too_many_time_points(folder: Path) -> None:
    def add_one(arrays: dict[str, np.ndarray]) -> None:
        n = sum(k.startswith("cells_") for k in arrays)
        arrays[f"cells_{n}"], arrays[f"names_{n}"] = arrays["cells_0"], arrays["names_0"]

    rewrite_cells(folder, add_one)
    assert_damaged(folder, "cells.npz", match="time points")


@pytest.mark.parametrize(
    "edit",
    [
        lambda a: a.update(cells_1=a["cells_1"][:, :1]),  # wrong number of dimensions
        lambda a: a.update(cells_1=a["cells_1"][:, 0]),  # not a matrix
        lambda a: a.update(cells_1=a["cells_1"][:0]),  # no cells
        lambda a: a.update(names_1=a["names_1"][:-1]),  # names do not match cells
        lambda a: a.update(cells_1=np.full_like(a["cells_1"], np.inf)),
        lambda a: a.update(names_2=a.pop("names_1")),  # renamed array
    ],
)
def test_cells_inconsistent(folder: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    rewrite_cells(folder, edit)
    assert_damaged(folder, "cells.npz")


def test_unregistered_method_is_not_damage(folder: Path) -> None:
    # A model of a method registered by the session that fitted it is intact; say what to do.
    drop_checksums(folder)
    edit_config(folder, lambda s: s["config"].update(method="my-method"))
    with pytest.raises(ValueError, match="register_method") as info:
        TrajectoryModel.load(folder, device="cpu")
    assert not isinstance(info.value, DamagedModelError)


def test_damaged_is_a_value_error() -> None:
    # Callers that caught ValueError for a bad folder keep working.
    assert issubclass(trajflow.DamagedModelError, ValueError)


# ------------------------------------------------------------------ what still loads
def test_folder_without_checksums_loads_and_predicts_identically(
    fitted: tuple[TrajectoryModel, Path], folder: Path
) -> None:
    model, _ = fitted
    drop_checksums(folder)
    loaded = TrajectoryModel.load(folder, device="cpu")
    np.testing.assert_array_equal(
        loaded.predict(1.5).obsm["X_pca"], model.predict(1.5).obsm["X_pca"]
    )
    np.testing.assert_array_equal(
        loaded.predict(2.0, sde=True, seed=4).obsm["X_pca"],
        model.predict(2.0, sde=True, seed=4).obsm["X_pca"],
    )
    assert loaded.config == model.config and loaded.times == model.times


def test_model_saved_before_clocks_loads(folder: Path) -> None:
    def old_layout(state: dict) -> None:
        clock = state.pop("clock")
        # The old linear clock: tau = (t - origin) / unit.
        (t0, t1), (tau0, tau1) = clock["times"], clock["taus"]
        unit = (t1 - t0) / (tau1 - tau0)
        state["time_origin"], state["time_unit"] = t0 - tau0 * unit, unit
        del state["integrity"]

    edit_config(folder, old_layout)
    assert TrajectoryModel.load(folder, device="cpu").clock.kind == "time"


def test_checksums_are_recorded(folder: Path) -> None:
    record = read_config(folder)["integrity"]
    assert set(record["files"]) == {"weights.pt", "cells.npz"}
    assert record["files"]["weights.pt"]["size"] == (folder / "weights.pt").stat().st_size
    # The listing of the folder is unchanged: the record lives inside config.json.
    assert sorted(p.name for p in folder.iterdir()) == ["cells.npz", "config.json", "weights.pt"]


def test_numpy_scalars_in_config_are_saved_as_plain_json(
    fitted: tuple[TrajectoryModel, Path], tmp_path: Path
) -> None:
    model, _ = fitted
    original = dict(model.config)
    try:
        model.config.update(
            seed=np.int64(7), sigma=np.float32(0.5), lr=np.float64(1e-3), flag=np.bool_(True)
        )
        model.config["grid"] = np.arange(3)
        path = model.save(tmp_path / "m")
    finally:
        model.config.clear()
        model.config.update(original)
    saved = read_config(path)["config"]
    assert saved["seed"] == 7 and type(saved["seed"]) is int
    assert saved["flag"] is True and saved["grid"] == [0, 1, 2]
    assert TrajectoryModel.load(path, device="cpu").config["seed"] == 7


def test_extra_files_are_checked(fitted: tuple[TrajectoryModel, Path], tmp_path: Path) -> None:
    model, _ = fitted
    path = model.save(tmp_path / "ckpt", extra={"trainer_state.pt": {"step": torch.tensor(5)}})
    assert "trainer_state.pt" in read_config(path)["integrity"]["files"]
    truncate(path / "trainer_state.pt")
    assert_damaged(path, "trainer_state.pt", match="truncated")
    # Removing it on purpose leaves a model that loads (the trainer state is not needed).
    (path / "trainer_state.pt").unlink()
    assert TrajectoryModel.load(path, device="cpu").times == model.times


@pytest.mark.parametrize("name", ["config.json", "../escape.pt", ".hidden", ""])
def test_extra_file_names_are_plain(
    fitted: tuple[TrajectoryModel, Path], tmp_path: Path, name: str
) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        fitted[0].save(tmp_path / "m", extra={name: {}})
    assert not (tmp_path / "m").exists()


def test_missing_files_and_other_formats_keep_their_errors(folder: Path) -> None:
    edit_config(folder, lambda s: s.update(format_version=99))
    with pytest.raises(ValueError, match="format 99") as info:
        TrajectoryModel.load(folder)
    assert not isinstance(info.value, DamagedModelError)
    (folder / "cells.npz").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete.*cells.npz"):
        TrajectoryModel.load(folder)


def test_failed_save_keeps_the_old_model(
    fitted: tuple[TrajectoryModel, Path], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(OSError, match="disk full"):
        fitted[0].save(folder, overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["model"]  # no temporary debris
    assert "DamagedModelError" in trajflow.__all__
