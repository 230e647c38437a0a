"""Every tutorial notebook runs top to bottom (short training: TRAJFLOW_TUTORIAL_FAST=1).

Notebooks run from ``tutorials/`` and find their data with ``trajflow.datasets.data_dir()``; the
test skips when the shared data is not there. The committed notebooks are not modified.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trajflow.datasets import data_dir

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = {
    "01_quickstart.ipynb": "eb_moon2019_nlsb_subset.h5ad",
    "02_leave_one_timepoint_out.ipynb": "eb_moon2019_nlsb_subset.h5ad",
    "03_from_counts.ipynb": "klein2015_mesc_lif_withdrawal_subset.h5ad",
}


def test_every_tutorial_is_tested():
    assert sorted(p.name for p in TUTORIALS.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_tutorial_runs(name, monkeypatch):
    monkeypatch.chdir(TUTORIALS)  # resolve data_dir() as the notebook will
    data = data_dir() / NOTEBOOKS[name]
    if not data.is_file():
        pytest.skip(f"shared data {data.name} not found in {data_dir()} (set TRAJFLOW_DATA_DIR)")
    monkeypatch.setenv("TRAJFLOW_TUTORIAL_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(TUTORIALS)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
