"""The fit options have one source, :class:`trajflow._config.FitConfig`: the signature, the
docstring, the saved config, resume and ``leave_one_out(fit_kwargs=...)`` cannot drift from it."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil

import pytest

import trajflow
from trajflow import _checkpoint, _config
from trajflow._config import (
    OPTIONS,
    RESUME_MUST_MATCH,
    SAVED,
    THIS_CALL,
    FitConfig,
    check_option_names,
    fit_defaults,
)

from conftest import moving_gaussians

pytestmark = pytest.mark.usefixtures("one_thread")

#: The keys of a saved model's ``config`` entry, as every release so far wrote them (in the order
#: they were written before FitConfig). Written out on purpose: it is the file format, and models
#: saved before must keep loading and resuming.
SAVED_BEFORE = (
    "method", "clock", "time_key", "use_rep", "n_dims", "scaling", "holdout", "sigma", "n_steps",
    "batch_size", "lr", "weight_decay", "lr_schedule", "hidden", "n_layers", "activation",
    "coupling", "growth_key", "unbalanced", "solver", "solver_steps", "seed",
)  # fmt: skip
#: ... and the options added since (a model saved before one existed lacks it).
SAVED_SINCE = ("restore",)


def _options(signature: inspect.Signature) -> dict[str, inspect.Parameter]:
    params = dict(signature.parameters)
    assert next(iter(params)) == "adata"
    del params["adata"]
    return params


# ------------------------------------------------------------------ the signature and docstring
def test_signature_is_fitconfig():
    params = _options(inspect.signature(trajflow.fit_trajectories))
    assert tuple(params) == OPTIONS == tuple(f.name for f in dataclasses.fields(FitConfig))
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert {name: p.default for name, p in params.items()} == fit_defaults()
    # the annotations too (both modules use postponed annotations: compared as written)
    assert {name: p.annotation for name, p in params.items()} == {
        f.name: f.type for f in dataclasses.fields(FitConfig)
    }


def _documented_parameters(doc: str) -> list[str]:
    section = doc.split("Parameters\n    ----------\n", 1)[1].split("\n\n    ", 1)[0]
    section = re.split(r"\n    [A-Z]\w+\n    -+\n", section)[0]
    names = []
    for line in section.splitlines():
        if line.startswith("    ") and not line.startswith("     "):
            names += [n.strip() for n in line.split(",")]
    return names


def test_docstring_documents_every_option_once():
    names = _documented_parameters(trajflow.fit_trajectories.__doc__)
    assert names[0] == "adata"
    assert sorted(names[1:]) == sorted(OPTIONS)  # each once, no stale ones


def test_docstring_of_resume_from_lists_the_roles():
    doc = trajflow.fit_trajectories.__doc__
    paragraph = doc.split("    resume_from\n", 1)[1].split("\n\n", 1)[0]
    must, call = paragraph.split("is refused", 1)
    assert set(re.findall(r"``(\w+)``", must)) == set(RESUME_MUST_MATCH) | {"checkpoint_dir"}
    assert set(re.findall(r"``(\w+)``", call)) == set(THIS_CALL)


# ------------------------------------------------------------------ the roles
def test_every_option_has_one_role():
    for f in dataclasses.fields(FitConfig):
        assert f.metadata["role"] in _config.ROLES, f.name
    assert not set(RESUME_MUST_MATCH) & set(THIS_CALL)
    assert set(SAVED) == set(RESUME_MUST_MATCH) | set(THIS_CALL)
    assert set(THIS_CALL) == {
        "n_steps",
        "lr",
        "weight_decay",
        "lr_schedule",
        "solver",
        "solver_steps",
    }
    assert _checkpoint.RESUME_MUST_MATCH == RESUME_MUST_MATCH  # derived, not written out


def test_fitconfig_is_frozen_and_saves_the_saved_options():
    config = FitConfig(n_steps=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_steps = 20
    assert tuple(config.saved()) == SAVED and config.saved()["n_steps"] == 10
    with pytest.raises(TypeError):
        FitConfig("time")  # keyword-only, as the signature


# ------------------------------------------------------------------ the saved config
def test_saved_config_keys_are_unchanged(tmp_path):
    now = set(SAVED_BEFORE) | set(SAVED_SINCE)
    assert set(SAVED) == now
    model = trajflow.fit_trajectories(moving_gaussians(n_per_time=20), n_steps=5, progress=False)
    assert set(model.config) == now
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert set(saved) == now
    assert trajflow.TrajectoryModel.load(tmp_path / "m").config == model.config


def test_model_saved_before_fitconfig_loads_and_resumes(tmp_path):
    """A checkpoint as an older release wrote it (keys in the old order, no checksums) loads,
    and one saved before ``scaling`` / ``restore`` existed resumes as the per-dimension fit
    without a restoring offset it was."""
    adata = moving_gaussians(n_per_time=20)
    kw = {"n_steps": 10, "progress": False, "scaling": "per-dimension", "restore": 0.0}
    trajflow.fit_trajectories(adata, **kw, checkpoint_dir=tmp_path / "c", checkpoint_every=5)
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "c", old)
    state = json.loads((old / "config.json").read_text())
    del state["integrity"]
    state["config"] = {k: state["config"][k] for k in SAVED_BEFORE if k != "scaling"}
    (old / "config.json").write_text(json.dumps(state, indent=2))

    loaded = trajflow.TrajectoryModel.load(old)
    assert loaded.scaling == "per-dimension"
    assert set(loaded.config) == set(SAVED) - {"scaling", *SAVED_SINCE}
    resumed = trajflow.fit_trajectories(adata, **{**kw, "n_steps": 15}, resume_from=old)
    assert resumed.history["steps_done"] == 15 and set(resumed.config) == set(SAVED)
    with pytest.raises(ValueError, match="scaling: checkpoint 'per-dimension' vs now 'global'"):
        trajflow.fit_trajectories(adata, **{**kw, "scaling": "global"}, resume_from=old)
    with pytest.raises(ValueError, match="restore: checkpoint 0.0 vs now 0.3"):
        trajflow.fit_trajectories(adata, **{**kw, "restore": 0.3}, resume_from=old)


# ------------------------------------------------------------------ option names
def test_check_option_names_accepts_every_option():
    check_option_names(fit_defaults())
    check_option_names([])


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("n_step", "did you mean 'n_steps'"),
        ("learning_rate", "the options are time_key, use_rep,"),
        ("hiden", "did you mean 'hidden'"),
    ],
)
def test_check_option_names_refuses_a_typo_with_the_fix(name, fix):
    with pytest.raises(TypeError, match=f"my_kwargs sets '{name}', which is not an option of fit_trajectories; {fix}"):  # fmt: skip
        check_option_names({name: 1}, where="my_kwargs")


def test_check_option_names_refuses_a_key_that_is_not_a_string():
    with pytest.raises(TypeError, match="fit_kwargs keys must be option names"):
        check_option_names({1: 2})


def test_leave_one_out_refuses_a_misspelt_fit_kwarg_up_front(monkeypatch):
    from trajflow import benchmark

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before checking fit_kwargs")

    monkeypatch.setattr(benchmark, "fit_trajectories", no_fit)
    with pytest.raises(TypeError, match="fit_kwargs sets 'n_step'.*did you mean 'n_steps'"):
        benchmark.leave_one_out(
            moving_gaussians(n_per_time=20), methods=["ot-cfm"], fit_kwargs={"n_step": 10}
        )


def test_leave_one_out_own_arguments_are_fit_options():
    """The fit options leave_one_out sets itself (refused in fit_kwargs) are real options."""
    from trajflow import benchmark

    assert set(OPTIONS) >= benchmark._OWN_FIT_OPTIONS
