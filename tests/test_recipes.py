"""Methods as recipes: registration, what every objective gets from the pipeline (resume,
torchrun), clear errors for what cannot work, and the model's public verbs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch.distributed as dist

import trajflow
from trajflow._methods import METHODS, MethodSpec, register_method

from conftest import moving_gaussians

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"n_steps": 40, "batch_size": 32, "progress": False, "device": "cpu"}


@pytest.fixture
def scratch_method():
    """Register methods under test names and remove them afterwards."""
    added = []

    def add(name: str, spec: MethodSpec, **kwargs) -> MethodSpec:
        added.append(name)
        return register_method(name, spec, **kwargs)

    yield add
    for name in added:
        METHODS.pop(name, None)


def test_a_registered_method_fits_predicts_and_saves(scratch_method, tmp_path):
    spec = MethodSpec(
        coupling="exact", path="straight", default_sigma=0.2, reference="test: ot-cfm, wider tube"
    )
    scratch_method("ot-cfm-wide", spec)
    assert trajflow.METHODS["ot-cfm-wide"] is spec
    model = trajflow.fit_trajectories(moving_gaussians(), method="ot-cfm-wide", **FAST)
    assert model.sigma == 0.2 and not model.learns_score
    model.save(tmp_path / "m")
    loaded = trajflow.TrajectoryModel.load(tmp_path / "m", device="cpu")
    np.testing.assert_array_equal(
        loaded.predict(1.5).obsm["X_pca"], model.predict(1.5).obsm["X_pca"]
    )


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"coupling": "greedy"}, "coupling must be one of"),
        ({"path": "curvy"}, "path must be one of"),
        ({"path": "spline", "spline": "bezier"}, "spline must be one of"),
        ({"coupling": "entropic", "bend": True}, "need coupling='exact'"),
        ({"coupling": "entropic", "path": "spline"}, "need coupling='exact'"),
        ({"path": "bridge", "default_sigma": 0.0}, "default_sigma"),
        ({"ema": 1.0}, "ema must be in"),
        ({"straight_share": 0.5}, "straight_share must be in"),  # not a spline
        ({"path": "spline", "straight_share": 1.0}, "straight_share must be in"),
        ({"path": "spline", "default_restore": 0.3}, "default_restore must be"),
    ],
)
def test_register_method_refuses_parts_that_do_not_fit(scratch_method, fields, match):
    base = {"coupling": "exact", "path": "straight", "default_sigma": 0.1, "reference": "x"}
    with pytest.raises(ValueError, match=match):
        scratch_method("broken", MethodSpec(**{**base, **fields}))
    assert "broken" not in METHODS
    with pytest.raises(ValueError, match="already registered"):
        register_method("ot-cfm", METHODS["ot-cfm"])


def test_learns_score_follows_the_path():
    assert [m for m, s in METHODS.items() if s.learns_score] == ["sb-cfm"]
    assert {m for m, s in METHODS.items() if s.multi_marginal} == {
        "mmfm",
        "mmfm-hermite",
        "mmfm-metric",
        "ot-cfm-hermite",
    }
    assert {m for m, s in METHODS.items() if s.straight_share} == {"ot-cfm-hermite"}


@pytest.mark.parametrize("method", ["mmfm", "mmfm-metric"])
def test_multi_marginal_methods_resume_from_a_checkpoint(tmp_path, method):
    adata = moving_gaussians(n_per_time=60)
    kw = {**FAST, "method": method, "n_steps": 80, "lr_schedule": "constant"}
    full = trajflow.fit_trajectories(adata, **kw)
    half = trajflow.fit_trajectories(
        adata, **{**kw, "n_steps": 40}, checkpoint_dir=tmp_path / "c", checkpoint_every=20
    )
    assert half.history["steps_done"] == 40
    resumed = trajflow.fit_trajectories(adata, **kw, resume_from=tmp_path / "c")
    np.testing.assert_allclose(
        resumed.predict(1.5).obsm["X_pca"], full.predict(1.5).obsm["X_pca"], rtol=0, atol=1e-5
    )


@pytest.mark.parametrize(
    "method,kwargs,match",
    [
        ("mmfm", {"growth_key": "growth"}, "growth_key= cannot work with method='mmfm'"),
        ("mmfm-hermite", {"unbalanced": 1.0}, "fixed exact OT plan"),
        ("ot-cfm-hermite", {"growth_key": "growth"}, "chains through all time points"),
        ("ot-cfm-hermite", {"coupling": "minibatch"}, "fixed exact OT plan"),
        ("mmfm-hermite", {"restore": 0.3}, "restore= needs straight paths"),
        ("mmfm-metric", {"coupling": "minibatch"}, "fixed exact OT plan"),
        ("ot-mfm", {"unbalanced": 1.0}, "fixed exact OT plan"),
        ("i-cfm", {"unbalanced": 1.0}, "needs an OT coupling"),
        ("sb-cfm", {"sigma": 0}, "sigma must be > 0"),
    ],
)
def test_combinations_that_cannot_work_are_named(method, kwargs, match):
    adata = moving_gaussians(n_per_time=30)
    adata.obs["growth"] = 1.0
    with pytest.raises(ValueError, match=match):
        trajflow.fit_trajectories(adata, method=method, **{**FAST, **kwargs})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo"
)
@pytest.mark.parametrize("method", ["mmfm-metric", "sb-cfm"])
def test_torchrun_trains_one_model_across_processes(tmp_path, method):
    """Under torchrun every process must end with the same weights (gradients averaged), for the
    multi-marginal objective as for the pairwise one: each rank writes its own prediction."""
    data = tmp_path / "course.h5ad"
    moving_gaussians(n_per_time=80).write_h5ad(data)
    script = tmp_path / "fit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, numpy as np, anndata as ad, trajflow
            model = trajflow.fit_trajectories(
                ad.read_h5ad({str(data)!r}), method={method!r}, n_steps=30, batch_size=32,
                progress=False, device="cpu",
            )
            rank = os.environ["RANK"]
            np.save({str(tmp_path)!r} + f"/rank{{rank}}.npy", model.predict(1.5).obsm["X_pca"])
            print(model.history["world_size"])
            """
        )
    )
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script),
        ],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.stdout.replace("\n", "")) == ["2", "2"]  # the ranks' lines may interleave
    np.testing.assert_array_equal(np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy"))


# ------------------------------------------------------------------------ the public verbs
@pytest.fixture(scope="module")
def model():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    fitted = trajflow.fit_trajectories(moving_gaussians(), **FAST)
    torch.set_num_threads(before)
    return fitted


def test_push_is_predict_for_the_same_cells(model):
    adata = moving_gaussians()
    at_1 = adata[adata.obs["time"] == 1.0]
    pushed = model.push(at_1, source_time=1, times=np.float64(2.0))
    np.testing.assert_allclose(pushed, model.predict(2.0).obsm["X_pca"], atol=1e-5)
    several = model.push(at_1.obsm["X_pca"], source_time=1.0, times=[3.0, 2.0, 0.0])
    assert several.shape == (3, at_1.n_obs, 2)
    # Euler spreads its steps over each integration's span, so the grids differ slightly
    np.testing.assert_allclose(several[1], pushed, atol=5e-3)
    back = model.push(at_1, source_time=1.0, times=0.0)
    np.testing.assert_allclose(several[2], back, atol=1e-5)
    assert back[:, 0].mean() < at_1.obsm["X_pca"][:, 0].mean()  # the cloud moved back


def test_push_refuses_what_it_cannot_do(model):
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="score network"):
        model.push(x, source_time=1.0, times=2.0, sde=True)
    with pytest.raises(ValueError, match=r"shape \(n_cells, 2\)"):
        model.push(np.zeros((3, 5)), source_time=1.0, times=2.0)
    with pytest.raises(TypeError, match="source_time must be a number"):
        model.push(x, source_time="day 1", times=2.0)
    with pytest.raises(ValueError, match="times is empty"):
        model.push(x, source_time=1.0, times=[])


