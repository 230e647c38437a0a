"""Converters: the public upstream files of each data set -> AnnData.

Each converter takes the files in the order of its record's ``sources``
(:mod:`._registry`) and builds the AnnData; the record adds ``uns['provenance']`` (which names
those sources), so the public names ``trajflow.datasets.eb_nlsb_to_anndata`` etc. are these
converters bound to their records. :func:`eb_npz_to_anndata` reads TrajectoryNet's full archive
(EB's alternative file format) and writes its own provenance.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ._fetch import PathLike

EB_URL = "https://github.com/KrishnaswamyLab/TrajectoryNet/raw/master/data/eb_velocity_v5.npz"

#: Day ranges of TrajectoryNet's ``eb_velocity_v5.npz`` labels 0..4 (:func:`eb_npz_to_anndata`).
EB_DAYS = ("0-3", "6-9", "12-15", "18-21", "24-27")
#: ``obs['day_range']`` and ``obs['day_mid']`` of :func:`eb`, by time point 0..4.
EB_DAY_RANGES = ("Day 00-03", "Day 06-09", "Day 12-15", "Day 18-21", "Day 24-27")
EB_DAY_MIDS = (1.5, 7.5, 13.5, 19.5, 25.5)
#: Time in days of the EMT labels, and DeepRUOT's sample index of each (it merged 3d and 7d).
EMT_TIMES = {"0d": 0.0, "8h": 1 / 3, "1d": 1.0, "3d": 3.0, "7d": 7.0}
EMT_DEEPRUOT_SAMPLES = {"0d": 0, "8h": 1, "1d": 2, "3d": 3, "7d": 3}
#: Days of the three groups of TIGON's ``Input/Lineage.npy``.
WEINREB_DAYS = (2, 4, 6)

#: Orientation of the principal components of :func:`emt` and :func:`klein`. The PCs are
#: computed by an exact SVD; each is first turned so that its largest-magnitude loading is
#: positive (independent of the LAPACK in use), then multiplied by these signs, which give the
#: orientation of the shared files.
EMT_PCA_SIGNS = (-1, 1, -1, -1, -1, -1, -1, 1, 1, -1)
KLEIN_PCA_SIGNS = (1, -1, -1, 1, -1, 1, -1, 1, 1, 1, -1, 1, 1, -1, 1, 1, 1, 1, -1, -1)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (object ``.npy`` files hold pickled arrays)."""

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: not an array")
        if name == "_reconstruct":
            try:  # numpy >= 2
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def _load_array_groups(path: PathLike) -> list[np.ndarray]:
    """The arrays of an object ``.npy`` of shape ``(1, k)`` or ``(k,)`` (TIGON's inputs: one
    ``cells x dims`` array per time point), unpickled with only numpy arrays allowed."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"{path}: unsupported .npy format version {version}.")
        if dtype.hasobject:
            array = np.asarray(_ArrayUnpickler(fh, encoding="ASCII", fix_imports=True).load())
        else:
            fh.seek(0)
            array = np.load(fh, allow_pickle=False)
    if array.dtype != object or array.ndim not in (1, 2) or (array.ndim == 2 and shape[0] != 1):
        raise ValueError(
            f"{path} is not one of TIGON's inputs: expected an object array of shape (1, k) "
            f"holding one cells x dims array per time point, got {array.dtype} {array.shape}."
        )
    groups = [np.asarray(g, dtype=np.float64) for g in array.ravel()]
    if any(g.ndim != 2 or g.shape[1] != groups[0].shape[1] for g in groups):
        raise ValueError(f"{path}: the groups are not cells x dims arrays of one width.")
    return groups


def _pca(
    data: np.ndarray, n_comps: int, signs: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA (SVD of the centred float64 data): the scores of the first ``n_comps``
    components and their explained variance ratios. Each component is turned so that its
    largest-magnitude loading is positive and then multiplied by ``signs`` (1 where missing)."""
    data = np.asarray(data, dtype=np.float64)
    u, s, vt = np.linalg.svd(data - data.mean(axis=0), full_matrices=False)
    k = min(n_comps, len(s))
    flip = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    flip[flip == 0] = 1
    orient = np.ones(k)
    orient[: min(k, len(signs))] = np.asarray(signs[:k], dtype=np.float64)
    total = float(np.sum(s**2))
    ratio = s[:k] ** 2 / total if total > 0 else np.zeros(k)
    return u[:, :k] * (s[:k] * flip * orient), ratio


