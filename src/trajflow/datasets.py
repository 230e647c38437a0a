"""Example time courses.

Loaders for the real data sets that the documentation and tutorials use. Each returns AnnData
with a numeric ``obs['time']`` and ``obsm['X_pca']``:

- :func:`eb`: embryoid-body differentiation (Moon et al. 2019), TrajectoryNet preprocessing,
  the 2,750-cell NLSB subset: 100 PCs, time points 0..4;
- :func:`emt`: A549 cells under TGFB1, epithelial-mesenchymal transition (Cook & Vanderhyden
  2020), 3,133 cells as a 10-d autoencoder latent, days 0, 1/3, 1, 3, 7;
- :func:`klein`: mouse ES cells after LIF withdrawal (Klein et al. 2015), 1,000 cells x 900
  genes of raw UMI counts, days 0, 2, 4, 7;
- :func:`weinreb`: mouse haematopoiesis, LARRY in vitro (Weinreb et al. 2020), 10,998 cells as
  a 2-d embedding, days 2, 4, 6.

:data:`LOADERS` maps the names ``"eb"``, ``"emt"``, ``"klein"`` and ``"weinreb"`` to them.

Each loader looks for a local copy, in order: its ``path`` argument (a ``.h5ad``, or a folder
holding the public source files under their own names); for :func:`eb` only, the
``TRAJFLOW_EB_PATH`` environment variable; the shared file (:data:`SHARED_FILES`) in
:func:`data_dir`; the public source files in :func:`cache_dir` (used only when their sha256
matches). With none of those and ``download=True`` it downloads the public source files
(:data:`SOURCES`: pinned to a commit, checked against a known sha256) into the cache with pooch
and converts them to the same AnnData as the shared file.

:func:`simulate` makes a synthetic branching time course with a known answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

logger = logging.getLogger("trajflow")

PathLike = str | os.PathLike[str]

EB_URL = "https://github.com/KrishnaswamyLab/TrajectoryNet/raw/master/data/eb_velocity_v5.npz"
EB_SUBSET_FILE = "eb_moon2019_nlsb_subset.h5ad"
EMT_FILE = "emt_a549_tgfb1_ae_latent.h5ad"
KLEIN_FILE = "klein2015_mesc_lif_withdrawal_subset.h5ad"
WEINREB_FILE = "weinreb2020_larry_2d_tigon.h5ad"

#: The shared file of each data set, looked for in :func:`~trajflow.datasets.data_dir`.
SHARED_FILES: dict[str, str] = {
    "eb": EB_SUBSET_FILE,
    "emt": EMT_FILE,
    "klein": KLEIN_FILE,
    "weinreb": WEINREB_FILE,
}

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


@dataclass(frozen=True)
class SourceFile:
    """A public source file of a data set, pinned to a commit of a GitHub repository.

    Attributes
    ----------
    repo
        ``owner/name`` on GitHub.
    commit
        The commit the file and its hash are pinned to.
    path
        The file's path in the repository.
    sha256
        The sha256 hash of the file's bytes (hex).
    fname
        The file's name in :func:`cache_dir`.
    optional
        The conversion works without it (it adds an extra field).
    """

    repo: str
    commit: str
    path: str
    sha256: str
    fname: str
    optional: bool = False

    @property
    def url(self) -> str:
        """Where the file is downloaded from (raw.githubusercontent.com at the pinned commit)."""
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"

    @property
    def name(self) -> str:
        """The file's own name, as looked for in a folder given as ``path``."""
        return PurePosixPath(self.path).name


_NLSB = ("take-koshizuka/NLSB", "dc44f1fda929768eb840bdf3f5c892bc86451cc6")
_DEEPRUOT = ("zhenyiizhang/DeepRUOT", "2289c81032010922aadd9f848db9ffb1a10efb48")
_TIGON = ("yutongo/TIGON", "1ed92cfcc250415fc01b4d344a308b0680cc9635")
_TMSCC = ("tarohi24/tmscc", "5e0f30fd009fe827ac2263f369c099a5bbc91a48")

