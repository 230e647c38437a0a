"""Couplings for CellRank, cell_transition, velocity in obsm, descendants and calibrated fates,
on the simulated branching course whose fates are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import trajflow as tf

FAST = {"n_steps": 600, "progress": False, "solver_steps": 40}


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny networks: one torch thread


@pytest.fixture(scope="module")
def sim():
    adata = tf.datasets.simulate(n_times=4, n_cells=120, n_dims=6, seed=3)
    adata.obs["day"] = adata.obs["time"] * 2.0  # times that are not 0, 1, 2
    return adata


@pytest.fixture(scope="module")
def sim_model(sim):
    return tf.fit_trajectories(sim, time_key="day", seed=0, **FAST)


def test_couplings_follow_cellranks_contract(sim, sim_model):
    cpl = tf.tl.couplings(sim, sim_model, n_neighbors=10)
    assert list(cpl) == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    day = sim.obs["day"].to_numpy()
    for (t1, t2), block in cpl.items():
        assert sparse.issparse(block.X) and block.X.format == "csr"
        assert block.shape == ((day == t1).sum(), (day == t2).sum())
        assert list(block.obs_names) == list(sim.obs_names[day == t1])  # adata's order
        assert list(block.var_names) == list(sim.obs_names[day == t2])
        np.testing.assert_allclose(np.asarray(block.X.sum(axis=1)).ravel(), 1.0)
        assert (block.X.getnnz(axis=1) == 10).all() and block.X.min() >= 0
    triu = tf.tl.couplings(sim, sim_model, pairs="triu", n_neighbors=10)
    assert len(triu) == 6 and (0.0, 6.0) in triu


def test_couplings_keys_are_the_columns_own_categories(sim, sim_model):
    adata = sim.copy()
    adata.obs["day"] = pd.Categorical(adata.obs["day"].map(lambda d: f"{d:g}"))
    cpl = tf.tl.couplings(adata, sim_model, n_neighbors=5)
    assert list(cpl) == [("0", "2"), ("2", "4"), ("4", "6")]


def test_couplings_carry_the_flow(sim, sim_model):
    """A cell's mass lands near where the model pushes it."""
    cpl = tf.tl.couplings(sim, sim_model, n_neighbors=10)
    day = sim.obs["day"].to_numpy()
    x = sim.obsm["X_pca"]
    block = cpl[2.0, 4.0]
    pushed = sim_model.push(x[day == 2], source_time=2, times=4)
    landed = block.X @ x[day == 4]
    err = np.linalg.norm(landed - pushed, axis=1).mean()
    spread = np.linalg.norm(x[day == 4] - x[day == 4].mean(0), axis=1).mean()
    assert err < 0.5 * spread, (err, spread)


def test_couplings_errors(sim, sim_model):
    with pytest.raises(ValueError, match="pairs must be"):
        tf.tl.couplings(sim, sim_model, pairs="all")
    with pytest.raises(ValueError, match="n_neighbors must be a positive integer"):
        tf.tl.couplings(sim, sim_model, n_neighbors=0)
    one = sim[sim.obs["day"] == 0].copy()
    with pytest.raises(ValueError, match="couplings need two"):
        tf.tl.couplings(one, sim_model)


def test_realtime_kernel_with_cellrank(sim, sim_model):
    pytest.importorskip("cellrank")
    adata = sim.copy()
    kernel = tf.tl.realtime_kernel(adata, sim_model, n_neighbors=10)
    assert isinstance(adata.obs["trajflow_time"].dtype, pd.CategoricalDtype)
    assert adata.obs["day"].dtype == sim.obs["day"].dtype  # the user's column is untouched
    kernel.compute_transition_matrix(
        self_transitions="all", conn_weight=0.1, threshold=None, conn_kwargs={"use_rep": "X_pca"}
    )
    tm = kernel.transition_matrix
    assert tm.shape == (adata.n_obs, adata.n_obs)
    np.testing.assert_allclose(np.asarray(tm.sum(axis=1)).ravel(), 1.0, atol=1e-6)


def test_cell_transition_both_directions(sim, sim_model):
    adata = sim.copy()
    fwd = tf.tl.cell_transition(
        adata, sim_model, source_time=2, target_time=6, groupby="fate", n_neighbors=10
    )
    assert fwd.index.name == "fate at 2" and fwd.columns.name == "fate at 6"
    np.testing.assert_allclose(fwd.sum(axis=1), 1.0)
    assert fwd.attrs["forward"] and "goes to" in fwd.attrs["question"]
    # Cells whose own path ends up 'up' mostly go to the 'up' cells (and 'down' to 'down').
    assert fwd.loc["up", "up"] > 0.5 and fwd.loc["down", "down"] > 0.5, fwd
    assert adata.uns["cell_transition"]["table"].shape == (2, 2)
    back = tf.tl.cell_transition(
        adata, sim_model, source_time=2, target_time=6, groupby="fate", forward=False
    )
    assert back.index.name == "fate at 6" and back.columns.name == "fate at 2"
    np.testing.assert_allclose(back.sum(axis=1), 1.0)
    assert "comes from" in back.attrs["question"]
    with pytest.raises(ValueError, match="must be later than source_time"):
        tf.tl.cell_transition(adata, sim_model, source_time=6, target_time=2, groupby="fate")
    with pytest.raises(ValueError, match="source_time=1 is not a time point observed"):
        tf.tl.cell_transition(adata, sim_model, source_time=1, target_time=6, groupby="fate")
    unlabelled = adata.copy()
    unlabelled.obs["fate"] = pd.Categorical([None] * adata.n_obs, categories=["up"])
    with pytest.raises(ValueError, match="No cell at time"):
        tf.tl.cell_transition(unlabelled, sim_model, source_time=2, target_time=6, groupby="fate")


