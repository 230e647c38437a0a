"""Calibrated held-out scores at users' dims, and what each prediction candidate gives.

For each shared set at the dims users work in (EB 50 PCs, Klein 20, EMT 10) and each interior
time point held out, one fit per seed and fit variant (``--variants``: ``default``, or another
method, width, clock, an ensemble; see :data:`VARIANTS`); then the same model predicts the
held-out cells several ways and every candidate is scored by
``trajflow.benchmark.held_out_table`` (matched size against half of the held-out cells, 5
splits; the floor is the other half). Per variant ``V``:

- ``V/forward``: every cell of the previous time point pushed forward (the old ``predict``);
- ``V/backward``: every cell of the next time point pushed backward;
- ``V/even``: both, half each; ``V/predict``: ``model.predict(t)`` itself (the same rule, the
  default since issue 24);
- ``V/validated``: both, the share backward validated on the training time points
  (:func:`_validated_share`; tried, not kept);
- ``default/mix``: shares by nearness in time (``1 - f`` forward, ``f`` backward, where ``f`` is
  the held-out time's fraction of its gap); ``default/back0.25`` / ``back0.75``: fixed shares;
- ``V/sde-forward`` for a variant that learns a score.

``--save-models DIR`` keeps every fit, ``--reuse`` loads them instead of refitting;
``--timing`` prints only the fit / predict seconds of each variant at 5, 20 and 50 PCs.

The simulated course (``--sets sim``) holds out time 2 and scores against 10,000 fresh cells of
the same process at that time (its known truth) instead of the held-out half. Candidates sit
beside ``previous`` (unmoved), exact static OT (``ot-interpolation``) and moscot-style entropic
interpolation. Prints one table per set (mean over held-out times and seeds) with the share of
static OT's gap to the floor each closes, in unbiased energy (the headline), unbiased MMD and
matched-size W1::

    python benchmarks/calibrated.py --seeds 0 1 2 --variants default hermite \\
        --out benchmarks/results/calibrated.csv
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import pdist

import trajflow
from trajflow.benchmark import (
    entropic_interpolation,
    held_out_table,
    ot_interpolation,
)
from trajflow.metrics import energy_distance

#: The simulated course: 4 time points x 5,000 training cells x 30 dims, time 2 held out and
#: scored against 10,000 fresh cells of the same process at time 2 (its known truth).
SIM = {"n_times": 4, "n_train": 5_000, "n_fresh": 10_000, "n_dims": 30, "holdout": 2.0}

SETS = {
    "sim": (None, SIM["n_dims"]),
    "eb": ("eb_moon2019_nlsb_subset.h5ad", 50),
    "klein": ("klein2015_mesc_lif_withdrawal_subset.h5ad", 20),
    "emt": ("emt_a549_tgfb1_ae_latent.h5ad", 10),
}


def _data_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("TRAJFLOW_DATA_DIR", default))


def _mixture(forward: np.ndarray, backward: np.ndarray, w_back: float, seed: int) -> np.ndarray:
    """``len(forward)`` cells: a share ``w_back`` drawn from ``backward``, the rest forward."""
    rng = np.random.default_rng(seed)
    n = len(forward)
    k = round(w_back * n)
    back = backward[rng.choice(len(backward), k, replace=k > len(backward))]
    fwd = forward[rng.choice(n, n - k, replace=False)]
    return np.concatenate([fwd, back])


def _simulated() -> tuple[ad.AnnData, np.ndarray]:
    """The training course and fresh cells at the held-out time, from one simulation (one
    embedding map; every cell an independent path)."""
    n = SIM["n_train"] + SIM["n_fresh"]
    full = trajflow.datasets.simulate(n_times=SIM["n_times"], n_cells=n, n_dims=SIM["n_dims"])
    t = full.obs["time"].to_numpy(dtype=float)
    rng = np.random.default_rng(0)
    train = np.zeros(len(full), dtype=bool)
    for v in np.unique(t):
        train[rng.choice(np.flatnonzero(t == v), SIM["n_train"], replace=False)] = True
    fresh = ~train & (t == SIM["holdout"])
    return full[train].copy(), np.asarray(full.obsm["X_pca"][fresh], dtype=np.float64)


#: Fit variants whose predictions are candidates: name -> fit_trajectories options ("seeds":
#: an ensemble of that many fits whose velocities are averaged).
VARIANTS: dict[str, dict] = {
    "default": {},
    "sb-cfm": {"method": "sb-cfm"},
    "mmfm": {"method": "mmfm"},
    "hermite": {"method": "mmfm-hermite"},
    "ot-cfm-hermite": {"method": "ot-cfm-hermite"},
    "ot-mfm": {"method": "ot-mfm"},
    "mmfm-metric": {"method": "mmfm-metric"},
    "wide": {"hidden": 256},
    "long": {"n_steps": 6000},
    "time-clock": {"clock": "time"},
    "distance-clock": {"clock": "distance"},
    "ens3": {"seeds": 3},
}


class _MeanVelocity(torch.nn.Module):
    """The mean of several velocity networks (an ensemble's field)."""

    def __init__(self, nets: list[torch.nn.Module]):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x, t):
        return torch.stack([net(x, t) for net in self.nets]).mean(0)


