"""The flow-matching methods: each one a recipe, registered in one place.

A method is a :class:`MethodSpec`: which coupling pairs the cells, which path joins them, and
what is added (a bend, a spline through chains, a score). :func:`register_method` adds one to
:data:`METHODS` after checking that its parts fit together; :func:`check_method_options` holds
the checks of the fit options that depend on the method; :func:`build_objective` turns a spec,
the standardised training populations and their times into the objective the trainer
minimises (:mod:`trajflow.core.objectives`). Adding a method means one ``register_method`` call;
a new kind of coupling or path goes to :mod:`trajflow.core` first (see CONTRIBUTING.md).

No AnnData here: numpy and the torch core only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .core import (
    ChainObjective,
    MixtureObjective,
    Objective,
    PairwiseObjective,
    build_chain_sampler,
    build_coupling,
)
from .core.bank import STREAM_RAMP
from .core.bends import support_bends
from .core.couplings import Coupling
from .core.parallel import parallel_map
from .core.paths import SPLINE_KINDS
from .core.strategy import CouplingStrategy, resolve_strategy

COUPLINGS = ("independent", "exact", "entropic")
PATHS = ("straight", "bridge", "spline")


@dataclass(frozen=True)
class MethodSpec:
    """How a ``method=`` value is built.

    Frozen: pass one to :func:`register_method` to add a method.

    Parameters
    ----------
    coupling
        ``"independent"``, ``"exact"`` (exact OT) or ``"entropic"`` (entropic OT).
    path
        ``"straight"`` (Gaussian tube of width ``sigma``), ``"bridge"`` (Brownian bridge with
        diffusion ``sigma`` per unit time; also learns the score) or ``"spline"`` (multi-marginal:
        a cubic spline through chains of exactly OT-coupled cells across all time points).
    default_sigma
        The ``sigma`` used when the caller passes none (``>= 0``; ``> 0`` for a bridge), in
        the scaled units the network trains in.
    reference
        Where the method comes from (free text, e.g. the paper).
    spline
        For ``path="spline"``: the tangent rule, ``"natural"`` (default), ``"hermite"`` or
        ``"catmull-rom"`` (:func:`~trajflow.core.paths.spline_tangent_matrix`).
    ema
        Decay of an exponential moving average of the weights kept during training and used as
        the final weights, in ``[0, 1)``. Default 0: none.
    bend
        Bend every conditional path toward dense regions of the training cells (metric flow
        matching, ``trajflow.core.bends``): with ``path="straight"`` each OT pair's line,
        with ``path="spline"`` every spline segment. Default: no bend.
    bend_eps
        Floor ``eps`` of the metric ``1 / (density + eps)`` used for the bends, where the
        density is normalised to mean 1 over the training cells (``> 0``, default 0.1):
        smaller bends harder.
    default_restore
        The ``restore`` used when the caller passes none (straight paths only, ``>= 0``; in
        the scaled units the network trains in): the width of a Gaussian offset added to each
        pair's source cell and shed along its path, so the field learns to bring cells that
        drift off the data back onto it. Default 0: none.
    straight_share
        For ``path="spline"``: the share of each step's loss and batch on straight paths
        between the pairs of the same exact plans (OT-CFM's paths, with ``restore``), in
        ``[0, 1)``; the rest is on the splines (:class:`~trajflow.core.MixtureObjective`), so a
        step costs what a one-path step costs. The flow then
        carries a mixture of both kinds of path between the time points. Default 0: splines
        only.
    """

    coupling: str
    path: str
    default_sigma: float
    reference: str
    spline: str = "natural"
    ema: float = 0.0
    bend: bool = False
    bend_eps: float = 0.1
    default_restore: float = 0.0
    straight_share: float = 0.0

    @property
    def learns_score(self) -> bool:
        """Whether a score network is trained too, so the flow can be sampled as an SDE."""
        return self.path == "bridge"

    @property
    def multi_marginal(self) -> bool:
        """Whether paths run through every training time point (chains) rather than pairs."""
        return self.path == "spline"

    @property
    def straight(self) -> bool:
        """Whether some of the method's paths are straight lines (what ``restore`` acts on)."""
        return self.path == "straight" or self.straight_share > 0

    @property
    def fixed_plan(self) -> bool:
        """Whether the method needs one fixed exact plan per pair (bends, chains)."""
        return self.bend or self.multi_marginal


#: The registered methods, by ``method=`` name.
METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, spec: MethodSpec, *, overwrite: bool = False) -> MethodSpec:
    """Add ``spec`` to :data:`METHODS` as ``method=name``, after checking that its parts fit.

    Parameters
    ----------
    name
        The ``method=`` value that selects the new method (a non-empty string).
    spec
        How the method is built.
    overwrite
        Replace a method already registered under ``name``; by default that is refused.

    Returns
    -------
    MethodSpec
        ``spec``, now registered.

    Raises
    ------
    ValueError
        For an empty or non-string ``name``, a name already taken (unless ``overwrite``), an
        unknown coupling, path or spline, a combination the objectives cannot train (a bent or
        spline path without exact OT, a bent bridge), a negative ``default_sigma`` (or zero for
        a bridge), a non-positive ``bend_eps``, an ``ema`` outside ``[0, 1)``, or a negative
        ``default_restore`` (or a positive one without straight paths), or a ``straight_share``
        outside ``[0, 1)`` (or a positive one on a path that is not a spline).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A method needs a non-empty string name, got {name!r}.")
    if name in METHODS and not overwrite:
        raise ValueError(f"Method {name!r} is already registered; pass overwrite=True.")
    problems = []
    if spec.coupling not in COUPLINGS:
        problems.append(f"coupling must be one of {COUPLINGS}, got {spec.coupling!r}")
    if spec.path not in PATHS:
        problems.append(f"path must be one of {PATHS}, got {spec.path!r}")
    if spec.path == "spline" and spec.spline not in SPLINE_KINDS:
        problems.append(f"spline must be one of {SPLINE_KINDS}, got {spec.spline!r}")
    if spec.fixed_plan and spec.coupling != "exact":
        problems.append("bent and spline paths need coupling='exact' (one fixed plan per pair)")
    if spec.bend and spec.path == "bridge":
        problems.append("a Brownian bridge cannot be bent")
    if not spec.default_sigma >= 0 or (spec.path == "bridge" and not spec.default_sigma > 0):
        problems.append(f"default_sigma must be >= 0 (> 0 for a bridge), got {spec.default_sigma}")
    if not spec.bend_eps > 0:
        problems.append(f"bend_eps must be > 0, got {spec.bend_eps}")
    if not 0 <= spec.ema < 1:
        problems.append(f"ema must be in [0, 1), got {spec.ema}")
    if not spec.default_restore >= 0 or (spec.default_restore > 0 and not spec.straight):
        problems.append(
            "default_restore must be >= 0 (0 unless some paths are straight), got "
            f"{spec.default_restore}"
        )
    if not 0 <= spec.straight_share < 1 or (spec.straight_share > 0 and spec.path != "spline"):
        problems.append(
            f"straight_share must be in [0, 1) (0 unless path='spline'), got {spec.straight_share}"
        )
    if problems:
        raise ValueError(f"Cannot register method {name!r}: " + "; ".join(problems) + ".")
    METHODS[name] = spec
    return spec


register_method(
    "ot-cfm",
    MethodSpec(
        coupling="exact",
        path="straight",
        default_sigma=0.1,
        reference="Tong et al. 2023 (TMLR), OT-CFM: exact optimal-transport couplings",
        # pulls cells pushed across several time points back onto the data (issue 26: EB-50
        # day 0 -> 4, 16-18% off the support without, 0% with on seeds 0-2; benchmarks/support.py)
        default_restore=0.3,
    ),
)
register_method(
    "sb-cfm",
    MethodSpec(
        coupling="entropic",
        path="bridge",
        default_sigma=1.0,
        reference="Tong et al. 2023/2024, SB-CFM and [SF]2M: entropic OT + Brownian bridge",
    ),
)
register_method(
    "i-cfm",
    MethodSpec(
        coupling="independent",
        path="straight",
        default_sigma=0.1,
        reference="Lipman et al. 2023; Tong et al. 2023, I-CFM: independent couplings",
    ),
)
register_method(
    "mmfm",
    MethodSpec(
        coupling="exact",
        path="spline",
        default_sigma=0.1,
        reference=(
            "Rohbeck et al. 2024 (ICLR 2025), multi-marginal flow matching: chains of exact OT "
            "couplings through all training time points, natural cubic-spline paths"
        ),
        spline="natural",
    ),
)
register_method(
    "mmfm-hermite",
    MethodSpec(
        coupling="exact",
        path="spline",
        default_sigma=0.1,
        reference=(
            "Rohbeck et al. 2024 (ICLR 2025), multi-marginal flow matching with local "
            "(Catmull-Rom-like) cubic Hermite paths through chains of exact OT couplings"
        ),
        spline="hermite",
    ),
)
register_method(
    "ot-cfm-hermite",
    MethodSpec(
        coupling="exact",
        path="spline",
        default_sigma=0.1,
        reference=(
            "trajflow (issue 24): OT-CFM's straight paths (Tong et al. 2023, with the restoring "
            "offset) and Rohbeck et al. 2024's cubic Hermite paths through chains of the same "
            "exact OT plans, half of each step's loss on each"
        ),
        spline="hermite",
        # held-out predictions from both neighbours close 28 / 26 / 37% of static OT's gap to a
        # perfect prediction on EB-50 / Klein-20 / EMT-10 (3 seeds), against ot-cfm's 28 / 3 /
        # 32% and mmfm-hermite's 22 / 22 / 36% (benchmarks/README.md, issue 24)
        default_restore=0.3,
        straight_share=0.5,
    ),
)
register_method(
    "ot-mfm",
    MethodSpec(
        coupling="exact",
        path="straight",
        default_sigma=0.1,
        reference=(
            "Kapusniak et al. 2024 (NeurIPS), metric flow matching (OT-MFM): exact OT pairs joined "
            "by interpolants bent toward dense regions of the cells (kernel-density metric)"
        ),
        bend=True,
    ),
)
register_method(
    "mmfm-metric",
    MethodSpec(
        coupling="exact",
        path="spline",
        default_sigma=0.1,
        reference=(
            "Rohbeck et al. 2024 + Kapusniak et al. 2024: natural-spline multi-marginal paths "
            "with the OT-MFM density bend added to every segment"
        ),
        spline="natural",
        bend=True,
    ),
)


def get_method(method: str) -> MethodSpec:
    """Return the spec of ``method`` or raise a ValueError listing the known ones.

    Parameters
    ----------
    method
        A ``method=`` name, a key of :data:`METHODS`.

    Returns
    -------
    MethodSpec
        The registered spec.

    Raises
    ------
    ValueError
        When ``method`` is not a registered name.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    return METHODS[method]