# ------------------------------------------------------------------------ the import walls
def _imports(path):
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield 0, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or "", [a.name for a in node.names]


def test_the_core_and_the_numeric_layers_import_no_anndata_pandas_or_matplotlib():
    from pathlib import Path

    src = Path(trajflow.__file__).parent
    walled = sorted((src / "core").glob("*.py")) + [
        src / name
        for name in (
            "_timecourse.py",
            "_clock.py",
            "metrics.py",
            "_validate.py",
            "_ot.py",
            "_neighbors.py",
        )
        if (src / name).exists()
    ]
    forbidden = ("anndata", "pandas", "matplotlib", "scanpy", "trajflow")
    for path in walled:
        in_core = path.parent.name == "core"
        for level, module, names in _imports(path):
            top = module.split(".")[0]
            assert level > 0 or top not in forbidden, f"{path.name} imports {module}"
            # relative imports may not reach the package face (or, from core, outside core)
            if level == (2 if in_core else 1):
                assert module and module.split(".")[0] in (
                    "core",
                    "_timecourse",
                    "_validate",
                    "_ot",
                ), (
                    f"{path.name} imports from the package face: from {'.' * level}{module} import {names}"
                )
            assert not (in_core and level >= 2), f"core/{path.name} reaches outside core: {module}"


