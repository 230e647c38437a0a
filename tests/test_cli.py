"""The command line on a small file."""

from __future__ import annotations

from pathlib import Path

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
    assert len(res) == 2 * 2 * 5 and set(res["method"]) == {
        "perfect-half",
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
    import functools

    import trajflow._fit
    import trajflow.benchmark

    def stand_in(original):
        # wraps: the parser still reads fit_trajectories' defaults through the signature
        @functools.wraps(original)
        def boom(*args, **kwargs):
            raise AssertionError("the CLI should have refused before this")

        return boom

    for module, name in (
        (trajflow._fit, "fit_trajectories"),
        (trajflow.benchmark, "leave_one_out"),
    ):
        monkeypatch.setattr(module, name, stand_in(getattr(module, name)))


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
    # ... nor another tool's folder that happens to hold a config.json
    foreign = tmp_path / "other_tool"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"learning_rate": 0.1}')
    assert main([*fit, str(foreign), "--overwrite"]) == 2
    assert "not a trajflow model directory" in _one_error_line(capsys)
    assert (foreign / "config.json").read_text() == '{"learning_rate": 0.1}'
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
        ["predict", "m", "--out", "p.h5ad", "--time", "1", "nan"],
        ["predict", "m", "--out", "p.h5ad", "--time", "1", "--source-time", "x"],
        ["predict", "m", "--out", "p.h5ad", "--time", "1", "--solver-steps", "0"],
        ["predict", "m", "--out", "p.h5ad", "--time", "1", "--solver", "nope"],
        ["fit", "d.h5ad", "--out", "m", "--lr", "0"],
        ["fit", "d.h5ad", "--out", "m", "--lr", "nan"],
        ["fit", "d.h5ad", "--out", "m", "--batch-size", "0"],
        ["fit", "d.h5ad", "--out", "m", "--weight-decay", "-1"],
        ["fit", "d.h5ad", "--out", "m", "--sigma", "-0.1"],
        ["fit", "d.h5ad", "--out", "m", "--unbalanced", "0"],
        ["fit", "d.h5ad", "--out", "m", "--hidden", "0"],
        ["fit", "d.h5ad", "--out", "m", "--n-layers", "1.5"],
        ["fit", "d.h5ad", "--out", "m", "--threads", "0"],
        ["fit", "d.h5ad", "--out", "m", "--checkpoint-every", "0"],
        ["fit", "d.h5ad", "--out", "m", "--method", "nope"],
        ["benchmark", "d.h5ad", "--lr", "-1"],
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
    import trajflow.cli._io

    def fail(path):
        raise error

    monkeypatch.setattr(trajflow.cli._io, "read", fail)
    assert main(["fit", str(small_h5ad), "--out", str(tmp_path / "m")]) == 2
    assert _one_error_line(capsys) == expected


