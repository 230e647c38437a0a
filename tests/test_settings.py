"""trajflow.settings.verbosity: scanpy-style levels, and the info lines visible in a notebook."""

from __future__ import annotations

import logging
import sys

import pytest

import trajflow
from trajflow._settings import _NotebookHandler


@pytest.fixture(autouse=True)
def _restore():
    before = trajflow.settings.verbosity
    yield
    trajflow.settings.verbosity = before


def test_default_is_info_and_names_and_numbers_work():
    assert trajflow.settings.verbosity == "info"
    trajflow.settings.verbosity = 1
    assert trajflow.settings.verbosity == "warning"
    assert logging.getLogger("trajflow").level == logging.WARNING
    trajflow.settings.verbosity = "DEBUG"
    assert trajflow.settings.verbosity == "debug"
    assert "debug" in repr(trajflow.settings)


@pytest.mark.parametrize("bad", [True, 7, "loud", None, 1.5])
def test_bad_verbosity_is_named(bad):
    with pytest.raises(ValueError, match=r"verbosity must be one of .* got"):
        trajflow.settings.verbosity = bad


def test_info_lines_reach_stderr_without_logging_setup(monkeypatch, capsys):
    """In a notebook nobody configured logging: trajflow's own handler prints the line once."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    handlers = [
        h for h in logging.getLogger("trajflow").handlers if isinstance(h, _NotebookHandler)
    ]
    assert len(handlers) == 1
    logging.getLogger("trajflow").info("added 'x' (adata.obsm)")
    assert capsys.readouterr().err == "added 'x' (adata.obsm)\n"
    logging.getLogger("trajflow").warning("careful")
    assert capsys.readouterr().err == "WARNING: careful\n"
    trajflow.settings.verbosity = "warning"
    logging.getLogger("trajflow").info("hidden")
    assert capsys.readouterr().err == ""


def test_configured_logging_is_not_doubled(monkeypatch, capsys):
    """With a root handler (logging.basicConfig, the CLI) the line goes through it only."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    monkeypatch.setattr(root, "handlers", [handler])
    logging.getLogger("trajflow").info("once")
    out = capsys.readouterr()
    assert out.err == ""
