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

import logging
from collections.abc import Callable

import anndata as ad

# ``X as X``: importable from here as before (tests, benchmarks use them) but not in __all__,
# which is the documented API (docs/api.md).
from . import _registry
from ._convert import EB_DAY_MIDS as EB_DAY_MIDS
from ._convert import EB_DAY_RANGES as EB_DAY_RANGES
from ._convert import EB_DAYS as EB_DAYS
from ._convert import EB_URL as EB_URL
from ._convert import EMT_DEEPRUOT_SAMPLES as EMT_DEEPRUOT_SAMPLES
from ._convert import EMT_PCA_SIGNS as EMT_PCA_SIGNS
from ._convert import EMT_TIMES as EMT_TIMES
from ._convert import KLEIN_PCA_SIGNS as KLEIN_PCA_SIGNS
from ._convert import WEINREB_DAYS as WEINREB_DAYS
from ._convert import eb_npz_to_anndata
from ._fetch import PathLike as PathLike
from ._fetch import SourceFile, cache_dir, data_dir
from ._registry import EB_SUBSET_FILE as EB_SUBSET_FILE
from ._registry import EMT_FILE as EMT_FILE
from ._registry import KLEIN_FILE as KLEIN_FILE
from ._registry import (
    SHARED_FILES,
    SOURCES,
    eb_nlsb_to_anndata,
    emt_to_anndata,
    klein_to_anndata,
    weinreb_to_anndata,
)
from ._registry import WEINREB_FILE as WEINREB_FILE
from ._simulate import SIM_LATENT_DIMS as SIM_LATENT_DIMS
from ._simulate import simulate, simulated_velocity

logger = logging.getLogger("trajflow")


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
    return _registry.get("eb").load(path, download)


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
    return _registry.get("emt").load(path, download)


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
    return _registry.get("klein").load(path, download)


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
    return _registry.get("weinreb").load(path, download)


#: The data set loaders by name (the command line accepts these names in place of a file): the
#: function above named after each record of the registry.
LOADERS: dict[str, Callable[..., ad.AnnData]] = {key: globals()[key] for key in _registry.names()}

__all__ = [
    "LOADERS",
    "SHARED_FILES",
    "SOURCES",
    "SourceFile",
    "cache_dir",
    "data_dir",
    "eb",
    "eb_nlsb_to_anndata",
    "eb_npz_to_anndata",
    "emt",
    "emt_to_anndata",
    "klein",
    "klein_to_anndata",
    "simulate",
    "simulated_velocity",
    "weinreb",
    "weinreb_to_anndata",
]