def check_method_options(
    method: str,
    *,
    sigma: float | None,
    coupling: str,
    unbalanced: float | None,
    growth: bool,
) -> float:
    """Check the fit options that depend on the method (already of the right type).

    Each refusal names the method, the option and what to use instead.

    Parameters
    ----------
    method
        The ``method=`` name.
    sigma, coupling, unbalanced
        As given to :func:`~trajflow.fit_trajectories` (``sigma=None``: the method's default).
    growth
        Whether ``growth_key=`` was given.

    Returns
    -------
    float
        The ``sigma`` to use.

    Raises
    ------
    ValueError
        For an unknown method, ``sigma=0`` with a bridge, ``unbalanced=`` with an independent
        coupling, ``unbalanced=`` or ``coupling="minibatch"`` with a method that needs fixed
        plans, or growth with a multi-marginal method.
    """
    spec = get_method(method)
    sigma = spec.default_sigma if sigma is None else sigma
    if spec.path == "bridge" and sigma == 0:
        raise ValueError(f"sigma must be > 0 for method={method!r} (a Brownian bridge), got 0.")
    if unbalanced is not None and spec.coupling == "independent":
        raise ValueError(
            f"unbalanced= needs an OT coupling, but method={method!r} uses an independent "
            "coupling; use method='ot-cfm' or 'sb-cfm'."
        )
    if spec.fixed_plan and (unbalanced is not None or coupling == "minibatch"):
        # Bends are solved once per pair of a fixed, sparse exact plan (full or bank); chains
        # compose plans.
        raise ValueError(
            f"method={method!r} needs one fixed exact OT plan per pair of time points, so it "
            "supports neither unbalanced= nor coupling='minibatch'; use method='ot-cfm'."
        )
    if spec.multi_marginal and growth:
        # A chain needs each plan's target marginal to be the next plan's source marginal;
        # growth weights make the source marginals non-uniform, so the links would not compose.
        raise ValueError(
            f"growth_key= cannot work with method={method!r}: its chains through all time points "
            "need uniform marginals. Use a pairwise method ('ot-cfm', 'ot-mfm', 'sb-cfm')."
        )
    return float(sigma)


