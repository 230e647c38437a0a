"""Optimal-transport plans between two weighted point sets: exact, entropic and unbalanced.

The one place trajflow solves OT: the squared Euclidean cost, per-cell weights, POT's network
simplex for exact plans (:func:`exact_ot_plan`, :func:`exact_ot_cost`), log-domain Sinkhorn
in torch for entropic and unbalanced ones (batched, on any device), and epsilon-scaling Sinkhorn
for the small regularisation of moscot-style plans (:func:`scaled_sinkhorn_plan`). The couplings
(:mod:`.couplings`), the bank (:mod:`.bank`), exact OT interpolation, the clock and the metrics
all solve through here.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

#: Iteration cap of POT's network simplex for every exact solve (its default of 100,000 stops
#: short on a few thousand cells per side and returns a non-optimal plan with a warning).
MAX_ITER = 10_000_000


def pot() -> ModuleType:
    """The POT module, imported on the first solve: it imports scikit-learn, ~1.4 s of
    ``import trajflow`` that a user who only loads a model or plots never needs."""
    import ot

    return ot


def exact_ot_cost(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """The exact OT cost ``min <P, cost>`` between weights ``a`` and ``b`` (numpy in, float out)."""
    return float(pot().emd2(a, b, cost, numItermax=MAX_ITER))


def exact_plan_np(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """The exact OT plan between weights ``a`` and ``b`` for ``cost`` (numpy in and out)."""
    return pot().emd(a, b, cost, numItermax=MAX_ITER)


def sq_cost(x0: Tensor, x1: Tensor) -> Tensor:
    return torch.cdist(x0, x1).pow(2)


#: Entropic regularisation used for ``kind="exact"`` with ``reg_m`` (unbalanced OT has no fast
#: exact solver); small next to typical squared distances between standardised cells.
UNBALANCED_EXACT_REG = 0.1


def as_weights(w: Tensor | np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    """Validate per-cell weights and normalise them to sum to one (``None`` stays ``None``)."""
    if w is None:
        return None
    w = w.detach().cpu().numpy() if isinstance(w, Tensor) else np.asarray(w)
    w = w.astype(np.float64).ravel()
    if w.shape != (n,):
        raise ValueError(f"{name} must have one weight per cell ({n}), got shape {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"{name} must be finite, non-negative and not all zero.")
    return w / w.sum()


def exact_ot_plan(
    x0: Tensor,
    x1: Tensor,
    *,
    num_iter_max: int = MAX_ITER,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Exact OT plan (squared Euclidean cost), solved by POT's network simplex.

    ``a`` / ``b`` are optional source / target weights (default uniform; normalised to sum 1).
    The solver runs on the CPU in float64; the plan is returned on ``x0``'s device.
    """
    p = x0.detach().double().cpu().numpy()
    q = x1.detach().double().cpu().numpy()
    cost = pot().dist(p, q)  # squared Euclidean
    wa = as_weights(a, len(p), "a")
    wb = as_weights(b, len(q), "b")
    plan = pot().emd(
        pot().unif(len(p)) if wa is None else wa,
        pot().unif(len(q)) if wb is None else wb,
        cost,
        numItermax=num_iter_max,
    )
    return torch.as_tensor(plan, dtype=torch.float32, device=x0.device)


def _log_weights(w: Tensor | np.ndarray | None, n: int, name: str, like: Tensor) -> Tensor:
    wn = as_weights(w, n, name)
    if wn is None:
        return torch.full((n,), -np.log(n), dtype=like.dtype, device=like.device)
    return torch.as_tensor(wn, dtype=like.dtype, device=like.device).log()


