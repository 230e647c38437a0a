"""pl.sankey: bands that add up, scanpy's colours, labels with predicted and observed shares."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.patches import PathPatch, Rectangle

import trajflow as tf


@pytest.fixture(scope="module")
def sim():
    return tf.datasets.simulate(n_times=3, n_cells=80, n_dims=4, seed=2)


@pytest.fixture(scope="module")
def sim_model(sim):
    return tf.fit_trajectories(sim, n_steps=200, progress=False, solver_steps=20)


def test_sankey_draws_every_time_point(sim, sim_model, tmp_path):
    adata = sim.copy()
    adata.uns["fate_colors"] = ["#112233", "#aabbcc"]
    out = tmp_path / "sankey.png"
    ax = tf.pl.sankey(adata, sim_model, groupby="fate", n_neighbors=10, save=out)
    assert out.stat().st_size > 0
    nodes = [p for p in ax.patches if isinstance(p, Rectangle)]
    bands = [p for p in ax.patches if isinstance(p, PathPatch)]
    assert len(nodes) == 6 and bands  # two groups at three time points
    assert {tuple(n.get_facecolor()) for n in nodes} == {to_rgba("#112233"), to_rgba("#aabbcc")}
    texts = [t.get_text() for t in ax.texts]
    assert {"time 0", "time 1\n(trained)", "time 2\n(trained)"} <= set(texts)
    # later columns carry the observed share, which a balanced fit matches by construction
    assert sum("(fitted to " in t for t in texts) == 4
    assert not any("held-out obs." in t for t in texts)
    # Node heights add up to the same total in every column (bands carry all the mass).
    heights = {}
    for n in nodes:
        heights.setdefault(round(n.get_x()), []).append(n.get_height())
    totals = [sum(h) for h in heights.values()]
    np.testing.assert_allclose(totals, totals[0], rtol=1e-6)
    assert adata.uns.keys() == {"simulation", "fate_colors"}  # nothing written
    plt.close("all")


def test_sankey_errors(sim, sim_model):
    with pytest.raises(ValueError, match="two or more increasing"):
        tf.pl.sankey(sim, sim_model, groupby="fate", times=[2, 1])
    with pytest.raises(ValueError, match="times=0.5 is not a time point observed"):
        tf.pl.sankey(sim, sim_model, groupby="fate", times=[0, 0.5])
    with pytest.raises(KeyError, match="groupby='leiden'"):
        tf.pl.sankey(sim, sim_model, groupby="leiden")
    plt.close("all")


def test_sankey_says_which_observed_shares_are_a_test(sim, sim_model):
    # issue 26: 'c1: 44% (obs. 44%)' read as a validation at a time point the fit was trained on
    held = tf.fit_trajectories(sim, n_steps=200, progress=False, solver_steps=20, holdout=1)
    ax = tf.pl.sankey(sim, held, groupby="fate", n_neighbors=10)
    texts = [t.get_text() for t in ax.texts]
    assert "time 1\n(held out)" in texts and "time 2\n(trained)" in texts
    assert sum("(held-out obs. " in t for t in texts) == 2
    assert sum("(fitted to " in t for t in texts) == 2
    note = next(t for t in texts if t.startswith("'fitted to x%'"))
    assert "by construction" in note and "not a validation" in note
    assert "an independent check" in note
    # the first column gives each group's size
    n_up = int((sim.obs["fate"][sim.obs["time"] == 0] == "up").sum())
    assert any(t.startswith("up: ") and t.endswith(f"(n={n_up})") for t in texts)
    # without a held-out time point the note says how to get an independent check
    texts = [t.get_text() for t in tf.pl.sankey(sim, sim_model, groupby="fate").texts]
    assert any("fit with holdout=" in t for t in texts)
    plt.close("all")