#: A method's default restoring offset applies from this many dimensions on. In fewer, the
#: data fill the space, so the offset lies along the populations themselves and blurs them:
#: Weinreb's 2-dim course, paper protocol, ot-cfm W1 0.582 without the offset and 0.676 with
#: 0.3 (seeds 0-2, benchmarks/README.md); from 5 dimensions on it helped or cost < 0.3%.
RESTORE_MIN_DIMS = 5


def default_restore(method: str, n_dims: int) -> float:
    """The ``restore`` a fit of ``method`` on ``n_dims`` dimensions uses when given none: the
    method's ``default_restore``, or 0 below :data:`RESTORE_MIN_DIMS` dimensions."""
    return float(get_method(method).default_restore) if n_dims >= RESTORE_MIN_DIMS else 0.0


def check_restore(method: str, restore: float | None) -> float | None:
    """Check a ``restore`` given to a fit of ``method`` (``None``, the default, stays ``None``
    until the dimensions are known: :func:`default_restore`).

    Raises
    ------
    ValueError
        For a positive ``restore`` with a method whose paths are not straight (a Brownian
        bridge or a spline through chains), naming the methods that take it.
    """
    spec = get_method(method)
    if restore is None:
        return None
    if restore > 0 and not spec.straight:
        straight = sorted(name for name, m in METHODS.items() if m.straight)
        raise ValueError(
            f"restore= needs straight paths, but method={method!r} uses a {spec.path} path; "
            f"use restore=0 (or None), or one of {straight}."
        )
    return float(restore)


