"""The command line on a small file."""

from __future__ import annotations

import anndata as ad
import pandas as pd
import pytest

from trajflow import TrajectoryModel
from trajflow.cli import main

from conftest import moving_gaussians


@pytest.fixture
def small_h5ad(tmp_path):
    path = tmp_path / "small.h5ad"
    moving_gaussians(n_per_time=60).write_h5ad(path)
    return path


def test_benchmark_cli(small_h5ad, tmp_path, capsys):
    out = tmp_path / "res" / "results.csv"
    rc = main(
        [
            "benchmark",
            str(small_h5ad),
            "--methods",
            "ot-cfm",
            "--seeds",
            "0",
            "1",
            "--n-dims",
            "2",
            "--n-steps",
            "100",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ot-cfm" in printed and "previous" in printed and "±" in printed
    res = pd.read_csv(out)
    assert len(res) == 2 * 2 * 3 and set(res["method"]) == {
        "ot-cfm",
        "previous",
        "ot-interpolation",
    }
    assert out.with_suffix(".png").stat().st_size > 0


def test_fit_and_predict_cli(small_h5ad, tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert (
        main(
            [
                "fit",
                str(small_h5ad),
                "--n-dims",
                "2",
                "--n-steps",
                "50",
                "--clock",
                "distance",
                "--out",
                str(model_dir),
                "--quiet",
            ]
        )
        == 0
    )
    assert (model_dir / "config.json").is_file()
    assert TrajectoryModel.load(model_dir, device="cpu").clock.kind == "distance"
    pred_path = tmp_path / "pred.h5ad"
    assert main(["predict", str(model_dir), "--time", "1.5", "--out", str(pred_path)]) == 0
    pred = ad.read_h5ad(pred_path)
    assert pred.n_obs == 60 and pred.obsm["X_pca"].shape == (60, 2)
    # Refuses to overwrite the model without --overwrite, with a clear message.
    assert (
        main(
            [
                "fit",
                str(small_h5ad),
                "--n-dims",
                "2",
                "--n-steps",
                "10",
                "--out",
                str(model_dir),
                "--quiet",
            ]
        )
        == 2
    )
    assert "overwrite" in capsys.readouterr().err


def test_cli_bad_input(small_h5ad, tmp_path, capsys):
    rc = main(
        ["fit", str(small_h5ad), "--time-key", "day", "--out", str(tmp_path / "m"), "--quiet"]
    )
    assert rc == 2 and "time_key='day'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(tmp_path / "missing.h5ad"), "--out", str(tmp_path / "m")])