#: The public source files of each data set, in the order its converter takes them.
SOURCES: dict[str, tuple[SourceFile, ...]] = {
    "eb": (
        SourceFile(
            *_NLSB,
            "data/test_rna.npz",
            "7516d91f115ed9a4063358c17913e7b5336ecf4084752bfd822b2f4055c851cf",
            "nlsb_test_rna.npz",
        ),
        SourceFile(
            *_NLSB,
            "data/val_rna.npz",
            "7e1c894bf87cbb54d383e7a48d5fbcbd29cab97fd795fd8d488da8898e27cc6b",
            "nlsb_val_rna.npz",
        ),
    ),
    "emt": (
        SourceFile(
            *_DEEPRUOT,
            "data/emt.csv",
            "820eca0ca6a9b8c5aba970dda04052b2e2ea4489b712b948559fe5cd185a8294",
            "deepruot_emt.csv",
        ),
        SourceFile(
            *_TIGON,
            "EMT_data/AE_EMT_time.csv",
            "45d9a094e64d8a14c3193e9baae307fe89d5b92f798d659cb731fcc9a431ffbb",
            "tigon_AE_EMT_time.csv",
        ),
        SourceFile(
            *_TIGON,
            "Input/EMT.npy",
            "0dbb720ccfbd6c9cb6f4d7fd214c7a86c8577332bd2b2b163dffdc87ec23364f",
            "tigon_EMT.npy",
            optional=True,
        ),
    ),
    "klein": (
        SourceFile(
            *_TMSCC,
            "tmscc/data/klein/profile.txt",
            "476469c10c67eb3802edfe57f86c85c7bf305a8157cd250b4ddb8e722f76173e",
            "tmscc_klein_profile.txt",
        ),
        SourceFile(
            *_TMSCC,
            "tmscc/data/klein/labels.txt",
            "d844fc0c7117225d1def14a7a5546a6f41bbbccf5f0016e2c42323c4e5721d6c",
            "tmscc_klein_labels.txt",
        ),
    ),
    "weinreb": (
        SourceFile(
            *_TIGON,
            "Input/Lineage.npy",
            "b963f114d2d215767f88aa4daf15d591941502d40961308ecd4cc66682c86607",
            "tigon_Lineage.npy",
        ),
    ),
}

_TITLES = {"eb": "EB", "emt": "EMT", "klein": "Klein", "weinreb": "Weinreb"}


def data_dir() -> Path:
    """Where the shared example data lives.

    ``TRAJFLOW_DATA_DIR`` if set, else the first ``shared/data`` folder found in the working
    directory or one of its parents (so the same rule works from the repository root,
    ``tests/`` and ``tutorials/``), else ``../shared/data``.

    Returns
    -------
    pathlib.Path
        The folder (not checked to exist when it comes from ``TRAJFLOW_DATA_DIR`` or is the
        ``../shared/data`` fallback).
    """
    if "TRAJFLOW_DATA_DIR" in os.environ:
        return Path(os.environ["TRAJFLOW_DATA_DIR"])
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return Path("../shared/data")


def cache_dir() -> Path:
    """Where downloaded source files are cached.

    Returns
    -------
    pathlib.Path
        ``TRAJFLOW_CACHE_DIR`` if set, else ``~/.cache/trajflow`` (created by the download when
        missing).
    """
    return Path(os.environ.get("TRAJFLOW_CACHE_DIR", Path.home() / ".cache" / "trajflow"))


# --- converters: public source files -> AnnData -----------------------------------------------