def test_velocity_goes_where_scvelo_looks(sim, sim_model):
    adata = sim.copy()
    assert tf.tl.velocity(adata, sim_model) is None
    v = adata.obsm["trajflow_velocity_pca"]
    assert v.shape == (adata.n_obs, sim_model.n_dims)
    day = adata.obs["day"].to_numpy()
    at = day == 4
    np.testing.assert_allclose(v[at], sim_model.velocity(adata.obsm["X_pca"][at], 4.0))
    assert adata.uns["trajflow_velocity"]["use_rep"] == "X_pca"
    copy = tf.tl.velocity(sim, sim_model, key_added="v", copy=True)
    assert "v_pca" in copy.obsm and "v_pca" not in sim.obsm


def test_descendants_mirror_ancestors(sim, sim_model):
    adata = sim.copy()
    day = adata.obs["day"].to_numpy()
    chosen = (day == 2) & (adata.obs["fate"] == "up").to_numpy()
    tf.tl.descendants(adata, sim_model, cells=chosen, target_time=6, n_neighbors=10)
    prob = adata.obs["descendants"].to_numpy()
    assert np.isnan(prob[day != 6]).all()
    assert prob[day == 6].sum() == pytest.approx(1.0)
    up_at_6 = (adata.obs["fate"] == "up").to_numpy()[day == 6]
    assert prob[day == 6][up_at_6].sum() > 0.6
    assert adata.uns["descendants"]["positions"].shape == (chosen.sum(), sim_model.n_dims)
    with pytest.raises(ValueError, match="must be later than"):
        tf.tl.descendants(adata, sim_model, cells=chosen, target_time=0)


def test_fates_several_source_times_and_calibration(sim, sim_model):
    """Fates for every earlier time point at once, probabilities that are not all 0 or 1, and
    a better Brier score against the known fates than the direct one-path push."""
    adata = sim.copy()
    tf.tl.fate_probabilities(adata, sim_model, groupby="fate", n_neighbors=15)
    res = adata.uns["fate_probabilities"]
    assert list(res["source_times"]) == [0.0, 2.0, 4.0] and res["through"] == "observed"
    probs = adata.obsm["fate_probabilities"]
    day = adata.obs["day"].to_numpy()
    assert np.isnan(probs[day == 6]).all() and not np.isnan(probs[day < 6]).any()
    np.testing.assert_allclose(probs[day < 6].sum(axis=1), 1.0)
    direct = tf.tl.fate_probabilities(
        adata, sim_model, groupby="fate", through="direct", n_neighbors=15, copy=True
    )
    up = list(res["groups"]).index("up")
    truth = (adata.obs["fate"] == "up").to_numpy()

    def brier(p, t):
        return float(np.mean((p[day == t, up] - truth[day == t]) ** 2))

    chained, straight = brier(probs, 0), brier(direct.obsm["fate_probabilities"], 0)
    assert chained <= straight + 1e-9, (chained, straight)
    assert np.mean(probs[day == 0].max(axis=1) > 0.99) < 0.5  # not hard 0/1 at the start
    # Later cells are more predictable than the earliest ones.
    assert brier(probs, 4) < brier(probs, 0)
    with pytest.raises(ValueError, match="through must be"):
        tf.tl.fate_probabilities(adata, sim_model, groupby="fate", through="path")


def test_cell_transition_gives_group_sizes(sim, sim_model, caplog):
    # issue 26: a 1-cell group read 1.000 -> c4 with nothing saying it is one cell
    adata = sim.copy()
    at2 = np.flatnonzero(adata.obs["day"] == 2)
    groups = np.where(adata.obs["fate"] == "up", "up", "down").astype(object)
    groups[at2[0]] = "lonely"
    adata.obs["group"] = pd.Categorical(groups)
    with caplog.at_level("WARNING", logger="trajflow"):
        fwd = tf.tl.cell_transition(
            adata, sim_model, source_time=2, target_time=6, groupby="group", n_neighbors=10
        )
    assert fwd.loc["lonely"].max() > 0.5  # a whole row from one cell
    sizes = fwd.attrs["row_sizes"]
    assert sizes["lonely"] == 1 and sum(sizes.values()) == len(at2)
    at6 = adata.obs["day"] == 6
    assert fwd.attrs["column_sizes"] == {
        g: int((adata.obs["group"][at6] == g).sum()) for g in fwd.columns
    }
    assert "lonely (1 cell)" in caplog.text
    stored = adata.uns["cell_transition"]
    assert dict(zip(stored["rows"], stored["row_sizes"].tolist(), strict=True)) == sizes
    back = tf.tl.cell_transition(
        adata, sim_model, source_time=2, target_time=6, groupby="group", forward=False
    )
    assert back.attrs["column_sizes"] == sizes  # the rows' time point is now the target's
