"""trajflow's automatic PCA (``ensure_pca``): scanpy's recipe, scanpy's keys, the user's data kept."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

import trajflow as tf
from trajflow._anndata import ensure_pca, get_representation

KEYS = [
    "obsm['X_pca']",
    "varm['PCs']",
    "uns['pca']",
    "var['highly_variable']",
    "uns['trajflow_pca']",
]


def counts_adata(n_genes: int, n_per_time: int = 40, seed: int = 0) -> ad.AnnData:
    """Poisson counts at times 0, 1, 2; the first 20 genes rise over time (sparse X)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 2.0, size=n_genes)
    blocks = [
        rng.poisson(base * np.exp(0.8 * t * (np.arange(n_genes) < 20)), size=(n_per_time, n_genes))
        for t in (0.0, 1.0, 2.0)
    ]
    n = 3 * n_per_time
    return ad.AnnData(
        X=sparse.csr_matrix(np.concatenate(blocks).astype(np.float32)),
        obs=pd.DataFrame(
            {"time": np.repeat([0.0, 1.0, 2.0], n_per_time)}, index=[f"c{i}" for i in range(n)]
        ),
        var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]),
    )


def log_cp10k(adata: ad.AnnData) -> np.ndarray:
    x = sc.pp.normalize_total(adata, target_sum=1e4, inplace=False)["X"]
    return np.log1p(np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64))


