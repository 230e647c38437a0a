"""The files of a saved model folder: writing them atomically with checksums, and reading them back
with every way they can be damaged turned into one clear :class:`DamagedModelError`.

A folder holds ``config.json`` (plain JSON: settings, scaler, times, clock, history, network size),
``weights.pt`` (the state dicts, read with ``weights_only=True``), ``cells.npz`` (the training
cells) and any ``extra`` files of a training checkpoint. ``config.json`` also records, under
``"integrity"``, the size and sha256 of every other file and a sha256 of its own contents, so
truncated or modified files are named precisely before anything is parsed. Folders saved before
that record existed are checked file by file instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._anndata import Standardizer
from ._clock import Clock, time_clock
from ._folders import (
    backup_path,
    check_replaceable,
    finish_save_folder,
    new_save_folder,
    recoverable,
    recovery_hint,
    writing,
)
from ._methods import METHODS
from ._timecourse import TimeCourse
from ._validate import is_int, is_real
from ._version import __version__
from .core import VelocityNet

#: Bumped whenever the saved layout changes; ``read_model`` refuses other formats.
FORMAT_VERSION = 1

CONFIG_FILE, WEIGHTS_FILE, CELLS_FILE = "config.json", "weights.pt", "cells.npz"
#: ``config.json`` key of the checksum record; readers that do not know it ignore it.
INTEGRITY_KEY = "integrity"
_MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CELLS_FILE)
_CHUNK = 1 << 20

logger = logging.getLogger("trajflow")


class DamagedModelError(ValueError):
    """A saved model folder whose files are unreadable, corrupt or inconsistent with each other."""


def damaged(path: Path, name: str, problem: str) -> DamagedModelError:
    """The error for file ``name`` of the model folder ``path``, with what to do about it.

    Parameters
    ----------
    path
        The model folder.
    name
        The damaged file, relative to ``path``.
    problem
        What is wrong with it, phrased to follow the file name.

    Returns
    -------
    DamagedModelError
        To be raised by the caller.
    """
    return DamagedModelError(
        f"The saved trajflow model at {path} is damaged: {name} {problem}. Save the model again "
        "(model.save(path, overwrite=True)) or refit it."
    )


@contextmanager
def reading(path: Path, name: str, what: str) -> Iterator[None]:
    """Turn any failure while reading ``what`` from file ``name`` into a :class:`DamagedModelError`.

    Parameters
    ----------
    path
        The model folder.
    name
        The file being read.
    what
        What is being read from it, for the message (``"torch.load"``, ``"the clock"``).

    Raises
    ------
    DamagedModelError
        When the body raises anything but a permission error (which is not damage) or a
        :class:`DamagedModelError` of its own.
    """
    try:
        yield
    except (DamagedModelError, PermissionError):
        raise
    except Exception as err:
        # The first line of the library's message is enough to say what went wrong.
        lines = str(err).strip().splitlines()
        detail = lines[0].split(". ")[0].rstrip(".")[:200] if lines else ""
        raise damaged(
            path, name, f"cannot be read ({what}: {type(err).__name__}: {detail})"
        ) from err


# ----------------------------------------------------------------------------------- JSON
def _json_default(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy and torch scalars and arrays become plain JSON values."""
    if isinstance(obj, np.generic | torch.Tensor) and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def plain_json(obj: Any) -> Any:
    """``obj`` as exactly what ``config.json`` will hold: plain dicts, lists, str, int, float.

    Parameters
    ----------
    obj
        A JSON-like structure that may hold numpy or torch scalars and arrays (an ``np.int64``
        seed, say).

    Returns
    -------
    Any
        The same structure after a JSON round trip (dict keys become strings).
    """
    return json.loads(json.dumps(obj, default=_json_default))


