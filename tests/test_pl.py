"""trajflow.pl: every plot renders on Agg, returns the right type, draws the key elements and
leaves the AnnData untouched."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.colorbar
import matplotlib.colors
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
from trajflow.benchmark import held_out_table, leave_one_out, ot_interpolation, score_prediction

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


def _faded_collections(ax: Axes) -> list[LineCollection]:
    return [
        c
        for c in ax.collections
        if isinstance(c, LineCollection) and str(c.get_label()).startswith("faded paths from")
    ]


def _colorbar_labels(fig: Figure) -> list[str]:
    return [a.get_ylabel() for a in fig.axes if a.get_label() == "<colorbar>"]


def _legends(ax: Axes) -> dict[str, list[str]]:
    """Every legend drawn on ``ax``: title -> entry texts (untitled legends under '')."""
    out: dict[str, list[str]] = {}
    for leg in pl._colors.legends(ax):
        out.setdefault(leg.get_title().get_text(), []).extend(t.get_text() for t in leg.texts)
    return out


def _legend_text(ax: Axes) -> str:
    return " ".join(" ".join(v) for v in _legends(ax).values())


def test_background_coloured_by_a_gene_on_a_robust_scale(model, adata):
    genes = adata.copy()
    genes.var_names = ["g0", "g1", "g2"]
    genes.X = np.abs(np.asarray(genes.X, dtype=float))
    genes.X[0, 0] = 1e4  # one outlier must not wash out every other cell
    ax = pl.trajectories(genes, model, color="g0", n_cells=3, n_points=5)
    assert _colorbar_labels(ax.figure) == ["g0 (1st-99th percentile)"]
    background = next(c for c in ax.collections if c.get_array() is not None)
    assert background.norm.vmax < 100
    with pytest.raises(KeyError, match="neither a column of adata.obs nor a gene"):
        pl.trajectories(genes, model, color="g9")
    genes.var_names = ["g0", "g0", "g2"]
    with pytest.raises(ValueError, match="var_names_make_unique"):
        pl.trajectories(genes, model, color="g0")


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
    # Four time points: a discrete legend, one entry per time point, and no colour bar.
    assert _colorbar_labels(ax.figure) == []
    legends = _legends(ax)
    assert legends["time"] == ["0", "1", "2", "3"]
    legend = legends[""]
    assert any("start" in t for t in legend) and any("end" in t and "3" in t for t in legend)
    # The representation is exact: nothing is faded, nothing needs a note.
    assert _faded_collections(ax) == [] and "faded" not in _legend_text(ax)
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
    faded = _faded_collections(ax)
    assert len(paths) == 1 and len(faded) <= 1
    assert sum(len(c.get_segments()) for c in paths + faded) == 5 * 14
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
    legend = _legends(ax)["time"]
    assert legend[:4] == ["0", "1", "2", "3"] and "field drawn over them" in legend[4]
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
    assert "energy =" in title and "held-out time 1" in title
    overlay = fig.axes[0]
    assert (overlay.get_xlabel(), overlay.get_ylabel()) == ("PC1", "PC2")
    marginals = [a for a in fig.axes[1:] if a.get_xlabel()]
    assert [a.get_xlabel() for a in marginals] == [f"PC{d}" for d in (1, 2, 3)]
    legend = _legend_text(overlay)
    # predicted from the two neighbours of the held-out time, as many as they hold in shares
    srcs = sorted(held_model.predict(1.0).obs["source_time"].unique())
    expected = " and ".join(f"{s:g}" for s in srcs)
    assert "observed (n=80)" in legend and f"predicted from {expected} (n=" in legend
    assert set(srcs) <= {0.0, 2.0}

    # The title quotes the benchmark's calibrated headline score beside the floor, static OT and
    # the unmoved previous cells, and says in words how they compare: unbiased energy in the
    # representation's own units (the user protocol), W1 standardised with protocol="paper".
    pred = held_model.predict(1.0)
    rep = adata.obsm["X_pca"][:, :3]
    t_obs = adata.obs["time"].to_numpy()
    cands = {
        "prediction": pred.obsm["X_pca"],
        "previous": rep[t_obs == 0.0],
        "ot-interpolation": ot_interpolation(rep[t_obs == 0.0], rep[t_obs == 2.0], 0.5, seed=0),
    }
    user = held_out_table(cands, rep[t_obs == 1.0], reference=rep)
    e = user["energy"]
    assert (
        f"energy = {e['prediction']:.3f} (perfect {e['perfect-half']:.3f}, static OT "
        f"{e['ot-interpolation']:.3f}, unmoved {e['previous']:.3f}; 3 dims)"
    ) in title
    second = title.splitlines()[1]
    assert second.startswith(("closes", "worse than static OT", "no better than leaving"))
    paper = held_out_table(cands, rep[t_obs == 1.0], reference=rep, protocol="paper")
    fig2 = pl.holdout(adata, pred, basis="umap", protocol="paper")
    w = paper["w1_all"]  # the paper's number: W1 against every held-out cell
    assert f"W1 = {w['prediction']:.3f} (static OT {w['ot-interpolation']:.3f}" in (
        fig2._suptitle.get_text()
    )
    assert "3 standardised dims" in fig2._suptitle.get_text()
    assert fig2.axes[0].get_xlabel() == "UMAP1"
    marginals = [a for a in fig2.axes[1:] if a.get_xlabel()]
    assert [a.get_xlabel() for a in marginals] == [f"PC{d} (standardised)" for d in (1, 2, 3)]
    _assert_unchanged(adata, snap)


def test_holdout_title_is_the_benchmark_score(adata):
    """pl.holdout quotes the benchmark's score: the energy in its title is leave_one_out's for
    the same model (the fit leave_one_out makes: same data, settings and seed) and held-out
    time, also where the neighbouring time points differ in size (the prediction draws as many
    cells as the previous time point has, in both); and for the paper protocol."""
    keep = (adata.obs["time"].to_numpy() != 0.0) | (np.arange(adata.n_obs) % 2 == 0)
    uneven = adata[keep].copy()  # 40 cells at time 0, 80 at time 2
    kw = {"n_steps": N_STEPS, "device": "cpu", "progress": False}
    model = trajflow.fit_trajectories(uneven, holdout=1.0, **kw)
    rep = uneven.obsm["X_pca"][:, : model.n_dims]
    observed = rep[uneven.obs["time"].to_numpy() == 1.0]
    for protocol, metric in (("user", "energy"), ("paper", "w1_all")):
        table = leave_one_out(
            uneven, methods=("ot-cfm",), seeds=(0,), n_dims=model.n_dims, holdout_times=[1.0],
            baselines=False, protocol=protocol, fit_kwargs={"n_steps": N_STEPS}, device="cpu",
            progress=False,
        )  # fmt: skip
        score = float(table.set_index("method").loc["ot-cfm", metric])
        if protocol == "user":
            predicted = model.predict(1.0, n_cells=40).obsm["X_pca"]
            assert score_prediction(predicted, observed, reference=rep)["energy"] == score
            title = pl.holdout(uneven, model, time=1.0)._suptitle.get_text()
            assert re.search(r"energy = (-?[0-9.]+)", title).group(1) == f"{score:.3f}"
        else:  # the paper protocol's model is its own fit (whitened dims)
            paper = trajflow.fit_trajectories(
                uneven, holdout=1.0, scaling="per-dimension", n_dims=model.n_dims, **kw
            )
            title = pl.holdout(uneven, paper, time=1.0, protocol="paper")._suptitle.get_text()
            assert re.search(r"W1 = (-?[0-9.]+)", title).group(1) == f"{score:.3f}"


def test_scatter_background_is_shared_plumbing(adata):
    from trajflow.pl._background import scatter_background
    from trajflow.pl._colors import TimeColors
    from trajflow.pl._embedding import EmbeddingMap

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
    legends = _legends(ax)
    assert legends[""][0] == "predicted, time 1.5 (n=50)"
    assert legends["time"] == ["0", "1", "2", "3"]
    assert _colorbar_labels(ax.figure) == []
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
    # every model-free baseline of leave_one_out is a reference line, never a competing bar
    assert [p.get_label() for p in ax.patches] == ["ot-cfm"]  # the floor is a line too
    lines = {str(c.get_label()) for c in ax.collections}
    assert "baseline: entropic OT interpolation" in lines and len(lines) == 4
    assert "baseline: perfect prediction (half of the observed cells)" in lines
    assert "1 seed (no error bars)" in ax.get_title()
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


# --------------------------------------------------------------------------- issue 16 item 6
def _torn():
    """Dense cells on the unit square whose 'UMAP' tears it in two at x = 0.5: the right half
    is moved 100 units away, as a UMAP separates two clusters that touch in the
    representation."""
    import anndata as ad

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(600, 2))
    emb = x + np.where(x[:, :1] >= 0.5, 100.0, 0.0) * np.array([1.0, 0.0])
    a = ad.AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(len(x))]))
    a.obsm["X_pca"], a.obsm["X_umap"] = x, emb
    return a


def test_embedding_map_flags_what_it_cannot_place():
    a = _torn()
    emap = pl.EmbeddingMap.fit(a, use_rep="X_pca", n_dims=2, basis="umap")
    # Observed cells are placed on themselves, and placeable.
    xy, ok = emap.place(a.obsm["X_pca"])
    np.testing.assert_allclose(xy, a.obsm["X_umap"], atol=1e-9)
    assert ok.all()
    # The threshold is calibrated on the cells: a few typical nearest-neighbour distances.
    assert 1.0 < emap.max_distance / emap.typical_distance < 5.0
    points = np.array(
        [
            [0.25, 0.5],  # among the cells on the left
            [5.0, 5.0],  # far from every observed cell
            [0.5, 0.5],  # on the tear: its neighbours lie on both sides of the UMAP
        ]
    )
    xy, ok = emap.place(points)
    assert ok.tolist() == [True, False, False]
    assert 10 < xy[2, 0] < 90  # the kNN average lands in the empty middle of the UMAP
    # A short step across the tear is a jump on the UMAP; one along a half is not.
    x0, x1 = np.array([[0.45, 0.5], [0.2, 0.5]]), np.array([[0.55, 0.5], [0.3, 0.5]])
    jumps = emap.jumps(x0, x1, emap.transform(x0), emap.transform(x1))
    assert jumps.tolist() == [True, False]
    # The exact map places everything.
    linear = pl.EmbeddingMap.fit(a, use_rep="X_pca", n_dims=2)
    assert linear.place(points)[1].all() and not linear.jumps(x0, x1, x0, x1).any()


@pytest.fixture(scope="module")
def torn_adata(adata):
    """The module's cells with a 'UMAP' that tears the time course in two along PC1."""
    a = adata.copy()
    x = a.obsm["X_pca"]
    a.obsm["X_umap"] = x[:, :2] + np.where(x[:, :1] > 3.0, 60.0, 0.0) * np.array([1.0, 0.0])
    return a