def test_counts_follow_scanpy_recipe_on_hvgs_and_keep_x(caplog):
    adata = counts_adata(n_genes=2100)
    before = adata.X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation or implicit-modification warning
        with caplog.at_level(logging.INFO, logger="trajflow"):
            ensure_pca(adata, n_comps=50)
    assert (before != adata.X).nnz == 0 and adata.X.dtype == before.dtype  # X untouched

    hvg = adata.var["highly_variable"].to_numpy()
    assert list(adata.var.columns) == ["highly_variable"] and hvg.sum() == 2000
    pcs = adata.varm["PCs"]
    assert adata.obsm["X_pca"].shape == (120, 50) and pcs.shape == (2100, 50)
    assert np.all(pcs[~hvg] == 0) and np.all(np.abs(pcs[hvg]).sum(axis=1) > 0)
    assert adata.uns["pca"]["params"] == {
        "zero_center": True,
        "use_highly_variable": True,
        "mask_var": "highly_variable",
    }
    assert adata.uns["pca"]["variance"].shape == adata.uns["pca"]["variance_ratio"].shape == (50,)
    record = adata.uns["trajflow_pca"]
    assert (
        record["log_normalised"] and record["target_sum"] == 1e4 and record["genes"] == "computed"
    )
    assert record["n_comps"] == 50 and record["n_genes"] == 2000

    # Same numbers as the scanpy recipe a user would run.
    ref = ad.AnnData(X=before.copy(), var=pd.DataFrame(index=adata.var_names))
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.pp.highly_variable_genes(ref, flavor="seurat", n_top_genes=2000)
    sc.pp.pca(ref, n_comps=50, mask_var="highly_variable", random_state=0)
    np.testing.assert_array_equal(ref.var["highly_variable"].to_numpy(), hvg)
    np.testing.assert_allclose(ref.obsm["X_pca"], adata.obsm["X_pca"], rtol=1e-4, atol=1e-4)
    # The stored mean maps the PCA back: X_pca == (log1p cp10k - mean) @ PCs.
    recon = (log_cp10k(adata) - record["mean"]) @ pcs
    np.testing.assert_allclose(recon, adata.obsm["X_pca"], atol=1e-3)

    # One INFO line naming every key written.
    lines = [r for r in caplog.records if "computed a 50-component PCA" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    message = lines[0].getMessage()
    assert "\n" not in message and "2000 highly variable genes" in message
    assert all(key in message for key in KEYS), message


def test_few_genes_use_all_genes_without_hvg_column(caplog):
    adata = counts_adata(n_genes=30)
    with caplog.at_level(logging.INFO, logger="trajflow"):
        rep = get_representation(adata, "X_pca", None)
    assert rep.shape == (120, 29)  # 50 capped at n_genes - 1
    assert "highly_variable" not in adata.var.columns
    assert adata.uns["pca"]["params"]["mask_var"] is None
    assert np.all(np.abs(adata.varm["PCs"]).sum(axis=1) > 0)
    assert adata.uns["trajflow_pca"]["genes"] == "all"
    assert "on all 30 genes" in caplog.text and "var['highly_variable']" not in caplog.text
    assert all(key in caplog.text for key in KEYS if key != "var['highly_variable']")


def test_view_is_refused_and_parent_untouched():
    adata = counts_adata(n_genes=30)
    view = adata[adata.obs["time"] < 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"is a view.*adata\[mask\]\.copy\(\)"):
            tf.fit_trajectories(view, n_dims=2, n_steps=20, progress=False)
    assert view.is_view and "X_pca" not in view.obsm and "X_pca" not in adata.obsm
    assert "pca" not in adata.uns and "PCs" not in adata.varm


@pytest.mark.parametrize(("slot", "key"), [("varm", "PCs"), ("uns", "pca")])
def test_existing_pca_results_are_not_overwritten(slot, key):
    adata = counts_adata(n_genes=30)
    old = np.ones((30, 2)) if slot == "varm" else {"variance": np.ones(2)}
    getattr(adata, slot)[key] = old
    with pytest.raises(
        ValueError, match=rf"adata\.{slot}\['{key}'\].*does not overwrite.*sc\.pp\.pca"
    ):
        ensure_pca(adata, n_comps=10)
    assert "X_pca" not in adata.obsm and getattr(adata, slot)[key] is old
    assert "trajflow_pca" not in adata.uns


def test_user_highly_variable_is_used_not_overwritten(caplog):
    adata = counts_adata(n_genes=60)
    mask = np.zeros(60, dtype=bool)
    mask[:25] = True
    adata.var["highly_variable"] = mask
    with caplog.at_level(logging.INFO, logger="trajflow"):
        ensure_pca(adata, n_comps=50)
    np.testing.assert_array_equal(adata.var["highly_variable"].to_numpy(), mask)
    assert adata.obsm["X_pca"].shape == (120, 24)
    assert (
        np.all(adata.varm["PCs"][~mask] == 0) and adata.uns["pca"]["params"]["use_highly_variable"]
    )
    assert adata.uns["trajflow_pca"]["genes"] == "user"
    assert "the 25 genes of adata.var['highly_variable']" in caplog.text
    assert "var['highly_variable']" not in caplog.text.split("added")[1]  # not a key written

    adata = counts_adata(n_genes=60)
    adata.var["highly_variable"] = "yes"
    with pytest.raises(ValueError, match="not a boolean column"):
        ensure_pca(adata, n_comps=10)


def test_predict_expression_maps_through_automatic_pca():
    adata = counts_adata(n_genes=40, n_per_time=60)
    adata.layers["log1p_cp10k"] = log_cp10k(adata)
    model = tf.fit_trajectories(adata, n_dims=5, n_steps=20, progress=False, seed=0)
    assert "PCs" in adata.varm and "pca" in adata.uns
    genes = ["g0", "g30"]
    tf.tl.predict_expression(adata, model, times=[0.0, 1.0, 2.0], genes=genes, layer="log1p_cp10k")
    res = adata.uns["trajflow_expression"]
    assert res["mapping"] == "pca" and np.all(np.isfinite(res["mean"]))
    # At the source time the predicted cells are the observed ones: their rank-5 reconstruction
    # keeps the gene means (the mean is added back exactly).
    np.testing.assert_allclose(res["mean"][0], res["observed_mean"][0], atol=0.15)

    # Fewer cells than the PCA saw: the stored mean still maps X_pca back.
    sub = adata[adata.obs["time"] < 2].copy()
    tf.tl.predict_expression(sub, model, times=[0.0, 1.0], genes=genes, layer="log1p_cp10k")
    assert sub.uns["trajflow_expression"]["mapping"] == "pca"

    # Raw counts are not what the PCA saw: the pca mapping says so and knn is used.
    with pytest.raises(ValueError, match="automatic PCA of normalize_total.*raw counts"):
        tf.tl.predict_expression(adata, model, times=[1.0], genes=genes, mapping="pca")
    tf.tl.predict_expression(adata, model, times=[1.0], genes=genes)
    assert adata.uns["trajflow_expression"]["mapping"] == "knn"


def test_sparse_counts_pca_never_densifies_and_matches_the_dense_pca(monkeypatch):
    """The automatic PCA of a CSR counts matrix (2,100 genes: the HVG path too) never makes the
    gene matrix dense, and gives the PCA of the same counts stored dense."""
    counts = tf.datasets.simulate(n_times=3, n_cells=60, seed=1, n_genes=2100)
    dense = counts.copy()
    dense.X = counts.X.toarray()

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"densified a {self.shape} sparse matrix")

    with monkeypatch.context() as m:
        for cls in (sparse._base._spbase, sparse._compressed._cs_matrix):
            m.setattr(cls, "toarray", refuse)
            m.setattr(cls, "todense", refuse)
        ensure_pca(counts, n_comps=20)
    assert sparse.isspmatrix_csr(counts.X)
    ensure_pca(dense, n_comps=20)
    assert (
        counts.uns["trajflow_pca"]["log_normalised"] and counts.var["highly_variable"].sum() == 2000
    )
    np.testing.assert_array_equal(counts.var["highly_variable"], dense.var["highly_variable"])
    a, b = counts.obsm["X_pca"], dense.obsm["X_pca"]
    signs = np.sign(np.sum(a * b, axis=0))  # a component's sign is arbitrary
    np.testing.assert_allclose(a, b * signs, rtol=1e-3, atol=1e-3 * np.abs(b).max())
