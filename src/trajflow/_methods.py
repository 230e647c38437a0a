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
    """

    coupling: str
    path: str
    default_sigma: float
    learns_score: bool
    reference: str


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
}


def get_method(method: str) -> MethodSpec:
    """Return the spec of ``method`` or raise a ValueError listing the known ones."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    return METHODS[method]