def eb_nlsb_to_anndata(test: PathLike, val: PathLike) -> ad.AnnData:
    """Convert NLSB's EB splits ``data/test_rna.npz`` and ``data/val_rna.npz`` to AnnData.

    Each archive holds ``X`` (cells x 100 PCs, TrajectoryNet's unscaled ``pcs``), ``ts`` (time
    point 0..4), ``v`` (RNA velocity in PC space) and ``idx`` (the cell's row in TrajectoryNet's
    ``eb_velocity_v5.npz``). The test split comes first, then the validation split.

    Parameters
    ----------
    test, val
        The two archives.

    Returns
    -------
    anndata.AnnData
        ``X`` and ``obsm['X_pca']`` the PCs (float32), ``obsm['velocity_pca']`` the velocity;
        ``obs``: ``time`` (0..4), ``day_range``, ``day_mid`` (days), ``nlsb_split``
        (``'test'`` / ``'val'``), ``eb_velocity_v5_row``; cells named ``eb_<row>``;
        ``uns['provenance']`` (JSON).

    Raises
    ------
    ValueError
        When an archive lacks one of its arrays, their shapes disagree, the two splits have
        different numbers of PCs, or a time point is not one of 0..4.

    Examples
    --------
    >>> adata = eb_nlsb_to_anndata("test_rna.npz", "val_rna.npz")
    """
    pcs, times, velocity, rows, splits = [], [], [], [], []
    for split, path in (("test", test), ("val", val)):
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("X", "ts", "v", "idx") if k not in npz.files]
            if missing:
                raise ValueError(
                    f"{path} is not an NLSB EB split: missing {missing} (has {npz.files})."
                )
            x, t, v, i = (np.asarray(npz[k]) for k in ("X", "ts", "v", "idx"))
        if x.ndim != 2 or v.shape != x.shape or t.shape != (len(x),) or i.shape != (len(x),):
            raise ValueError(
                f"{path}: inconsistent shapes X {x.shape}, v {v.shape}, ts {t.shape}, idx {i.shape}."
            )
        pcs.append(x)
        times.append(t)
        velocity.append(v)
        rows.append(i)
        splits += [split] * len(x)
    if pcs[0].shape[1] != pcs[1].shape[1]:
        raise ValueError(f"{test} and {val} have different numbers of PCs.")
    time = np.concatenate(times)
    if not np.isin(time, np.arange(len(EB_DAY_RANGES))).all():
        raise ValueError(f"EB time points must be 0..4, got {sorted(set(time.tolist()))}.")
    label = time.astype(np.int64)
    row = np.concatenate(rows).astype(np.int64)
    obs = pd.DataFrame(
        {
            "time": label.astype(np.float64),
            "day_range": pd.Categorical(
                np.asarray(EB_DAY_RANGES)[label], categories=list(EB_DAY_RANGES)
            ),
            "day_mid": np.asarray(EB_DAY_MIDS)[label],
            "nlsb_split": pd.Categorical(splits, categories=["test", "val"]),
            "eb_velocity_v5_row": row,
        },
        index=pd.Index([f"eb_{r}" for r in row]),
    )
    x = np.concatenate(pcs).astype(np.float32)
    adata = ad.AnnData(X=x, obs=obs)
    adata.var_names = [f"PC{i + 1}" for i in range(x.shape[1])]
    adata.obsm["X_pca"] = x.copy()
    adata.obsm["velocity_pca"] = np.concatenate(velocity).astype(np.float32)
    return adata  # the record adds uns['provenance'] (DatasetRecord.convert)


