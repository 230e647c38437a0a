"""Predictions of every method as one ``.npz``: the check that a refactor changed no number.

Fits every method of ``trajflow.METHODS`` (plus growth weights, unbalanced OT, a held-out time
point and the SDE) on the EB subset and on a synthetic branching course, on the CPU with one
thread and fixed seeds, and stores each model's predictions, trajectories and velocities. Run it
on two versions of trajflow and compare::

    python benchmarks/fingerprint.py --out before.npz   # on the old commit
    python benchmarks/fingerprint.py --out after.npz    # on the new one
    python benchmarks/fingerprint.py --compare before.npz after.npz

``--compare`` prints, per entry, whether the arrays are bit-identical (and the largest
difference when not) and exits non-zero when any differs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

N_STEPS = 150


def _data_dir() -> Path:
    return Path(
        os.environ.get("TRAJFLOW_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
    )


def synthetic() -> ad.AnnData:
    """Two branches leaving one cloud, 5 time points, 3 dims, 150 cells each (seeded)."""
    rng = np.random.default_rng(7)
    xs, ts = [], []
    for t in range(5):
        branch = rng.integers(0, 2, 150)
        centre = np.stack([t * np.ones(150), (2 * branch - 1) * 0.4 * t**1.3, np.zeros(150)], 1)
        xs.append(centre + rng.normal(0, 0.3, (150, 3)))
        ts.append(np.full(150, float(t)))
    x = np.concatenate(xs)
    obs = pd.DataFrame({"time": np.concatenate(ts)}, index=[f"c{i}" for i in range(len(x))])
    obs["growth"] = np.exp(0.3 * np.tanh(x[:, 1]))
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_pca"] = x
    return adata


def runs(trajflow) -> list[tuple[str, str, dict]]:
    """(name, data set, fit keyword arguments) of every fit."""
    out = []
    for method in sorted(trajflow.METHODS):
        for data in ("eb", "synthetic"):
            out.append((f"{data}/{method}", data, {"method": method}))
    out += [
        ("eb/ot-cfm-holdout", "eb", {"method": "ot-cfm", "holdout": 2.0}),
        ("eb/mmfm-holdout", "eb", {"method": "mmfm", "holdout": 2.0}),
        ("synthetic/ot-cfm-growth", "synthetic", {"method": "ot-cfm", "growth_key": "growth"}),
        ("synthetic/ot-mfm-growth", "synthetic", {"method": "ot-mfm", "growth_key": "growth"}),
        ("synthetic/i-cfm-growth", "synthetic", {"method": "i-cfm", "growth_key": "growth"}),
        ("synthetic/ot-cfm-unbalanced", "synthetic", {"method": "ot-cfm", "unbalanced": 1.0}),
        ("synthetic/sb-cfm-unbalanced", "synthetic", {"method": "sb-cfm", "unbalanced": 1.0}),
        ("synthetic/ot-cfm-minibatch", "synthetic", {"method": "ot-cfm", "coupling": "minibatch"}),
        ("eb/ot-cfm-distance", "eb", {"method": "ot-cfm", "clock": "distance"}),
    ]
    return out


def fingerprint(out: Path) -> None:
    import trajflow

    torch.set_num_threads(1)
    eb = ad.read_h5ad(_data_dir() / "eb_moon2019_nlsb_subset.h5ad")
    data = {"eb": eb, "synthetic": synthetic()}
    arrays: dict[str, np.ndarray] = {}
    for name, which, kwargs in runs(trajflow):
        adata = data[which]
        kwargs = {"n_dims": 3, "n_steps": N_STEPS, "seed": 1, "progress": False, **kwargs}
        model = trajflow.fit_trajectories(adata, device="cpu", **kwargs)
        mid = 0.5 * (model.times[0] + model.times[1])
        arrays[f"{name}/predict"] = model.predict(mid).obsm["X_pca"]
        arrays[f"{name}/predict_last"] = model.predict(model.times[-1], n_cells=50, seed=3).obsm[
            "X_pca"
        ]
        arrays[f"{name}/trajectories"] = model.trajectories(n_cells=20, n_points=5).paths
        arrays[f"{name}/velocity"] = model.velocity(adata[:100], time=mid)
        arrays[f"{name}/loss"] = np.asarray(model.history["loss"])
        if model.config["method"] == "sb-cfm":
            arrays[f"{name}/sde"] = model.predict(mid, sde=True, seed=2).obsm["X_pca"]
        print(f"{name}: done", flush=True)
    np.savez(out, **arrays)
    print(f"wrote {len(arrays)} arrays to {out}")


def compare(a: Path, b: Path) -> int:
    with np.load(a) as fa, np.load(b) as fb:
        keys = sorted(set(fa) | set(fb))
        differ = 0
        for key in keys:
            if key not in fa or key not in fb:
                print(f"{key}: only in {'before' if key in fa else 'after'}")
                differ += 1
                continue
            x, y = fa[key], fb[key]
            if x.shape == y.shape and np.array_equal(x, y):
                print(f"{key}: identical")
            else:
                diff = np.abs(x - y).max() if x.shape == y.shape else float("nan")
                print(f"{key}: DIFFERS (shapes {x.shape} {y.shape}, max |diff| {diff:.3g})")
                differ += 1
    print(f"{len(keys) - differ} of {len(keys)} entries bit-identical")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path)
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    warnings.simplefilter("ignore")
    fingerprint(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