def _fit_variant(adata, name, n_dims, hold, seed, n_steps, fit_kwargs=None):
    kw = {**VARIANTS[name], **(fit_kwargs or {})}
    n_seeds = kw.pop("seeds", 1)
    if n_steps and "n_steps" not in kw:
        kw["n_steps"] = n_steps
    models = [
        trajflow.fit_trajectories(
            adata, n_dims=n_dims, holdout=hold, seed=seed + 1000 * i, progress=False, **kw
        )
        for i in range(n_seeds)
    ]
    model = models[0]
    if n_seeds > 1:
        model._velocity_net = _MeanVelocity([m._velocity_net for m in models]).eval()
    return model


def _validated_share(model, rep: np.ndarray, t: np.ndarray, max_cells: int = 500) -> float:
    """A backward share validated on the training time points (a candidate; not the default):
    at every trained time point with trained neighbours on both sides, the forward push of the
    previous population and the backward push of the next one are scored against its cells
    (unbiased energy over the population's mean pairwise distance); the share backward is the
    forward error's share of the two mean errors."""
    rng = np.random.default_rng(0)

    def sample(x):
        return x if len(x) <= max_cells else x[rng.choice(len(x), max_cells, replace=False)]

    trained, e_f, e_b = model.times, [], []
    for k in range(1, len(trained) - 1):
        a, m, b = trained[k - 1], trained[k], trained[k + 1]
        obs = sample(rep[np.isclose(t, m)])
        spread = float(np.mean(pdist(obs)))
        fwd = model.push(sample(rep[np.isclose(t, a)]), source_time=a, times=m)
        bwd = model.push(sample(rep[np.isclose(t, b)]), source_time=b, times=m)
        e_f.append(max(energy_distance(fwd, obs), 0.0) / spread)
        e_b.append(max(energy_distance(bwd, obs), 0.0) / spread)
    if not e_f:
        return 0.5
    f, b = max(float(np.mean(e_f)), 1e-6), max(float(np.mean(e_b)), 1e-6)
    return f / (f + b)