def test_cli_keyboard_interrupt(small_h5ad, tmp_path, capsys, monkeypatch):
    import trajflow.cli._io

    def interrupt(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(trajflow.cli._io, "read", interrupt)
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


# --- fit: every setting from the shell, paths checked before any work ------------------------


def _capture_fit(monkeypatch) -> dict:
    """Replace fit_trajectories by a stand-in that records its arguments and stops the run."""
    import functools

    import trajflow._fit

    seen: dict = {}

    @functools.wraps(trajflow._fit.fit_trajectories)
    def record(adata, **kwargs):
        seen.update(kwargs, adata=adata)
        raise RuntimeError("stopped after the arguments")

    monkeypatch.setattr(trajflow._fit, "fit_trajectories", record)
    return seen


def test_cli_fit_passes_every_setting(small_h5ad, tmp_path, capsys, monkeypatch):
    seen = _capture_fit(monkeypatch)
    argv = ["fit", str(small_h5ad), "--out", str(tmp_path / "m"), "--quiet"]
    argv += ["--time-key", "time", "--use-rep", "X_pca", "--n-dims", "2"]
    argv += ["--scaling", "per-dimension", "--method", "sb-cfm", "--holdout", "1", "2"]
    argv += ["--sigma", "0.5", "--growth-key", "g", "--unbalanced", "2.5", "--solver", "rk4"]
    argv += ["--solver-steps", "7", "--seed", "3", "--n-steps", "20", "--batch-size", "16"]
    argv += ["--lr", "0.01", "--weight-decay", "0", "--lr-schedule", "constant", "--hidden", "8"]
    argv += ["--n-layers", "2", "--activation", "relu", "--clock", "time", "--coupling", "full"]
    argv += ["--threads", "1", "--checkpoint-dir", str(tmp_path / "ck")]
    argv += ["--checkpoint-every", "5", "--device", "cpu", "--restore", "0"]
    assert main(argv) == 2
    assert _one_error_line(capsys) == "trajflow: error: stopped after the arguments"
    expected = {
        "time_key": "time", "use_rep": "X_pca", "n_dims": 2, "scaling": "per-dimension",
        "method": "sb-cfm", "holdout": [1.0, 2.0], "sigma": 0.5, "growth_key": "g",
        "unbalanced": 2.5, "solver": "rk4", "solver_steps": 7, "seed": 3, "n_steps": 20,
        "batch_size": 16, "lr": 0.01, "weight_decay": 0.0, "lr_schedule": "constant",
        "hidden": 8, "n_layers": 2, "activation": "relu", "clock": "time", "coupling": "full",
        "threads": 1, "checkpoint_dir": str(tmp_path / "ck"), "checkpoint_every": 5,
        "resume_from": None, "device": "cpu", "progress": False, "restore": 0.0,
    }  # fmt: skip
    assert {k: seen[k] for k in expected} == expected
    assert seen["adata"].n_obs == 240


def test_cli_fit_defaults_are_the_library_defaults(small_h5ad, tmp_path, capsys, monkeypatch):
    import inspect

    from trajflow import fit_trajectories

    library = {
        name: p.default for name, p in inspect.signature(fit_trajectories).parameters.items()
    }
    seen = _capture_fit(monkeypatch)
    assert main(["fit", str(small_h5ad), "--out", str(tmp_path / "m")]) == 2
    capsys.readouterr()
    seen.pop("adata")
    # only passed when given, so that its default lives in one place
    assert "checkpoint_every" not in seen
    assert seen == {k: library[k] for k in seen}
    # and the help shows those defaults
    from trajflow.cli import build_parser

    fit_help = _subparser(build_parser(), "fit").format_help()
    for flag, name in (("--n-steps", "n_steps"), ("--lr", "lr"), ("--batch-size", "batch_size")):
        entry = fit_help.split(f"\n  {flag} ")[1].split("\n  --")[0]
        assert f"(default: {library[name]})" in " ".join(entry.split())
    assert f"(default: {library['checkpoint_every']})" in fit_help


def test_cli_fit_checks_paths_before_reading(tmp_path, capsys, no_training):
    missing_data = str(tmp_path / "not_read.h5ad")  # reading it would fail: the checks come first
    fit = ["fit", missing_data, "--quiet", "--out", str(tmp_path / "m")]
    assert main([*fit, "--checkpoint-every", "5"]) == 2
    assert "--checkpoint-every needs --checkpoint-dir" in _one_error_line(capsys)
    assert main([*fit, "--resume-from", str(tmp_path / "nothing")]) == 2
    assert "no such checkpoint directory" in _one_error_line(capsys)
    model_only = tmp_path / "model_only"
    model_only.mkdir()
    (model_only / "config.json").write_text("{}")
    assert main([*fit, "--resume-from", str(model_only)]) == 2
    assert "is not a trajflow checkpoint (no trainer_state.pt)" in _one_error_line(capsys)
    assert main([*fit, "--checkpoint-dir", str(tmp_path / "m")]) == 2
    assert "--checkpoint-dir and --out are both" in _one_error_line(capsys)
    # A folder that is not a checkpoint is never replaced by one (saving would delete it).
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    assert main([*fit, "--checkpoint-dir", str(notes), "--overwrite"]) == 2
    assert "not a trajflow model directory" in _one_error_line(capsys)
    # An earlier checkpoint: resume it, start over with --overwrite, or go elsewhere.
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"format_version": 1}')
    (ckpt / "trainer_state.pt").write_text("")
    assert main([*fit, "--checkpoint-dir", str(ckpt)]) == 2
    line = _one_error_line(capsys)
    assert "already holds a checkpoint" in line and f"--resume-from {ckpt}" in line
    assert main([*fit, "--figure", str(tmp_path)]) == 2
    assert "--figure" in _one_error_line(capsys)
    # Everything in order: now the data is read, and found missing.
    assert main([*fit, "--checkpoint-dir", str(ckpt), "--resume-from", str(ckpt)]) == 2
    assert _one_error_line(capsys) == f"trajflow: error: no such file: {missing_data}"
    assert (notes / "keep.txt").read_text() == "mine" and not (tmp_path / "m").exists()


