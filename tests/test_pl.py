"""trajflow.pl: every plot renders on Agg, returns the right type, draws the key elements and
leaves the AnnData untouched."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver

import trajflow
from trajflow import pl
from trajflow.benchmark import leave_one_out, score_prediction

from conftest import moving_gaussians

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_STEPS = 150


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def adata():
    a = moving_gaussians(times=(0.0, 1.0, 2.0, 3.0), n_per_time=80, dim=3, seed=1)
    x = a.obsm["X_pca"]
    # A non-linear 2-D embedding standing in for a UMAP.
    a.obsm["X_umap"] = np.column_stack([np.tanh(x[:, 0] / 3.0), x[:, 1] + 0.3 * np.sin(x[:, 0])])
    return a


@pytest.fixture(scope="module")
def model(adata):
    return trajflow.fit_trajectories(adata, n_steps=N_STEPS, progress=False, device="cpu")


@pytest.fixture(scope="module")
def held_model(adata):
    return trajflow.fit_trajectories(
        adata, n_steps=N_STEPS, holdout=1.0, progress=False, device="cpu"
    )


def _snapshot(a):
    return {k: np.array(v, copy=True) for k, v in a.obsm.items()}, a.obs.copy(), dict(a.uns)


def _assert_unchanged(a, snap):
    obsm, obs, uns = snap
    assert set(a.obsm.keys()) == set(obsm)
    for k, v in obsm.items():
        np.testing.assert_array_equal(a.obsm[k], v)
    pd.testing.assert_frame_equal(a.obs, obs)
    assert set(a.uns) == set(uns)


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def _path_collections(ax: Axes) -> list[LineCollection]:
    return [
        c
        for c in ax.collections
        if isinstance(c, LineCollection) and str(c.get_label()).startswith("paths from")
    ]


def _colorbar_labels(fig: Figure) -> list[str]:
    return [a.get_ylabel() for a in fig.axes if a.get_label() == "<colorbar>"]


def test_trajectories_on_representation(model, adata, tmp_path):
    snap = _snapshot(adata)
    out = tmp_path / "traj.png"
    ax = pl.trajectories(adata, model, n_cells=7, n_points=20, save=out)
    assert isinstance(ax, Axes)
    _assert_png(out)
    paths = _path_collections(ax)
    assert len(paths) == len(model.times) - 1  # one set of paths per start time
    assert [len(c.get_segments()) for c in paths] == [7 * 19] * len(paths)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC1", "PC2")
    assert "trajectories" in ax.get_title()
    assert _colorbar_labels(ax.figure) == ["time"]
    cbar_ax = next(a for a in ax.figure.axes if a.get_label() == "<colorbar>")
    assert [t.get_text() for t in cbar_ax.get_yticklabels()] == ["0", "1", "2", "3"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("start" in t for t in legend) and any("end" in t and "3" in t for t in legend)
    _assert_unchanged(adata, snap)


def test_trajectories_on_umap_via_knn_map(model, adata, tmp_path):
    snap = _snapshot(adata)
    out = tmp_path / "traj_umap.png"
    _, ax = plt.subplots()
    returned = pl.trajectories(
        adata, model, basis="umap", source_times=[0.0], n_cells=5, n_points=15, ax=ax, save=out
    )
    assert returned is ax
    _assert_png(out)
    paths = _path_collections(ax)
    assert len(paths) == 1 and len(paths[0].get_segments()) == 5 * 14
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("UMAP1", "UMAP2")
    assert "kNN" in ax.get_title()
    _assert_unchanged(adata, snap)


def test_embedding_map_places_observed_cells_on_themselves(adata):
    emap = pl.EmbeddingMap.fit(adata, use_rep="X_pca", n_dims=3, basis="X_umap")
    assert not emap.linear and emap.axis_labels == ("UMAP1", "UMAP2")
    rep = adata.obsm["X_pca"][:, :3]
    np.testing.assert_allclose(emap.transform(rep), adata.obsm["X_umap"], atol=1e-9)
    # Shapes are preserved for path arrays (cells, points, dims) -> (cells, points, 2).
    assert emap.transform(np.stack([rep[:4], rep[4:8]], axis=1)).shape == (4, 2, 2)
    linear = pl.EmbeddingMap.fit(adata, use_rep="X_pca", n_dims=3, components=(2, 3))
    assert linear.linear and linear.axis_labels == ("PC2", "PC3")
    np.testing.assert_array_equal(linear.transform(rep), rep[:, 1:3])
    with pytest.raises(KeyError, match="basis"):
        pl.EmbeddingMap.fit(adata, use_rep="X_pca", n_dims=3, basis="tsne")
    with pytest.raises(ValueError, match="components"):
        pl.EmbeddingMap.fit(adata, use_rep="X_pca", n_dims=2, components=(1, 3))


@pytest.mark.parametrize(
    ("kind", "time", "basis"), [("stream", None, None), ("quiver", 1.5, "umap")]
)
def test_velocity(model, adata, tmp_path, kind, time, basis):
    snap = _snapshot(adata)
    out = tmp_path / f"velocity_{kind}.png"
    ax = pl.velocity(adata, model, kind=kind, time=time, basis=basis, save=out)
    assert isinstance(ax, Axes)
    _assert_png(out)
    if kind == "stream":
        assert any(
            isinstance(c, LineCollection) and len(c.get_segments()) > 10 for c in ax.collections
        )
        assert "time 2" in ax.get_title() and "observed" in ax.get_title()
    else:
        quivers = [c for c in ax.collections if isinstance(c, Quiver)]
        assert len(quivers) == 1 and quivers[0].N > 5
        assert "time 1.5" in ax.get_title() and "predicted" in ax.get_title()
    prefix = "PC" if basis is None else "UMAP"
    assert (ax.get_xlabel(), ax.get_ylabel()) == (f"{prefix}1", f"{prefix}2")
    assert _colorbar_labels(ax.figure) == ["time"]
    _assert_unchanged(adata, snap)


def test_velocity_rejects_unknown_kind(model, adata):
    with pytest.raises(ValueError, match="kind"):
        pl.velocity(adata, model, kind="arrows")


def test_holdout_from_model_and_from_prediction(held_model, adata, tmp_path):
    snap = _snapshot(adata)
    out = tmp_path / "holdout.png"
    fig = pl.holdout(adata, held_model, save=out)
    assert isinstance(fig, Figure)
    _assert_png(out)
    title = fig._suptitle.get_text()
    assert "W1 =" in title and "held-out time 1" in title
    overlay = fig.axes[0]
    assert (overlay.get_xlabel(), overlay.get_ylabel()) == ("PC1", "PC2")
    marginals = [a for a in fig.axes[1:] if a.get_xlabel()]
    assert [a.get_xlabel() for a in marginals] == [f"PC{d}" for d in (1, 2, 3)]
    legend = " ".join(t.get_text() for t in overlay.get_legend().get_texts())
    assert "observed (n=80)" in legend and "predicted from 0" in legend

    # W1 in the title is the benchmark's score: by default in the representation's own units
    # (the user protocol), with protocol="paper" standardised over all cells; exact W1 both.
    from trajflow._anndata import Standardizer
    from trajflow.metrics import wasserstein

    pred = held_model.predict(1.0)
    rep = adata.obsm["X_pca"][:, :3]
    observed = rep[adata.obs["time"].to_numpy() == 1.0]
    w1 = wasserstein(pred.obsm["X_pca"], observed)
    assert f"W1 = {w1:.3f} (3 dims)" in title
    scorer = Standardizer.fit(rep)
    w1_paper = wasserstein(scorer.transform(pred.obsm["X_pca"]), scorer.transform(observed))
    fig2 = pl.holdout(adata, pred, basis="umap", protocol="paper")
    assert f"W1 = {w1_paper:.3f} (3 standardised dims)" in fig2._suptitle.get_text()
    assert fig2.axes[0].get_xlabel() == "UMAP1"
    marginals = [a for a in fig2.axes[1:] if a.get_xlabel()]
    assert [a.get_xlabel() for a in marginals] == [f"PC{d} (standardised)" for d in (1, 2, 3)]
    _assert_unchanged(adata, snap)


def test_holdout_title_is_the_benchmark_w1(held_model, adata):
    """pl.holdout quotes the benchmark's score: the W1 in its title is leave_one_out's W1 for
    the same model (the fit leave_one_out makes is held_model's: same data, settings and seed)
    and held-out time."""
    table = leave_one_out(
        adata,
        methods=("ot-cfm",),
        seeds=(0,),
        n_dims=held_model.n_dims,
        holdout_times=[1.0],
        baselines=False,
        fit_kwargs={"n_steps": N_STEPS},
        device="cpu",
        progress=False,
    )
    w1 = float(table.loc[0, "w1"])
    rep = adata.obsm["X_pca"][:, : held_model.n_dims]
    observed = rep[adata.obs["time"].to_numpy() == 1.0]
    predicted = held_model.predict(1.0).obsm["X_pca"]
    assert score_prediction(predicted, observed, reference=rep)["w1"] == w1
    title = pl.holdout(adata, held_model, time=1.0)._suptitle.get_text()
    assert re.search(r"W1 = ([0-9.]+)", title).group(1) == f"{w1:.3f}"


def test_scatter_background_is_shared_plumbing(adata):
    from trajflow.pl._utils import EmbeddingMap, TimeColors, scatter_background

    emap = EmbeddingMap.fit(adata, use_rep="X_pca", n_dims=3)
    times = adata.obs["time"].to_numpy(dtype=float)
    tc = TimeColors.make(np.unique(times), "time")
    groups = adata.copy()
    groups.obs["half"] = pd.Categorical(np.where(adata.obsm["X_pca"][:, 1] > 0, "top", "bottom"))
    _, ax = plt.subplots()
    scatter_background(
        ax, groups, emap, tc, times, color="half", time_key="time", lightness=0.5, size=None, seed=0
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["bottom", "top"]
    assert len(ax.collections[0].get_offsets()) == adata.n_obs
    with pytest.raises(KeyError, match="color='nope'"):
        scatter_background(
            ax,
            groups,
            emap,
            tc,
            times,
            color="nope",
            time_key="time",
            lightness=0.5,
            size=None,
            seed=0,
        )


def test_holdout_needs_observed_cells(model, adata):
    with pytest.raises(ValueError, match="no cells at time=1.5"):
        pl.holdout(adata, model, time=1.5)
    with pytest.raises(ValueError, match="time="):
        pl.holdout(adata, model)  # no held-out time to default to


def test_prediction_at_unmeasured_time(model, adata, tmp_path):
    snap = _snapshot(adata)
    out = tmp_path / "prediction.png"
    ax = pl.prediction(adata, model, time=1.5, basis="umap", n_cells=50, save=out)
    assert isinstance(ax, Axes)
    _assert_png(out)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("UMAP1", "UMAP2")
    assert "1.5" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["predicted, time 1.5 (n=50)"]
    assert _colorbar_labels(ax.figure) == ["time"]
    _assert_unchanged(adata, snap)


def _fake_results() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"method": m, "seed": s, "holdout_time": h, "w1": base + rng.normal(0, 0.05)}
        for h in (1.0, 2.0, 3.0)
        for s in range(3)
        for m, base in (
            ("ot-cfm", 0.8),
            ("i-cfm", 0.9),
            ("previous", 1.4),
            ("ot-interpolation", 0.85),
        )
    ]
    return pd.DataFrame(rows)


def test_benchmark_bars_and_baselines(tmp_path):
    out = tmp_path / "bench.png"
    ax = pl.benchmark(_fake_results(), time_key="day", save=out)
    assert isinstance(ax, Axes)
    _assert_png(out)
    bars = [p for p in ax.patches if p.get_label() in ("ot-cfm", "i-cfm")]
    assert len(bars) == 2 * 4  # 2 methods x (3 held-out times + mean)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "mean"]
    assert ax.get_xlabel() == "held-out time point (day)"
    assert "W1" in ax.get_ylabel() and "3 seeds" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["ot-cfm", "i-cfm"]  # best first
    assert "baseline: previous time point (unmoved)" in legend
    assert "baseline: OT interpolation" in legend
    baseline_lines = [c for c in ax.collections if str(c.get_label()).startswith("baseline")]
    assert len(baseline_lines) == 2 * 4


def test_benchmark_on_real_results_and_bad_input(gaussians):
    results = leave_one_out(
        gaussians,
        methods=("ot-cfm",),
        seeds=(0,),
        n_dims=2,
        holdout_times=[1.0],
        fit_kwargs={"n_steps": 50},
        progress=False,
        device="cpu",
    )
    ax = pl.benchmark(results)
    assert len([p for p in ax.patches if p.get_label() == "ot-cfm"]) == 1
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1"]
    with pytest.raises(KeyError, match="holdout_time"):
        pl.benchmark(results.drop(columns="holdout_time"))
    with pytest.raises(ValueError, match="not in the results"):
        pl.benchmark(results, methods=["sb-cfm"])


def test_nothing_shown_unless_asked(model, adata, monkeypatch):
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    pl.benchmark(_fake_results())
    pl.trajectories(adata, model, n_cells=2, n_points=5)
    assert shown == []
    pl.benchmark(_fake_results(), show=True)
    assert shown == [1]


def test_cli_writes_figures(gaussians, tmp_path):
    from trajflow.cli import main

    data = tmp_path / "g.h5ad"
    gaussians.write_h5ad(data)
    csv = tmp_path / "res.csv"
    assert (
        main(
            [
                "benchmark",
                str(data),
                "--n-dims",
                "2",
                "--n-steps",
                "30",
                "--methods",
                "ot-cfm",
                "--seeds",
                "0",
                "--out",
                str(csv),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    _assert_png(csv.with_suffix(".png"))
    fig_path = tmp_path / "traj.png"
    assert (
        main(
            [
                "fit",
                str(data),
                "--n-dims",
                "2",
                "--n-steps",
                "30",
                "--out",
                str(tmp_path / "model"),
                "--figure",
                str(fig_path),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    _assert_png(fig_path)