def _sinkhorn_inputs(
    x0: Tensor,
    x1: Tensor,
    a: Tensor | np.ndarray | None,
    b: Tensor | np.ndarray | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Squared Euclidean cost (float64) and log source / target weights of a Sinkhorn solve."""
    cost = sq_cost(x0.double(), x1.double())
    n, m = cost.shape[-2:]
    return cost, _log_weights(a, n, "a", cost), _log_weights(b, m, "b", cost)


def entropic_ot_plan(
    x0: Tensor,
    x1: Tensor,
    reg: float,
    *,
    n_iter: int = 2000,
    tol: float = 1e-6,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Entropic OT plan by log-domain Sinkhorn in torch, on ``x0``'s device.

    ``reg`` is the entropic regularisation in units of the squared Euclidean cost. ``a`` / ``b``
    are optional source / target weights (default uniform; normalised to sum 1). Batched:
    ``x0`` ``(..., n, d)`` and ``x1`` ``(..., m, d)`` give ``(..., n, m)`` plans, solved together
    (the weights are shared by every batch).
    """
    if reg <= 0:
        raise ValueError(f"Entropic regularisation must be positive, got {reg}.")
    cost, log_a, log_b = _sinkhorn_inputs(x0, x1, a, b)
    n = len(log_a)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    k = -cost / reg
    for it in range(n_iter):
        f = reg * (log_a - torch.logsumexp(k + g[..., None, :] / reg, dim=-1))
        g = reg * (log_b - torch.logsumexp(k + f[..., :, None] / reg, dim=-2))
        if it % 20 == 0:
            row = torch.logsumexp(k + (f[..., :, None] + g[..., None, :]) / reg, dim=-1).exp()
            if torch.max(torch.abs(row - log_a.exp())) < tol / n:
                break
    plan = torch.exp(k + (f[..., :, None] + g[..., None, :]) / reg)
    return plan.float()


def unbalanced_ot_plan(
    x0: Tensor,
    x1: Tensor,
    reg: float,
    reg_m: float,
    *,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
    n_iter: int = 3000,
    tol: float = 1e-4,
) -> Tensor:
    """Unbalanced entropic OT plan by log-domain Sinkhorn in torch, on ``x0``'s device.

    Minimises ``<P, C> + reg KL(P | a b^T) + reg_m KL(P 1 | a) + reg_m KL(P^T 1 | b)`` for the
    squared Euclidean cost ``C``: the objective of POT's
    ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg, reg_m)`` (``reg_type="kl"``), solved in
    the log domain so that small ``reg`` does not underflow, with epsilon scaling (the
    regularisation is halved from the largest cost down to ``reg``, warm-starting the potentials)
    so that small ``reg`` converges in a few hundred iterations. Each stage stops when the
    potentials move by less than ``tol * reg`` over an iteration, or after ``n_iter`` iterations.

    ``reg_m`` is the mass-relaxation parameter, in units of the cost: large values enforce the
    marginals (``reg_m -> inf`` is balanced entropic OT); small values let the plan create and
    destroy mass where moving it would cost more than about ``reg_m``.
    ``a`` / ``b`` are optional source / target weights (default uniform; normalised to sum 1).
    Batched like :func:`entropic_ot_plan`.
    """
    if not reg > 0:
        raise ValueError(f"Entropic regularisation must be positive, got {reg}.")
    if not reg_m > 0:
        raise ValueError(f"The mass relaxation reg_m must be positive, got {reg_m}.")
    cost, log_a, log_b = _sinkhorn_inputs(x0, x1, a, b)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    eps = max(float(reg), float(cost.max()))
    while True:
        fi = 1.0 if np.isinf(reg_m) else reg_m / (reg_m + eps)
        k = -cost / eps
        for it in range(n_iter):
            f_prev = f
            f = -fi * eps * torch.logsumexp(k + (log_b + g / eps)[..., None, :], dim=-1)
            g = -fi * eps * torch.logsumexp(k + (log_a + f / eps)[..., :, None], dim=-2)
            if it % 10 == 0 and torch.max(torch.abs(f - f_prev)) < tol * eps:
                break
        if eps <= reg:
            break
        eps = max(float(reg), eps / 2)
    plan = torch.exp(k + (log_a + f / eps)[..., :, None] + (log_b + g / eps)[..., None, :])
    return plan.float()


#: Marginal error (L1: the summed absolute deviation of the plan's row sums from the source
#: weights) at which :func:`scaled_sinkhorn_plan` stops: ott-jax's default ``threshold``, which
#: moscot's ``solve()`` uses.
SINKHORN_TOL = 1e-3
#: Sinkhorn iterations (over all epsilon stages) after which :func:`scaled_sinkhorn_plan` stops
#: and warns. Real pairs at moscot's epsilon need a few hundred (EB-50, 1,000 x 1,000: ~360).
SINKHORN_MAX_ITER = 10_000
#: Each epsilon stage halves the regularisation, from the largest cost down to ``reg``.
EPSILON_FACTOR = 0.5
#: Below this ``tol``, :func:`scaled_sinkhorn_plan` iterates in float64 instead of float32.
FLOAT32_TOL = 1e-5
#: A scaling whose log exceeds this is absorbed into the potentials (kernel recomputed).
_ABSORB_LOG = 30.0


def scaled_sinkhorn_plan(
    cost: Tensor,
    reg: float,
    *,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
    tol: float = SINKHORN_TOL,
    max_iter: int = SINKHORN_MAX_ITER,
) -> Tensor:
    """Balanced entropic OT plan for small ``reg``, by epsilon-scaling stabilised Sinkhorn.

    Minimises ``<P, cost> + reg KL(P | a b^T)`` over plans with marginals ``a`` and ``b`` (the
    objective of POT's ``ot.sinkhorn(a, b, cost, reg)``). The regularisation is halved stage by
    stage from the largest cost down to ``reg``, each stage warm-started from the last one's
    potentials ``f``, ``g``; within a stage, plain matrix-vector Sinkhorn runs on the kernel
    ``exp((f + g - cost) / eps)`` taken around those potentials, and the scalings are absorbed
    into the potentials when they grow large and at the end of each stage (Schmitzer 2019,
    "Stabilized sparse scaling algorithms for entropy regularized transport problems"). Because
    the kernel is centred on the potentials, nothing under- or overflows at ``reg = 1e-3`` of
    the mean cost, and an iteration costs two matrix-vector products instead of two
    log-sum-exps over the plan.

    Why not POT: at moscot's ``reg = 1e-3`` (cost over its mean), POT 0.9's
    ``sinkhorn_epsilon_scaling`` did not finish a real 1,000 x 1,000 pair (EB-50) in 200 s, its
    ``sinkhorn_stabilized`` sat > 5 min on a 2,000 x 2,000 one, and ``sinkhorn_log`` (numpy or
    torch backend) needs thousands of log-sum-exp iterations without epsilon scaling; this
    solve takes ~2 s on the 1,000 x 1,000 pair on one CPU thread (``benchmarks/entropic_baseline.py``
    measures all of them).

    Parameters
    ----------
    cost
        The ``(n, m)`` cost matrix (any float dtype; solved in float64 on its device).
    reg
        Entropic regularisation, in units of ``cost``; positive.
    a, b
        Source / target weights (default uniform; normalised to sum 1).
    tol
        Stop when the L1 error of the row marginal is below ``tol`` (the column marginal is
        met exactly after every column update); stages before the last stop at
        ``max(tol, SINKHORN_TOL)``.
    max_iter
        Iterations over all stages before stopping with a ``RuntimeWarning`` that gives the
        marginal error reached.

    Returns
    -------
    torch.Tensor
        The plan, ``(n, m)`` float64 on ``cost``'s device; its mass sums to 1.
    """
    if not reg > 0:
        raise ValueError(f"Entropic regularisation must be positive, got {reg}.")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}.")
    if not max_iter >= 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
    cost = cost.double()
    n, m = cost.shape
    wa, wb = as_weights(a, n, "a"), as_weights(b, m, "b")
    # the potentials and the plan stay float64; the kernel's products run in float32 (twice as
    # fast) unless the tolerance is below what float32 sums resolve
    work = torch.float32 if tol >= FLOAT32_TOL else torch.float64
    a_t = torch.as_tensor(np.full(n, 1 / n) if wa is None else wa, device=cost.device)
    b_t = torch.as_tensor(np.full(m, 1 / m) if wb is None else wb, device=cost.device)
    a_w, b_w = a_t.to(work), b_t.to(work)
    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    eps = max(float(reg), float(cost.max()))
    n_done, err = 0, float("inf")
    while True:
        kernel = torch.exp((f[:, None] + g[None, :] - cost) / eps).to(work)
        u, v = torch.ones_like(a_w), torch.ones_like(b_w)
        # a stage before the last only warm-starts the next: a tighter tol is for the last one
        stage_tol = tol if eps <= reg else max(tol, SINKHORN_TOL)
        while n_done < max_iter:
            row = kernel @ (b_w * v)
            # the row marginal before this update is a * u * row (columns are exact here)
            err = float(torch.sum(a_w * torch.abs(u * row - 1)))
            if err < stage_tol or not np.isfinite(err):
                break
            u = 1 / row
            v = 1 / (kernel.T @ (a_w * u))
            n_done += 1
            if float(torch.max(torch.log(u).abs().max(), torch.log(v).abs().max())) > _ABSORB_LOG:
                f, g = f + eps * torch.log(u), g + eps * torch.log(v)
                kernel = torch.exp((f[:, None] + g[None, :] - cost) / eps).to(work)
                u, v = torch.ones_like(a_w), torch.ones_like(b_w)
        f, g = f + eps * torch.log(u), g + eps * torch.log(v)
        if eps <= reg or n_done >= max_iter or not np.isfinite(err):
            break
        eps = max(float(reg), eps * EPSILON_FACTOR)
    if not (err < tol and eps <= reg):
        warnings.warn(
            f"Sinkhorn stopped after {n_done} iterations (max_iter={max_iter}) at regularisation "
            f"{eps:.3g} (target {reg:.3g}) with marginal error {err:.2e} (tol={tol:.0e}); the "
            "plan is approximate. Raise max_iter or reg.",
            RuntimeWarning,
            stacklevel=2,
        )
    return a_t[:, None] * b_t[None, :] * torch.exp((f[:, None] + g[None, :] - cost) / eps)


def entropic_plan_np(
    a: np.ndarray | None,
    b: np.ndarray | None,
    cost: np.ndarray,
    reg: float,
    *,
    tol: float = SINKHORN_TOL,
    max_iter: int = SINKHORN_MAX_ITER,
) -> np.ndarray:
    """:func:`scaled_sinkhorn_plan` with numpy in and out (CPU, float64); ``None`` weights are
    uniform."""
    plan = scaled_sinkhorn_plan(
        torch.as_tensor(np.asarray(cost, dtype=np.float64)), reg, a=a, b=b, tol=tol,
        max_iter=max_iter,
    )  # fmt: skip
    return plan.numpy()