def test_trajectories_fade_or_hide_what_the_umap_cannot_place(model, torn_adata):
    n_cells, n_points = 8, 25
    kw = dict(basis="umap", source_times=[0.0], n_cells=n_cells, n_points=n_points)
    ax = pl.trajectories(torn_adata, model, **kw)
    faded = _faded_collections(ax)
    assert len(faded) == 1 and len(faded[0].get_segments()) > 0  # paths cross the tear
    n_good = len(_path_collections(ax)[0].get_segments())
    assert n_good + len(faded[0].get_segments()) == n_cells * (n_points - 1)
    assert faded[0].get_alpha() < 1
    note = _legend_text(ax)
    assert "faded: the UMAP cannot place these points" in note
    assert "far from any observed cell" in note and "% of path segments" in note
    # No faded segment is a long line across the empty middle drawn in full colour.
    for seg in _path_collections(ax)[0].get_segments():
        assert abs(seg[1, 0] - seg[0, 0]) < 30
    plt.close("all")
    hidden = pl.trajectories(torn_adata, model, unplaceable="hide", **kw)
    assert _faded_collections(hidden) == []
    assert len(_path_collections(hidden)[0].get_segments()) == n_good
    assert "not drawn: the UMAP cannot place" in _legend_text(hidden)
    shown = pl.trajectories(torn_adata, model, unplaceable="show", **kw)
    assert len(_path_collections(shown)[0].get_segments()) == n_cells * (n_points - 1)
    with pytest.raises(ValueError, match="unplaceable"):
        pl.trajectories(torn_adata, model, unplaceable="drop", **kw)


