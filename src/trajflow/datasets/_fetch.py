"""Where the data set files are: the data and cache folders, the pinned public source files,
their download and sha256 check, and the provenance record a conversion leaves.

Nothing here knows a particular data set; the records in :mod:`._registry` name the files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PathLike = str | os.PathLike[str]


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


def sha256(path: PathLike) -> str:
    """The sha256 hash (hex) of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(
    sources: Sequence[SourceFile], files: Sequence[PathLike | None], converter: str, note: str
) -> str:
    """``uns['provenance']`` (JSON): the registered public sources, and the files converted.

    ``files`` lines up with ``sources`` (``None`` for an optional file that was not given); the
    sources of the files not given are left out.
    """
    used = [(s, f) for s, f in zip(sources, files, strict=True) if f is not None]
    return json.dumps(
        {
            "source": "; ".join(f"github:{s.repo}@{s.commit} {s.path}" for s, _ in used),
            "urls": [s.url for s, _ in used],
            "converted_by": f"trajflow.datasets.{converter}",
            "converted_sha256": {Path(f).name: sha256(f) for _, f in used},
            "note": note,
        }
    )


def in_folder(folder: Path, sources: Sequence[SourceFile], title: str) -> list[Path | None]:
    """The source files held in ``folder`` under their own names (``None`` for a missing
    optional one).

    Raises
    ------
    FileNotFoundError
        When a required one is missing.
    """
    files: list[Path | None] = []
    for source in sources:
        file = folder / source.name
        if not file.is_file() and not source.optional:
            raise FileNotFoundError(
                f"No {title} data at {folder}: the folder holds no {source.name} "
                f"(a folder must hold {[s.name for s in sources]}; or pass a .h5ad)."
            )
        files.append(file if file.is_file() else None)
    return files


def cached(source: SourceFile) -> tuple[Path, bool]:
    """The source's place in the cache, and whether a file with the right hash is there."""
    file = cache_dir() / source.fname
    return file, file.is_file() and sha256(file) == source.sha256


def retrieve(source: SourceFile) -> Path:
    """Download ``source`` into :func:`cache_dir` with pooch, checked against its sha256."""
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


def from_cache(
    sources: Sequence[SourceFile], download: bool, looked: list[str]
) -> list[Path | None] | None:
    """The source files from the cache, downloading the missing ones when ``download``.

    A cached file with the wrong hash is passed over (and downloaded again when ``download``).
    Every file not found is added to ``looked``.

    Returns
    -------
    list or None
        The files in the order of ``sources`` (``None`` for a missing optional one), or
        ``None`` when a required one is missing.
    """
    files: list[Path | None] = []
    incomplete = False
    for source in sources:
        file, ok = cached(source)
        if not ok and download:
            file, ok = retrieve(source), True
        if not ok:
            state = "wrong sha256, ignored" if file.is_file() else "missing"
            looked.append(f"{file} (cache, TRAJFLOW_CACHE_DIR: {state})")
            incomplete = incomplete or not source.optional
        files.append(file if ok else None)
    return None if incomplete else files