def _config_digest(state: Mapping[str, Any]) -> str:
    """sha256 of ``state``, in a canonical JSON form, leaving out only the digest itself.

    The file checksums are covered too, so an edited record is blamed on ``config.json``. JSON
    floats round-trip exactly in Python, so the digest of what was written equals the digest of
    what is read back unless the file was changed.
    """
    body = dict(state)
    record = body.get(INTEGRITY_KEY)
    if isinstance(record, dict):
        body[INTEGRITY_KEY] = {k: v for k, v in record.items() if k != "config_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _file_record(file: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return {"size": file.stat().st_size, "sha256": digest.hexdigest()}


def _fsync(file: Path) -> None:
    # Renaming only makes the save atomic if the data reached the disk first.
    with file.open("rb") as f:
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------------- writing
@dataclass
class ModelParts:
    """Everything a :class:`~trajflow.TrajectoryModel` is made of, as written and read here.

    Attributes
    ----------
    velocity_net, score_net
        The networks (``score_net`` is ``None`` when the model learned no score).
    config
        The fit's settings.
    scaler
        The standardisation of the representation.
    cells
        The training cells, standardised.
    observed_times
        Every time point of the fitted AnnData, held-out ones included.
    clock
        Observed time -> the networks' internal time.
    history
        The training record.
    var_names
        For a model fitted on ``use_rep="X"``: the names of the genes (``var_names``) it models,
        written with its predictions; ``None`` otherwise (and for models saved before).
    """

    velocity_net: VelocityNet
    score_net: VelocityNet | None
    config: dict[str, Any]
    scaler: Standardizer
    cells: TimeCourse
    observed_times: list[float]
    clock: Clock
    history: dict[str, Any]
    var_names: list[str] | None = None


def model_state(parts: ModelParts) -> dict[str, Any]:
    """What ``config.json`` holds (before the checksum record): format, settings, scaler, times,
    clock, history and the networks' sizes."""
    net = parts.velocity_net
    state = {
        "format_version": FORMAT_VERSION,
        "trajflow_version": __version__,
        "config": parts.config,
        "scaler": parts.scaler.to_dict(),
        "times": list(parts.cells.times),
        "observed_times": parts.observed_times,
        "clock": parts.clock.to_dict(),
        "history": parts.history,
        "network": {
            "dim": net.dim,
            "hidden": net.hidden,
            "n_layers": net.n_layers,
            "activation": net.activation,
            "has_score": parts.score_net is not None,
        },
    }
    if parts.var_names is not None:  # optional: older models lack it and still load
        state["var_names"] = list(parts.var_names)
    return state


def write_model(
    path: str | os.PathLike,
    parts: ModelParts,
    *,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model folder atomically: into a temporary folder that is then renamed.

    ``config.json`` gets :func:`model_state` (numpy scalars and arrays made plain JSON),
    ``weights.pt`` the state dicts (``{"velocity": ..., "score": ...}``), ``cells.npz`` the
    training cells as ``cells_<k>`` (float32) and ``names_<k>`` per trained time point.

    Parameters
    ----------
    path
        The model folder to create (or replace, with ``overwrite=True``).
    parts
        The model.
    extra
        Further file names mapped to objects written with ``torch.save`` (training checkpoints).
    overwrite
        Replace an existing ``path``.

    Returns
    -------
    Path
        The model folder.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is false, or is not a trajflow model folder
        (a file, or a folder of other files: refused even with ``overwrite=True``).
    DiskFullError
        When the disk fills during the write (an :class:`OSError`; a model already at ``path``
        is unchanged).
    ValueError
        When an ``extra`` name is not a plain file name or collides with a model file.
    """
    path = Path(path)
    check_replaceable(path, overwrite=overwrite)
    extra = dict(extra or {})
    for name in extra:
        if not name or name in _MODEL_FILES or Path(name).name != name or name.startswith("."):
            raise ValueError(
                f"extra file name {name!r} must be a plain file name other than "
                f"{', '.join(_MODEL_FILES)}."
            )
    # Converted before anything is written, so an unserialisable config fails fast.
    config = plain_json(model_state(parts))
    weights = {"velocity": parts.velocity_net.state_dict()}
    if parts.score_net is not None:
        weights["score"] = parts.score_net.state_dict()
    arrays = {}
    for k in range(len(parts.cells.times)):
        arrays[f"cells_{k}"] = parts.cells.populations[k].astype(np.float32)
        arrays[f"names_{k}"] = parts.cells.cell_names[k].astype(str)
    with writing(path, path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        left_behind = recoverable(path)
        tmp = new_save_folder(path)
        try:
            torch.save(weights, tmp / WEIGHTS_FILE)
            np.savez_compressed(tmp / CELLS_FILE, **arrays)
            for name, obj in extra.items():
                torch.save(obj, tmp / name)
            files = {}
            for name in (WEIGHTS_FILE, CELLS_FILE, *extra):
                _fsync(tmp / name)
                files[name] = _file_record(tmp / name)
            # Written last: it holds the checksums of the files above and of its own contents.
            config[INTEGRITY_KEY] = {"files": files}
            config[INTEGRITY_KEY]["config_sha256"] = _config_digest(config)
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
            _fsync(tmp / CONFIG_FILE)
            finish_save_folder(tmp)
            backup = backup_path(path)
            if path.exists():
                shutil.rmtree(backup, ignore_errors=True)
                path.rename(backup)
                tmp.rename(path)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if left_behind is not None:
        if overwrite:
            # the interrupted save was replacing that model; this one finished the job
            shutil.rmtree(left_behind, ignore_errors=True)
            logger.warning(
                "removed %s, the model an interrupted save to %s replaced", left_behind, path
            )
        else:
            logger.warning(
                "%s holds the model an earlier, interrupted save to %s was replacing; it is "
                "kept (delete it when it is not needed)", left_behind, path,
            )  # fmt: skip
    return path


# ----------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class _NetworkSpec:
    dim: int
    hidden: int
    n_layers: int
    activation: str
    has_score: bool

    def describe(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, n_layers={self.n_layers}"


def read_model(path: str | os.PathLike) -> ModelParts:
    """Read and check a model folder written by :func:`write_model`.

    Parameters
    ----------
    path
        The model folder.

    Returns
    -------
    ModelParts
        The checked contents, networks on the CPU.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a folder or lacks one of the model files.
    ValueError
        When the folder was written in another format version, or with a method that is not
        registered in this session.
    DamagedModelError
        When a file is unreadable, truncated, modified or inconsistent with the others.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"No saved trajflow model at {path} (not a directory).{recovery_hint(path)}"
        )
    missing = [f for f in _MODEL_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path} is an incomplete trajflow model: missing {', '.join(missing)}. "
            "Save the model again with model.save(path, overwrite=True)."
        )
    state = _read_config(path, FORMAT_VERSION)
    _verify_checksums(path, state)
    net = _check_config(path, state)
    velocity_net, score_net = _read_weights(path, net)
    cells = _read_cells(path, state, net)
    with reading(path, CONFIG_FILE, "the scaler"):
        scaler = Standardizer.from_dict(state["scaler"])
    with reading(path, CONFIG_FILE, "the clock"):
        clock = _read_clock(state)
    return ModelParts(
        velocity_net=velocity_net,
        score_net=score_net,
        config=state["config"],
        scaler=scaler,
        cells=cells,
        observed_times=state["observed_times"],
        clock=clock,
        history=state.get("history", {}),
        var_names=state.get("var_names"),
    )