def test_prediction_and_holdout_fade_unplaceable_cells(model, held_model, torn_adata):
    ax = pl.prediction(torn_adata, model, time=1.5, basis="umap", n_cells=60)
    points = [c for c in ax.collections if len(c.get_offsets()) and c.get_zorder() >= 2.5]
    drawn = sum(len(c.get_offsets()) for c in points)
    assert drawn == 60  # predicted cells: placed ones plus faded ones
    note = _legend_text(ax)
    assert "predicted, time 1.5 (n=60)" in note
    assert "faded: the UMAP cannot place these points" in note  # some sit on the tear
    assert "of the 60 predicted cells" in note
    hollow = [c for c in points if not len(c.get_facecolors())]
    assert len(hollow) == 1 and 0 < len(hollow[0].get_offsets()) < 60
    fig = pl.holdout(torn_adata, held_model, basis="umap")
    assert "observed (n=80)" in _legend_text(fig.axes[0])


def test_velocity_leaves_out_arrows_the_umap_cannot_place(model, torn_adata):
    ax = pl.velocity(torn_adata, model, time=1.5, basis="umap", kind="quiver")
    quivers = [c for c in ax.collections if isinstance(c, Quiver)]
    faded = [q for q in quivers if q.get_label() == "faded arrows"]
    note = _legend_text(ax)
    assert "cannot place" in note and "cells (" in note
    assert all(q.get_alpha() < 1 for q in faded)


