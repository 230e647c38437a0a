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


def test_benchmark_cli(small_h5ad, tmp_path, capsys, one_thread):
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
    assert len(res) == 2 * 2 * 4 and set(res["method"]) == {
        "ot-cfm",
        "previous",
        "ot-interpolation",
        "entropic-interpolation",
    }
    assert out.with_suffix(".png").stat().st_size > 0


def test_fit_and_predict_cli(small_h5ad, tmp_path, capsys, one_thread):
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
                "--coupling",
                "bank",
                "--threads",
                "1",
                "--out",
                str(model_dir),
                "--quiet",
            ]
        )
        == 0
    )
    assert (model_dir / "config.json").is_file()
    loaded = TrajectoryModel.load(model_dir, device="cpu")
    assert loaded.clock.kind == "distance" and loaded.config["coupling"] == "bank"
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
    rc = main(["fit", str(tmp_path / "missing.h5ad"), "--out", str(tmp_path / "m")])
    assert rc == 2
    assert _one_error_line(capsys) == f"trajflow: error: no such file: {tmp_path / 'missing.h5ad'}"


# --- robustness: every failure is one line on stderr, never a traceback ---------------------


def _one_error_line(capsys) -> str:
    """The single stderr line of a failed command (fails the test on anything else)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trajflow: error: ")
    return lines[0]


@pytest.fixture
def not_h5ad(tmp_path):
    path = tmp_path / "x.h5ad"
    path.write_text("time,gene\n0,1\n")
    return path


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the CLI gets as far as training or benchmarking."""
    import trajflow._fit
    import trajflow.benchmark

    def boom(*args, **kwargs):
        raise AssertionError("the CLI should have refused before this")

    monkeypatch.setattr(trajflow._fit, "fit_trajectories", boom)
    monkeypatch.setattr(trajflow.benchmark, "leave_one_out", boom)


@pytest.fixture
def tiny_model(tmp_path, one_thread):
    from trajflow import fit_trajectories

    adata = moving_gaussians(n_per_time=30)
    model = fit_trajectories(adata, n_steps=20, progress=False, device="cpu")
    return model.save(tmp_path / "tiny_model")


@pytest.mark.parametrize("kind", ["text", "directory"])
def test_cli_unreadable_data_is_one_line(not_h5ad, tmp_path, capsys, kind):
    data = not_h5ad if kind == "text" else tmp_path
    for command in (["fit", str(data), "--out", str(tmp_path / "m")], ["benchmark", str(data)]):
        assert main([*command, "--quiet"]) == 2
        line = _one_error_line(capsys)
        assert line.startswith(f"trajflow: error: could not read {data} as an .h5ad file (")
    assert not (tmp_path / "m").exists()


def test_cli_damaged_model_is_one_line(tiny_model, tmp_path, capsys):
    weights = tiny_model / "weights.pt"
    out = tmp_path / "pred.h5ad"
    command = ["predict", str(tiny_model), "--time", "1", "--device", "cpu", "--out", str(out)]
    size = weights.stat().st_size
    # Truncated (as by a full disk), then garbage of the right size: either way one line
    # that names the model, whichever layer notices the damage.
    for damaged in (weights.read_bytes()[:50], b"\0" * size):
        weights.write_bytes(damaged)
        assert main(command) == 2
        assert str(tiny_model) in _one_error_line(capsys)
    (tiny_model / "config.json").write_text("{not json")
    assert main(command) == 2
    assert "config.json" in _one_error_line(capsys)
    (tiny_model / "cells.npz").unlink()
    assert main(command) == 2
    assert "missing cells.npz" in _one_error_line(capsys)
    assert not out.exists()


def test_cli_unexpected_load_error_names_the_model(tmp_path, capsys, monkeypatch):
    import pickle

    from trajflow import TrajectoryModel

    def unpickle_fails(path, device="auto"):
        raise pickle.UnpicklingError("invalid load key, '\\x00'.\nSee the torch docs.")

    monkeypatch.setattr(TrajectoryModel, "load", unpickle_fails)
    model = tmp_path / "model"
    argv = ["predict", str(model), "--time", "1", "--out", str(tmp_path / "p.h5ad")]
    assert main(argv) == 2
    assert _one_error_line(capsys) == (
        f"trajflow: error: could not load the trajflow model in {model} "
        "(UnpicklingError: invalid load key, '\\x00'. See the torch docs.)"
    )


def test_cli_fit_refuses_taken_out_before_training(small_h5ad, tmp_path, capsys, no_training):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("not a model")
    # A missing data file would fail too: the --out check must come first, before reading.
    fit = ["fit", str(tmp_path / "not_read.h5ad"), "--quiet", "--out"]
    assert main([*fit, str(taken)]) == 2
    assert "already exists; pass --overwrite" in _one_error_line(capsys)
    # --overwrite only replaces a saved model, never an arbitrary folder or a file.
    assert main([*fit, str(taken), "--overwrite"]) == 2
    assert "not a trajflow model directory" in _one_error_line(capsys)
    assert main([*fit, str(small_h5ad), "--overwrite"]) == 2
    assert "is a file, not a model directory" in _one_error_line(capsys)
    assert main([*fit, str(small_h5ad / "model")]) == 2
    assert f"{small_h5ad} is a file, not a directory" in _one_error_line(capsys)
    assert (taken / "notes.txt").read_text() == "not a model" and small_h5ad.is_file()