def _read_clock(state: dict[str, Any]) -> Clock:
    """The saved clock; models saved before clocks existed stored a linear one as origin/unit."""
    if "clock" in state:
        return Clock.from_dict(state["clock"])
    return time_clock(state["times"], origin=state["time_origin"], unit=state["time_unit"])


def _read_config(path: Path, format_version: int) -> dict[str, Any]:
    with reading(path, CONFIG_FILE, "parsing the JSON"):
        state = json.loads((path / CONFIG_FILE).read_bytes().decode("utf-8"))
    if not isinstance(state, dict):
        raise damaged(path, CONFIG_FILE, f"holds a JSON {type(state).__name__}, not an object")
    if "format_version" not in state:
        raise damaged(path, CONFIG_FILE, "has no format_version")
    fmt = state["format_version"]
    if fmt != format_version:
        # Another version's layout, not damage: say which trajflow can read it.
        raise ValueError(
            f"{path} was written in model format {fmt!r} (trajflow "
            f"{state.get('trajflow_version', 'unknown')}); this trajflow {__version__} reads "
            f"format {format_version}. Refit the model or install the matching trajflow."
        )
    return state


def _verify_checksums(path: Path, state: dict[str, Any]) -> None:
    """Check the files against the sizes and checksums recorded at save time, when recorded."""
    if INTEGRITY_KEY not in state:
        return  # saved before checksums were recorded: the per-file checks have to do
    record = state[INTEGRITY_KEY]
    with reading(path, CONFIG_FILE, "the checksum record"):
        own = str(record["config_sha256"])
        files = {
            str(name): (int(r["size"]), str(r["sha256"])) for name, r in record["files"].items()
        }
    if _config_digest(state) != own:
        raise damaged(
            path,
            CONFIG_FILE,
            "was changed after it was saved (its contents no longer match the "
            "checksum recorded in it)",
        )
    for name, (size, sha256) in files.items():
        if Path(name).name != name or name == CONFIG_FILE:
            raise damaged(path, CONFIG_FILE, f"lists an invalid file name {name!r}")
        file = path / name
        if not file.is_file():
            if name in _MODEL_FILES:
                raise damaged(path, name, "is missing")
            continue  # a removed checkpoint file (trainer state) is not needed to load the model
        found = _file_record(file)
        if found["size"] != size:
            raise damaged(
                path,
                name,
                f"is {found['size']} bytes but was {size} bytes when saved "
                "(truncated or overwritten)",
            )
        if found["sha256"] != sha256:
            raise damaged(
                path,
                name,
                "does not match the checksum recorded when it was saved (modified or corrupted)",
            )