def _sha256(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _provenance(key: str, files: Sequence[PathLike | None], converter: str, note: str) -> str:
    """``uns['provenance']``: the registered public sources, and the files actually converted."""
    used = [(s, f) for s, f in zip(SOURCES[key], files, strict=True) if f is not None]
    return json.dumps(
        {
            "source": "; ".join(f"github:{s.repo}@{s.commit} {s.path}" for s, _ in used),
            "urls": [s.url for s, _ in used],
            "converted_by": f"trajflow.datasets.{converter}",
            "converted_sha256": {Path(f).name: _sha256(f) for _, f in used},
            "note": note,
        }
    )


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
    adata.uns["provenance"] = _provenance(
        "eb",
        [test, val],
        "eb_nlsb_to_anndata",
        "unscaled first 100 PCs from TrajectoryNet eb_velocity_v5.npz ('pcs'); 'v' = PC-space "
        "velocity; the training split (data/train_rna.npz) is not used",
    )
    return adata


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
    adata.uns["provenance"] = _provenance(
        "emt",
        [emt_csv, times_csv, ae3_npy],
        "emt_to_anndata",
        "X = 10-D autoencoder latent (not genes). X_pca = PCA of that latent. DeepRUOT merged "
        "3d+7d into sample 3. X_ae3_tigon = TIGON's 3-d embedding, each time point's rows "
        "matched to that time point's cells in file order",
    )
    return adata


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
    adata.uns["provenance"] = _provenance(
        "klein",
        [profile, labels],
        "klein_to_anndata",
        "X = raw UMI counts, 1000 cells x 900 genes (subset chosen by tmscc author)",
    )
    return adata


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
    adata.uns["provenance"] = _provenance(
        "weinreb",
        [lineage_npy],
        "weinreb_to_anndata",
        "2-D embedding only; X_pca is that 2-D embedding, not a PCA",
    )
    return adata


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


_CONVERTERS: dict[str, Callable[..., ad.AnnData]] = {
    "eb": eb_nlsb_to_anndata,
    "emt": emt_to_anndata,
    "klein": klein_to_anndata,
    "weinreb": weinreb_to_anndata,
}


# --- lookup: path, shared file, cache, download -----------------------------------------------


def _read_file(key: str, path: Path) -> ad.AnnData:
    if key == "eb" and path.suffix == ".npz":
        return eb_npz_to_anndata(path)
    return ad.read_h5ad(path)


def _read_path(key: str, path: Path) -> ad.AnnData:
    """``path`` given: a file to read, or a folder holding the source files by their names."""
    if path.is_dir():
        files: list[Path | None] = []
        for source in SOURCES[key]:
            file = path / source.name
            if not file.is_file() and not source.optional:
                raise FileNotFoundError(
                    f"No {_TITLES[key]} data at {path}: the folder holds no {source.name} "
                    f"(a folder must hold {[s.name for s in SOURCES[key]]}; or pass a .h5ad)."
                )
            files.append(file if file.is_file() else None)
        return _CONVERTERS[key](*files)
    if not path.is_file():
        raise FileNotFoundError(f"No {_TITLES[key]} data at {path}.")
    return _read_file(key, path)


def _cached(source: SourceFile) -> tuple[Path, bool]:
    """The source's place in the cache, and whether a file with the right hash is there."""
    file = cache_dir() / source.fname
    return file, file.is_file() and _sha256(file) == source.sha256


def _retrieve(source: SourceFile) -> Path:
    import pooch

    return Path(
        pooch.retrieve(
            url=source.url,
            known_hash=f"sha256:{source.sha256}",
            path=cache_dir(),
            fname=source.fname,
            progressbar=True,
        )
    )


def _not_found(key: str, looked: list[str]) -> FileNotFoundError:
    sources = SOURCES[key]
    where = "\n".join(f"  - {line}" for line in looked)
    return FileNotFoundError(
        f"No local {_TITLES[key]} data found and download=False. Looked at:\n{where}\n"
        f"To fix it, do one of: pass path= a local .h5ad (or a folder holding "
        f"{', '.join(s.name for s in sources)}); set TRAJFLOW_DATA_DIR to a folder holding "
        f"{SHARED_FILES[key]}; or call trajflow.datasets.{key}(download=True) with internet "
        f"access, which downloads {', '.join(s.url for s in sources)} into {cache_dir()} "
        f"(TRAJFLOW_CACHE_DIR)."
    )


def _load(key: str, path: PathLike | None, download: bool, env: str | None = None) -> ad.AnnData:
    if path is not None:
        return _read_path(key, Path(path))
    looked = []
    if env is not None:
        value = os.environ.get(env)
        if value and Path(value).is_file():
            return _read_file(key, Path(value))
        looked.append(f"{env}: {'not set' if not value else f'{value} (no such file)'}")
    shared = data_dir() / SHARED_FILES[key]
    if shared.is_file():
        return ad.read_h5ad(shared)
    looked.append(f"{shared} (the shared file; data folder: TRAJFLOW_DATA_DIR or shared/data)")
    files: list[Path | None] = []
    incomplete = False
    for source in SOURCES[key]:
        file, ok = _cached(source)
        if not ok and download:
            file, ok = _retrieve(source), True
        if not ok:
            state = "wrong sha256, ignored" if file.is_file() else "missing"
            looked.append(f"{file} (cache, TRAJFLOW_CACHE_DIR: {state})")
            incomplete = incomplete or not source.optional
        files.append(file if ok else None)
    if incomplete:
        raise _not_found(key, looked)
    return _CONVERTERS[key](*files)


def eb(path: PathLike | None = None, *, download: bool = True) -> ad.AnnData:
    """The embryoid-body time course: 2,750 cells x 100 PCs, ``obs['time']`` 0..4.

    Embryoid-body differentiation (Moon et al. 2019, Nat Biotechnol 37:1482) in TrajectoryNet's
    preprocessing: the first 100 (unscaled) PCs, with RNA velocity in PC space. It is the
    2,750-cell subset that NLSB (take-koshizuka/NLSB) publishes as its test and validation
    splits, 550 cells per time point (days 0-3, 6-9, 12-15, 18-21, 24-27), of the ~16,800-cell
    benchmark set. PC1 is uncentred (mean about 52): standardise before use.

    Where it looks, in order: ``path``; ``TRAJFLOW_EB_PATH``; ``eb_moon2019_nlsb_subset.h5ad``
    in :func:`data_dir`; NLSB's ``test_rna.npz`` and ``val_rna.npz`` in :func:`cache_dir`. Else
    it downloads those two files (:data:`SOURCES` ``['eb']``) and converts them with
    :func:`eb_nlsb_to_anndata`.

    Parameters
    ----------
    path
        A local ``.h5ad``; a folder holding ``test_rna.npz`` and ``val_rna.npz``; or
        TrajectoryNet's full ``eb_velocity_v5.npz`` (converted by :func:`eb_npz_to_anndata`).
    download
        Download the source files into the cache when no local copy is found.

    Returns
    -------
    anndata.AnnData
        ``X`` and ``obsm['X_pca']`` the 100 PCs, ``obsm['velocity_pca']``; ``obs``: ``time``,
        ``day_range``, ``day_mid``, ``nlsb_split``, ``eb_velocity_v5_row``;
        ``uns['provenance']``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist, or nothing is found and ``download=False``.

    Examples
    --------
    >>> import trajflow
    >>> adata = trajflow.datasets.eb()
    >>> adata.shape
    (2750, 100)
    >>> adata.obs["time"].value_counts().sort_index().tolist()
    [550, 550, 550, 550, 550]
    """
    return _load("eb", path, download, env="TRAJFLOW_EB_PATH")


def emt(path: PathLike | None = None, *, download: bool = True) -> ad.AnnData:
    """The EMT time course: A549 cells under TGFB1, 3,133 cells as a 10-d latent.

    Epithelial-mesenchymal transition of A549 cells treated with TGFB1 (Cook & Vanderhyden
    2020), as the 10-d autoencoder latent that DeepRUOT (zhenyiizhang/DeepRUOT) publishes, with
    the time labels of TIGON (yutongo/TIGON): days 0, 1/3 (8 hours), 1, 3 and 7 with 577, 885,
    788, 754 and 129 cells.

    Where it looks, in order: ``path``; ``emt_a549_tgfb1_ae_latent.h5ad`` in :func:`data_dir`;
    the source files in :func:`cache_dir`. Else it downloads DeepRUOT's ``data/emt.csv`` and
    TIGON's ``EMT_data/AE_EMT_time.csv`` and ``Input/EMT.npy`` (:data:`SOURCES` ``['emt']``)
    and converts them with :func:`emt_to_anndata`.

    Parameters
    ----------
    path
        A local ``.h5ad``, or a folder holding ``emt.csv`` and ``AE_EMT_time.csv`` (and
        optionally ``EMT.npy``).
    download
        Download the source files into the cache when no local copy is found.

    Returns
    -------
    anndata.AnnData
        ``X`` the latent (variables ``AE1`` .. ``AE10``), ``obsm['X_pca']`` its PCA,
        ``obsm['X_ae3_tigon']`` TIGON's 3-d embedding; ``obs``: ``time`` (days),
        ``time_label``, ``deepruot_sample``; ``uns['provenance']``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist, or nothing is found and ``download=False``.

    Examples
    --------
    >>> import trajflow
    >>> adata = trajflow.datasets.emt()
    >>> adata.shape
    (3133, 10)
    >>> sorted(adata.obs["time_label"].unique())
    ['0d', '1d', '3d', '7d', '8h']
    """
    return _load("emt", path, download)


def klein(path: PathLike | None = None, *, download: bool = True) -> ad.AnnData:
    """Mouse ES cells after LIF withdrawal: 1,000 cells x 900 genes of raw UMI counts.

    Klein et al. 2015 (Cell 161:1187, GSE65525), the gene-level subset that tmscc
    (tarohi24/tmscc) ships: days 0, 2, 4 and 7 with 359, 101, 248 and 292 cells.

    Where it looks, in order: ``path``; ``klein2015_mesc_lif_withdrawal_subset.h5ad`` in
    :func:`data_dir`; the source files in :func:`cache_dir`. Else it downloads tmscc's
    ``tmscc/data/klein/profile.txt`` and ``labels.txt`` (:data:`SOURCES` ``['klein']``) and
    converts them with :func:`klein_to_anndata`.

    Parameters
    ----------
    path
        A local ``.h5ad``, or a folder holding ``profile.txt`` and ``labels.txt``.
    download
        Download the source files into the cache when no local copy is found.

    Returns
    -------
    anndata.AnnData
        ``X`` raw counts, ``layers['log1p_cp10k']``, ``obsm['X_pca']`` (20 PCs of that layer),
        ``uns['pca_explained_variance_ratio']``; ``obs``: ``time`` and ``day``;
        ``uns['provenance']``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist, or nothing is found and ``download=False``.

    Examples
    --------
    >>> import trajflow
    >>> adata = trajflow.datasets.klein()
    >>> adata.shape
    (1000, 900)
    >>> sorted(adata.obs["day"].unique())
    [0, 2, 4, 7]
    """
    return _load("klein", path, download)


def weinreb(path: PathLike | None = None, *, download: bool = True) -> ad.AnnData:
    """Mouse haematopoiesis, LARRY in vitro: 10,998 cells as a 2-d embedding.

    Weinreb et al. 2020 (Science 367:eaaw3381) as the 2-d embedding that TIGON
    (yutongo/TIGON) uses, days 2, 4 and 6 with 1,429, 3,781 and 5,788 cells. The embedding is
    stored in ``X`` and ``obsm['X_pca']`` (where trajflow reads it by default); it is not a
    PCA.

    Where it looks, in order: ``path``; ``weinreb2020_larry_2d_tigon.h5ad`` in
    :func:`data_dir`; the source file in :func:`cache_dir`. Else it downloads TIGON's
    ``Input/Lineage.npy`` (:data:`SOURCES` ``['weinreb']``) and converts it with
    :func:`weinreb_to_anndata`.

    Parameters
    ----------
    path
        A local ``.h5ad``, or a folder holding ``Lineage.npy``.
    download
        Download the source file into the cache when no local copy is found.

    Returns
    -------
    anndata.AnnData
        ``X`` and ``obsm['X_pca']`` the 2-d embedding; ``obs``: ``time`` and ``day``;
        ``uns['provenance']``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist, or nothing is found and ``download=False``.

    Examples
    --------
    >>> import trajflow
    >>> adata = trajflow.datasets.weinreb()
    >>> adata.shape
    (10998, 2)
    >>> sorted(adata.obs["day"].unique())
    [2, 4, 6]
    """
    return _load("weinreb", path, download)


#: The data set loaders by name (the command line accepts these names in place of a file).
LOADERS: dict[str, Callable[..., ad.AnnData]] = {
    "eb": eb,
    "emt": emt,
    "klein": klein,
    "weinreb": weinreb,
}


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