def build_objective(
    spec: MethodSpec,
    populations: Sequence[np.ndarray],
    taus: Sequence[float],
    times: Sequence[float],
    *,
    sigma: float,
    batch_size: int,
    coupling: CouplingStrategy = "auto",
    unbalanced: float | None = None,
    growth: Sequence[np.ndarray] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    n_steps: int | None = None,
    restore: float = 0.0,
) -> Objective:
    """The objective that trains ``spec`` on standardised ``populations``.

    Parameters
    ----------
    spec
        The method (after :func:`check_method_options`).
    populations
        Standardised training cells, one ``(n_k, d)`` float32 array per time point.
    taus
        Their internal (flow) times.
    times
        Their observed times (the growth exponent is in units of observed time).
    sigma, batch_size, coupling, unbalanced
        As in :func:`~trajflow.fit_trajectories` (``batch_size`` per process).
    growth
        Per-cell growth factors per unit of observed time, one array per population, or None.
    seed
        Seeds everything drawn while building (subsamples, the bends' density): every process
        of a distributed fit builds the same objective.
    device
        Where the populations and plans live.
    n_steps
        Steps the objective will train for: banks of methods without bends are then solved
        while training runs, whole from step ``STREAM_RAMP * n_steps`` on
        (:class:`~trajflow.core.bank.StreamingBank`). Default: banks solved before training.
    restore
        Straight paths: the width of the restoring offset (:func:`check_restore`).

    Returns
    -------
    Objective
        A ``ChainObjective`` for a multi-marginal (spline) method (in a ``MixtureObjective``
        with straight lines on the same plans when ``spec.straight_share > 0``), else a
        ``PairwiseObjective`` over one coupling per pair of consecutive time points.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    tensors = [torch.as_tensor(p, device=device) for p in populations]
    if spec.multi_marginal:
        sampler = build_chain_sampler(tensors, generator=gen)
        # a mixture splits each step's batch between its parts by their shares (at least one
        # draw each), so a step costs what one method's step costs
        line_batch = max(1, round(batch_size * spec.straight_share))
        chain_batch = max(1, batch_size - line_batch) if spec.straight_share else batch_size
        bends = None
        if spec.bend:
            links = [sampler.link_pairs(k) for k in range(len(tensors) - 1)]
            bends = support_bends(tensors, links, eps=spec.bend_eps, generator=gen)
        chains = ChainObjective(
            tensors, taus, sampler, spline=spec.spline, sigma=sigma, batch_size=chain_batch,
            bends=bends,
        )  # fmt: skip
        if not spec.straight_share:
            return chains
        # straight lines between the pairs of the chains' own plans (no second solve)
        lines = PairwiseObjective(
            tensors, taus, sampler.couplings, sigma=sigma, batch_size=line_batch, restore=restore
        )
        return MixtureObjective([chains, lines], [1 - spec.straight_share, spec.straight_share])

    # bends need every support pair before training, so only bend-free methods stream
    stream_steps = None if n_steps is None or spec.bend else int(STREAM_RAMP * n_steps)

    def pair(k: int) -> Coupling:
        reg = 2 * sigma**2 * (taus[k + 1] - taus[k]) if spec.coupling == "entropic" else None
        # growth factor per unit of observed time, raised to the pair's span
        weights = None if growth is None else growth[k] ** (times[k + 1] - times[k])
        return build_coupling(
            spec.coupling,
            tensors[k],
            tensors[k + 1],
            reg=reg,
            strategy=coupling,
            reg_m=unbalanced,
            source_weights=weights,
            generator=gen,
            stream_steps=stream_steps,
        )

    # Full plans draw nothing from the generator, so they are solved side by side on threads
    # (the solvers release the GIL); banks draw their minibatches, so they stay in order.
    pairs = range(len(tensors) - 1)
    full = [
        k
        for k in pairs
        if spec.coupling != "independent"
        and resolve_strategy(coupling, len(tensors[k]), len(tensors[k + 1])) == "full"
    ]
    solved = dict(zip(full, parallel_map(pair, [(k,) for k in full]), strict=True))
    couplings = [solved[k] if k in solved else pair(k) for k in pairs]
    bends = None
    if spec.bend:
        support = [c.support_pairs() for c in couplings]
        bends = support_bends(tensors, support, eps=spec.bend_eps, generator=gen)
    path = "bridge" if spec.path == "bridge" else "straight"
    return PairwiseObjective(
        tensors, taus, couplings, path=path, sigma=sigma, batch_size=batch_size, bends=bends,
        restore=restore,
    )  # fmt: skip
