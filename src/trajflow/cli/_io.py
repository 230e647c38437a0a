"""The command line's files: reading the input data, checking output paths before any work,
writing outputs atomically."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad

from .._folders import is_model_folder
from ._errors import CLIError, message


def loaders() -> dict[str, Callable[[], ad.AnnData]]:
    """The example data sets the ``data`` argument may name, by name."""
    from .. import datasets

    return dict(getattr(datasets, "LOADERS", {"eb": datasets.eb}))


def read(path: str) -> ad.AnnData:
    """Read an ``.h5ad`` file, or load the example data set of that name (``eb``...).

    Raises
    ------
    CLIError
        When ``path`` is missing or cannot be read as an ``.h5ad`` file, or the data set cannot
        be loaded.
    """
    names = loaders()
    if path in names:  # a file of that name can still be given as ./name
        try:
            return names[path]()
        except Exception as err:
            raise CLIError(f"could not load the data set {path!r} ({message(err)})") from err
    file = Path(path)
    if not file.exists():
        if not file.suffix and len(file.parts) == 1:  # a bare word: perhaps a mistyped name
            raise CLIError(
                f"no such file or data set: {path} (data sets: {', '.join(sorted(names))})"
            )
        raise CLIError(f"no such file: {path}")
    if file.is_dir():
        raise CLIError(f"could not read {path} as an .h5ad file (it is a directory)")
    try:
        return ad.read_h5ad(file)
    except Exception as err:  # h5py/anndata raise many types for a file that is not an .h5ad
        raise CLIError(f"could not read {path} as an .h5ad file ({message(err)})") from err


def read_times(adata: ad.AnnData, time_key: str, *, from_labels: bool) -> None:
    """Check the time column before any work; with ``--time-from-labels``, replace it (in the
    data read into memory, never in the file) by the first number of each label.

    Raises
    ------
    CLIError
        When the labels are not numbers: the fix is a flag of this command, not Python.
    """
    import pandas as pd

    from .._anndata import TIME_IN_LABEL, TimeLabelsError, parse_times

    if from_labels and time_key in adata.obs:
        labels = adata.obs[time_key].astype(str)
        numbers = pd.to_numeric(labels.str.extract(TIME_IN_LABEL)[0], errors="coerce")
        missing = numbers.isna() & adata.obs[time_key].notna().to_numpy()
        if missing.any():
            shown = ", ".join(map(repr, pd.unique(labels[missing])[:3]))
            raise CLIError(
                f"--time-from-labels: the labels {shown} of obs[{time_key!r}] hold no number; "
                "give those cells a time point in the file, or drop them"
            )
        adata.obs[time_key] = numbers.to_numpy(dtype=float)
    try:
        parse_times(adata, time_key)
    except TimeLabelsError as err:
        shown = ", ".join(map(repr, err.examples))
        raise CLIError(
            f"obs[{time_key!r}] has time labels that are not numbers ({shown}); rerun with "
            "--time-from-labels to read the first number of each label (e.g. 'day 7' -> 7), "
            "or pass --time-key COLUMN naming a numeric column"
        ) from err


def _check_parent(out: Path) -> None:
    """Refuse early when ``out`` cannot be created: an ancestor is a file, or not writable."""
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CLIError(f"cannot write {out}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {out}: no permission to write in {ancestor}")


def check_out(out: Path, *, overwrite: bool, kind: str, flag: str = "--out") -> None:
    """Validate an output path before any work is done, so that a long run is not wasted.

    Parameters
    ----------
    out
        The path given with ``flag``.
    overwrite
        Whether an existing ``out`` may be replaced (``--overwrite``).
    kind
        ``"dir"`` for a model directory, ``"file"`` for a file.
    flag
        The option that named ``out``, for the messages.
    """
    _check_parent(out)
    if not out.exists():
        return
    if kind == "file" and out.is_dir():
        raise CLIError(f"{flag} {out} is a directory; give a file name")
    if kind == "dir" and not out.is_dir():
        # Overwriting would replace e.g. the input .h5ad by a model directory.
        raise CLIError(f"{flag} {out} is a file, not a model directory; choose another path")
    if not overwrite:
        raise CLIError(
            f"{out} already exists; pass --overwrite to replace it or choose another {flag}"
        )
    if kind == "dir" and any(out.iterdir()) and not is_model_folder(out):
        # Replacing a directory deletes it: only a folder trajflow saved (the library's own
        # test, so a folder of another tool's config.json is refused here, before training)
        raise CLIError(f"refusing to replace {out}: it is not a trajflow model directory")


def same_path(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def write_atomically(out: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write`` on a temporary file next to ``out``, then rename it to ``out``: an existing
    ``out`` is only replaced by a complete file, never lost to a failed write."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so the rename is atomic), same suffix (matplotlib picks the format by it).
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp{out.suffix}")
    try:
        write(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_figure(out: Path, ax: Any) -> None:
    """Save the figure of ``ax`` to ``out`` (atomically) and say where."""
    write_atomically(out, lambda tmp: ax.figure.savefig(tmp, dpi=150, bbox_inches="tight"))
    print(f"Figure: {out}")