def test_nothing_imports_the_package_face_from_below():
    from pathlib import Path

    src = Path(trajflow.__file__).parent
    for path in src.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == src:
            continue
        depth = len(path.relative_to(src).parts)  # 1: trajflow/x.py, 2: trajflow/sub/x.py
        for level, module, names in _imports(path):
            # `from . import pl` imports a submodule; `from . import __version__` the face
            face = [n for n in names if not (src / n).is_dir() and not (src / f"{n}.py").exists()]
            assert not (level == depth and not module and face), (
                f"{path.relative_to(src)} imports {face} from the package face"
            )
            assert module != "trajflow", f"{path.relative_to(src)} imports the package face"


def test_saved_config_holds_plain_json_types(tmp_path):
    model = trajflow.fit_trajectories(
        moving_gaussians(n_per_time=40),
        n_steps=np.int64(20),
        hidden=np.int64(16),
        n_layers=np.int32(2),
        batch_size=np.int16(16),
        lr=np.float32(2e-3),
        sigma=np.float32(0.1),
        solver_steps=np.int64(20),
        seed=np.int64(2),
        holdout=np.float64(1.0),
        progress=np.bool_(False),
        device="cpu",
    )
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert config["n_steps"] == 20 and type(config["hidden"]) is int
    assert model.config["holdout"] == [1.0] and type(model.config["lr"]) is float
    assert model.predict(1.0, n_cells=np.int64(5), seed=np.int64(1)).n_obs == 5
    assert model.trajectories(n_points=np.int64(4), n_cells=3).paths.shape == (3, 4, 2)


def test_the_model_layer_imports_nothing_above_it():
    """The modules TrajectoryModel is built from never import the model, the pipeline or a
    consumer (data flows one way: these are read by the model, tl and pl, not the reverse)."""
    from pathlib import Path

    src = Path(trajflow.__file__).parent
    above = {"_model", "_fit", "_checkpoint", "benchmark", "tl", "pl", "cli", "datasets"}
    for name in ("_outputs", "_trajectories", "_integration", "_storage"):
        for level, module, names in _imports(src / f"{name}.py"):
            if level != 1:
                continue
            reached = {module.split(".")[0]} if module else set(names)
            assert not reached & above, f"{name}.py imports {module or names} from above it"


def test_no_import_cycle_among_trajflow_modules():
    """Every import, deferred ones included, points one way: no module reaches back to one that
    imports it (a deferred import must never be what closes a circle)."""
    import ast
    from pathlib import Path

    src = Path(trajflow.__file__).parent
    modules = {
        ".".join(p.relative_to(src.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in src.rglob("*.py")
    }
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                for alias in node.names:  # `from . import pl` names a module
                    edges.add(
                        f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
                    )
        # a package's own __init__ importing its submodules is how a package is built
        graph[name] = {
            e for e in edges if e in modules and e != name and not e.startswith(f"{name}.")
        }
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_pl_uses_tl_only_through_its_public_face():
    from pathlib import Path

    src = Path(trajflow.__file__).parent
    for path in (src / "pl").glob("*.py"):
        for level, module, _names in _imports(path):
            assert not (level == 2 and module.startswith("tl._")), (
                f"pl/{path.name} imports tl's private {module}; use trajflow._consumers or tl's "
                "public functions"
            )
    for level, module, names in _imports(src / "_consumers.py"):
        reached = {module.split(".")[0]} if module else set(names)
        assert not (level == 1 and reached & {"tl", "pl"}), f"_consumers imports {module}"


def test_import_trajflow_leaves_the_heavy_dependencies_for_first_use():
    """``import trajflow`` loads neither POT (and the scikit-learn it pulls in), scipy's
    integrators (through torchdiffeq), the plotting stack nor scanpy: each comes on first use
    (issue 26: ``import trajflow`` took 7.6 s on a loaded machine)."""
    heavy = (
        "ot",
        "sklearn",
        "torchdiffeq",
        "scipy.integrate",
        "trajflow.pl",
        "matplotlib",
        "scanpy",
    )
    code = f"import sys, trajflow; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