def test_cli_failed_fit_keeps_the_existing_model(small_h5ad, tiny_model, capsys, monkeypatch):
    import functools

    import trajflow._fit

    before = {f.name: f.read_bytes() for f in tiny_model.iterdir()}

    @functools.wraps(trajflow._fit.fit_trajectories)
    def diverge(adata, **kwargs):
        raise ValueError("The training loss became nan near step 3.")

    monkeypatch.setattr(trajflow._fit, "fit_trajectories", diverge)
    argv = ["fit", str(small_h5ad), "--out", str(tiny_model), "--overwrite", "--quiet"]
    assert main(argv) == 2
    assert _one_error_line(capsys) == "trajflow: error: The training loss became nan near step 3."
    assert {f.name: f.read_bytes() for f in tiny_model.iterdir()} == before


def test_cli_interrupted_fit_writes_nothing(small_h5ad, tiny_model, tmp_path, capsys, monkeypatch):
    """Ctrl-C during training: the half-trained model does not replace the one at --out."""
    import functools
    import types

    import trajflow._fit

    before = {f.name: f.read_bytes() for f in tiny_model.iterdir()}

    @functools.wraps(trajflow._fit.fit_trajectories)
    def interrupted(adata, **kwargs):
        history = {"interrupted": True, "steps_done": 7}
        return types.SimpleNamespace(history=history, config={"n_steps": kwargs["n_steps"]})

    monkeypatch.setattr(trajflow._fit, "fit_trajectories", interrupted)
    ckpt = tmp_path / "ckpt"
    argv = ["fit", str(small_h5ad), "--out", str(tiny_model), "--overwrite", "--n-steps", "20"]
    argv += ["--checkpoint-dir", str(ckpt)]
    message = f"trajflow: interrupted after 7 of 20 training steps; nothing written to {tiny_model}"
    assert main(argv) == 130
    assert capsys.readouterr().err == message + "\n"  # no checkpoint was written yet
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"format_version": 1}')
    (ckpt / "trainer_state.pt").write_text("")
    assert main([*argv, "--resume-from", str(ckpt)]) == 130
    assert capsys.readouterr().err == (
        f"{message}; resume from the last checkpoint with --resume-from {ckpt}\n"
    )
    assert {f.name: f.read_bytes() for f in tiny_model.iterdir()} == before


def test_cli_fit_checkpoint_and_resume(small_h5ad, tmp_path, capsys, one_thread):
    ckpt, first, second = tmp_path / "ckpt", tmp_path / "first", tmp_path / "second"
    fit = ["fit", str(small_h5ad), "--n-dims", "2", "--clock", "time", "--quiet", "--device", "cpu"]
    argv = [*fit, "--n-steps", "20", "--checkpoint-dir", str(ckpt), "--checkpoint-every", "10"]
    assert main([*argv, "--out", str(first)]) == 0
    assert (ckpt / "trainer_state.pt").is_file()
    # Running again into the same checkpoint folder without resuming is refused up front.
    assert main([*argv, "--out", str(second)]) == 2
    assert "already holds a checkpoint" in _one_error_line(capsys)
    # Resume (checkpointing on in the same folder) and train 10 more steps.
    argv = [*fit, "--n-steps", "30", "--checkpoint-dir", str(ckpt), "--resume-from", str(ckpt)]
    assert main([*argv, "--out", str(second)]) == 0
    assert TrajectoryModel.load(second, device="cpu").history["steps_done"] == 30
    assert TrajectoryModel.load(first, device="cpu").history["steps_done"] == 20
    # A checkpoint of other settings: the library's one-line refusal.
    assert main([*argv, "--hidden", "8", "--out", str(tmp_path / "third")]) == 2
    assert "Cannot resume from" in _one_error_line(capsys)


# --- data: a file or a data set name ---------------------------------------------------------