def test_discrete_time_legend_or_colour_bar():
    from trajflow.pl._colors import TimeColors

    _, ax = plt.subplots()
    few = TimeColors.make([0, 2, 4, 7], "day")
    key = few.key(ax, lightness=0.5)
    assert few.discrete and [t.get_text() for t in key.texts] == ["0", "2", "4", "7"]
    assert key.get_title().get_text() == "day"
    # Legend colours are the drawn (lightened) cell colours, one per time point.
    from trajflow.pl._colors import lighten

    for handle, t in zip(key.legend_handles, few.times, strict=True):
        np.testing.assert_allclose(
            matplotlib.colors.to_rgba(handle.get_color()), lighten(few(t), 0.5), atol=1e-6
        )
    # Unevenly spaced times get evenly spaced colours (days 0 and 1/3 stay distinguishable).
    emt = TimeColors.make([0, 1 / 3, 1, 3, 7], "day")
    assert np.abs(emt(0.0) - emt(1 / 3)).max() > 0.1
    many = TimeColors.make(range(20), "day")
    _, ax2 = plt.subplots()
    assert not many.discrete and isinstance(many.key(ax2), matplotlib.colorbar.Colorbar)
    assert _colorbar_labels(ax2.figure) == ["day"]


def test_background_colours_match_their_legend(model, adata):
    ax = pl.prediction(adata, model, time=1.5, lightness=0.6)
    cells = ax.collections[0]  # the background, drawn first
    drawn = {tuple(np.round(c, 6)) for c in cells.get_facecolors()}
    leg = next(lg for lg in pl._colors.legends(ax) if lg.get_title().get_text() == "time")
    shown = {
        tuple(np.round(matplotlib.colors.to_rgba(h.get_color()), 6)) for h in leg.legend_handles
    }
    assert drawn == shown