def emt_to_anndata(
    emt_csv: PathLike, times_csv: PathLike, ae3_npy: PathLike | None = None
) -> ad.AnnData:
    """Convert DeepRUOT's ``data/emt.csv`` with TIGON's time labels to AnnData.

    ``emt.csv`` holds a column ``samples`` (DeepRUOT's time index, with days 3 and 7 merged into
    sample 3) and the cells' 10-d autoencoder latent (``x1`` .. ``x10``); TIGON's
    ``EMT_data/AE_EMT_time.csv`` names the same cells, row by row, with their time label
    (``0d``, ``8h``, ``1d``, ``3d``, ``7d``). TIGON's ``Input/EMT.npy`` (optional) holds its
    3-d autoencoder embedding, one array per time label in time order, its rows in file order.

    Parameters
    ----------
    emt_csv
        DeepRUOT's ``emt.csv``.
    times_csv
        TIGON's ``AE_EMT_time.csv``.
    ae3_npy
        TIGON's ``EMT.npy``; adds ``obsm['X_ae3_tigon']``.

    Returns
    -------
    anndata.AnnData
        ``X`` the latent (float32, variables ``AE1`` ..); ``obsm['X_pca']`` its PCA (all 10
        components, exact SVD); ``obs``: ``time`` (days: 0, 1/3, 1, 3, 7), ``time_label``,
        ``deepruot_sample``; ``uns['provenance']`` (JSON).

    Raises
    ------
    ValueError
        When the files do not line up (row counts, or a sample index that contradicts the label).

    Examples
    --------
    >>> adata = emt_to_anndata("emt.csv", "AE_EMT_time.csv", "EMT.npy")
    """
    table = pd.read_csv(emt_csv)
    if "samples" not in table.columns or table.shape[1] < 2:
        raise ValueError(f"{emt_csv} is not DeepRUOT's emt.csv: no 'samples' column.")
    labels_table = pd.read_csv(times_csv, index_col=0)
    if labels_table.shape[1] != 1:
        raise ValueError(f"{times_csv}: expected one column of time labels.")
    labels = labels_table.iloc[:, 0].astype(str).to_numpy()
    if len(labels) != len(table):
        raise ValueError(f"{emt_csv} has {len(table)} cells but {times_csv} {len(labels)}.")
    unknown = sorted(set(labels) - set(EMT_TIMES))
    if unknown:
        raise ValueError(f"{times_csv}: unknown time labels {unknown}; known {list(EMT_TIMES)}.")
    sample = table["samples"].to_numpy().astype(np.int64)
    expected = np.array([EMT_DEEPRUOT_SAMPLES[label] for label in labels])
    if (bad := np.flatnonzero(sample != expected)).size:
        raise ValueError(
            f"{emt_csv} and {times_csv} do not line up: row {bad[0]} is sample {sample[bad[0]]} "
            f"but labelled {labels[bad[0]]!r} ({bad.size} such rows)."
        )
    x = table.drop(columns="samples").to_numpy(dtype=np.float64).astype(np.float32)
    obs = pd.DataFrame(
        {
            "time": np.array([EMT_TIMES[label] for label in labels]),
            "time_label": pd.Categorical(labels),
            "deepruot_sample": sample,
        },
        index=pd.Index(labels_table.index.astype(str)),
    )
    adata = ad.AnnData(X=x, obs=obs)
    adata.var_names = [f"AE{i + 1}" for i in range(x.shape[1])]
    scores, _ = _pca(x, x.shape[1], EMT_PCA_SIGNS)
    adata.obsm["X_pca"] = scores.astype(np.float32)
    if ae3_npy is not None:
        groups = _load_array_groups(ae3_npy)
        order = list(EMT_TIMES)  # time order, as TIGON stores them
        if len(groups) != len(order):
            raise ValueError(f"{ae3_npy}: expected {len(order)} time points, got {len(groups)}.")
        ae3 = np.empty((len(labels), groups[0].shape[1]), dtype=np.float64)
        for label, group in zip(order, groups, strict=True):
            rows = labels == label
            if rows.sum() != len(group):
                raise ValueError(
                    f"{ae3_npy}: {len(group)} cells at {label} but {rows.sum()} in {times_csv}."
                )
            ae3[rows] = group
        adata.obsm["X_ae3_tigon"] = ae3.astype(np.float32)
    return adata  # the record adds uns['provenance'] (DatasetRecord.convert)


