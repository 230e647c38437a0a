"""Gene trends per lineage (issue 26): tl.predict_expression(lineage_key=...) and
pl.gene_trends drawing one line per lineage, on the simulated course whose branches are known."""

from __future__ import annotations

import logging

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

import trajflow as tf

FAST = {"n_steps": 300, "progress": False, "solver_steps": 40}
TIMES = np.linspace(0, 3, 13)


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny networks: one torch thread


@pytest.fixture(scope="module")
def course():
    """The simulated course with two 'genes': the branch coordinate (up in one lineage, down in
    the other) and progress (the same in both)."""
    sim = tf.datasets.simulate(n_times=4, n_cells=200, n_dims=5, seed=0)
    latent = sim.obsm["X_latent"]
    adata = ad.AnnData(
        X=np.c_[latent[:, 1], latent[:, 0]].astype(np.float32),
        obs=sim.obs.copy(),
        var=pd.DataFrame(index=["Branch", "Progress"]),
    )
    adata.obsm["X_pca"] = sim.obsm["X_pca"]
    return adata, tf.fit_trajectories(adata, seed=0, **FAST)


def test_trends_per_lineage_separate_what_the_average_hides(course, caplog):
    adata, model = course
    adata = adata.copy()
    with caplog.at_level(logging.INFO, logger="trajflow"):
        tf.tl.predict_expression(adata, model, times=TIMES, lineage_key="fate")
    assert "per lineage of 'fate' at 3 (down, up)" in caplog.text
    assert "fate_probabilities" not in adata.obsm  # computed on a light copy, not written
    res = adata.uns["trajflow_expression"]
    assert list(res["lineages"]) == ["down", "up"] and res["lineage_groupby"] == "fate"
    assert res["lineage_mean"].shape == (2, len(TIMES), 2)
    assert res["observed_lineage_mean"].shape == (2, 4, 2)
    np.testing.assert_allclose(res["lineage_weight"].sum(), 200)  # probabilities of 200 paths
    down, up = res["lineage_mean"][:, -1, 0]
    assert down < -0.4 and up > 0.4 and abs(res["mean"][-1, 0]) < 0.15  # the average hides it
    # the observed cells of the last time point belong to their own group
    last = (adata.obs["time"] == 3).to_numpy()
    for g, name in enumerate(["down", "up"]):
        cells = last & (adata.obs["fate"] == name).to_numpy()
        np.testing.assert_allclose(
            res["observed_lineage_mean"][g, -1], adata.X[cells].mean(axis=0), rtol=1e-5
        )
    # progress does not depend on the lineage
    np.testing.assert_allclose(*res["lineage_mean"][:, -1, 1], atol=0.25)


def test_lineages_from_fate_probabilities_match_those_from_a_column(course):
    adata, model = course
    adata = adata.copy()
    tf.tl.predict_expression(adata, model, times=TIMES, genes="Branch", lineage_key="fate")
    tf.tl.fate_probabilities(adata, model, groupby="fate")
    tf.tl.predict_expression(
        adata, model, times=TIMES, genes="Branch", lineage_key="fate_probabilities", key_added="b"
    )
    a, b = adata.uns["trajflow_expression"], adata.uns["b"]
    assert b["lineage_source"] == "fate_probabilities" and a["lineage_source"] == "obs"
    np.testing.assert_allclose(a["lineage_mean"], b["lineage_mean"])


def test_lineage_errors(course):
    adata, model = course
    adata = adata.copy()
    with pytest.raises(KeyError, match="neither the key_added of trajflow.tl.fate_probab"):
        tf.tl.predict_expression(adata, model, times=TIMES, lineage_key="leiden")
    with pytest.raises(ValueError, match="not before it"):
        tf.tl.predict_expression(adata, model, times=[3.0], source_time=3, lineage_key="fate")
    tf.tl.fate_probabilities(adata, model, groupby="fate", source_time=1)
    with pytest.raises(ValueError, match=r"no fate probabilities for the cells at source_time=0"):
        tf.tl.predict_expression(adata, model, times=TIMES, lineage_key="fate_probabilities")
    with pytest.raises(ValueError, match="lineage_key must be a non-empty string"):
        tf.tl.predict_expression(adata, model, times=TIMES, lineage_key="")


def test_gene_trends_draw_one_line_per_lineage_in_scanpy_colours(course, tmp_path):
    adata, model = course
    adata = adata.copy()
    adata.uns["fate_colors"] = ["#1f77b4", "#d62728"]
    tf.tl.predict_expression(adata, model, times=TIMES, lineage_key="fate")
    fig = tf.pl.gene_trends(adata, save=tmp_path / "lineages.png")
    assert (tmp_path / "lineages.png").stat().st_size > 0
    panel = fig.axes[0]
    wide = [line for line in panel.lines if line.get_linewidth() == 2]
    assert [to_rgba(line.get_color()) for line in wide] == [to_rgba("#1f77b4"), to_rgba("#d62728")]
    assert "weighted by its fate probability" in fig._suptitle.get_text().replace("\n", " ")
    _, ax = plt.subplots()
    assert tf.pl.gene_trends(adata, "Branch", ax=ax, lineages=["up"]) is ax
    assert len([line for line in ax.lines if line.get_linewidth() == 2]) == 1
    with pytest.raises(ValueError, match="ax= with lineages draws one gene"):
        tf.pl.gene_trends(adata, ax=ax)
    with pytest.raises(KeyError, match="not among the predicted lineages"):
        tf.pl.gene_trends(adata, lineages="sideways")
    averaged = tf.pl.gene_trends(adata, lineages=False)  # the plain average, as before
    assert "per lineage" not in averaged._suptitle.get_text()
    tf.tl.predict_expression(adata, model, times=TIMES, key_added="plain")
    with pytest.raises(ValueError, match="has no lineages; run trajflow.tl.predict_expression"):
        tf.pl.gene_trends(adata, key="plain", lineages=True)
    plt.close("all")