def test_categorical_and_path_legends_are_all_drawn(model, adata, tmp_path):
    groups = adata.copy()
    groups.obs["half"] = pd.Categorical(np.where(groups.obsm["X_pca"][:, 1] > 0, "top", "bottom"))
    groups.uns["half_colors"] = ["#1f77b4", "#d62728"]
    out = tmp_path / "traj_groups.png"
    ax = pl.trajectories(groups, model, color="half", n_cells=4, n_points=10, save=out)
    legends = _legends(ax)
    assert legends["half"] == ["bottom", "top"]  # the categories (scanpy's colours)...
    assert legends["path colour: time"] == ["0", "1", "2", "3"]  # ...what the paths mean...
    assert any("path start" in t for t in legends[""])  # ...and the markers: all three
    fig = ax.figure
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    for leg in pl._colors.legends(ax):
        assert leg.get_visible() and (leg.get_clip_path() is None or not leg.get_clip_on())
        ext = leg.get_window_extent().transformed(fig.dpi_scale_trans.inverted())
        assert box.x0 - 1e-6 <= ext.x0 and ext.x1 <= box.x1 + 1e-6  # inside what is saved
    # Background cells keep the category colours of the legend (blended as drawn).
    cells = ax.collections[0]
    leg = next(lg for lg in pl._colors.legends(ax) if lg.get_title().get_text() == "half")
    shown = {
        tuple(np.round(matplotlib.colors.to_rgba(h.get_color()), 6)) for h in leg.legend_handles
    }
    assert {tuple(np.round(c, 6)) for c in cells.get_facecolors()} == shown


def test_clock_says_why(model, held_model, adata):
    ax = pl.clock(model)  # clock='auto' with 4 trained time points: both clocks scored
    title = ax.get_title(loc="left")
    assert "clock='auto'" in title and "held-out W1" in title
    scores = model.clock.scores
    assert f"{scores['time']:.3g}" in title and f"{scores['distance']:.3g}" in title
    assert ("chose the distance clock" in title) == (model.clock.kind == "distance")
    ax = pl.clock(held_model)  # 3 trained time points
    assert "fewer than 4" in ax.get_title(loc="left")
    timed = trajflow.fit_trajectories(adata, n_steps=50, clock="time", progress=False, device="cpu")
    assert "set by the user (clock='time')" in pl.clock(timed).get_title(loc="left")


def _expression_result(layer: str = "log1p_cp10k", medians: bool = False) -> dict:
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    otimes = np.array([0.0, 1.0, 2.0])
    mean = np.column_stack([1 + times, 2 - 0.5 * times])
    omean = np.column_stack([1 + otimes, 2 - 0.5 * otimes]) + 0.1
    res = {
        "genes": np.array(["GeneA", "GeneB"]),
        "times": times,
        "mean": mean,
        "std": np.full_like(mean, 1.5),  # mean - sd < 0: cut at 0
        "q25": mean - 0.3,
        "q75": mean + 0.4,
        "observed_times": otimes,
        "observed_mean": omean,
        "observed_std": np.full_like(omean, 0.5),
        "observed_q25": omean - 0.2,
        "observed_q75": omean + 0.3,
        "trained_times": np.array([0.0, 2.0]),
        "mapping": "knn",
        "layer": layer,
        "time_key": "day",
    }
    if medians:
        res["median"], res["observed_median"] = mean + 0.05, omean - 0.05
    return res


def _gene_panel(fig, gene):
    return next(a for a in fig.axes if a.get_title() == gene)


