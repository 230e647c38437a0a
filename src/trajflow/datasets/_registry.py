"""The data sets: one :class:`DatasetRecord` each, in one registry, and the lookup every loader
runs (``path`` > the record's environment variable > the shared file > the cache > download).

Adding a data set is one record here (its converter goes in :mod:`._convert`, its public loader
in the package's ``__init__``). :data:`SOURCES` and :data:`SHARED_FILES` are views of the
records' fields, not copies.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad

from . import _convert
from ._fetch import PathLike, SourceFile, cache_dir, data_dir, from_cache, in_folder, provenance


@dataclass(frozen=True)
class DatasetRecord:
    """Everything trajflow knows about one data set.

    Attributes
    ----------
    key
        Its name: the loader's name, a key of ``LOADERS``, a name the command line accepts.
    title
        How error messages name it (``'EB'``).
    shared_file
        The file looked for in :func:`~trajflow.datasets.data_dir`.
    sources
        The public source files, in the order :attr:`converter` takes them.
    converter
        The public source files -> AnnData (:mod:`._convert`); :meth:`convert` adds the
        provenance.
    note
        What the conversion did, for ``uns['provenance']``.
    path_env
        An environment variable that may name a local file, looked at right after ``path``.
    file_readers
        Readers of file formats other than ``.h5ad``, by file suffix, for a file given as
        ``path`` or by :attr:`path_env`.
    """

    key: str
    title: str
    shared_file: str
    sources: tuple[SourceFile, ...]
    converter: Callable[..., ad.AnnData]
    note: str
    path_env: str | None = None
    file_readers: tuple[tuple[str, Callable[[Path], ad.AnnData]], ...] = ()

    def convert(self, *files: PathLike | None, **named: PathLike | None) -> ad.AnnData:
        """:attr:`converter` on the source files, with ``uns['provenance']`` naming them."""
        bound = inspect.signature(self.converter).bind(*files, **named)
        bound.apply_defaults()
        adata = self.converter(*bound.args, **bound.kwargs)
        adata.uns["provenance"] = provenance(
            self.sources, list(bound.arguments.values()), self.converter.__name__, self.note
        )
        return adata

    def read_file(self, path: Path) -> ad.AnnData:
        """A local file: ``.h5ad``, or a format of :attr:`file_readers`."""
        for suffix, reader in self.file_readers:
            if path.suffix == suffix:
                return reader(path)
        return ad.read_h5ad(path)

    def read_path(self, path: Path) -> ad.AnnData:
        """``path`` given: a file to read, or a folder holding the source files by their names."""
        if path.is_dir():
            return self.convert(*in_folder(path, self.sources, self.title))
        if not path.is_file():
            raise FileNotFoundError(f"No {self.title} data at {path}.")
        return self.read_file(path)

    def load(self, path: PathLike | None, download: bool) -> ad.AnnData:
        """The data set from the first place that has it (what every loader does)."""
        if path is not None:
            return self.read_path(Path(path))
        looked = []
        if self.path_env is not None:
            value = os.environ.get(self.path_env)
            if value and Path(value).is_file():
                return self.read_file(Path(value))
            looked.append(
                f"{self.path_env}: {'not set' if not value else f'{value} (no such file)'}"
            )
        shared = data_dir() / self.shared_file
        if shared.is_file():
            return ad.read_h5ad(shared)
        looked.append(f"{shared} (the shared file; data folder: TRAJFLOW_DATA_DIR or shared/data)")
        files = from_cache(self.sources, download, looked)
        if files is None:
            raise self._not_found(looked)
        return self.convert(*files)

    def _not_found(self, looked: list[str]) -> FileNotFoundError:
        where = "\n".join(f"  - {line}" for line in looked)
        return FileNotFoundError(
            f"No local {self.title} data found and download=False. Looked at:\n{where}\n"
            f"To fix it, do one of: pass path= a local .h5ad (or a folder holding "
            f"{', '.join(s.name for s in self.sources)}); set TRAJFLOW_DATA_DIR to a folder "
            f"holding {self.shared_file}; or call trajflow.datasets.{self.key}(download=True) "
            f"with internet access, which downloads {', '.join(s.url for s in self.sources)} "
            f"into {cache_dir()} (TRAJFLOW_CACHE_DIR)."
        )


_NLSB = ("take-koshizuka/NLSB", "dc44f1fda929768eb840bdf3f5c892bc86451cc6")
_DEEPRUOT = ("zhenyiizhang/DeepRUOT", "2289c81032010922aadd9f848db9ffb1a10efb48")
_TIGON = ("yutongo/TIGON", "1ed92cfcc250415fc01b4d344a308b0680cc9635")
_TMSCC = ("tarohi24/tmscc", "5e0f30fd009fe827ac2263f369c099a5bbc91a48")

_RECORDS: dict[str, DatasetRecord] = {
    record.key: record
    for record in (
        DatasetRecord(
            key="eb",
            title="EB",
            shared_file="eb_moon2019_nlsb_subset.h5ad",
            sources=(
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
            converter=_convert.eb_nlsb_to_anndata,
            note="unscaled first 100 PCs from TrajectoryNet eb_velocity_v5.npz ('pcs'); 'v' = "
            "PC-space velocity; the training split (data/train_rna.npz) is not used",
            # before NLSB's subset, eb() read TrajectoryNet's full archive; it still can
            path_env="TRAJFLOW_EB_PATH",
            file_readers=((".npz", _convert.eb_npz_to_anndata),),
        ),
        DatasetRecord(
            key="emt",
            title="EMT",
            shared_file="emt_a549_tgfb1_ae_latent.h5ad",
            sources=(
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
            converter=_convert.emt_to_anndata,
            note="X = 10-D autoencoder latent (not genes). X_pca = PCA of that latent. DeepRUOT "
            "merged 3d+7d into sample 3. X_ae3_tigon = TIGON's 3-d embedding, each time point's "
            "rows matched to that time point's cells in file order",
        ),
        DatasetRecord(
            key="klein",
            title="Klein",
            shared_file="klein2015_mesc_lif_withdrawal_subset.h5ad",
            sources=(
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
            converter=_convert.klein_to_anndata,
            note="X = raw UMI counts, 1000 cells x 900 genes (subset chosen by tmscc author)",
        ),
        DatasetRecord(
            key="weinreb",
            title="Weinreb",
            shared_file="weinreb2020_larry_2d_tigon.h5ad",
            sources=(
                SourceFile(
                    *_TIGON,
                    "Input/Lineage.npy",
                    "b963f114d2d215767f88aa4daf15d591941502d40961308ecd4cc66682c86607",
                    "tigon_Lineage.npy",
                ),
            ),
            converter=_convert.weinreb_to_anndata,
            note="2-D embedding only; X_pca is that 2-D embedding, not a PCA",
        ),
    )
}


def get(key: str) -> DatasetRecord:
    """The record of data set ``key``."""
    try:
        return _RECORDS[key]
    except KeyError:
        raise KeyError(f"No data set {key!r}; known: {sorted(_RECORDS)}.") from None


def names() -> list[str]:
    """The names of the registered data sets, in registration order."""
    return list(_RECORDS)


class _FieldView(Mapping[str, Any]):
    """One attribute of every record, by key: read from the registry at each access.

    Assigning ``view[key] = value`` replaces that record with the field changed (how a test
    registers a small file's hash in place of the real one).
    """

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute

    def __getitem__(self, key: str) -> Any:
        return getattr(_RECORDS[key], self._attribute)

    def __setitem__(self, key: str, value: Any) -> None:
        _RECORDS[key] = dataclasses.replace(_RECORDS[key], **{self._attribute: value})

    def __iter__(self) -> Iterator[str]:
        return iter(_RECORDS)

    def __len__(self) -> int:
        return len(_RECORDS)

    def __repr__(self) -> str:
        return repr(dict(self))


#: The shared file of each data set, looked for in :func:`~trajflow.datasets.data_dir`.
SHARED_FILES: Mapping[str, str] = _FieldView("shared_file")
#: The public source files of each data set, in the order its converter takes them.
SOURCES: Mapping[str, tuple[SourceFile, ...]] = _FieldView("sources")
_TITLES: Mapping[str, str] = _FieldView("title")
#: Each data set's converter, provenance included (:meth:`DatasetRecord.convert`).
_CONVERTERS: Mapping[str, Callable[..., ad.AnnData]] = _FieldView("convert")

EB_SUBSET_FILE = SHARED_FILES["eb"]
EMT_FILE = SHARED_FILES["emt"]
KLEIN_FILE = SHARED_FILES["klein"]
WEINREB_FILE = SHARED_FILES["weinreb"]


def _public_converter(key: str) -> Callable[..., ad.AnnData]:
    """Data set ``key``'s converter as users call it: its record's :meth:`DatasetRecord.convert`
    (which adds the provenance) under the converter's name, signature and docstring."""

    @functools.wraps(_RECORDS[key].converter)
    def convert(*files: PathLike | None, **named: PathLike | None) -> ad.AnnData:
        return get(key).convert(*files, **named)

    return convert


eb_nlsb_to_anndata = _public_converter("eb")
emt_to_anndata = _public_converter("emt")
klein_to_anndata = _public_converter("klein")
weinreb_to_anndata = _public_converter("weinreb")
