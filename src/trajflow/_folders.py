"""Which paths trajflow may write, replace or clean up, and what a failed write says.

trajflow writes model folders (``model.save``) and checkpoint folders (``checkpoint_dir``).
It replaces only folders it wrote itself (a ``config.json`` with a ``format_version``), never a
user's file or folder; a save goes through a temporary sibling ``.NAME.<random>`` marked as
trajflow's own, so one killed midway is recognised and cleaned up by the next save, and a save
killed between its two renames leaves the previous model at ``.NAME.old``, which :func:`load
<recoverable>` and the next save name.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("trajflow")

#: The file that marks a temporary save folder as trajflow's, holding the writer's process id.
SAVE_MARKER = ".trajflow-save"
#: Below this much free space a write that failed without saying why is taken as a full disk.
_LOW_FREE_BYTES = 16 << 20


class DiskFullError(OSError):
    """A model or checkpoint could not be written because the disk is full."""


def backup_path(path: Path) -> Path:
    """Where a save keeps the previous model while it renames the new one into place."""
    return path.with_name(f".{path.name}.old")


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a folder trajflow saved (its ``config.json`` has a format version)."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        with config.open() as f:
            return "format_version" in json.load(f)
    except (OSError, ValueError):
        # damaged but trajflow's: replacing a model whose config is unreadable is the fix
        return config.stat().st_size > 0 and (path / "weights.pt").exists()


def check_writable(path: Path, *, argument: str) -> None:
    """Refuse early when ``path`` cannot be created or written: an ancestor is a file, or the
    nearest existing folder is not writable."""
    path = Path(path)
    target = path if path.is_dir() else path.absolute().parent
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        raise NotADirectoryError(
            f"{argument}={str(path)!r} cannot be written: {target} is a file, not a folder. "
            "Choose another path."
        )
    # a save renames into the parent, so the parent must be writable too
    for folder in {target, path.absolute().parent} if path.is_dir() else {target}:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(
                f"{argument}={str(path)!r} cannot be written: no permission to write in "
                f"{folder}. Choose a folder you can write to."
            )


def check_replaceable(path: Path, *, overwrite: bool, argument: str = "path") -> None:
    """Refuse to write ``path`` when that would replace something that is not trajflow's.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is false, or it is a file or a folder trajflow did
        not save (those are refused even with ``overwrite=True``).
    """
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise FileExistsError(
            f"{argument}={str(path)!r} is a file, not a trajflow model folder; overwrite=True "
            "replaces only a folder trajflow saved. Choose another path (your file is left as it is)."
        )
    if not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it or choose another path."
        )
    if any(path.iterdir()) and not is_model_folder(path):
        raise FileExistsError(
            f"Refusing to replace {path}: it is not a trajflow model folder (no trajflow "
            "config.json), and overwrite=True replaces only those. Choose another path or "
            "empty that folder yourself."
        )


def new_save_folder(path: Path) -> Path:
    """A temporary sibling of ``path`` to write a save into, marked as trajflow's; stale ones
    left by killed saves of the same path are removed first."""
    clean_stale_saves(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    (tmp / SAVE_MARKER).write_text(str(os.getpid()))
    return tmp


def finish_save_folder(tmp: Path) -> None:
    """Unmark ``tmp`` once it holds the complete save (just before it is renamed into place)."""
    (tmp / SAVE_MARKER).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _stale_saves(path: Path) -> Iterator[Path]:
    for entry in path.parent.glob(f".{path.name}.*"):
        marker = entry / SAVE_MARKER
        if entry == backup_path(path) or not marker.is_file():
            continue
        try:
            pid = int(marker.read_text().strip() or -1)
        except (OSError, ValueError):
            pid = -1
        if pid != os.getpid() and (pid < 0 or not _alive(pid)):
            yield entry


def clean_stale_saves(path: Path) -> None:
    """Remove the temporary folders of saves to ``path`` whose process died mid-write."""
    for entry in _stale_saves(path):
        shutil.rmtree(entry, ignore_errors=True)
        logger.info("removed %s, left by an interrupted save", entry)


def recoverable(path: Path) -> Path | None:
    """The previous model a save to ``path`` killed between its renames left behind, if any."""
    backup = backup_path(path)
    return backup if not path.exists() and is_model_folder(backup) else None


def recovery_hint(path: Path) -> str:
    """A sentence naming the model an interrupted save left beside ``path`` (or ``""``)."""
    backup = recoverable(path)
    if backup is None:
        return ""
    return (
        f" An interrupted save left the previous model at {backup}: restore it with "
        f"os.rename({str(backup)!r}, {str(path)!r}) or load it from there."
    )


@contextmanager
def writing(path: Path, where: Path) -> Iterator[None]:
    """Turn a failed write of ``path`` into an :class:`OSError` that says what happened: a
    :class:`DiskFullError` when the disk holding ``where`` is full (torch reports that as a
    bare ``RuntimeError``)."""
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise _disk_full(path, where) from err
        raise
    except RuntimeError as err:
        # torch's writer: "[enforce fail at inline_container.cc] unexpected pos", "file write
        # failed"; a full disk is the usual cause, told apart by the free space left
        if _free(where) < _LOW_FREE_BYTES:
            raise _disk_full(path, where) from err
        raise OSError(f"Could not write {path}: {err}".splitlines()[0]) from err


def _free(where: Path) -> int:
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return 1 << 62


def _disk_full(path: Path, where: Path) -> DiskFullError:
    return DiskFullError(
        errno.ENOSPC,
        f"The disk holding {where} is full ({_free(where) >> 20} MiB free): {path} was not "
        "written, and a model already there is unchanged. Free some space or save elsewhere.",
        str(path),
    )