def test_gene_trends_dot_and_bar_show_one_statistic():
    import anndata as ad

    a = ad.AnnData(obs=pd.DataFrame(index=["c0"]))
    a.uns["trajflow_expression"] = res = _expression_result()
    fig = pl.gene_trends(a)
    ax = _gene_panel(fig, "GeneA")
    # Dots: observed means (filled: trained on; hollow: not trained on, day 1).
    dots = np.concatenate([ln.get_ydata() for ln in ax.lines if ln.get_marker() == "o"])
    np.testing.assert_allclose(np.sort(dots), np.sort(res["observed_mean"][:, 0]))
    # Bars: observed mean ± observed sd, the same statistic pair as the band (cut at 0).
    bars = next(
        c for c in ax.collections if isinstance(c, LineCollection) and len(c.get_segments()) == 3
    )
    lo_hi = np.array([[s[0, 1], s[1, 1]] for s in bars.get_segments()])
    o, sd = res["observed_mean"][:, 0], res["observed_std"][:, 0]
    np.testing.assert_allclose(
        np.sort(lo_hi, axis=1), np.column_stack([np.maximum(o - sd, 0), o + sd])
    )
    line = next(ln for ln in ax.lines if ln.get_linewidth() == 2)
    np.testing.assert_allclose(line.get_ydata(), res["mean"][:, 0])
    texts = [t.get_text() for t in fig.legends[0].texts]
    assert texts[0] == "predicted mean (band: ± 1 sd of predicted cells, cut at 0)"
    assert texts[1].startswith("observed mean (bar: ± 1 sd of observed cells")
    assert ax.get_ylabel() == "expression (log1p CP10k)"
    # Quartiles go with medians, never with means.
    with pytest.raises(ValueError, match="median"):
        pl.gene_trends(a, spread="iqr")
    a.uns["trajflow_expression"] = res = _expression_result(layer="X", medians=True)
    fig = pl.gene_trends(a, spread="iqr")
    ax = _gene_panel(fig, "GeneB")
    dots = np.concatenate([ln.get_ydata() for ln in ax.lines if ln.get_marker() == "o"])
    np.testing.assert_allclose(np.sort(dots), np.sort(res["observed_median"][:, 1]))
    assert fig.legends[0].texts[0].get_text().startswith("predicted median (band: 25-75 %")
    assert ax.get_ylabel() == "expression (adata.X)"
    _, one = plt.subplots()
    assert pl.gene_trends(a, "GeneA", ax=one, spread=None) is one
    assert "predicted mean" in one.get_title()


@pytest.mark.parametrize(
    "func",
    [
        pl.trajectories,
        pl.velocity,
        pl.prediction,
        pl.holdout,
        pl.clock,
        pl.benchmark,
        pl.gene_trends,
        pl.fates,
        pl.ancestors,
    ],
)
def test_returns_sections_are_numpydoc(func):
    """A type line, then an indented description (napoleon renders the first line as the
    return type)."""
    doc = func.__doc__
    block = doc.split("Returns\n    -------\n", 1)[1].splitlines()
    assert re.fullmatch(r"    matplotlib\.[\w.]+( or matplotlib\.[\w.]+)?", block[0]), block[0]
    assert block[1].startswith("        ") and block[1].strip()


# --- issue 26: plots that cannot mislead --------------------------------------------------


def _hollow_points(ax: Axes) -> int:
    """Points drawn as hollow markers (face 'none') in ``ax``."""
    from matplotlib.collections import PathCollection

    n = 0
    for c in ax.collections:
        if isinstance(c, PathCollection) and len(c.get_offsets()):
            face = c.get_facecolors()
            if len(face) == 0 or np.all(face[:, 3] == 0):
                n += len(c.get_offsets())
    return n


def test_prediction_marks_extrapolation_off_support_and_shows_the_scale(model, adata):
    with pytest.warns(trajflow.ExtrapolationWarning):
        far = model.predict(12.0, n_cells=60)
    n_off = int(far.obs["off_support"].sum())
    assert n_off > 30  # the flow carried on for 9 time units past the data
    ax = pl.prediction(adata, far)
    title = ax.get_title()
    assert "extrapolated: past the last observed time point (time 3)" in title
    assert f"{round(100 * n_off / 60)}% of the predicted cells off the observed cells' support" in (
        title
    )
    assert _hollow_points(ax) == n_off  # drawn hollow, not like cells on the data
    assert f"hollow: {n_off} of the 60 predicted cells off" in _legend_text(ax)
    # the representation's scale is shown: the far cells' coordinates can be read off
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(ax.get_xticks()) > 1 and any(labels)
    assert ax.get_xlim()[1] >= far.obsm["X_pca"][:, 0].max()
    # inside the data: no notes, and a UMAP (no units) keeps its bare axes
    near = pl.prediction(adata, model, time=1.5, n_cells=40)
    assert "\n" not in near.get_title() and _hollow_points(near) == 0
    umap = pl.prediction(adata, model, time=1.5, n_cells=40, basis="umap")
    assert len(umap.get_xticks()) == 0