def test_cli_predict_and_benchmark_check_out_first(small_h5ad, tmp_path, capsys, no_training):
    existing = tmp_path / "pred.h5ad"
    existing.write_text("keep me")
    # The model does not exist: the --out checks must fail first, before loading it.
    predict = ["predict", str(tmp_path / "no_model"), "--time", "1", "--out"]
    assert main([*predict, str(existing)]) == 2
    assert "already exists; pass --overwrite" in _one_error_line(capsys)
    assert main([*predict, str(tmp_path), "--overwrite"]) == 2
    assert "is a directory" in _one_error_line(capsys)
    assert main([*predict, str(existing / "sub.h5ad")]) == 2
    assert "is a file, not a directory" in _one_error_line(capsys)
    assert existing.read_text() == "keep me"
    assert main(["benchmark", str(small_h5ad), "--out", str(tmp_path)]) == 2
    assert "is a directory" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "bad",
    [
        ["fit", "d.h5ad", "--out", "m", "--n-steps", "0"],
        ["fit", "d.h5ad", "--out", "m", "--n-steps", "-5"],
        ["fit", "d.h5ad", "--out", "m", "--n-dims", "0"],
        ["fit", "d.h5ad", "--out", "m", "--seed", "-1"],
        ["fit", "d.h5ad", "--out", "m", "--holdout", "nan"],
        ["benchmark", "d.h5ad", "--seeds", "0", "-2"],
        ["benchmark", "d.h5ad", "--n-steps", "ten"],
        ["predict", "m", "--out", "p.h5ad", "--time", "1", "--n-cells", "0"],
        ["predict", "m", "--out", "p.h5ad", "--time", "inf"],
    ],
)
def test_cli_rejects_bad_numbers(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(bad)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: argument" in err


def test_cli_flags_before_or_after_subcommand(tmp_path, capsys):
    from trajflow.cli import build_parser

    parser = build_parser()
    for argv in (["-v", "fit", "d", "--out", "m"], ["fit", "d", "--out", "m", "--verbose"]):
        args = parser.parse_args(argv)
        assert args.verbose is True and args.debug is False
    args = parser.parse_args(["--debug", "predict", "m", "--time", "1", "--out", "p", "-v"])
    assert args.verbose is True and args.debug is True
    args = parser.parse_args(["fit", "d", "--out", "m"])
    assert args.verbose is False and args.debug is False
    # Accepted by main as well: the run gets as far as the missing data.
    assert main(["fit", str(tmp_path / "none.h5ad"), "--out", str(tmp_path / "m"), "-v"]) == 2
    assert "no such file" in _one_error_line(capsys)


def test_cli_debug_shows_the_traceback(not_h5ad, tmp_path):
    from trajflow.cli import CLIError

    with pytest.raises(CLIError, match="could not read"):
        main(["fit", str(not_h5ad), "--out", str(tmp_path / "m"), "--debug"])
    with pytest.raises(CLIError, match="could not read"):
        main(["--debug", "fit", str(not_h5ad), "--out", str(tmp_path / "m")])


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KeyError("no obs column 'day'"), "trajflow: error: no obs column 'day'"),
        (ValueError("first line\n  second line"), "trajflow: error: first line second line"),
        (RuntimeError("CUDA out of memory"), "trajflow: error: CUDA out of memory"),
        (FileExistsError("m exists"), "trajflow: error: m exists"),
        (EOFError(), "trajflow: error: EOFError"),
        (ZeroDivisionError("odd"), "trajflow: error: ZeroDivisionError: odd"),
    ],
)
def test_cli_any_exception_is_one_line(small_h5ad, tmp_path, capsys, monkeypatch, error, expected):
    import trajflow.cli

    def fail(path):
        raise error

    monkeypatch.setattr(trajflow.cli, "_read", fail)
    assert main(["fit", str(small_h5ad), "--out", str(tmp_path / "m")]) == 2
    assert _one_error_line(capsys) == expected


def test_cli_keyboard_interrupt(small_h5ad, tmp_path, capsys, monkeypatch):
    import trajflow.cli

    def interrupt(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(trajflow.cli, "_read", interrupt)
    assert main(["fit", str(small_h5ad), "--out", str(tmp_path / "m")]) == 130
    assert capsys.readouterr().err == "trajflow: interrupted\n"


def test_cli_subprocess_one_line(not_h5ad, tmp_path):
    """The real entry point: exit status 2 and a single stderr line (no warnings, no traceback)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "trajflow.cli", "fit", str(not_h5ad), "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"trajflow: error: could not read {not_h5ad} as an .h5ad file (")