def klein_to_anndata(profile: PathLike, labels: PathLike) -> ad.AnnData:
    """Convert tmscc's Klein et al. 2015 subset (``profile.txt``, ``labels.txt``) to AnnData.

    ``profile.txt`` is a CSV of raw UMI counts, genes x cells, with gene names in the first
    column and cell names in the header; ``labels.txt`` holds each cell's day, whitespace
    separated.

    Parameters
    ----------
    profile, labels
        The two files of tmscc's ``tmscc/data/klein``.

    Returns
    -------
    anndata.AnnData
        ``X`` the counts (float32); ``layers['log1p_cp10k']`` (``log1p`` of counts per 10,000,
        float32); ``obsm['X_pca']`` the first 20 PCs of that layer (exact SVD of the centred
        layer) with ``uns['pca_explained_variance_ratio']``; ``obs``: ``time`` and ``day``;
        ``uns['provenance']`` (JSON).

    Raises
    ------
    ValueError
        When ``labels.txt`` does not hold one label per cell of ``profile.txt``.

    Examples
    --------
    >>> adata = klein_to_anndata("profile.txt", "labels.txt")
    """
    table = pd.read_csv(profile, index_col=0)
    days = np.array(Path(labels).read_text().split(), dtype=np.int64)
    if len(days) != table.shape[1]:
        raise ValueError(f"{profile} has {table.shape[1]} cells but {labels} {len(days)} labels.")
    counts = table.T.to_numpy(dtype=np.float32)
    obs = pd.DataFrame(
        {"time": days.astype(np.float64), "day": days}, index=pd.Index(table.columns.astype(str))
    )
    adata = ad.AnnData(X=counts, obs=obs)
    adata.var_names = table.index.astype(str)
    total = counts.sum(axis=1, keepdims=True)
    adata.layers["log1p_cp10k"] = np.log1p(counts / np.maximum(total, 1) * np.float32(1e4))
    scores, ratio = _pca(adata.layers["log1p_cp10k"], 20, KLEIN_PCA_SIGNS)
    adata.obsm["X_pca"] = scores.astype(np.float32)
    adata.uns["pca_explained_variance_ratio"] = ratio
    return adata  # the record adds uns['provenance'] (DatasetRecord.convert)


def weinreb_to_anndata(lineage_npy: PathLike) -> ad.AnnData:
    """Convert TIGON's ``Input/Lineage.npy`` (Weinreb et al. 2020, LARRY in vitro) to AnnData.

    The file holds one ``cells x 2`` array per day (2, 4, 6) of a 2-d embedding.

    Parameters
    ----------
    lineage_npy
        TIGON's ``Lineage.npy``.

    Returns
    -------
    anndata.AnnData
        ``X`` and ``obsm['X_pca']`` the 2-d embedding (float32; not a real PCA); ``obs``:
        ``time`` and ``day``; cells named ``larry_<i>``; ``uns['provenance']`` (JSON).

    Raises
    ------
    ValueError
        When the file is not an object array of one ``cells x dims`` array per day, or does
        not hold exactly three days.

    Examples
    --------
    >>> adata = weinreb_to_anndata("Lineage.npy")
    """
    groups = _load_array_groups(lineage_npy)
    if len(groups) != len(WEINREB_DAYS):
        raise ValueError(f"{lineage_npy}: expected days {WEINREB_DAYS}, got {len(groups)} groups.")
    x = np.concatenate(groups).astype(np.float32)
    days = np.repeat(np.asarray(WEINREB_DAYS, dtype=np.int64), [len(g) for g in groups])
    obs = pd.DataFrame(
        {"time": days.astype(np.float64), "day": days},
        index=pd.Index([f"larry_{i}" for i in range(len(x))]),
    )
    adata = ad.AnnData(X=x, obs=obs)
    adata.var_names = [f"dim{i + 1}" for i in range(x.shape[1])]
    adata.obsm["X_pca"] = x.copy()
    return adata  # the record adds uns['provenance'] (DatasetRecord.convert)


def eb_npz_to_anndata(path: PathLike) -> ad.AnnData:
    """Convert TrajectoryNet's ``eb_velocity_v5.npz`` to AnnData.

    The archive holds ``pcs`` (cells x 100 PCs) and ``sample_labels`` (time point 0..4); when
    present, ``delta_embedding`` (RNA velocity in PC space) goes to ``obsm['velocity_pca']`` and
    ``embedding`` (a 2-D PHATE embedding) to ``obsm['X_phate']``.

    Parameters
    ----------
    path
        TrajectoryNet's ``eb_velocity_v5.npz`` (all its cells, not only NLSB's subset).

    Returns
    -------
    anndata.AnnData
        ``X`` and ``obsm['X_pca']`` the PCs (float64), and ``obsm['velocity_pca']`` and
        ``obsm['X_phate']`` when present; ``obs``: ``time`` (the sample label 0..4) and
        ``day_range`` (``'0-3'`` .. ``'24-27'``); cells named ``eb-<i>``;
        ``uns['provenance']`` (the source URL).

    Raises
    ------
    ValueError
        When the archive lacks ``pcs`` or ``sample_labels``, or their lengths differ.
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
