"""The synthetic branching time course with a known answer: :func:`simulate` and the true drift
of its process, :func:`simulated_velocity`."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

#: Latent dimensions of :func:`simulate`: progress, the branching coordinate, a slow oscillation.
SIM_LATENT_DIMS = 3
#: Median counts per cell of :func:`simulate`'s counts (``n_genes``); log-normal, sd 0.3 in log.
SIM_MEDIAN_COUNTS = 1_000
#: Means above this are drawn by numpy's Poisson sampler, not by inverting the CDF.
LARGE_MEAN = 30.0
#: Cells per block when drawing counts: bounds the dense ``(block, n_genes)`` means in memory.
_COUNT_BLOCK = 8_192


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
    n_genes: int | None = None,
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
    n_genes
        Emit raw counts instead of an embedding: ``X`` becomes a sparse CSR matrix of
        ``n_genes`` genes (float32 integers) and ``obsm['X_pca']`` is left out, so trajflow
        computes its own PCA from the counts, as on a user's data. Each gene's log-expression is
        a baseline plus a loading on the latent state (every gene follows progress; about a
        third follow the branch and a sixth the oscillation); a cell's counts are Poisson with
        means that share out its library size (log-normal, median
        1,000 counts) over the genes by those expressions. Default ``None``:
        no counts (the other outputs are the same either way, drawn from the same stream).

    Returns
    -------
    anndata.AnnData
        ``n_times * n_cells`` cells named ``sim-<i>``, no ``X``, with ``obs['time']``,
        ``obsm['X_pca']`` (the embedded cells, float32; the name that trajflow reads by
        default), and the ground truth: ``obsm['X_latent']`` (latent states),
        ``obs['fate']`` (categorical ``'up'`` / ``'down'``: the branch the cell's own path
        reaches at the last time point, continued past its measurement),
        ``uns['simulation']`` (the settings and the ``(3, n_dims)`` embedding map ``W``). The
        true velocity of any cell is :func:`simulated_velocity`. With ``n_genes``: ``X`` the
        counts, ``var_names`` ``gene-<j>``, no ``obsm['X_pca']``, and ``uns['simulation']``
        also holds ``n_genes``, the genes' ``baseline`` ``(n_genes,)`` and ``loadings``
        ``(3, n_genes)`` (log-expression = baseline + latent @ loadings, the latent's progress
        divided by ``n_times - 1``).

    Raises
    ------
    TypeError
        When an argument is not a number (an integer for ``n_times``, ``n_cells``, ``n_dims``,
        ``seed`` and ``n_genes``).
    ValueError
        When ``n_times`` is outside 2..100, ``n_cells`` is below 2, ``n_dims`` below 3,
        ``noise`` or ``diffusion`` negative or not finite, ``seed`` negative, or ``n_genes``
        below 2.
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
    if n_genes is not None:
        n_genes = check_int("n_genes", n_genes, minimum=2)
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
    settings = {
        "n_times": n_times, "n_cells": n_cells, "n_dims": n_dims, "noise": noise,
        "diffusion": diffusion, "seed": seed, "W": w,
    }  # fmt: skip
    if n_genes is None:
        adata = ad.AnnData(obs=obs)
        adata.obsm["X_pca"] = x.astype(np.float32)
    else:
        del x  # the counts stand in for the embedding
        # its own stream, so the outputs above are the same with or without counts
        counts, baseline, loadings = _counts(
            measured, n_times, n_genes, np.random.default_rng([seed, 1])
        )
        var = pd.DataFrame(index=pd.Index([f"gene-{j}" for j in range(n_genes)]))
        adata = ad.AnnData(X=counts, obs=obs, var=var)
        settings.update(n_genes=n_genes, baseline=baseline, loadings=loadings)
    adata.obsm["X_latent"] = measured.astype(np.float32)
    adata.uns["simulation"] = settings
    return adata


def _counts(
    latent: np.ndarray, n_times: int, n_genes: int, rng: np.random.Generator
) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """Poisson counts ``(n, n_genes)`` (CSR, float32) of cells at ``latent`` states, drawn in
    blocks of cells so that no dense ``(n, n_genes)`` array is ever held, with the genes'
    baseline and loadings."""
    baseline = rng.normal(scale=1.5, size=n_genes)
    loadings = rng.normal(scale=1.0, size=(SIM_LATENT_DIMS, n_genes))
    loadings[1] *= rng.random(n_genes) < 1 / 3  # branch genes
    loadings[2] *= 2.0 * (rng.random(n_genes) < 1 / 6)  # oscillating genes
    scale = np.array([1.0 / max(n_times - 1, 1), 1.0, 1.0])  # progress in [0, 1]
    library = SIM_MEDIAN_COUNTS * np.exp(rng.normal(scale=0.3, size=len(latent)))
    data, indices, indptr = [], [], [np.zeros(1, dtype=np.int64)]
    nnz = 0
    for start in range(0, len(latent), _COUNT_BLOCK):
        stop = min(start + _COUNT_BLOCK, len(latent))
        # float32: the per-entry work is memory-bound and dominates at atlas size
        eta = (baseline + (latent[start:stop] * scale) @ loadings).astype(np.float32)
        eta -= eta.max(axis=1, keepdims=True)
        mu = np.exp(eta, out=eta)
        mu *= (library[start:stop] / mu.sum(axis=1, dtype=np.float64)).astype(np.float32)[:, None]
        rows, cols, k = _poisson_by_inversion(mu, rng)
        data.append(k.astype(np.float32))
        indices.append(cols.astype(np.int32))
        indptr.append(nnz + np.cumsum(np.bincount(rows, minlength=stop - start)))
        nnz += len(k)
    matrix = sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)),
        shape=(len(latent), n_genes),
    )
    return matrix, baseline, loadings


def _poisson_by_inversion(
    mu: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson draws at means ``mu`` by inverting the CDF at one uniform per entry; returns the
    non-zero draws as (row, column, count), row-major.

    ``Generator.poisson`` draws every entry, zero or not, with several uniforms each (measured:
    6 s per 20M entries on this machine, 10 minutes for 1M cells x 2,000 genes); here a zero costs
    one uniform and one comparison, and only the ~15% non-zero entries walk up the CDF."""
    u = rng.random(mu.shape, dtype=np.float32)
    rows, cols = np.nonzero(u >= np.exp(-mu))  # zero where u < P(0)
    u, m = u[rows, cols].astype(np.float64), mu[rows, cols].astype(np.float64)
    k = np.ones(len(u), dtype=np.int64)
    # Large means go to numpy's sampler: inversion would walk about m steps, and beyond m ~ 745
    # exp(-m) underflows to 0 so the CDF never passes u (the walk never ended).
    big = m > LARGE_MEAN
    k[big] = rng.poisson(m[big])
    p = np.exp(-m) * m  # P(1)
    cdf = p + np.exp(-m)
    active = np.flatnonzero((u >= cdf) & ~big)
    while active.size:  # the few larger counts: step up the CDF until it passes u
        k[active] += 1
        p[active] *= m[active] / k[active]
        cdf[active] += p[active]
        # p == 0: the float CDF has stopped growing below u (u within rounding of 1): stop
        active = active[(u[active] >= cdf[active]) & (p[active] > 0)]
    keep = k > 0  # a large-mean draw of 0 (probability below e^-30) is not stored
    return rows[keep], cols[keep], k[keep]


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
