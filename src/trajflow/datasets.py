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
