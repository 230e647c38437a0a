"""trajflow.tl (genes over time, fates, ancestors), growth / unbalanced couplings, pl views.

Synthetic data with known answers; one check on the Klein data (skipped when absent).
"""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import ot
import pandas as pd
import pytest
import torch

import trajflow as tf
import trajflow.pl
from trajflow._anndata import group_labels, select_cells
from trajflow._timecourse import match_time
from trajflow.core.couplings import PlanCoupling
from trajflow.core.plans import unbalanced_ot_plan
from trajflow.core.strategy import build_coupling

FAST = {"n_steps": 300, "progress": False, "solver_steps": 40}


def bifurcation(n: int = 160, seed: int = 0) -> ad.AnnData:
    """Cells at t=0 spread along y in [-1, 1]; by t=2 they split into an upper and a lower
    branch. The known fate of a start cell is the sign of its y."""
    rng = np.random.default_rng(seed)
    y0 = rng.uniform(-1, 1, n)
    x0 = np.c_[rng.normal(0, 0.15, n), y0]
    side = np.r_[np.ones(n // 2), -np.ones(n - n // 2)]
    x1 = np.c_[rng.normal(1.5, 0.15, n), side * 1.5 + rng.normal(0, 0.15, n)]
    x2 = np.c_[rng.normal(3.0, 0.15, n), side * 3.0 + rng.normal(0, 0.15, n)]
    x = np.vstack([x0, x1, x2])
    branch = np.r_[
        np.where(y0 > 0, "up", "down"),
        np.where(side > 0, "up", "down"),
        np.where(side > 0, "up", "down"),
    ]
    obs = pd.DataFrame(
        {"time": np.repeat([0.0, 1.0, 2.0], n), "branch": pd.Categorical(branch)},
        index=[f"c{i}" for i in range(len(x))],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_pca"] = x
    return adata


def two_growth_rates(seed: int = 0) -> ad.AnnData:
    """Populations A (y=-1.5) and B (y=+1.5) move right; A triples in one unit of time, B does
    not, so the snapshot at t=1 holds 75 % A. Balanced OT must send half of B to A."""
    rng = np.random.default_rng(seed)
    n0, n_a1, n_b1 = 100, 150, 50

    def cloud(n: int, x: float, y: float) -> np.ndarray:
        return rng.normal([x, y], 0.3, size=(n, 2))

    x = np.vstack(
        [cloud(n0, 0, -1.5), cloud(n0, 0, 1.5), cloud(n_a1, 3, -1.5), cloud(n_b1, 3, 1.5)]
    )
    grp = ["A"] * n0 + ["B"] * n0 + ["A"] * n_a1 + ["B"] * n_b1
    obs = pd.DataFrame(
        {"time": np.r_[np.zeros(2 * n0), np.ones(n_a1 + n_b1)], "grp": pd.Categorical(grp)},
        index=[f"c{i}" for i in range(len(x))],
    )
    obs["growth"] = np.where(obs["grp"] == "A", 3.0, 1.0)
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_pca"] = x
    return adata


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny networks: one torch thread


@pytest.fixture(scope="module")
def bif() -> ad.AnnData:
    return bifurcation()


@pytest.fixture(scope="module")
def bif_model(bif) -> tf.TrajectoryModel:
    return tf.fit_trajectories(bif, seed=0, **FAST)


# --------------------------------------------------------------------------- fates
def test_fates_of_a_bifurcation_are_known(bif, bif_model):
    adata = bif.copy()
    before = set(adata.obs.columns), set(adata.obsm.keys()), set(adata.uns.keys())
    out = tf.tl.fate_probabilities(adata, bif_model, source_time=0, groupby="branch")
    assert out is None
    assert set(adata.obs.columns) - before[0] == {"fate_probabilities_fate"}
    assert set(adata.obsm.keys()) - before[1] == {"fate_probabilities"}
    assert set(adata.uns.keys()) - before[2] == {"fate_probabilities"}
    info = adata.uns["fate_probabilities"]
    assert list(info["groups"]) == ["down", "up"] and info["target_time"] == 2.0
    probs = adata.obsm["fate_probabilities"]
    src = (adata.obs["time"] == 0).to_numpy()
    assert np.isnan(probs[~src]).all()
    np.testing.assert_allclose(probs[src].sum(axis=1), 1.0)
    y0 = adata.obsm["X_pca"][src, 1]
    clear = np.abs(y0) > 0.2
    p_up = probs[src, 1]
    accuracy = np.mean((p_up[clear] > 0.5) == (y0[clear] > 0))
    assert accuracy > 0.9, accuracy
    fate = adata.obs.loc[src, "fate_probabilities_fate"].astype(str).to_numpy()
    assert np.mean(fate[clear] == np.where(y0[clear] > 0, "up", "down")) > 0.9


def test_fates_sde_samples_sb_cfm(bif):
    model = tf.fit_trajectories(bif, method="sb-cfm", sigma=0.3, seed=0, **FAST)
    adata = tf.tl.fate_probabilities(
        bif, model, source_time=0, groupby="branch", n_samples=4, copy=True
    )
    assert "fate_probabilities" not in bif.obsm  # copy=True leaves the input alone
    info = adata.uns["fate_probabilities"]
    assert info["sde"] and info["n_samples"] == 4
    src = (adata.obs["time"] == 0).to_numpy()
    probs = adata.obsm["fate_probabilities"][src]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    y0 = adata.obsm["X_pca"][src, 1]
    far = np.abs(y0) > 0.5
    correct = np.where(y0[far] > 0, probs[far, 1], probs[far, 0])
    assert correct.mean() > 0.75, correct.mean()


def test_fates_errors(bif, bif_model):
    with pytest.raises(KeyError, match="groupby='leiden' is not a column"):
        tf.tl.fate_probabilities(bif, bif_model, source_time=0, groupby="leiden")
    with pytest.raises(ValueError, match="source_time=0.5 is not a time point observed"):
        tf.tl.fate_probabilities(bif, bif_model, source_time=0.5, groupby="branch")
    with pytest.raises(ValueError, match="must be later than source_time"):
        tf.tl.fate_probabilities(bif, bif_model, source_time=2, groupby="branch")
    with pytest.raises(ValueError, match="sde=True needs"):
        tf.tl.fate_probabilities(bif, bif_model, source_time=0, groupby="branch", sde=True)
    with pytest.raises(TypeError, match="takes the AnnData first"):
        tf.tl.fate_probabilities(bif_model, bif_model, source_time=0, groupby="branch")
    with pytest.raises(TypeError, match="Expected a fitted TrajectoryModel"):
        tf.tl.fate_probabilities(bif, bif, source_time=0, groupby="branch")
    unlabelled = bif.copy()
    unlabelled.obs["branch"] = pd.Categorical([None] * unlabelled.n_obs, categories=["up"])
    with pytest.raises(ValueError, match="No cell at target_time"):
        tf.tl.fate_probabilities(unlabelled, bif_model, source_time=0, groupby="branch")


# --------------------------------------------------------------------------- ancestors
def test_ancestors_of_a_branch_are_known(bif, bif_model):
    adata = bif.copy()
    up = ((adata.obs["time"] == 2) & (adata.obs["branch"] == "up")).to_numpy()
    tf.tl.ancestors(adata, bif_model, cells=up, target_time=0)
    at0 = (adata.obs["time"] == 0).to_numpy()
    prob = adata.obs["ancestors"].to_numpy()
    assert np.isnan(prob[~at0]).all()
    assert prob[at0].sum() == pytest.approx(1.0)
    y0 = adata.obsm["X_pca"][at0, 1]
    assert prob[at0][y0 > 0].sum() > 0.9
    dens = adata.obs["ancestors_density"].to_numpy()[at0]
    assert dens.max() == pytest.approx(1.0)
    assert dens[y0 > 0.3].mean() > 5 * dens[y0 < -0.3].mean()
    info = adata.uns["ancestors"]
    assert info["positions"].shape == (up.sum(), 2)
    assert np.mean(info["positions"][:, 1] > 0) > 0.9
    nearest_y = adata[info["nearest"]].obsm["X_pca"][:, 1]
    assert np.mean(nearest_y > 0) > 0.9
    # obs names select the same cells
    copy = tf.tl.ancestors(
        bif, bif_model, cells=list(adata.obs_names[up]), target_time=0, key_added="anc", copy=True
    )
    np.testing.assert_allclose(copy.obs["anc"].to_numpy()[at0], prob[at0])
    assert "anc" not in bif.obs


def test_ancestors_errors(bif, bif_model):
    mixed = (bif.obs["branch"] == "up").to_numpy()
    with pytest.raises(ValueError, match="span several time points"):
        tf.tl.ancestors(bif, bif_model, cells=mixed, target_time=0)
    late = (bif.obs["time"] == 2).to_numpy()
    with pytest.raises(ValueError, match="must be earlier"):
        tf.tl.ancestors(bif, bif_model, cells=late, target_time=2)
    with pytest.raises(KeyError, match="not in adata.obs_names"):
        tf.tl.ancestors(bif, bif_model, cells=["nope"], target_time=0)
    with pytest.raises(ValueError, match="target_time=3 is not a time point"):
        tf.tl.ancestors(bif, bif_model, cells=late, target_time=3)


def test_ancestors_positions_are_the_models_push(bif, bif_model):
    """The tools go through the model's public verb: pulled-back positions are model.push."""
    up = ((bif.obs["time"] == 2) & (bif.obs["branch"] == "up")).to_numpy()
    out = tf.tl.ancestors(bif, bif_model, cells=up, target_time=0, copy=True)
    back = bif_model.push(bif.obsm["X_pca"][up], source_time=2, times=0)
    np.testing.assert_array_equal(out.uns["ancestors"]["positions"], back)


def test_tools_and_plots_use_only_public_model_verbs():
    root = Path(tf.__file__).parent
    private = [
        f"{path.relative_to(root)}:{n}"
        for path in sorted([*root.glob("tl/*.py"), *root.glob("pl/*.py")])
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bmodel\._", line)
    ]
    assert not private, private


def test_time_tolerance_is_the_time_courses(bif, bif_model):
    """Cells 1e-5 of the time course's span off an observed time point belong to another time
    point, for the tools as for match_time (one tolerance: TIME_RTOL of the span, 1e-6)."""
    span = max(bif_model.times) - min(bif_model.times)
    near = 1.0 + 1e-5 * span
    with pytest.raises(ValueError, match="not one of the observed"):
        match_time(near, bif_model.times, what="time")
    with pytest.raises(ValueError, match=r"source_time=1\.0+\d+ is not a time point observed"):
        tf.tl.fate_probabilities(bif, bif_model, source_time=near, groupby="branch")
    decoys = bif[(bif.obs["time"] == 1.0).to_numpy()][:12].copy()
    decoys.obs_names = [f"decoy{i}" for i in range(decoys.n_obs)]
    decoys.obs["time"] = near
    both = ad.concat([bif, decoys])
    is_decoy = both.obs_names.str.startswith("decoy")
    # Fates of the cells at t=1: the decoys are not among them.
    tf.tl.fate_probabilities(both, bif_model, source_time=1, groupby="branch")
    ref = tf.tl.fate_probabilities(bif, bif_model, source_time=1, groupby="branch", copy=True)
    probs = both.obsm["fate_probabilities"]
    assert np.isnan(probs[is_decoy]).all()
    np.testing.assert_array_equal(probs[~is_decoy], ref.obsm["fate_probabilities"])
    # Ancestors at t=1: the decoys get none.
    up = ((both.obs["time"] == 2) & (both.obs["branch"] == "up")).to_numpy()
    tf.tl.ancestors(both, bif_model, cells=up, target_time=1)
    prob = both.obs["ancestors"].to_numpy()
    assert np.isnan(prob[is_decoy]).all()
    assert prob[(both.obs["time"] == 1).to_numpy()].sum() == pytest.approx(1.0)


def test_obs_helpers_of_the_anndata_layer(bif):
    up = (bif.obs["branch"] == "up").to_numpy()
    np.testing.assert_array_equal(select_cells(bif, bif.obs["branch"] == "up"), up)
    np.testing.assert_array_equal(
        select_cells(bif, ["c0", "c5"]), np.isin(bif.obs_names, ["c0", "c5"])
    )
    assert select_cells(bif, "c3").sum() == 1
    with pytest.raises(KeyError, match=r"\['nope'\] are not in adata.obs_names"):
        select_cells(bif, ["c1", "nope"])
    with pytest.raises(ValueError, match="one entry per cell"):
        select_cells(bif, up[:-1])
    with pytest.raises(ValueError, match="selects no cell"):
        select_cells(bif, np.zeros(bif.n_obs, dtype=bool))
    adata = bif.copy()
    adata.obs["grp"] = pd.Categorical([None, 1, 2] + [1] * (adata.n_obs - 3))
    labels = group_labels(adata, "grp")
    assert labels.iloc[0] is None and list(labels.iloc[1:3]) == ["1", "2"]
    with pytest.raises(KeyError, match="groupby='leiden' is not a column"):
        group_labels(adata, "leiden")


# --------------------------------------------------------------------------- genes over time
def linear_genes(seed: int = 0) -> ad.AnnData:
    """Six genes driven by a 2-D state moving at 2 units per unit time (a real PCA: X_pca is the
    projection of X on varm['PCs']). Gene g's mean at time t is known: mu_g + W[g] @ (2t, 0)."""
    rng = np.random.default_rng(seed)
    times = np.repeat([0.0, 1.0, 2.0, 3.0], 150)
    state = rng.normal(0, 0.4, size=(len(times), 2))
    state[:, 0] += 2.0 * times
    w, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    expr = 5.0 + state @ w.T
    adata = ad.AnnData(
        X=expr,
        obs=pd.DataFrame({"time": times}, index=[f"c{i}" for i in range(len(times))]),
        var=pd.DataFrame(index=[f"Gene{g}" for g in range(6)]),
    )
    adata.varm["PCs"] = w
    adata.obsm["X_pca"] = (expr - expr.mean(axis=0)) @ w
    return adata


@pytest.fixture(scope="module")
def genes_data() -> tuple[ad.AnnData, tf.TrajectoryModel]:
    adata = linear_genes()
    return adata, tf.fit_trajectories(adata, n_dims=2, holdout=2.0, seed=0, **FAST)


@pytest.mark.parametrize("mapping", ["pca", "knn"])
def test_predict_expression_known_trend(genes_data, mapping):
    adata, model = genes_data
    adata = adata.copy()
    times = np.array([0.0, 1.0, 1.5, 2.0, 2.5, 3.0])
    tf.tl.predict_expression(adata, model, times=times, genes=["Gene0", "Gene3"], mapping=mapping)
    res = adata.uns["trajflow_expression"]
    assert res["mapping"] == mapping
    assert list(res["genes"]) == ["Gene0", "Gene3"] and res["mean"].shape == (6, 2)
    np.testing.assert_array_equal(res["observed_times"], [0, 1, 2, 3])
    assert res["layer"] == "X" and res["source_time"] == 0.0
    # Truth: the state's mean moves linearly, so each gene's mean is linear in time.
    w = adata.varm["PCs"][[0, 3]]
    truth = 5.0 + np.outer(2.0 * times, w[:, 0])
    scale = np.abs(np.outer([2.0 * 3], w[:, 0])).max()  # range of the trend over the time course
    assert np.abs(res["mean"] - truth).max() < 0.15 * scale, (res["mean"], truth)
    # Held-out t=2 (never trained on) matches the data there.
    k = list(times).index(2.0)
    assert np.abs(res["mean"][k] - res["observed_mean"][2]).max() < 0.15 * scale


def test_predict_expression_auto_return_cells_and_errors(genes_data):
    adata, model = genes_data
    cells = tf.tl.predict_expression(
        adata.copy(), model, times=[0.5, 1.0], genes="Gene1", n_cells=20, return_cells=True
    )
    assert cells.shape == (40, 1) and list(cells.var_names) == ["Gene1"]
    assert set(cells.obs["time"]) == {0.5, 1.0}
    assert cells.obsm["X_pca"].shape == (40, 2) and cells.uns["trajflow"]["mapping"] == "pca"
    before = adata.uns.keys() - set()
    copy = tf.tl.predict_expression(adata, model, times=[1.0], copy=True)
    assert adata.uns.keys() == before and copy.uns["trajflow_expression"]["mean"].shape == (1, 6)
    with pytest.raises(KeyError, match="did you mean 'Gene1'"):
        tf.tl.predict_expression(adata, model, times=[1.0], genes=["gene1"])
    with pytest.raises(KeyError, match="layer='counts' is not in adata.layers"):
        tf.tl.predict_expression(adata, model, times=[1.0], layer="counts")
    with pytest.raises(ValueError, match="must be >= source_time"):
        tf.tl.predict_expression(adata, model, times=[0.5], source_time=1.0)
    with pytest.raises(ValueError, match="mapping='pca' does not apply"):
        no_pcs = adata.copy()
        del no_pcs.varm["PCs"]
        tf.tl.predict_expression(no_pcs, model, times=[1.0], mapping="pca")
    with pytest.raises(KeyError, match="was fitted on adata.obsm"):
        other = adata.copy()
        del other.obsm["X_pca"]
        tf.tl.predict_expression(other, model, times=[1.0])


def test_klein_pluripotency_genes_fall(klein_path):
    adata = ad.read_h5ad(klein_path)
    genes = [g for g in ("Zfp42", "Pou5f1", "Nanog") if g in adata.var_names]
    assert genes, "no pluripotency gene in the Klein subset"
    model = tf.fit_trajectories(adata, time_key="time", seed=0, **FAST)
    times = np.array([0.0, 2.0, 4.0, 7.0])
    tf.tl.predict_expression(adata, model, times=times, genes=genes, layer="log1p_cp10k")
    res = adata.uns["trajflow_expression"]
    assert res["mapping"] == "knn"  # no PCA loadings stored with this data set
    obs_drop = res["observed_mean"][0] - res["observed_mean"][-1]
    pred_drop = res["mean"][0] - res["mean"][-1]
    assert np.all(obs_drop > 0.5)  # the data: pluripotency genes fall after LIF withdrawal
    assert np.all(pred_drop > 0.5 * obs_drop), (pred_drop, obs_drop)
    assert np.all(np.diff(res["mean"], axis=0).sum(axis=0) < 0)


# --------------------------------------------------------------------------- growth & death
def test_unbalanced_plan_matches_pot_and_recovers_growth():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(25, 2))
    x1 = rng.normal(0.5, 1, size=(30, 2))
    a = rng.uniform(0.5, 2, 25)
    plan = unbalanced_ot_plan(torch.tensor(x0), torch.tensor(x1), 0.5, 1.0, a=a, tol=1e-9)
    pot = ot.unbalanced.sinkhorn_unbalanced(
        a / a.sum(), ot.unif(30), ot.dist(x0, x1), 0.5, 1.0, numItermax=20000, stopThr=1e-12
    )
    np.testing.assert_allclose(plan.double().numpy(), pot, atol=1e-4 * pot.max())
    # Known growth: A triples, B does not. The unbalanced plan creates mass where A grows.
    adata = two_growth_rates()
    x = torch.tensor(adata.obsm["X_pca"], dtype=torch.float32)
    t0 = (adata.obs["time"] == 0).to_numpy()
    is_a = (adata.obs["grp"] == "A").to_numpy()
    for reg_m in (1.0, 3.0):
        plan = unbalanced_ot_plan(x[t0], x[~t0], 0.1, reg_m).double()
        # Descendants per source cell: the plan with each target column rescaled to one cell.
        descendants = (plan / plan.sum(dim=0, keepdim=True)).sum(dim=1).numpy()
        growth_ratio = descendants[is_a[t0]].mean() / descendants[~is_a[t0]].mean()
        assert 2.5 < growth_ratio < 3.5, (reg_m, growth_ratio)  # truth: 3
    plan = unbalanced_ot_plan(x[t0], x[~t0], 0.1, float("inf")).double()
    balanced = (plan / plan.sum(dim=0, keepdim=True)).sum(dim=1).numpy()
    assert balanced[is_a[t0]].mean() / balanced[~is_a[t0]].mean() == pytest.approx(1.0, abs=0.05)


def test_growth_weights_set_the_source_marginal():
    adata = two_growth_rates()
    x = torch.tensor(adata.obsm["X_pca"], dtype=torch.float32)
    t0 = (adata.obs["time"] == 0).to_numpy()
    is_a = (adata.obs["grp"] == "A").to_numpy()
    g = adata.obs["growth"].to_numpy()[t0]
    gen = torch.Generator().manual_seed(0)
    for kind, reg in (("exact", None), ("entropic", 0.5), ("independent", None)):
        coupling = build_coupling(kind, x[t0], x[~t0], reg=reg, source_weights=g)
        i, j = coupling.sample(4000, gen)
        assert abs(is_a[t0][i.numpy()].mean() - 0.75) < 0.03, kind
    plan_coupling = build_coupling("exact", x[t0], x[~t0], source_weights=g)
    assert isinstance(plan_coupling, PlanCoupling)
    i, j = plan_coupling.sample(4000, gen)
    assert np.mean(is_a[t0][i.numpy()] != is_a[~t0][j.numpy()]) < 0.01  # nobody switches
    with pytest.raises(ValueError, match="reg_m"):
        build_coupling("independent", x[t0], x[~t0], reg_m=1.0)
    with pytest.raises(ValueError, match="one weight per cell"):
        build_coupling("exact", x[t0], x[~t0], source_weights=g[:-1])


@pytest.mark.parametrize(
    ("kwargs", "switch_max", "switch_min"),
    [
        ({}, 1.0, 0.3),
        ({"growth_key": "growth"}, 0.1, 0.0),
        ({"growth_key": "growth", "method": "ot-mfm"}, 0.1, 0.0),
        ({"unbalanced": 0.5}, 0.1, 0.0),
    ],
)
def test_growth_and_unbalanced_fix_fates(kwargs, switch_max, switch_min):
    """Balanced OT sends about half of B to A; growth weights or unbalanced OT do not."""
    adata = two_growth_rates()
    model = tf.fit_trajectories(adata, seed=0, **FAST, **kwargs)
    for key, value in kwargs.items():
        assert model.config[key] == value
    tf.tl.fate_probabilities(adata, model, source_time=0, groupby="grp")
    src_b = ((adata.obs["time"] == 0) & (adata.obs["grp"] == "B")).to_numpy()
    p_a = adata.obsm["fate_probabilities"][src_b, 0].mean()
    assert switch_min <= p_a <= switch_max, p_a


def test_fit_growth_and_unbalanced_errors():
    adata = two_growth_rates()
    with pytest.raises(KeyError, match="growth_key='rate' is not a column"):
        tf.fit_trajectories(adata, growth_key="rate", **FAST)
    bad = adata.copy()
    bad.obs["growth"] = -1.0
    with pytest.raises(ValueError, match="non-positive"):
        tf.fit_trajectories(bad, growth_key="growth", **FAST)
    for value in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="unbalanced must be a finite number > 0"):
            tf.fit_trajectories(adata, unbalanced=value, **FAST)
    for value in (True, "1"):  # the wrong kind of value altogether
        with pytest.raises(TypeError, match="unbalanced must be a finite number"):
            tf.fit_trajectories(adata, unbalanced=value, **FAST)
    with pytest.raises(ValueError, match="needs an OT coupling"):
        tf.fit_trajectories(adata, method="i-cfm", unbalanced=1.0, **FAST)


# --------------------------------------------------------------------------- plots
def test_plots(bif, bif_model, genes_data, tmp_path):
    adata = bif.copy()
    tf.tl.fate_probabilities(adata, bif_model, source_time=0, groupby="branch")
    up = ((adata.obs["time"] == 2) & (adata.obs["branch"] == "up")).to_numpy()
    tf.tl.ancestors(adata, bif_model, cells=up, target_time=0)
    snapshot = adata.copy()
    fig = tf.pl.fates(adata, save=tmp_path / "fates.png")
    assert len([a for a in fig.axes if a.get_title().startswith("fate")]) == 2
    _, ax = plt.subplots()
    assert tf.pl.fates(adata, groups="up", ax=ax) is ax
    with pytest.raises(ValueError, match="ax= draws one group"):
        tf.pl.fates(adata, ax=ax)
    ax = tf.pl.ancestors(adata, save=tmp_path / "ancestors.png")
    assert ax.get_title().startswith("Ancestors")
    tf.pl.ancestors(adata, color="probability")
    with pytest.raises(KeyError, match="run trajflow.tl.predict_expression"):
        tf.pl.gene_trends(adata)
    gadata, model = genes_data
    gadata = gadata.copy()
    tf.tl.predict_expression(gadata, model, times=np.linspace(0, 3, 13), genes=["Gene0", "Gene1"])
    fig = tf.pl.gene_trends(gadata, save=tmp_path / "genes.png")
    assert [a.get_title() for a in fig.axes[:2]] == ["Gene0", "Gene1"]
    _, ax = plt.subplots()
    assert tf.pl.gene_trends(gadata, ["Gene1"], ax=ax, spread="std") is ax
    with pytest.raises(KeyError, match="were not predicted"):
        tf.pl.gene_trends(gadata, ["Gene5"])
    for f in ("fates.png", "ancestors.png", "genes.png"):
        assert (tmp_path / f).stat().st_size > 1000
    # plots never modify the AnnData
    assert set(adata.obs.columns) == set(snapshot.obs.columns)
    assert set(adata.uns.keys()) == set(snapshot.uns.keys())
    plt.close("all")


def test_model_first_order_still_works_with_a_future_warning(bif, bif_model):
    """Development versions took the model first; those calls keep working, with a warning."""
    new = tf.tl.fate_probabilities(bif, bif_model, source_time=0, groupby="branch", copy=True)
    with pytest.warns(FutureWarning, match=r"fate_probabilities\(adata, model, \.\.\.\)"):
        old = tf.tl.fate_probabilities(bif_model, bif, source_time=0, groupby="branch", copy=True)
    np.testing.assert_array_equal(new.obsm["fate_probabilities"], old.obsm["fate_probabilities"])
