"""`TrajectoryModel`: a fitted flow and what you can ask of it (predict, trajectories, velocity)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from ._anndata import Standardizer, get_representation
from ._clock import Clock, time_clock
from ._methods import get_method
from ._timecourse import TimeCourse
from .core import VelocityNet, integrate_ode, integrate_sde, resolve_device

logger = logging.getLogger("trajflow")

#: Bumped whenever the saved layout changes; ``load`` refuses other formats.
FORMAT_VERSION = 1
_CONFIG_FILE, _WEIGHTS_FILE, _CELLS_FILE = "config.json", "weights.pt", "cells.npz"


class ExtrapolationWarning(UserWarning):
    """A prediction outside the range of the time points the model was trained on."""


@dataclass
class Trajectories:
    """Per-cell paths on a time grid, in the user's representation space.

    Attributes
    ----------
    times
        The time grid, shape ``(n_points,)``, in the units of ``obs[time_key]``.
    paths
        Positions, shape ``(n_cells, n_points, n_dims)``.
    source_time
        The time point the cells start from.
    cell_names
        ``obs_names`` of the starting cells, shape ``(n_cells,)``.
    """

    times: np.ndarray
    paths: np.ndarray
    source_time: float
    cell_names: np.ndarray

    @property
    def end_points(self) -> np.ndarray:
        return self.paths[:, -1]


class TrajectoryModel:
    """A continuous flow fitted to a snapshot time course.

    Create one with :func:`trajflow.fit_trajectories` or :meth:`TrajectoryModel.load`. All inputs
    and outputs are in the user's representation space (``obsm[use_rep]``, first ``n_dims``
    columns) and time units (``obs[time_key]``); the standardisation and time scaling used
    internally are stored in the model.
    """

    def __init__(
        self,
        *,
        velocity_net: VelocityNet,
        score_net: VelocityNet | None,
        config: dict[str, Any],
        scaler: Standardizer,
        cells: TimeCourse,
        observed_times: list[float],
        clock: Clock,
        history: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
    ):
        self._velocity_net = velocity_net.eval()
        self._score_net = score_net.eval() if score_net is not None else None
        self.config = dict(config)
        self.scaler = scaler
        self._cells = cells  # training cells, standardised
        self.observed_times = list(observed_times)
        self.clock = clock  # observed time -> the network's internal time
        self.history = history or {}
        self.device = resolve_device(device)
        self.to(self.device)

    # ----------------------------------------------------------------- basic facts
    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def time_key(self) -> str:
        return self.config["time_key"]

    @property
    def use_rep(self) -> str:
        return self.config["use_rep"]

    @property
    def n_dims(self) -> int:
        return int(self.config["n_dims"])

    @property
    def times(self) -> list[float]:
        """Time points the model was trained on."""
        return list(self._cells.times)

    @property
    def holdout(self) -> list[float]:
        """Observed time points that were excluded from training."""
        return list(self.config.get("holdout", []))

    @property
    def sigma(self) -> float:
        return float(self.config["sigma"])

    def __repr__(self) -> str:
        return (
            f"TrajectoryModel(method={self.method!r}, use_rep={self.use_rep!r}, "
            f"n_dims={self.n_dims}, times={self.times}, holdout={self.holdout}, "
            f"clock={self.clock.kind!r}, device={str(self.device)!r})"
        )

    def to(self, device: str | torch.device) -> TrajectoryModel:
        """Move the networks to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``...)."""
        self.device = resolve_device(device)
        self._velocity_net.to(self.device)
        if self._score_net is not None:
            self._score_net.to(self.device)
        return self

    # ----------------------------------------------------------------- time handling
    def _check_time(self, time: float, what: str = "time") -> float:
        try:
            time = float(time)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{what} must be a number, got {time!r}.") from err
        if not np.isfinite(time):
            raise ValueError(f"{what} must be finite, got {time}.")
        lo, hi = self.times[0], self.times[-1]
        if time < lo or time > hi:
            warnings.warn(
                f"{what}={time:g} is outside the trained range [{lo:g}, {hi:g}]: the flow is "
                "extrapolated and may be unreliable.",
                ExtrapolationWarning,
                stacklevel=3,
            )
        return time

    def source_time_for(self, time: float) -> float:
        """The trained time point a prediction at ``time`` starts from: the nearest strictly
        earlier one, or the first when ``time`` is at or before it."""
        earlier = [t for t in self.times if t < time]
        return earlier[-1] if earlier else self.times[0]

    def _source_cells(
        self, source_time: float | None, time: float, n_cells: int | None, seed: int
    ) -> tuple[float, np.ndarray, np.ndarray]:
        if source_time is None:
            source_time = self.source_time_for(time)
        x = self._cells.population(source_time)
        names = self._cells.cell_names[self._cells.times.index(self._cells_time(source_time))]
        if n_cells is not None:
            if not isinstance(n_cells, int | np.integer) or n_cells < 1:
                raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}.")
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(x), size=n_cells, replace=n_cells > len(x))
            x, names = x[idx], names[idx]
        return float(source_time), x, names

    def _cells_time(self, t: float) -> float:
        from ._timecourse import match_time

        return match_time(t, self._cells.times, what="source_time")

    # ----------------------------------------------------------------- the flow
    def _drift(self, sde: bool):
        vnet, snet = self._velocity_net, self._score_net
        if not sde:
            return lambda x, t: vnet(x, t)
        half_g2 = 0.5 * self.sigma**2
        return lambda x, t: vnet(x, t) + half_g2 * snet(x, t)

    def _push(
        self,
        z0: np.ndarray,
        t_from: float,
        t_grid: np.ndarray,
        *,
        sde: bool,
        seed: int,
        solver: str | None,
        n_steps: int | None,
    ) -> np.ndarray:
        """Integrate standardised cells from ``t_from`` through ``t_grid`` (user time units)."""
        if sde and self._score_net is None:
            raise ValueError(
                f"sde=True needs a score network, which method={self.method!r} does not learn; "
                "fit with method='sb-cfm' or use sde=False."
            )
        solver = solver or self.config["solver"]
        n_steps = n_steps or self.config["solver_steps"]
        taus = np.atleast_1d(self.clock(np.asarray(t_grid, dtype=float)))
        # The solver needs the start time first; drop it from the output if the caller did not ask.
        tau_from = float(self.clock(t_from))
        prepend = not np.isclose(taus[0], tau_from)
        if prepend:
            taus = np.concatenate([[tau_from], taus])
        grid = torch.as_tensor(taus, dtype=torch.float32, device=self.device)
        x = torch.as_tensor(np.asarray(z0, dtype=np.float32), device=self.device)
        if sde:
            gen = torch.Generator(device=self.device).manual_seed(int(seed))
            out = integrate_sde(
                self._drift(True), self.sigma, x, grid, n_steps=n_steps, generator=gen
            )
        else:
            out = integrate_ode(self._drift(False), x, grid, solver=solver, n_steps=n_steps)
        out = out[1:] if prepend else out
        return out.cpu().numpy().astype(np.float64)

    def predict(
        self,
        time: float,
        *,
        source_time: float | None = None,
        n_cells: int | None = None,
        sde: bool = False,
        seed: int = 0,
        solver: str | None = None,
        n_steps: int | None = None,
    ) -> AnnData:
        """Predict the population at ``time`` by pushing observed cells through the flow.

        Parameters
        ----------
        time
            Target time, in the units of ``obs[time_key]``. Times outside the trained range are
            extrapolated with an :class:`ExtrapolationWarning`.
        source_time
            Trained time point whose cells are pushed. Default: the nearest strictly earlier
            trained time point (the first one for times at or before it).
        n_cells
            Number of cells to push (sampled from the source population with ``seed``).
            Default: all of them.
        sde
            Sample the SDE instead of the ODE (only for ``method="sb-cfm"``, which learns a
            score); the default ODE is the probability-flow ODE of the same marginals.
        seed
            Seed for subsampling and SDE noise.
        solver, n_steps
            Override the integrator chosen at fit time (a torchdiffeq method name, steps over
            the span).

        Returns
        -------
        AnnData of predicted cells: positions in ``obsm[use_rep]`` (``n_dims`` columns, user
        space), ``obs[time_key]`` the target time, ``obs['source_cell']`` and
        ``obs['source_time']`` where each predicted cell started.
        """
        time = self._check_time(time)
        if source_time is not None:
            source_time = self._check_time(source_time, "source_time")
        src, z0, names = self._source_cells(source_time, time, n_cells, seed)
        z = self._push(
            z0, src, np.array([time]), sde=sde, seed=seed, solver=solver, n_steps=n_steps
        )[0]
        x = self.scaler.inverse_transform(z)
        obs = pd.DataFrame(
            {self.time_key: np.full(len(x), time), "source_time": src, "source_cell": names},
            index=pd.Index([f"predicted-{i}" for i in range(len(x))]),
        )
        out = AnnData(obs=obs)
        out.obsm[self.use_rep] = x
        out.uns["trajflow"] = {"method": self.method, "source_time": src, "time": time, "sde": sde}
        return out

    def trajectories(
        self,
        *,
        source_time: float | None = None,
        end_time: float | None = None,
        n_points: int = 50,
        n_cells: int | None = None,
        sde: bool = False,
        seed: int = 0,
        solver: str | None = None,
        n_steps: int | None = None,
    ) -> Trajectories:
        """Per-cell paths from ``source_time`` (default: the first trained time point) to
        ``end_time`` (default: the last) on ``n_points`` evenly spaced times.

        ``end_time`` may be earlier than ``source_time`` to integrate backwards (ODE only).
        """
        source_time = self.times[0] if source_time is None else source_time
        end_time = self.times[-1] if end_time is None else self._check_time(end_time, "end_time")
        if not isinstance(n_points, int) or n_points < 2:
            raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}.")
        src, z0, names = self._source_cells(source_time, end_time, n_cells, seed)
        grid = np.linspace(src, end_time, n_points)
        z = self._push(z0, src, grid, sde=sde, seed=seed, solver=solver, n_steps=n_steps)
        paths = self.scaler.inverse_transform(z).transpose(1, 0, 2)
        return Trajectories(times=grid, paths=paths, source_time=src, cell_names=names)

    def representation(self, adata: AnnData) -> np.ndarray:
        """The cells of ``adata`` in this model's space: ``obsm[use_rep][:, :n_dims]``.

        Raises a clear error when ``adata`` lacks the representation or it has fewer dimensions
        than the model was fitted on.
        """
        if isinstance(adata, AnnData) and self.use_rep != "X" and self.use_rep not in adata.obsm:
            raise KeyError(
                f"This model was fitted on adata.obsm[{self.use_rep!r}], which this AnnData lacks "
                f"(obsm keys: {list(adata.obsm.keys())}). Compute the same representation first."
            )
        full = get_representation(adata, self.use_rep, None, allow_pca=False)
        if full.shape[1] < self.n_dims:
            raise ValueError(
                f"This model was fitted on {self.n_dims} dimensions of {self.use_rep!r}, but this "
                f"AnnData's {self.use_rep!r} has {full.shape[1]}. Use the AnnData the model was "
                "fitted on, or one with the same representation."
            )
        return full[:, : self.n_dims]

    def velocity(self, x: np.ndarray | AnnData, time: float) -> np.ndarray:
        """The learned velocity ``dx/dt`` at positions ``x`` and ``time``.

        ``x`` is an array ``(n, n_dims)`` in the user's representation space, or an AnnData whose
        ``obsm[use_rep]`` is used. Returned in representation units per unit of ``obs[time_key]``.
        """
        if isinstance(x, AnnData):
            x = self.representation(x)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_dims:
            raise ValueError(
                f"x must have shape (n_cells, {self.n_dims}) (the model's n_dims), got {x.shape}."
            )
        time = self._check_time(time)
        z = torch.as_tensor(self.scaler.transform(x), dtype=torch.float32, device=self.device)
        with torch.no_grad():
            v = self._velocity_net(z, torch.tensor(float(self.clock(time)), device=self.device))
        return self.scaler.inverse_transform_velocity(v.cpu().numpy().astype(np.float64)) * float(
            self.clock.rate(time)
        )

    # ----------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        """Everything :meth:`save` writes to ``config.json``."""
        from . import __version__

        return {
            "format_version": FORMAT_VERSION,
            "trajflow_version": __version__,
            "config": self.config,
            "scaler": self.scaler.to_dict(),
            "times": self.times,
            "observed_times": self.observed_times,
            "clock": self.clock.to_dict(),
            "history": self.history,
            "network": {
                "dim": self._velocity_net.dim,
                "hidden": self._velocity_net.hidden,
                "n_layers": self._velocity_net.n_layers,
                "activation": self._velocity_net.activation,
                "has_score": self._score_net is not None,
            },
        }

    def save(
        self,
        path: str | os.PathLike,
        *,
        overwrite: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Save to directory ``path``: ``config.json``, ``weights.pt`` (state dicts) and
        ``cells.npz`` (the training cells, needed to predict).

        Written to a temporary directory first and renamed, so an interrupted save never leaves
        a half-written model. Refuses to replace an existing ``path`` unless ``overwrite=True``.
        ``extra`` maps further file names to objects written with ``torch.save`` in the same
        atomic step (used for training checkpoints).
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} already exists; pass overwrite=True to replace it or choose another path."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            (tmp / _CONFIG_FILE).write_text(json.dumps(self.state(), indent=2))
            weights = {"velocity": self._velocity_net.state_dict()}
            if self._score_net is not None:
                weights["score"] = self._score_net.state_dict()
            torch.save(weights, tmp / _WEIGHTS_FILE)
            arrays = {}
            for k, _t in enumerate(self._cells.times):
                arrays[f"cells_{k}"] = self._cells.populations[k].astype(np.float32)
                arrays[f"names_{k}"] = self._cells.cell_names[k].astype(str)
            np.savez_compressed(tmp / _CELLS_FILE, **arrays)
            for name, obj in (extra or {}).items():
                torch.save(obj, tmp / name)
            if path.exists():
                backup = path.with_name(f".{path.name}.old")
                shutil.rmtree(backup, ignore_errors=True)
                path.rename(backup)
                tmp.rename(path)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("Saved %s to %s", self, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto") -> TrajectoryModel:
        """Load a model written by :meth:`save`, validating what is found on disk."""
        from . import __version__

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"No saved trajflow model at {path} (not a directory).")
        missing = [
            f for f in (_CONFIG_FILE, _WEIGHTS_FILE, _CELLS_FILE) if not (path / f).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{path} is an incomplete trajflow model: missing {', '.join(missing)}. "
                "Save the model again with model.save(path, overwrite=True)."
            )
        try:
            state = json.loads((path / _CONFIG_FILE).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path / _CONFIG_FILE} is not valid JSON: {err}.") from err
        fmt = state.get("format_version")
        if fmt != FORMAT_VERSION:
            raise ValueError(
                f"{path} was written in model format {fmt!r} (trajflow "
                f"{state.get('trajflow_version', 'unknown')}); this trajflow {__version__} reads "
                f"format {FORMAT_VERSION}. Refit the model or install the matching trajflow."
            )
        net_cfg = state["network"]
        get_method(state["config"]["method"])
        vnet = VelocityNet(
            net_cfg["dim"], net_cfg["hidden"], net_cfg["n_layers"], net_cfg["activation"]
        )
        weights = torch.load(path / _WEIGHTS_FILE, map_location="cpu", weights_only=True)
        vnet.load_state_dict(weights["velocity"])
        snet = None
        if net_cfg["has_score"]:
            snet = VelocityNet(
                net_cfg["dim"], net_cfg["hidden"], net_cfg["n_layers"], net_cfg["activation"]
            )
            snet.load_state_dict(weights["score"])
        with np.load(path / _CELLS_FILE) as arrays:
            pops = [arrays[f"cells_{k}"] for k in range(len(state["times"]))]
            names = [arrays[f"names_{k}"] for k in range(len(state["times"]))]
        if any(p.shape[1] != net_cfg["dim"] for p in pops):
            raise ValueError(f"{path}: stored cells do not match the network dimension.")
        return cls(
            velocity_net=vnet,
            score_net=snet,
            config=state["config"],
            scaler=Standardizer.from_dict(state["scaler"]),
            cells=TimeCourse(times=list(state["times"]), populations=pops, cell_names=names),
            observed_times=state["observed_times"],
            clock=_load_clock(state),
            history=state.get("history", {}),
            device=device,
        )


def _load_clock(state: dict[str, Any]) -> Clock:
    """The saved clock; models saved before clocks existed stored a linear one as origin/unit."""
    if "clock" in state:
        return Clock.from_dict(state["clock"])
    return time_clock(state["times"], origin=state["time_origin"], unit=state["time_unit"])