def _is_finite_real(v: Any) -> bool:
    return is_real(v) and math.isfinite(v)


def _check_config(path: Path, state: dict[str, Any]) -> _NetworkSpec:
    """Check the structure of ``config.json``; returns the network it describes."""

    def require(ok: bool, problem: str) -> None:
        if not ok:
            raise damaged(path, CONFIG_FILE, problem)

    for key in ("config", "scaler", "times", "observed_times", "network"):
        require(key in state, f"has no {key!r} entry")
    require(
        "clock" in state or {"time_origin", "time_unit"} <= state.keys(), "has no 'clock' entry"
    )

    net = state["network"]
    require(isinstance(net, dict), "has a 'network' entry that is not an object")
    for key in ("dim", "hidden", "n_layers", "activation", "has_score"):
        require(key in net, f"has no network.{key!r} entry")
    for key in ("dim", "hidden", "n_layers"):
        require(is_int(net[key]) and net[key] >= 1, f"has network.{key} = {net[key]!r}")
    require(isinstance(net["activation"], str), f"has network.activation = {net['activation']!r}")
    require(isinstance(net["has_score"], bool), f"has network.has_score = {net['has_score']!r}")
    spec = _NetworkSpec(
        net["dim"], net["hidden"], net["n_layers"], net["activation"], net["has_score"]
    )

    config = state["config"]
    require(isinstance(config, dict), "has a 'config' entry that is not an object")
    for key in ("method", "time_key", "use_rep", "n_dims", "sigma"):
        require(key in config, f"has no config.{key!r} entry")
    method = config["method"]
    require(isinstance(method, str) and method != "", f"has config.method = {method!r}")
    if method not in METHODS:
        # Not damage: most likely a method registered in the session that fitted the model.
        raise ValueError(
            f"{path} was fitted with method {method!r}, which is not registered here (known: "
            f"{sorted(METHODS)}). Register it with trajflow.register_method before loading."
        )
    require(
        config["n_dims"] == spec.dim,
        f"has config.n_dims = {config['n_dims']!r} but network.dim = {spec.dim}",
    )
    require(
        _is_finite_real(config["sigma"]) and config["sigma"] >= 0, "has an invalid config.sigma"
    )
    require(isinstance(config.get("holdout", []), list), "has a config.holdout that is not a list")

    times = state["times"]
    require(
        isinstance(times, list) and len(times) >= 2 and all(_is_finite_real(t) for t in times),
        "has a 'times' entry that is not a list of at least 2 finite numbers",
    )
    require(all(a < b for a, b in pairwise(times)), "has unsorted 'times'")
    observed = state["observed_times"]
    require(
        isinstance(observed, list) and all(_is_finite_real(t) for t in observed),
        "has an 'observed_times' entry that is not a list of finite numbers",
    )

    scaler = state["scaler"]
    require(isinstance(scaler, dict), "has a 'scaler' entry that is not an object")
    for key in ("mean", "scale"):
        values = scaler.get(key)
        require(
            isinstance(values, list)
            and len(values) == spec.dim
            and all(_is_finite_real(v) for v in values),
            f"has a scaler.{key} that is not a list of {spec.dim} finite numbers",
        )
    require(all(v > 0 for v in scaler["scale"]), "has a non-positive scaler.scale")
    require(isinstance(state.get("history", {}), dict), "has a 'history' that is not an object")
    return spec


