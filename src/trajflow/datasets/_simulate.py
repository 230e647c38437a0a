"""The synthetic branching time course with a known answer: :func:`simulate` and the true drift
of its process, :func:`simulated_velocity`."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

#: Latent dimensions of :func:`simulate`: progress, the branching coordinate, a slow oscillation.
SIM_LATENT_DIMS = 3


def _sim_drift(z: np.ndarray, t: np.ndarray | float, n_times: int) -> np.ndarray:
    """The true drift of :func:`simulate` in latent space, at latent states ``z`` ``(n, 3)``."""
    span = max(n_times - 1, 1)
    # progress moves at unit speed; a pitchfork in z1 whose control a(t) turns positive a third
    # of the way through, so one population splits into two branches; z2 oscillates gently
    a = 3.0 * (np.asarray(t, dtype=np.float64) / span - 1 / 3)
    v = np.empty_like(z)
    v[:, 0] = 1.0
    v[:, 1] = (a * z[:, 1] - z[:, 1] ** 3) * 3.0 / span
    v[:, 2] = 0.5 * np.cos(2 * np.pi * np.asarray(t) / span) * 2 * np.pi / span
    return v


def simulate(
    *,
    n_times: int = 6,
    n_cells: int = 500,
    n_dims: int = 10,
    noise: float = 0.1,
    diffusion: float = 0.15,
    seed: int = 0,
) -> ad.AnnData:
    """A synthetic branching time course with a known answer.

    Every cell follows the same stochastic process in a 3-dimensional latent space (progress at
    unit speed; a pitchfork that splits the population into two branches a third of the way
    through; a gentle oscillation), integrated by Euler-Maruyama from a small cloud at time 0.
    Each time point ``0, 1, ..., n_times - 1`` measures ``n_cells`` *different* cells (a
    snapshot: every measured cell is a fresh path, as in a real experiment). The latent states
    are embedded in ``n_dims`` dimensions by a random orthonormal map, scaled so the embedding
    has the latent's geometry, plus Gaussian measurement noise of std ``noise``.

    Parameters
    ----------
    n_times
        Time points, 2 to 100.
    n_cells
        Cells per time point (any size; 20 time points x 50,000 cells take a few seconds).
    n_dims
        Dimensions of the embedding, ``>= 3``.
    noise, diffusion
        Measurement noise in the embedding; diffusion of the latent process per unit time.
    seed
        Seeds everything; the global random state is untouched.

    Returns
    -------
    anndata.AnnData
        ``n_times * n_cells`` cells named ``sim-<i>``, no ``X``, with ``obs['time']``,
        ``obsm['X_pca']`` (the embedded cells, float32; the name that trajflow reads by
        default), and the ground truth: ``obsm['X_latent']`` (latent states),
        ``obs['fate']`` (categorical ``'up'`` / ``'down'``: the branch the cell's own path
        reaches at the last time point, continued past its measurement),
        ``uns['simulation']`` (the settings and the ``(3, n_dims)`` embedding map ``W``). The
        true velocity of any cell is :func:`simulated_velocity`.

    Raises
    ------
    TypeError
        When an argument is not a number (an integer for ``n_times``, ``n_cells``, ``n_dims``
        and ``seed``).
    ValueError
        When ``n_times`` is outside 2..100, ``n_cells`` is below 2, ``n_dims`` below 3,
        ``noise`` or ``diffusion`` negative or not finite, or ``seed`` negative.
    """
    from .._validate import check_float, check_int, check_seed

    n_times = check_int("n_times", n_times, minimum=2)
    if n_times > 100:
        raise ValueError(f"n_times must be at most 100, got {n_times}.")
    n_cells = check_int("n_cells", n_cells, minimum=2)
    n_dims = check_int("n_dims", n_dims, minimum=SIM_LATENT_DIMS)
    noise = check_float("noise", noise, minimum=0)
    diffusion = check_float("diffusion", diffusion, minimum=0)
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    steps_per_unit = 20
    dt = 1.0 / steps_per_unit
    t_end = n_times - 1
    n = n_times * n_cells
    when = np.repeat(np.arange(n_times, dtype=np.float64), n_cells)
    z = rng.normal(scale=0.1, size=(n, SIM_LATENT_DIMS))
    measured = np.empty_like(z)
    measured[when == 0] = z[when == 0]
    for k in range(t_end * steps_per_unit):  # every path runs to the end: its fate
        t = k * dt
        z += _sim_drift(z, t, n_times) * dt + diffusion * np.sqrt(dt) * rng.normal(size=z.shape)
        hit = np.isclose(when, t + dt)
        measured[hit] = z[hit]
    fate = np.where(z[:, 1] >= 0, "up", "down")
    w = np.linalg.qr(rng.normal(size=(n_dims, SIM_LATENT_DIMS)))[0].T  # orthonormal rows
    x = measured @ w + noise * rng.normal(size=(n, n_dims))
    obs = pd.DataFrame(
        {"time": when, "fate": pd.Categorical(fate, categories=["down", "up"])},
        index=pd.Index([f"sim-{i}" for i in range(n)]),
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_pca"] = x.astype(np.float32)
    adata.obsm["X_latent"] = measured.astype(np.float32)
    adata.uns["simulation"] = {
        "n_times": n_times, "n_cells": n_cells, "n_dims": n_dims, "noise": noise,
        "diffusion": diffusion, "seed": seed, "W": w,
    }  # fmt: skip
    return adata


def simulated_velocity(adata: ad.AnnData, latent: np.ndarray, time: float) -> np.ndarray:
    """The true drift of :func:`~trajflow.datasets.simulate`'s process, in the embedding.

    To compare with :meth:`~trajflow.TrajectoryModel.velocity` at the same cells and time.

    Parameters
    ----------
    adata
        The AnnData :func:`~trajflow.datasets.simulate` returned (its ``uns['simulation']``
        holds the time course's length and the embedding map).
    latent
        Latent states, shape ``(n, 3)``, e.g. ``adata.obsm['X_latent']`` of some cells.
    time
        The time the states are at, in the units of ``obs['time']``.

    Returns
    -------
    numpy.ndarray
        The drift ``dx/dt``, shape ``(n, n_dims)``, in the embedding's coordinates
        (``obsm['X_pca']`` units) per unit of ``obs['time']``.
    """
    sim = adata.uns["simulation"]
    v = _sim_drift(np.asarray(latent, dtype=np.float64), float(time), int(sim["n_times"]))
    return v @ np.asarray(sim["W"])