def run_set(
    name: str,
    seeds: list[int],
    n_steps: int | None,
    variants: list[str],
    save_models: str | None = None,
    reuse: bool = False,
    fit_kwargs: dict | None = None,
) -> pd.DataFrame:
    file, n_dims = SETS[name]
    fresh = None
    if file is None:
        adata, fresh = _simulated()
    else:
        adata = ad.read_h5ad(_data_dir() / file)
    rep = np.asarray(adata.obsm["X_pca"][:, :n_dims], dtype=np.float64)
    t = adata.obs["time"].to_numpy(dtype=float)
    times = sorted(np.unique(t))
    rows = []
    for k in range(1, len(times) - 1):
        hold, t_prev, t_next = times[k], times[k - 1], times[k + 1]
        if fresh is not None and hold != SIM["holdout"]:
            continue
        prev, nxt = rep[t == t_prev], rep[t == t_next]
        obs = rep[t == hold] if fresh is None else fresh
        frac = (hold - t_prev) / (t_next - t_prev)
        for seed in seeds:
            candidates = {
                "previous": prev,
                "ot-interpolation": ot_interpolation(prev, nxt, frac, seed=seed),
                "entropic-interpolation": entropic_interpolation(prev, nxt, frac, seed=seed),
            }
            fit_s, shares = {}, {}
            for variant in variants:
                saved = Path(save_models or ".") / f"{name}_{hold:g}_{seed}_{variant}"
                t0 = time.perf_counter()
                if reuse and saved.is_dir():  # the fit of an earlier run with the same settings
                    model = trajflow.TrajectoryModel.load(saved)
                    fit_s[variant] = float(model.history.get("fit_seconds", np.nan))
                else:
                    model = _fit_variant(adata, variant, n_dims, hold, seed, n_steps, fit_kwargs)
                    fit_s[variant] = time.perf_counter() - t0
                    if save_models:
                        model.save(saved, overwrite=True)
                forward = model.predict(hold, source_time=t_prev).obsm["X_pca"]
                backward = model.push(nxt, source_time=t_next, times=hold)
                candidates[f"{variant}/forward"] = forward
                candidates[f"{variant}/backward"] = backward
                candidates[f"{variant}/even"] = _mixture(forward, backward, 0.5, seed)
                # predict's default: both neighbours, half each
                candidates[f"{variant}/predict"] = model.predict(hold, n_cells=len(prev)).obsm[
                    "X_pca"
                ]
                # the share backward validated on the training time points (tried, not kept)
                shares[variant] = _validated_share(model, rep, t)
                candidates[f"{variant}/validated"] = _mixture(
                    forward, backward, shares[variant], seed
                )
                if variant == "default":
                    candidates["default/mix"] = _mixture(forward, backward, frac, seed)
                    for w in (0.25, 0.75):
                        candidates[f"default/back{w:g}"] = _mixture(forward, backward, w, seed)
                if model.learns_score:
                    candidates[f"{variant}/sde-forward"] = model.predict(
                        hold, source_time=t_prev, sde=True, seed=seed
                    ).obsm["X_pca"]
                    # both neighbours, half each, sampling the SDE both ways
                    candidates[f"{variant}/sde-predict"] = model.predict(
                        hold, n_cells=len(prev), sde=True, seed=seed
                    ).obsm["X_pca"]
            # pools across fit variants (an ensemble of methods): half each of two variants'
            # predictions by the same rule
            for i, first in enumerate(variants):
                for second in variants[i + 1 :]:
                    for rule in ("even", "backward", "predict"):
                        candidates[f"{first}+{second}/{rule}"] = _mixture(
                            candidates[f"{first}/{rule}"], candidates[f"{second}/{rule}"], 0.5, seed
                        )
            table = held_out_table(candidates, obs, reference=rep, seed=seed)
            for cand, row in table.iterrows():
                variant = cand.split("/")[0]  # a pool's fit time is the sum of its fits'
                rows.append(
                    {
                        "set": name, "n_dims": n_dims, "holdout_time": hold, "seed": seed,
                        "candidate": cand, **row[["energy", "mmd", "w1", "w2"]].to_dict(),
                        "fit_s": sum(fit_s.get(v, 0.0) for v in variant.split("+")),
                        "backward_share": shares.get(variant, np.nan),
                        "total_var": float(np.var(candidates.get(cand, obs), axis=0).sum()),
                    }
                )  # fmt: skip
            print(f"{name} t={hold:g} seed={seed}: fits {fit_s} shares {shares}", flush=True)
    return pd.DataFrame(rows)