def _read_weights(path: Path, spec: _NetworkSpec) -> tuple[VelocityNet, VelocityNet | None]:
    with reading(path, WEIGHTS_FILE, "torch.load"):
        weights = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    if not isinstance(weights, dict) or "velocity" not in weights:
        raise damaged(path, WEIGHTS_FILE, "holds no 'velocity' network")
    if spec.has_score and "score" not in weights:
        raise damaged(path, WEIGHTS_FILE, f"holds no score network, which {CONFIG_FILE} declares")
    if not spec.has_score and "score" in weights:
        raise damaged(
            path, WEIGHTS_FILE, f"holds a score network, which {CONFIG_FILE} does not declare"
        )
    velocity = _network(path, spec, weights["velocity"], "velocity")
    score = _network(path, spec, weights["score"], "score") if spec.has_score else None
    return velocity, score


def _layer_sizes(tensors: Mapping[str, torch.Tensor]) -> str:
    """The ``dim, hidden, n_layers`` of saved ``VelocityNet`` weights, for the message."""
    try:
        mats = [tensors[f"net.{2 * i}.weight"] for i in range(len(tensors) // 2)]
        return f"dim={mats[-1].shape[0]}, hidden={mats[0].shape[0]}, n_layers={len(mats) - 1}"
    except (KeyError, IndexError, AttributeError):
        return "a different layout"


def _network(path: Path, spec: _NetworkSpec, tensors: Any, which: str) -> VelocityNet:
    # the weights are overwritten below: their random initialisation must not move the
    # caller's global torch stream (loading, like fitting, leaves it as it was)
    with reading(path, CONFIG_FILE, "network.activation"), torch.random.fork_rng(devices=[]):
        net = VelocityNet(spec.dim, spec.hidden, spec.n_layers, spec.activation)
    if not isinstance(tensors, dict) or not all(
        isinstance(t, torch.Tensor) for t in tensors.values()
    ):
        raise damaged(path, WEIGHTS_FILE, f"holds a {which} network that is not a state dict")
    expected = net.state_dict()
    if set(tensors) != set(expected) or any(
        tuple(tensors[k].shape) != tuple(v.shape) for k, v in expected.items()
    ):
        raise damaged(
            path,
            WEIGHTS_FILE,
            f"does not match the network described in {CONFIG_FILE}: "
            f"{CONFIG_FILE} says {spec.describe()}, the {which} weights have "
            f"{_layer_sizes(tensors)}",
        )
    if not all(t.is_floating_point() and bool(torch.isfinite(t).all()) for t in tensors.values()):
        raise damaged(path, WEIGHTS_FILE, f"holds non-finite or non-float {which} weights")
    net.load_state_dict(tensors)
    return net.eval()


def _read_cells(path: Path, state: dict[str, Any], spec: _NetworkSpec) -> TimeCourse:
    times = [float(t) for t in state["times"]]
    with reading(path, CELLS_FILE, "np.load"), np.load(path / CELLS_FILE) as npz:
        # Read every array now: a corrupt member only fails when it is decompressed.
        arrays = {key: npz[key] for key in npz.files}
    n_stored = sum(key.startswith("cells_") for key in arrays)
    expected = {f"{kind}_{k}" for kind in ("cells", "names") for k in range(len(times))}
    if n_stored != len(times):
        raise damaged(
            path,
            CELLS_FILE,
            f"holds cells of {n_stored} time points but {CONFIG_FILE} lists {len(times)} ({times})",
        )
    if set(arrays) != expected:
        raise damaged(
            path, CELLS_FILE, f"holds the arrays {sorted(arrays)} instead of {sorted(expected)}"
        )
    pops, names = [], []
    for k, t in enumerate(times):
        x, labels = arrays[f"cells_{k}"], arrays[f"names_{k}"]
        if x.ndim != 2 or x.shape[1] != spec.dim or len(x) == 0:
            raise damaged(
                path,
                CELLS_FILE,
                f"holds cells of shape {x.shape} at time {t:g}; the network "
                f"of {CONFIG_FILE} needs (n_cells >= 1, {spec.dim})",
            )
        if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
            raise damaged(path, CELLS_FILE, f"holds non-finite or non-float cells at time {t:g}")
        if labels.ndim != 1 or len(labels) != len(x) or labels.dtype.kind not in "US":
            raise damaged(
                path,
                CELLS_FILE,
                f"holds {labels.shape} cell names for {len(x)} cells at time {t:g}",
            )
        pops.append(x)
        names.append(labels)
    return TimeCourse(times=times, populations=pops, cell_names=names)