def test_cli_data_set_names(tmp_path, capsys, monkeypatch):
    import trajflow.datasets
    from trajflow.cli import build_parser

    def broken():
        raise FileNotFoundError("No local copy and download=False.")

    loaders = {"tiny": lambda: moving_gaussians(n_per_time=10), "broken": broken}
    monkeypatch.setattr(trajflow.datasets, "LOADERS", loaders, raising=False)
    help_text = " ".join(_subparser(build_parser(), "fit").format_help().split())
    assert "example data set: broken, tiny" in help_text
    seen = _capture_fit(monkeypatch)
    assert main(["fit", "tiny", "--out", str(tmp_path / "m")]) == 2
    capsys.readouterr()
    assert seen["adata"].n_obs == 40
    assert main(["fit", "broken", "--out", str(tmp_path / "m")]) == 2
    assert _one_error_line(capsys) == (
        "trajflow: error: could not load the data set 'broken' (No local copy and download=False.)"
    )
    assert main(["fit", "tinny", "--out", str(tmp_path / "m")]) == 2
    assert _one_error_line(capsys) == (
        "trajflow: error: no such file or data set: tinny (data sets: broken, tiny)"
    )


def test_cli_data_set_names_without_loaders(monkeypatch):
    """Before trajflow.datasets.LOADERS exists, 'eb' is still a name."""
    import trajflow.datasets
    from trajflow.cli._io import loaders

    monkeypatch.delattr(trajflow.datasets, "LOADERS", raising=False)
    assert loaders() == {"eb": trajflow.datasets.eb}


# --- predict ---------------------------------------------------------------------------------