def closed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean score per candidate and the share of static OT's gap closed, per metric."""
    out = []
    for metric in ("energy", "mmd", "w1"):
        key = ["set", "holdout_time", "seed"]
        piv = frame.pivot_table(index=key, columns="candidate", values=metric)
        gap = piv["ot-interpolation"] - piv["perfect-half"]
        closed = piv.sub(piv["ot-interpolation"], axis=0).mul(-1).div(gap, axis=0)
        by_set = closed.groupby(level="set").mean()
        means = piv.groupby(level="set").mean()
        for s in by_set.index:
            for cand in by_set.columns:
                out.append(
                    {"set": s, "metric": metric, "candidate": cand,
                     "score": means.loc[s, cand], "closed": by_set.loc[s, cand]}
                )  # fmt: skip
    return pd.DataFrame(out)


def timing_table(
    variants: list[str], dims: tuple[int, ...] = (5, 20, 50), hold: float = 2.0
) -> pd.DataFrame:
    """Seconds of one fit of each variant (EB, ``hold`` held out) and of predicting ``hold``
    from the previous time point and from both neighbours (``predict``'s default), at each of
    ``dims``; the variants one after the other in the same process."""
    adata = ad.read_h5ad(_data_dir() / SETS["eb"][0])
    rows = []
    for n_dims in dims:
        for variant in variants:
            t0 = time.perf_counter()
            model = _fit_variant(adata, variant, n_dims, hold, 0, None)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.predict(hold, source_time=hold - 1)
            forward_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.predict(hold)
            both_s = time.perf_counter() - t0
            rows.append(
                {"n_dims": n_dims, "variant": variant, "fit_s": fit_s,
                 "predict_forward_s": forward_s, "predict_both_s": both_s,
                 "load_average": os.getloadavg()[0]}
            )  # fmt: skip
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["eb", "klein", "emt"], choices=list(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-steps", type=int, default=None, help="default: the fit's default")
    parser.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    parser.add_argument("--save-models", default=None, help="folder to save every fit in")
    parser.add_argument(
        "--reuse", action="store_true", help="load the fits saved in --save-models, if there"
    )
    parser.add_argument("--out", default="benchmarks/results/calibrated.csv")
    parser.add_argument(
        "--fit-kwargs", type=json.loads, default={},
        help='further fit options as JSON, e.g. \'{"restore": 0}\' (the fit before issue 26)',
    )  # fmt: skip
    parser.add_argument("--timing", action="store_true", help="only the fit / predict timings")
    args = parser.parse_args()
    trajflow.settings.verbosity = "warning"
    if args.timing:
        torch.set_num_threads(1)
        table = timing_table(args.variants)
        table.to_csv(args.out, index=False)
        print(table.round(2).to_string(index=False))
        return
    frames = []
    for name in args.sets:
        frames.append(
            run_set(
                name,
                args.seeds,
                args.n_steps,
                args.variants,
                args.save_models,
                args.reuse,
                args.fit_kwargs,
            )
        )
        pd.concat(frames).to_csv(args.out, index=False)  # kept as it goes
    frame = pd.concat(frames)
    table = closed_table(frame)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        for metric in ("energy", "mmd", "w1"):
            sub = table[table.metric == metric]
            score = sub.pivot(index="candidate", columns="set", values="score")
            closed = sub.pivot(index="candidate", columns="set", values="closed")
            print(f"\n{metric}: mean score (closed share of static OT's gap to the floor)")
            print(
                score.round(4).astype(str)
                + " ("
                + (100 * closed).round(0).astype("Int64").astype(str)
                + "%)"
            )
        fits = frame.groupby(["set", frame.candidate.str.split("/").str[0]])["fit_s"].mean()
        print("\nseconds per fit:\n", fits[fits > 0].round(1))


if __name__ == "__main__":
    main()
