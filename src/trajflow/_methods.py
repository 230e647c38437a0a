"""The flow-matching methods trajflow knows, and what each one is made of."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    """How a ``method=`` value is built.

    coupling
        ``"independent"``, ``"exact"`` (exact OT) or ``"entropic"`` (entropic OT).
    path
        ``"straight"`` (Gaussian tube of width ``sigma``) or ``"bridge"`` (Brownian bridge with
        diffusion ``sigma`` per unit time).
    default_sigma
        The ``sigma`` used when the caller passes none.
    learns_score
        Whether a score network is trained too, so the flow can be sampled as an SDE.
    reference
        Where the method comes from.
    spline
        For ``path="spline"`` (multi-marginal flow matching, :mod:`trajflow.core.multimarginal`):
        the cubic spline through each chain of OT-coupled cells, ``"natural"`` or ``"hermite"``.
    ema
        Decay of an exponential moving average of the weights kept during training and used as
        the final weights (0: none). Only used by ``path="spline"`` methods.
    bend
        Bend every conditional path toward dense regions of the training cells (metric flow
        matching, :mod:`trajflow.core.manifold`): with ``path="straight"`` each OT pair's line,
        with ``path="spline"`` every spline segment.
    bend_eps
        Floor ``eps`` of the metric ``1 / (density + eps)`` used for the bends: smaller bends
        harder.
    """

    coupling: str
    path: str
    default_sigma: float
    learns_score: bool
    reference: str
    spline: str = "natural"
    ema: float = 0.0
    bend: bool = False
    bend_eps: float = 0.1


METHODS: dict[str, MethodSpec] = {
    "ot-cfm": MethodSpec(
        coupling="exact",
        path="straight",
        default_sigma=0.1,
        learns_score=False,
        reference="Tong et al. 2023 (TMLR), OT-CFM: exact optimal-transport couplings",
    ),
    "sb-cfm": MethodSpec(
        coupling="entropic",
        path="bridge",
        default_sigma=1.0,
        learns_score=True,
        reference="Tong et al. 2023/2024, SB-CFM and [SF]2M: entropic OT + Brownian bridge",
    ),
    "i-cfm": MethodSpec(
        coupling="independent",
        path="straight",
        default_sigma=0.1,
        learns_score=False,
        reference="Lipman et al. 2023; Tong et al. 2023, I-CFM: independent couplings",
    ),
    "mmfm": MethodSpec(
        coupling="exact",
        path="spline",
        default_sigma=0.1,
        learns_score=False,
        reference=(
            "Rohbeck et al. 2024 (ICLR 2025), multi-marginal flow matching: chains of exact OT "
            "couplings through all training time points, natural cubic-spline paths"
        ),
        spline="natural",
    ),
    "mmfm-hermite": MethodSpec(
        coupling="exact",
        path="spline",
        default_sigma=0.1,
        learns_score=False,
        reference=(
            "Rohbeck et al. 2024 (ICLR 2025), multi-marginal flow matching with local "
            "(Catmull-Rom-like) cubic Hermite paths through chains of exact OT couplings"
        ),
        spline="hermite",
    ),
    "ot-mfm": MethodSpec(
        coupling="exact",
        path="straight",
        default_sigma=0.1,
        learns_score=False,
        reference=(
            "Kapusniak et al. 2024 (NeurIPS), metric flow matching (OT-MFM): exact OT pairs joined "
            "by interpolants bent toward dense regions of the cells (kernel-density metric)"
        ),
        bend=True,
    ),
    "mmfm-metric": MethodSpec(
        coupling="exact",
        path="spline",
        default_sigma=0.1,
        learns_score=False,
        reference=(
            "Rohbeck et al. 2024 + Kapusniak et al. 2024: natural-spline multi-marginal paths "
            "with the OT-MFM density bend added to every segment"
        ),
        spline="natural",
        bend=True,
    ),
}


def get_method(method: str) -> MethodSpec:
    """Return the spec of ``method`` or raise a ValueError listing the known ones."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    return METHODS[method]