def test_cli_predict_several_times_from_a_source(tiny_model, tmp_path, capsys):
    out = tmp_path / "pred.h5ad"
    argv = ["predict", str(tiny_model), "--time", "2.5", "0.5", "--source-time", "1"]
    argv += ["--n-cells", "5", "--seed", "1", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"10 predicted cells at times 0.5, 2.5 written to {out}\n"
    pred = ad.read_h5ad(out)
    expected = TrajectoryModel.load(tiny_model, device="cpu").predict(
        [0.5, 2.5], source_time=1, n_cells=5, seed=1
    )
    assert list(pred.obs["time"]) == [0.5] * 5 + [2.5] * 5
    assert set(pred.obs["source_time"]) == {1.0}
    assert pred.obs_names.equals(expected.obs_names)
    assert (pred.obsm["X_pca"] == expected.obsm["X_pca"]).all()
    # --overwrite replaces it, leaving no temporary file behind.
    argv = ["predict", str(tiny_model), "--time", "3", "--device", "cpu", "--out", str(out)]
    assert main([*argv, "--overwrite"]) == 0
    assert ad.read_h5ad(out).n_obs == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.h5ad", "tiny_model"]


def test_cli_predict_refusals_are_one_line(tiny_model, tmp_path, capsys):
    out = tmp_path / "pred.h5ad"
    predict = ["predict", str(tiny_model), "--device", "cpu", "--out", str(out)]
    assert main([*predict, "--time", "2", "--sde"]) == 2
    line = _one_error_line(capsys)
    assert "--sde needs a model that learned a score" in line and "--method sb-cfm" in line
    assert main([*predict, "--time", "2", "--source-time", "1.5"]) == 2
    assert _one_error_line(capsys) == (
        f"trajflow: error: --source-time 1.5 is not a time point {tiny_model} was trained on "
        "(0, 1, 2, 3)"
    )
    assert not out.exists()


def test_cli_predict_sde(tmp_path, capsys, one_thread):
    from trajflow import fit_trajectories

    model = fit_trajectories(
        moving_gaussians(n_per_time=20), method="sb-cfm", n_steps=20, progress=False, device="cpu"
    ).save(tmp_path / "sb")
    out = tmp_path / "sde.h5ad"
    predict = ["predict", str(model), "--sde", "--device", "cpu", "--out", str(out)]
    assert main([*predict, "--time", "1.5", "2", "--seed", "4"]) == 0
    pred = ad.read_h5ad(out)
    assert pred.n_obs == 40 and pred.uns["trajflow"]["sde"]
    # A time before its source: the reverse-time SDE pulls the cells back.
    assert main([*predict, "--time", "1", "--source-time", "2", "--overwrite"]) == 0
    back = ad.read_h5ad(out)
    assert (
        back.n_obs == 20 and back.obs["source_time"].eq(2.0).all() and back.uns["trajflow"]["sde"]
    )


def test_cli_predict_failed_write_keeps_the_old_file(tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "pred.h5ad"
    out.write_text("keep me")

    def half_written(self, path, *args, **kwargs):
        Path(path).write_text("half")
        raise OSError("No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", half_written)
    argv = ["predict", str(tiny_model), "--time", "1", "--device", "cpu", "--out", str(out)]
    assert main([*argv, "--overwrite"]) == 2
    assert _one_error_line(capsys) == "trajflow: error: No space left on device"
    assert out.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.h5ad", "tiny_model"]


def test_cli_warnings_are_one_line(tiny_model, tmp_path, capsys):
    out = tmp_path / "far.h5ad"
    argv = ["predict", str(tiny_model), "--time", "5", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err == (
        "trajflow: warning: time=5 is outside the trained range [0, 3]: the flow is "
        "extrapolated and may be unreliable.\n"
    )


def test_cli_quiet_unless_verbose(small_h5ad, tmp_path, capsys, monkeypatch):
    import functools
    import logging

    import trajflow._fit

    levels = []

    @functools.wraps(trajflow._fit.fit_trajectories)
    def record(adata, **kwargs):
        levels.append(logging.getLogger("trajflow").getEffectiveLevel())
        raise RuntimeError("stop")

    monkeypatch.setattr(trajflow._fit, "fit_trajectories", record)
    before = logging.getLogger("trajflow").level
    fit = ["fit", str(small_h5ad), "--out", str(tmp_path / "m")]
    assert main(fit) == 2 and main([*fit, "-v"]) == 2
    capsys.readouterr()
    assert levels == [logging.WARNING, logging.INFO]
    assert logging.getLogger("trajflow").level == before  # the caller's setting is back


# --- help ------------------------------------------------------------------------------------


def _subparser(parser, name):
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_cli_help_documents_everything(capsys):
    import argparse

    from trajflow.cli import build_parser

    parser = build_parser()
    for name in ("fit", "predict", "benchmark"):
        sub = _subparser(parser, name)
        assert len(sub.description) > 200, name
        assert sub.epilog.startswith("examples:\n  trajflow ") and f"trajflow {name} " in sub.epilog
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "examples:\n  trajflow " in text  # kept as written, one command per line
        assert "(default: " in text
    fit_help = _subparser(parser, "fit").format_help()
    for flag in ("--checkpoint-dir", "--resume-from", "--growth-key", "--unbalanced", "--sigma"):
        assert flag in fit_help
    predict_help = _subparser(parser, "predict").format_help()
    assert "--time TIME [TIME ...]" in predict_help and "--source-time" in predict_help


def test_benchmark_cli_can_skip_baselines(small_h5ad, tmp_path, capsys, one_thread):
    out = tmp_path / "res.csv"
    argv = ["benchmark", str(small_h5ad), "--methods", "ot-cfm", "--seeds", "0", "--n-dims", "2"]
    argv += ["--n-steps", "20", "--out", str(out), "--no-baselines", "--no-figure", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("energy (mean ± std over seeds [0]; perfect-half is the floor)")
    res = pd.read_csv(out)
    assert set(res["method"]) == {"perfect-half", "ot-cfm"} and res["closed"].isna().all()


def test_cli_time_labels_get_a_cli_fix(tmp_path, capsys, one_thread):
    # issue 26: the hint was a Python snippet; the CLI names its own flag, and the flag works
    adata = moving_gaussians(n_per_time=30)
    adata.obs["day"] = [f"day {t:g}" for t in adata.obs["time"]]
    data = tmp_path / "labels.h5ad"
    adata.write_h5ad(data)
    out = tmp_path / "m"
    args = ["fit", str(data), "--time-key", "day", "--out", str(out), "--quiet"]
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert "--time-from-labels" in line and "'day 0'" in line
    assert "adata.obs" not in line and "str.extract" not in line  # no Python to paste
    assert not out.exists()
    assert main([*args, "--time-from-labels", "--n-steps", "5", "--threads", "1"]) == 0
    assert TrajectoryModel.load(out).times == [0.0, 1.0, 2.0, 3.0]
    assert ad.read_h5ad(data).obs["day"].iloc[0] == "day 0"  # the file is not changed
    adata.obs["day"] = ["control", *adata.obs["day"].iloc[1:]]
    adata.write_h5ad(data)
    assert main([*args, "--time-from-labels", "--overwrite"]) == 2
    assert "'control'" in _one_error_line(capsys)
