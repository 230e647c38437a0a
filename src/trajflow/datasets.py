"""Example time courses.

:func:`eb` returns the embryoid-body time course (Moon et al. 2019, TrajectoryNet preprocessing).
It reads a local copy when there is one and otherwise downloads TrajectoryNet's public
``eb_velocity_v5.npz`` into a cache and converts it to AnnData.

Where a local copy is looked for, in order: the ``path`` argument; the ``TRAJFLOW_EB_PATH``
environment variable; ``eb_moon2019_nlsb_subset.h5ad`` in :func:`data_dir`; the cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

logger = logging.getLogger("trajflow")

EB_URL = "https://github.com/KrishnaswamyLab/TrajectoryNet/raw/master/data/eb_velocity_v5.npz"
EB_SUBSET_FILE = "eb_moon2019_nlsb_subset.h5ad"
EB_DAYS = ("0-3", "6-9", "12-15", "18-21", "24-27")


def data_dir() -> Path:
    """Where the shared example data lives: ``TRAJFLOW_DATA_DIR`` if set, else the first
    ``shared/data`` folder found in the working directory or one of its parents (so the same rule
    works from the repository root, ``tests/`` and ``tutorials/``), else ``../shared/data``."""
    if "TRAJFLOW_DATA_DIR" in os.environ:
        return Path(os.environ["TRAJFLOW_DATA_DIR"])
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return Path("../shared/data")


def cache_dir() -> Path:
    """``TRAJFLOW_CACHE_DIR``, defaulting to ``~/.cache/trajflow``."""
    return Path(os.environ.get("TRAJFLOW_CACHE_DIR", Path.home() / ".cache" / "trajflow"))


def eb_npz_to_anndata(path: str | os.PathLike) -> ad.AnnData:
    """Convert TrajectoryNet's ``eb_velocity_v5.npz`` to AnnData.

    The archive holds ``pcs`` (cells x 100 PCs) and ``sample_labels`` (time point 0..4); when
    present, ``delta_embedding`` (RNA velocity in PC space) goes to ``obsm['velocity_pca']`` and
    ``embedding`` (a 2-D PHATE embedding) to ``obsm['X_phate']``.
    """
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in ("pcs", "sample_labels") if k not in npz.files]
        if missing:
            raise ValueError(
                f"{path} is not TrajectoryNet's EB archive: missing {missing} (has {npz.files})."
            )
        pcs = np.asarray(npz["pcs"], dtype=np.float64)
        labels = np.asarray(npz["sample_labels"]).astype(float).ravel()
        extras = {k: np.asarray(npz[k]) for k in ("delta_embedding", "embedding") if k in npz.files}
    if len(labels) != len(pcs):
        raise ValueError(f"{path}: {len(pcs)} cells in 'pcs' but {len(labels)} sample labels.")
    obs = pd.DataFrame(
        {
            "time": labels,
            "day_range": pd.Categorical(
                [EB_DAYS[int(t)] if 0 <= t < len(EB_DAYS) else "?" for t in labels]
            ),
        },
        index=pd.Index([f"eb-{i}" for i in range(len(pcs))]),
    )
    adata = ad.AnnData(X=pcs.copy(), obs=obs)
    adata.var_names = [f"PC{i + 1}" for i in range(pcs.shape[1])]
    adata.obsm["X_pca"] = pcs
    if extras.get("delta_embedding") is not None and extras["delta_embedding"].shape == pcs.shape:
        adata.obsm["velocity_pca"] = extras["delta_embedding"].astype(np.float64)
    if extras.get("embedding") is not None and extras["embedding"].shape == (len(pcs), 2):
        adata.obsm["X_phate"] = extras["embedding"].astype(np.float64)
    adata.uns["provenance"] = f"TrajectoryNet eb_velocity_v5.npz ({EB_URL})"
    return adata


def _download(url: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        logger.warning("Downloading %s to %s", url, target)
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _read_eb(path: Path) -> ad.AnnData:
    return eb_npz_to_anndata(path) if path.suffix == ".npz" else ad.read_h5ad(path)


def eb(path: str | os.PathLike | None = None, *, download: bool = True) -> ad.AnnData:
    """The embryoid-body time course as AnnData (``obs['time']`` 0..4, ``obsm['X_pca']``).

    Parameters
    ----------
    path
        A local ``.h5ad`` or ``eb_velocity_v5.npz``. Default: see the module docstring.
    download
        Download ``eb_velocity_v5.npz`` into the cache when no local copy is found.
    """
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"No EB data at {path}.")
        return _read_eb(Path(path))
    env = os.environ.get("TRAJFLOW_EB_PATH")
    for candidate in (env, data_dir() / EB_SUBSET_FILE, cache_dir() / "eb_velocity_v5.npz"):
        if candidate is not None and Path(candidate).is_file():
            return _read_eb(Path(candidate))
    if not download:
        raise FileNotFoundError(
            "No local EB data found (looked at TRAJFLOW_EB_PATH, "
            f"{data_dir() / EB_SUBSET_FILE} and the cache) and download=False."
        )
    return eb_npz_to_anndata(_download(EB_URL, cache_dir() / "eb_velocity_v5.npz"))


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
    AnnData with ``obs['time']``, ``obsm['X_pca']`` (the embedded cells, float32; the name
    that trajflow reads by default), and the ground truth: ``obsm['X_latent']`` (latent
    states), ``obs['fate']`` (categorical ``'up'`` / ``'down'``: the branch the cell's own
    path reaches at the last time point, continued past its measurement),
    ``uns['simulation']`` (the settings and the ``(3, n_dims)`` embedding map ``W``). The true
    velocity of any cell is :func:`simulated_velocity`.
    """
    from ._validate import check_float, check_int, check_seed

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
    """The true drift of :func:`simulate`'s process at latent states ``latent`` ``(n, 3)`` and
    ``time``, in the embedding's coordinates ``(n, n_dims)`` (to compare with
    ``model.velocity``)."""
    sim = adata.uns["simulation"]
    v = _sim_drift(np.asarray(latent, dtype=np.float64), float(time), int(sim["n_times"]))
    return v @ np.asarray(sim["W"])
