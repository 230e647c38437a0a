"""`TrajectoryModel`: a fitted flow and what you can ask of it (predict, trajectories, velocity)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anndata import AnnData

from ._anndata import Standardizer, get_representation, representation_width
from ._clock import Clock
from ._integration import Integrator, integrate_cells, integration_options
from ._outputs import prediction_anndata
from ._scoring import Support
from ._settings import user_stacklevel
from ._sources import SourcePlan, plan_sources
from ._storage import ModelParts, model_state, read_model, write_model
from ._timecourse import TimeCourse, match_time, same_time, time_tolerance
from ._trajectories import Trajectories
from ._validate import (
    check_int,
    check_optional_int,
    check_time,
    check_times,
    is_real,
)
from .core import VelocityNet, resolve_device

logger = logging.getLogger("trajflow")


class ExtrapolationWarning(UserWarning):
    """A prediction outside the range of the time points the model was trained on."""


class TrajectoryModel:
    """A continuous flow fitted to a snapshot time course.

    Create one with :func:`trajflow.fit_trajectories` or :meth:`TrajectoryModel.load`. All inputs
    and outputs are in the user's representation space (``obsm[use_rep]``, first ``n_dims``
    columns) and time units (``obs[time_key]``); the standardisation and time scaling used
    internally are stored in the model.

    The constructor is internal: its arguments are what :func:`~trajflow.fit_trajectories`
    trains and :meth:`load` reads back, all keyword-only.

    Parameters
    ----------
    velocity_net : ``VelocityNet``
        The trained velocity network, in the standardised space and the clock's internal time
        (set to evaluation mode).
    score_net : ``VelocityNet`` or None
        The trained score network of a method that learns one (``sb-cfm``), else ``None``.
    config
        The fit's settings (``method``, ``time_key``, ``use_rep``, ``n_dims``, ``sigma``,
        ``solver``, ``solver_steps``, ``holdout``, ``scaling``, ...); copied.
    scaler : ``Standardizer``
        The standardisation of the representation the networks were trained in.
    cells : ``TimeCourse``
        The standardised training cells, one population per trained time point (the source
        cells of :meth:`predict` and :meth:`trajectories`).
    observed_times
        Every time point of the fitted AnnData, held-out ones included.
    clock : ``Clock``
        The map from observed time (units of ``obs[time_key]``) to the networks' internal time.
    history
        The training record (losses, steps done, fit seconds, ...). Default: empty.
    device
        Where the networks are moved: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (CUDA
        when available) or a :class:`torch.device`.
    var_names
        For ``use_rep="X"``: the names of the ``n_dims`` genes modelled (the fitted AnnData's
        first ``n_dims`` ``var_names``), so predictions carry them; ``None`` otherwise.
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
        var_names: Sequence[str] | None = None,
    ):
        self._velocity_net = velocity_net.eval()
        self._score_net = score_net.eval() if score_net is not None else None
        self.config = dict(config)
        self.scaler = scaler
        self._cells = cells  # training cells, standardised
        self.observed_times = list(observed_times)
        self.clock = clock  # observed time -> the network's internal time
        self.history = history or {}
        self.var_names = None if var_names is None else [str(v) for v in var_names]
        self.device = resolve_device(device)
        # observed cells + threshold per set of trained time points, built on first predict
        self._supports: dict[tuple[int, ...], Support] = {}
        self.to(self.device)

    # ----------------------------------------------------------------- basic facts
    @property
    def method(self) -> str:
        """The flow-matching method the model was fitted with (a key of ``trajflow.METHODS``)."""
        return self.config["method"]

    @property
    def time_key(self) -> str:
        """The ``obs`` column of the fitted AnnData holding each cell's time point."""
        return self.config["time_key"]

    @property
    def use_rep(self) -> str:
        """The representation the model was fitted on (an ``obsm`` key, or ``"X"``)."""
        return self.config["use_rep"]

    @property
    def n_dims(self) -> int:
        """How many leading dimensions of ``use_rep`` the model works in."""
        return int(self.config["n_dims"])

    @property
    def scaling(self) -> str:
        """How cells were scaled for training (``fit_trajectories(scaling=...)``); models saved
        before the option existed were whitened per dimension."""
        return str(self.config.get("scaling", "per-dimension"))

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
        """The ``sigma`` the model was trained with (``fit_trajectories(sigma=...)``), in the
        scaled units the networks train in; the SDE's diffusion for ``sb-cfm``."""
        return float(self.config["sigma"])

    def __repr__(self) -> str:
        return (
            f"TrajectoryModel(method={self.method!r}, use_rep={self.use_rep!r}, "
            f"n_dims={self.n_dims}, scaling={self.scaling!r}, times={self.times}, "
            f"holdout={self.holdout}, "
            f"clock={self.clock.kind!r}, device={str(self.device)!r})"
        )

    def to(self, device: str | torch.device) -> TrajectoryModel:
        """Move the networks to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``...).

        Parameters
        ----------
        device
            ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (CUDA when available, else the CPU)
            or a :class:`torch.device`.

        Returns
        -------
        TrajectoryModel
            The model itself (moved in place), so calls chain.

        Raises
        ------
        ValueError
            When ``device`` is not a device name, or asks for CUDA where none is available.
        """
        self.device = resolve_device(device)
        self._velocity_net.to(self.device)
        if self._score_net is not None:
            self._score_net.to(self.device)
        return self

    # ----------------------------------------------------------------- time handling
    def _warn_if_extrapolated(self, time: float, what: str) -> None:
        lo, hi = self.times[0], self.times[-1]
        if time < lo or time > hi:
            warnings.warn(
                f"{what}={time:g} is outside the trained range [{lo:g}, {hi:g}]: the flow is "
                "extrapolated and may be unreliable.",
                ExtrapolationWarning,
                stacklevel=user_stacklevel(),  # the user's line, from predict, push, tl, pl
            )

    def _time(self, time: Any, what: str) -> float:
        """A checked time argument (any Python or numpy real), warned about when extrapolated."""
        time = check_time(what, time)
        self._warn_if_extrapolated(time, what)
        return time

    def source_time_for(self, time: float) -> float:
        """The trained time point a prediction at ``time`` starts from.

        The nearest strictly earlier trained time point, or the first one when ``time`` is at
        or before it: the source :meth:`predict` pushes forward when no ``source_time`` is
        given (a time between two trained time points also draws cells from the next one,
        pushed backward: see :meth:`predict`).

        Parameters
        ----------
        time
            The target time, in the units of ``obs[time_key]``.

        Returns
        -------
        float
            A trained time point (one of :attr:`times`).
        """
        tol = time_tolerance(self.times)
        earlier = [t for t in self.times if t < time and not same_time(t, time, tol=tol)]
        return earlier[-1] if earlier else self.times[0]

    def _source_cells(
        self, source_time: float | None, time: float, n_cells: int | None, seed: int
    ) -> tuple[float, np.ndarray, np.ndarray]:
        if source_time is None:
            source_time = self.source_time_for(time)
        x, names = self._population(source_time)
        if n_cells is not None:
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(x), size=n_cells, replace=n_cells > len(x))
            x, names = x[idx], names[idx]
        return float(source_time), x, names

    def _population(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """The standardised training cells of a trained time point and their obs names."""
        k = self._cells.times.index(match_time(time, self._cells.times, what="source_time"))
        return self._cells.populations[k], self._cells.cell_names[k]

    def _plan(self, time: float, source_time: float | None) -> SourcePlan:
        return plan_sources(self.times, time, source_time=source_time)

    def _planned_cells(
        self, plan: SourcePlan, n_cells: int | None, opts: Integrator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The predicted cells of ``plan`` (standardised), their sources and source cells."""
        if plan.backward is None:
            src, z0, names = self._source_cells(plan.forward, plan.time, n_cells, opts.seed)
            z = self._flow(z0, src, np.array([plan.time]), opts)[0]
            return z, np.full(len(z), src), names
        rng = np.random.default_rng(opts.seed)
        parts = []
        pops = [self._population(plan.forward), self._population(plan.backward)]
        counts = plan.counts(len(pops[0][0]), len(pops[1][0]), n_cells)
        for src, (x, names), k in zip((plan.forward, plan.backward), pops, counts, strict=True):
            if k == 0:
                continue
            idx = rng.choice(len(x), size=k, replace=k > len(x))
            z = self._flow(x[idx], src, np.array([plan.time]), opts)[0]
            parts.append((z, np.full(k, src), names[idx]))
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]

    # ----------------------------------------------------------------- the flow
    @property
    def learns_score(self) -> bool:
        """Whether the model learned a score, so it can be sampled as an SDE (``sde=True``)."""
        return self._score_net is not None

    def _integrator(self, sde: Any, seed: Any, solver: Any, n_steps: Any) -> Integrator:
        return integration_options(
            sde, seed, solver, n_steps, learns_score=self.learns_score, method=self.method,
            config=self.config,
        )  # fmt: skip

    def _flow(self, z0: np.ndarray, t_from: float, t_grid: np.ndarray, opts: Integrator):
        """Standardised cells integrated from ``t_from`` through ``t_grid`` (observed units)."""
        return integrate_cells(
            z0, t_from, t_grid, velocity_net=self._velocity_net, score_net=self._score_net,
            clock=self.clock, sigma=self.sigma, device=self.device, options=opts,
        )  # fmt: skip

    def push(
        self,
        x: np.ndarray | AnnData,
        *,
        source_time: float,
        times: float | Sequence[float],
        sde: bool = False,
        seed: int = 0,
        solver: str | None = None,
        n_steps: int | None = None,
    ) -> np.ndarray:
        """Carry cells through the learned flow from ``source_time`` to ``times``.

        The model's own verb for "where do these cells go" (and, with earlier ``times``, "where
        did they come from"): any cells, observed or not, e.g. ``model.push(adata[mask],
        source_time=2, times=4)``.

        Parameters
        ----------
        x
            Cells in the representation's own units: an array ``(n_cells, n_dims)``, or an
            AnnData whose ``obsm[use_rep]`` is used.
        source_time
            The time the cells are at, in the units of ``obs[time_key]``.
        times
            One time, or several (in any order, each reached along one integration); times
            earlier than ``source_time`` integrate backwards.
        sde
            Sample the SDE instead of the ODE (models that learn a score only; see
            :attr:`learns_score`); backwards, its reverse-time SDE.
        seed
            Seed of the SDE noise.
        solver, n_steps
            Override the integrator chosen at fit time (``"auto"`` or a torchdiffeq method
            name, steps over the span).

        Returns
        -------
        numpy.ndarray
            Positions in the representation's units: ``(n_cells, n_dims)`` for one time,
            ``(len(times), n_cells, n_dims)`` for a sequence.

        Raises
        ------
        TypeError
            When ``source_time`` or an entry of ``times`` is not a number.
        ValueError
            When ``x`` does not have ``n_dims`` columns or is not finite, a time is not finite,
            ``times`` is empty, or ``sde=True`` and the model learned no score.
        """
        src = self._time(source_time, "source_time")
        single = not isinstance(times, Sequence | np.ndarray)
        grid = np.asarray([self._time(times, "times")] if single else self._time_grid(times))
        opts = self._integrator(sde, seed, solver, n_steps)
        z0 = self.scaler.transform(self._as_cells(x))
        # One integration through the sorted grid, read back in the caller's order.
        order = np.argsort(grid, kind="stable")
        z = np.empty((len(grid), len(z0), self.n_dims))
        for part in (order[grid[order] >= src], order[grid[order] < src][::-1]):
            if len(part):
                z[part] = self._flow(z0, src, grid[part], opts)
        out = self.scaler.inverse_transform(z, copy=False)  # z is ours
        return out[0] if single else out

    def _time_grid(self, times: Sequence[float]) -> list[float]:
        values = [self._time(t, "times") for t in np.asarray(times, dtype=object).ravel()]
        if not values:
            raise ValueError("times is empty; pass one time or a sequence of times.")
        return values

    def _as_cells(self, x: np.ndarray | AnnData) -> np.ndarray:
        """Cells in the representation's units, checked against the model's dimensions."""
        if isinstance(x, AnnData):
            return self.representation(x)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_dims:
            raise ValueError(
                f"x must have shape (n_cells, {self.n_dims}) (the model's n_dims), got {x.shape}."
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("x has NaN or infinite values; pass finite positions.")
        return x

    def predict(
        self,
        time: float | Sequence[float],
        *,
        source_time: float | None = None,
        n_cells: int | None = None,
        sde: bool = False,
        seed: int = 0,
        solver: str | None = None,
        n_steps: int | None = None,
    ) -> AnnData:
        """Predict the population at ``time`` by pushing observed cells through the flow.

        A time strictly between two trained time points ``a < time < b`` (a held-out or
        unmeasured time) is predicted from both: cells of ``a`` pushed forward and cells of
        ``b`` pushed backward, half each, pooled (:mod:`trajflow._sources`). Each push drifts
        from the truth the farther it travels, differently in each direction; the pool scores at
        most the mean of the two (the energy distance is convex) and on the shared courses
        closes more of static OT's distance to a perfect prediction than pushing ``a`` alone
        (benchmarks/README.md). Every other time has one source: a trained time point is
        predicted from the nearest earlier one, a time outside the trained range from the
        nearest end, and an explicit ``source_time`` from that time point alone (the SDE
        alike: forward, and backward in reverse time).

        Parameters
        ----------
        time
            Target time, or a sequence of target times (a list, tuple, range or array; taken
            sorted, without repeats), in the units of ``obs[time_key]``. Times outside the
            trained range are extrapolated with an :class:`ExtrapolationWarning`.
        source_time
            Trained time point whose cells are pushed, and the only one, for every target time
            (forward or, for earlier times, backward). Default: both neighbouring trained time
            points for a time between them (see above), else the nearest strictly earlier
            trained time point (the first one for times at or before it).
        n_cells
            Number of cells to predict per target time, drawn from the source population(s)
            with ``seed`` (with replacement only when more are asked than a source holds).
            Default: all cells of a single source; from two, the mean of their sizes,
            ``n = round((n_a + n_b) / 2)``, of which ``round(n / 2)`` from ``b``.
        sde
            Sample the SDE instead of the ODE (only for ``method="sb-cfm"``, which learns a
            score; cells pushed backward follow its reverse-time SDE); the default ODE is the
            probability-flow ODE of the same marginals. The SDE's spread is the process's own:
            on the shared courses its predictions are less under-dispersed than the ODE's
            (benchmarks/README.md).
        seed
            Seed for subsampling and SDE noise.
        solver, n_steps
            Override the integrator chosen at fit time (``"auto"`` or a torchdiffeq method
            name, steps over the span).

        Returns
        -------
        anndata.AnnData
            The predicted cells, stacked in order of target time. Each target time is predicted
            exactly as ``predict(t, ...)`` alone would (same source cells and values for the same
            ``seed``). Positions are in ``obsm[use_rep]`` (``n_dims`` columns, user space); there
            is no ``X``. Obs names are ``"<source cell>@t=<time>"``, unique: a source cell drawn
            more than once (``n_cells`` larger than its population) gets a ``#2``, ``#3``...
            suffix. ``obs`` columns:

            ``<time_key>``
                The predicted time of the cell.
            ``source_time``
                The trained time point the cell was pushed from (forward from an earlier one,
                backward from a later one).
            ``source_cell``
                Obs name (in the fitted AnnData) of the cell it was pushed from.
            ``support_distance``
                How far the cell lies from the observed cells of the nearest trained time
                points (that time point, the two around the target time, or the nearest end
                when extrapolating): its distance to the nearest of them over twice their own
                99th-percentile nearest-neighbour distance (:meth:`support_for`).
            ``off_support``
                ``support_distance > 1``: the cell lies where no observed cell is. How many
                are is logged (a warning above 5%).

            ``uns['trajflow']`` records ``method``, ``sde``, ``time``, ``source_time`` (the
            source pushed forward, or the only one), ``backward_source_time`` (the later
            trained time point pushed backward; NaN when none), ``backward_share`` (the share
            of cells pushed backward; 0 when none) and ``off_support_share``: floats for a
            single time, lists (one entry per target time, in order) for a sequence.

        Raises
        ------
        TypeError
            When ``time`` is not a number or a sequence of numbers (the message names ``time``),
            or another argument has the wrong type.
        ValueError
            When ``time`` is an empty sequence or not finite, ``source_time`` is not a trained
            time point, or ``sde=True`` and the model learned no score.
        """
        if isinstance(time, np.ndarray) and time.ndim == 0:
            time = time.item()
        single = is_real(time)
        if single:
            times = [self._time(time, "time")]
        else:
            times = check_times("time", time, allow_none=False)
            if not times:
                raise ValueError("time is empty; pass one time or a sequence of times.")
            times = [self._time(t, "time") for t in times]
        if source_time is not None:
            source_time = self._time(source_time, "source_time")
        n_cells = check_optional_int("n_cells", n_cells)
        opts = self._integrator(sde, seed, solver, n_steps)
        plans = [self._plan(t, source_time) for t in times]
        xs, srcs, names, support = [], [], [], []
        for t, plan in zip(times, plans, strict=True):
            z, src, cells = self._planned_cells(plan, n_cells, opts)
            xs.append(self.scaler.inverse_transform(z, copy=False))
            srcs.append(src)
            names.append(cells)
            support.append(self.support_for(t).distance(xs[-1]))
        off = np.concatenate(support) > 1
        if off.any():
            (logger.warning if off.mean() > 0.05 else logger.info)(
                "%d of %d predicted cells (%.1f%%) lie off the observed cells' support "
                "(obs['off_support']; farther from every observed cell of the nearest time "
                "points than twice their own 99th-percentile neighbour distance)",
                int(off.sum()), len(off), 100 * off.mean(),
            )  # fmt: skip
        return prediction_anndata(
            xs, times=times, sources=srcs, source_cells=names, time_key=self.time_key,
            use_rep=self.use_rep, method=self.method, sde=opts.sde, single=single,
            support=support, var_names=self.var_names, plans=plans,
        )  # fmt: skip

    def support_for(self, time: float) -> Support:
        """The observed cells a prediction at ``time`` is measured against (the trained time
        point itself, or the two around ``time``, or the nearest end outside the trained
        range), with their calibrated threshold (:class:`trajflow._scoring.Support`)."""
        trained = np.asarray(self.times)
        same = np.flatnonzero(same_time(trained, time, tol=time_tolerance(trained)))
        if same.size:
            ks = [int(same[0])]
        elif time < trained[0] or time > trained[-1]:
            ks = [0 if time < trained[0] else len(trained) - 1]
        else:
            after = int(np.searchsorted(trained, time))
            ks = [after - 1, after]
        key = tuple(ks)
        if key not in self._supports:
            cells = np.concatenate([self._cells.populations[k] for k in ks])
            self._supports[key] = Support.fit(self.scaler.inverse_transform(cells))
        return self._supports[key]

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
        """Per-cell paths from ``source_time`` to ``end_time`` on evenly spaced times.

        ``end_time`` may be earlier than ``source_time`` to integrate backwards.
        The result converts with :meth:`Trajectories.to_df` (long format) and
        :meth:`Trajectories.to_anndata` (one observation per cell and time point).

        Parameters
        ----------
        source_time
            Trained time point whose cells start the paths, in the units of ``obs[time_key]``.
            Default: the first trained time point.
        end_time
            Time the paths end at. Default: the last trained time point. Times outside the
            trained range are extrapolated with an :class:`~trajflow.ExtrapolationWarning`.
        n_points
            Number of evenly spaced time points on each path, both ends included (at least 2).
        n_cells
            Number of paths: cells sampled from the source population with ``seed`` (with
            replacement when more than the population). Default: every source cell once.
        sde
            Sample the SDE instead of the ODE (models that learn a score only; see
            :attr:`learns_score`); backwards, its reverse-time SDE.
        seed
            Seed for subsampling and SDE noise.
        solver, n_steps
            Override the integrator chosen at fit time (``"auto"`` or a torchdiffeq method
            name, steps over the span).

        Returns
        -------
        Trajectories
            The paths, shape ``(n_cells, n_points, n_dims)``, in the units of
            ``obsm[use_rep]``, with the time grid and the starting cells' obs names.

        Raises
        ------
        TypeError
            When a time is not a number, or another argument has the wrong type.
        ValueError
            When ``source_time`` is not a trained time point, ``n_points`` is below 2, or
            ``sde=True`` and the model learned no score.
        """
        source_time = (
            self.times[0] if source_time is None else self._time(source_time, "source_time")
        )
        end_time = self.times[-1] if end_time is None else self._time(end_time, "end_time")
        n_points = check_int("n_points", n_points, minimum=2)
        n_cells = check_optional_int("n_cells", n_cells)
        opts = self._integrator(sde, seed, solver, n_steps)
        src, z0, names = self._source_cells(source_time, end_time, n_cells, opts.seed)
        grid = np.linspace(src, end_time, n_points)
        z = self._flow(z0, src, grid, opts)
        paths = self.scaler.inverse_transform(z, copy=False).transpose(1, 0, 2)  # z is ours
        return Trajectories(
            times=grid,
            paths=paths,
            source_time=src,
            cell_names=names,
            use_rep=self.use_rep,
            time_key=self.time_key,
            var_names=self.var_names,
        )

    def representation(self, adata: AnnData) -> np.ndarray:
        """The cells of ``adata`` in this model's space: ``obsm[use_rep][:, :n_dims]``.

        Parameters
        ----------
        adata
            Cells with the representation the model was fitted on (``obsm[use_rep]``, or ``X``
            for ``use_rep="X"``), at least ``n_dims`` columns wide.

        Returns
        -------
        numpy.ndarray
            Positions, shape ``(n_obs, n_dims)``, in the units of ``obsm[use_rep]`` (float64,
            not standardised).

        Raises
        ------
        KeyError
            When ``adata`` lacks ``obsm[use_rep]``.
        ValueError
            When the representation has fewer than ``n_dims`` dimensions, or NaN or infinite
            values.
        """
        if isinstance(adata, AnnData) and self.use_rep != "X" and self.use_rep not in adata.obsm:
            raise KeyError(
                f"This model was fitted on adata.obsm[{self.use_rep!r}], which this AnnData lacks "
                f"(obsm keys: {list(adata.obsm.keys())}). Compute the same representation first."
            )
        width = representation_width(adata, self.use_rep)
        if width < self.n_dims:
            raise ValueError(
                f"This model was fitted on {self.n_dims} dimensions of {self.use_rep!r}, but this "
                f"AnnData's {self.use_rep!r} has {width}. Use the AnnData the model was "
                "fitted on, or one with the same representation."
            )
        # only the columns the model uses are read and checked (NaN elsewhere is not its business)
        return get_representation(adata, self.use_rep, self.n_dims, allow_pca=False)

    def velocity(self, x: np.ndarray | AnnData, time: float) -> np.ndarray:
        """The learned velocity ``dx/dt`` at positions ``x`` and ``time``.

        Parameters
        ----------
        x
            Positions in the user's representation space: an array ``(n, n_dims)``, or an
            AnnData whose ``obsm[use_rep]`` (first ``n_dims`` columns) is used.
        time
            The time every position is at, in the units of ``obs[time_key]``; outside the
            trained range the flow is extrapolated with an
            :class:`~trajflow.ExtrapolationWarning`.

        Returns
        -------
        numpy.ndarray
            Velocities, shape ``(n, n_dims)``, in representation units per unit of
            ``obs[time_key]``.

        Raises
        ------
        TypeError
            When ``time`` is not a number.
        ValueError
            When ``x`` does not have ``n_dims`` columns or is not finite, or ``time`` is not
            finite.
        """
        x = self._as_cells(x)
        time = self._time(time, "time")
        z = torch.as_tensor(self.scaler.transform(x), dtype=torch.float32, device=self.device)
        with torch.no_grad():
            v = self._velocity_net(z, torch.tensor(float(self.clock(time)), device=self.device))
        return self.scaler.inverse_transform_velocity(v.cpu().numpy().astype(np.float64)) * float(
            self.clock.rate(time)
        )

    # ----------------------------------------------------------------- persistence
    def _parts(self) -> ModelParts:
        return ModelParts(
            velocity_net=self._velocity_net, score_net=self._score_net, config=self.config,
            scaler=self.scaler, cells=self._cells, observed_times=self.observed_times,
            clock=self.clock, history=self.history, var_names=self.var_names,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        """What :meth:`.save` writes to ``config.json`` (as plain JSON, with a checksum record).

        Returns
        -------
        dict
            ``format_version``, ``trajflow_version``, ``config``, ``scaler`` (mean and scale),
            ``times``, ``observed_times``, ``clock``, ``history`` and ``network`` (the
            networks' sizes, activation and whether a score network exists).
        """
        return model_state(self._parts())

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
        a half-written model. ``config.json`` records the size and sha256 of every file, so
        :meth:`load` can name a file damaged later.

        Parameters
        ----------
        path
            The model directory to create.
        overwrite
            Replace an existing ``path``; by default an existing ``path`` is refused.
        extra
            Further file names mapped to objects written with ``torch.save`` in the same atomic
            step (used for training checkpoints). Default: none.

        Returns
        -------
        pathlib.Path
            The model directory.

        Raises
        ------
        FileExistsError
            When ``path`` exists and ``overwrite`` is false.
        ValueError
            When an ``extra`` name is not a plain file name or collides with a model file.
        """
        path = write_model(path, self._parts(), extra=extra, overwrite=overwrite)
        logger.info("Saved %s to %s", self, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto") -> TrajectoryModel:
        """Load a model written by :meth:`~.TrajectoryModel.save`, validating what is found on disk.

        Parameters
        ----------
        path
            The model directory :meth:`save` wrote.
        device
            Where to put the networks: ``"auto"`` (default: CUDA when available, else the CPU),
            ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

        Returns
        -------
        TrajectoryModel
            The model as saved, on ``device``.

        Raises
        ------
        FileNotFoundError
            When ``path`` is not a folder or lacks one of the model files.
        ValueError
            When the model was written in another format version, or with a method that is not
            registered in this session.
        DamagedModelError
            When a file is unreadable, truncated, modified or inconsistent with the others; the
            message names the file.
        """
        parts = read_model(path)
        return cls(**vars(parts), device=device)