def test_trajectories_mark_paths_that_end_off_the_support(model, adata):
    with pytest.warns(trajflow.ExtrapolationWarning):
        ax = pl.trajectories(adata, model, source_times=[0.0], end_time=12.0, n_cells=10)
    title = ax.get_title()
    assert "extrapolated" in title and "paths end off the observed cells' support" in title
    dotted = [
        c
        for c in ax.collections
        if isinstance(c, LineCollection) and str(c.get_label()).startswith("off-support paths")
    ]
    assert dotted and len(dotted[0].get_segments()) > 0
    assert "path end off the observed cells' support" in _legend_text(ax)
    assert len(ax.get_yticks()) > 1
    within = pl.trajectories(adata, model, n_cells=10)
    assert "\n" not in within.get_title()


def test_holdout_draws_off_support_cells_hollow(held_model, adata):
    pred = held_model.predict(1.0)
    # ten cells carried far from the data, measured by the model's own support
    pred.obsm["X_pca"][:10] += 40.0
    support = held_model.support_for(1.0)
    pred.obs["off_support"] = support.distance(pred.obsm["X_pca"]) > 1
    assert pred.obs["off_support"].sum() == 10
    fig = pl.holdout(adata, pred)
    overlay = fig.axes[0]
    assert _hollow_points(overlay) == 10
    assert "hollow: 10 of the 80 predicted cells off the observed cells' support" in (
        _legend_text(overlay)
    )
    assert "12% of the predicted cells off the observed cells' support" in fig.get_suptitle()
    assert len(overlay.get_xticks()) > 1  # the scale of the representation is shown


def test_velocity_says_when_the_field_is_extrapolated(model, adata):
    # issue 26: the field at the last time point was drawn like any other
    inside = pl.velocity(adata, model, time=1.0)
    assert "extrapolated" not in inside.get_title()
    assert "extrapolated" not in _legend_text(inside)
    last = pl.velocity(adata, model, time=3.0)
    assert "extrapolated: at or past the last trained time point (time 3)" in last.get_title()
    assert "arrows: extrapolated field" in _legend_text(last)
    assert re.search(
        r"mean speed [\d.]+ here, [\d.]+ to [\d.]+ at the other trained", last.get_title()
    )
    red = matplotlib.colors.to_rgba(pl._velocity.EXTRAPOLATED_COLOR)
    streams = [c for c in last.collections if isinstance(c, LineCollection)]
    assert streams and all(np.allclose(c.get_colors()[0], red) for c in streams)
    # far past the data the cells the field is drawn over are carried off the support too
    with pytest.warns(trajflow.ExtrapolationWarning):
        far = pl.velocity(adata, model, time=9.0, kind="quiver")
    assert "of the cells head off the observed cells' support" in far.get_title()
    assert re.search(r"hollow: \d+ of the 80 predicted cells off", _legend_text(far))
    assert _hollow_points(far) > 0
    leaving = matplotlib.colors.to_rgba(pl._velocity.LEAVING_COLOR)
    quivers = [c for c in far.collections if isinstance(c, Quiver)]
    assert any(np.allclose(q.get_facecolor()[0], leaving) for q in quivers)


def test_embedding_map_far_check_is_the_support_measure(adata):
    # one owner of "how far from the observed cells is too far": _scoring.Support
    from trajflow._scoring import SUPPORT_FACTOR, Support

    emap = pl.EmbeddingMap.fit(adata, use_rep="X_pca", n_dims=3, basis="umap")
    support = Support.fit(adata.obsm["X_pca"][:, :3])
    assert emap.max_distance == pytest.approx(support.threshold / SUPPORT_FACTOR)


def test_titles_say_when_a_time_is_past_the_trained_range(held_model, adata):
    with pytest.warns(trajflow.ExtrapolationWarning):
        ax = pl.prediction(adata, held_model, time=3.5, n_cells=20)
    assert "extrapolated: past the last trained time point (time 3)" in ax.get_title()
    last_out = trajflow.fit_trajectories(
        adata, n_steps=N_STEPS, holdout=3.0, progress=False, device="cpu"
    )
    with pytest.warns(trajflow.ExtrapolationWarning):
        fig = pl.holdout(adata, last_out)
    assert "held-out time 3" in fig.get_suptitle()
    assert "extrapolated: past the last trained time point (time 2)" in fig.get_suptitle()
