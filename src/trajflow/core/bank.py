"""Bank couplings: minibatch OT solved ahead, for populations too large for one full plan.

Both populations are cut into equal-size random minibatches that cover every cell, each pair of
minibatches is coupled as minibatch OT-CFM couples it (Tong et al. 2023; Fatras et al. 2021),
and the pairs form one sparse plan that training steps draw from at a cost independent of the
population sizes. No OT solver runs inside the training loop.

- :func:`bank_coupling`: the whole bank, solved before training, as a fixed
  :class:`~trajflow.core.couplings.PlanCoupling` (what bends and chains need: a support).
- :class:`StreamingBank`: the same bank solved on a thread pool *while training runs*. Steps
  draw from the minibatches solved so far, following a fixed schedule, so a fit does not
  depend on how fast the solver is; the set-up of a large course overlaps the training loop
  (100,000 cells x 10 time points: most of the set-up; benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .couplings import CouplingKind, PlanCoupling
from .parallel import parallel_map, solver_workers
from .plans import UNBALANCED_EXACT_REG, as_weights, entropic_ot_plan, sq_cost, unbalanced_ot_plan

#: Cells per side of each minibatch a bank coupling pairs, and how many random partitions of the
#: populations it pairs (each cell gets about this many partners).
BANK_BATCH = 128
BANK_ROUNDS = 2
#: From this many cells on the larger side, one partition is enough (``rounds=None``): such a
#: bank already holds more pairs than a fit needs, and the second round only doubled the
#: set-up (held-out W1, 10 time points x 30 dims, 3 seeds: at 20,000 cells 0.6053 with one
#: round and with two; at 100,000 cells 0.6047 vs 0.6046, set-up 11.7 s vs 21.1 s;
#: benchmarks/README.md, Couplings at scale). Smaller populations keep two rounds (Weinreb's
#: ot-cfm W1 0.581 with two, 0.583 with one).
BANK_ONE_ROUND_CELLS = 10_000
#: Pairs drawn from each minibatch's entropic / unbalanced plan, per cell of the minibatch.
BANK_DRAWS = 4
#: Sinkhorn iterations per minibatch plan of an entropic / unbalanced bank (at most).
BANK_SINKHORN_ITER = 200
#: Fraction of a fit's steps after which a streaming bank is whole: the last quarter of every
#: fit draws from every pair, the first three quarters overlap the solver with training.
#: 100,000 cells x 10 time points, 3000 steps, 2 cores: whole fit 12.6 / 11.1 / 10.6 s for
#: 0.5 / 0.75 / 1.0, held-out W1 0.6047 / 0.6046 / 0.6047; 0.75 keeps every minibatch in
#: use for a quarter of the fit (at 1.0 the last ones are barely drawn).
STREAM_RAMP = 0.75
#: Minibatches per task of a streaming bank: about 40 ms of exact assignments (128 x 128), so
#: the pairs arrive in small steps and a thread hand-off costs nothing next to the work.
STREAM_CHUNK = 32


def _cover(
    n: int, size: int, weights: np.ndarray | None, generator: torch.Generator, device: torch.device
) -> Tensor:
    """``size`` cell indices: random permutations of all ``n`` cells back to back (every cell as
    often as the others), or draws in proportion to ``weights``."""
    if weights is not None:
        w = torch.as_tensor(weights, device=device)
        return torch.multinomial(w, size, replacement=True, generator=generator)
    perms = [torch.randperm(n, generator=generator, device=device) for _ in range(-(-size // n))]
    return torch.cat(perms)[:size]


def _minibatches(
    x0: Tensor,
    x1: Tensor,
    generator: torch.Generator,
    source_weights: Tensor | np.ndarray | None,
    target_weights: Tensor | np.ndarray | None,
    batch: int | None,
    rounds: int | None,
) -> tuple[Tensor, Tensor]:
    """Cell indices ``(n_batches, m)`` of every source and target minibatch of a bank
    (``batch=None``: :data:`BANK_BATCH`; ``rounds=None``: by population size)."""
    device, n0, n1 = x0.device, len(x0), len(x1)
    batch = BANK_BATCH if batch is None else batch
    if rounds is None:
        rounds = 1 if max(n0, n1) >= BANK_ONE_ROUND_CELLS else BANK_ROUNDS
    m = min(batch, n0, n1)
    n_batches = rounds * -(-max(n0, n1) // m)
    wa = as_weights(source_weights, n0, "source_weights")
    wb = as_weights(target_weights, n1, "target_weights")
    i = _cover(n0, n_batches * m, wa, generator, device).view(n_batches, m)
    j = _cover(n1, n_batches * m, wb, generator, device).view(n_batches, m)
    return i, j


def _solve_minibatches(
    kind: CouplingKind,
    x0: Tensor,
    x1: Tensor,
    bi: Tensor,
    bj: Tensor,
    reg: float | None,
    reg_m: float | None,
    generator: torch.Generator,
    solve_map: Callable = parallel_map,
) -> tuple[Tensor, Tensor, Tensor]:
    """Source cells, target cells and masses of the pairs that the minibatches ``(bi, bj)``
    (``(k, m)`` cell indices each) contribute to a bank, minibatch by minibatch."""
    a, b = x0[bi], x1[bj]
    m = bi.shape[1]
    if kind == "exact" and reg_m is None:
        # exact OT between two equal uniform minibatches is a permutation; the assignment's
        # rows come back as 0..m-1, its columns are the permutation
        cost = sq_cost(a.double(), b.double())
        # Row then column minima subtracted: the same assignments (a constant per row or column
        # changes no assignment's rank), found ~25% faster by scipy's shortest augmenting path
        # solver on minibatches of consecutive time points (1.03 vs 1.37 ms for 128 x 128).
        cost = cost - cost.amin(2, keepdim=True)
        cost = (cost - cost.amin(1, keepdim=True)).cpu().numpy()
        perms = solve_map(lambda c: linear_sum_assignment(c)[1], [(c,) for c in cost])
        perm = torch.as_tensor(np.stack(perms), device=bi.device)
        cols = torch.gather(bj, 1, perm).flatten()
        return bi.flatten(), cols, torch.ones(len(cols), dtype=torch.float64, device=bi.device)
    # Capped iterations: a minibatch is itself a noisy sample of its populations, so a plan
    # whose marginals are off by ~0.5% (200 iterations, measured on 30-d data at reg 2) draws
    # pairs as well as a converged one, at a tenth of the cost.
    if reg_m is not None:
        ureg = UNBALANCED_EXACT_REG if kind == "exact" else float(reg)
        plan = unbalanced_ot_plan(a, b, ureg, float(reg_m), n_iter=BANK_SINKHORN_ITER)
    else:
        plan = entropic_ot_plan(a, b, float(reg), n_iter=BANK_SINKHORN_ITER)
    plan = plan.double()
    total = plan.sum(dim=(-2, -1))  # unbalanced: how much mass each minibatch keeps
    flat = (plan / total[:, None, None]).flatten(1)
    draws = torch.multinomial(flat, BANK_DRAWS * m, replacement=True, generator=generator)
    rows = torch.gather(bi, 1, torch.div(draws, m, rounding_mode="floor")).flatten()
    cols = torch.gather(bj, 1, draws % m).flatten()
    return rows, cols, total[:, None].expand(-1, BANK_DRAWS * m).flatten()


def bank_coupling(
    kind: CouplingKind,
    x0: Tensor,
    x1: Tensor,
    *,
    generator: torch.Generator,
    reg: float | None = None,
    reg_m: float | None = None,
    source_weights: Tensor | np.ndarray | None = None,
    target_weights: Tensor | np.ndarray | None = None,
    batch: int | None = None,
    rounds: int | None = None,
    chunk: int = 256,
) -> PlanCoupling:
    """Minibatch OT solved ahead, once: a fixed sparse plan for populations too large for one
    full plan, so that no OT solver runs inside the training loop.

    Both populations are cut into equal-size random minibatches of ``batch`` cells that cover
    every cell (``rounds`` times over; cells drawn in proportion to the optional weights
    instead; ``rounds=None``: :data:`BANK_ROUNDS`, or one from :data:`BANK_ONE_ROUND_CELLS`
    cells on; ``batch=None``: :data:`BANK_BATCH`), and each pair of minibatches is coupled as minibatch OT-CFM couples it: the exact
    plan between two equal uniform minibatches is a permutation, found by
    ``scipy.optimize.linear_sum_assignment`` (about 0.6-1.4 ms for 128 x 128, on a thread
    pool); entropic and unbalanced plans are solved for many minibatches in one batched
    log-domain Sinkhorn on the device, and :data:`BANK_DRAWS` pairs per cell are drawn from
    each. The pairs form one :class:`~trajflow.core.couplings.PlanCoupling`, so steps draw from
    it at a cost independent of the population sizes, and methods that need a fixed plan's
    support (bends, chains) can use it.
    """
    i, j = _minibatches(x0, x1, generator, source_weights, target_weights, batch, rounds)
    parts = [
        _solve_minibatches(kind, x0, x1, i[s : s + chunk], j[s : s + chunk], reg, reg_m, generator)
        for s in range(0, len(i), chunk)
    ]
    rows, cols, mass = (torch.cat(p) for p in zip(*parts, strict=True))
    return PlanCoupling.from_pairs(rows, cols, mass, (len(x0), len(x1)))


class StreamingBank:
    """A bank coupling (:func:`bank_coupling`'s minibatches and plans) solved while training
    runs.

    The minibatches are cut up front (with ``generator``) and solved in chunks of
    :data:`STREAM_CHUNK` on a thread pool (:func:`start_streams`; the solvers release the GIL, so
    they run beside the training loop). Step ``k`` (the ``k``-th call of :meth:`sample`) draws
    from the pairs of the first ``head + (n_chunks - head) * min(1, k / ramp_steps)`` chunks,
    waiting for them when the solver is behind: the schedule, not the solver's speed, decides
    what a step sees, so a seeded fit is reproducible on any machine. Every chunk has its own
    seed, drawn up front. Once complete (at step ``ramp_steps`` at the latest) it draws from
    all its pairs; an exact balanced bank then holds exactly the pairs :func:`bank_coupling`
    would (entropic and unbalanced banks draw theirs with the chunks' own seeds).

    Parameters
    ----------
    kind, x0, x1, generator, reg, reg_m, source_weights, target_weights, batch, rounds
        As in :func:`bank_coupling`.
    ramp_steps
        The step from which every chunk is used (0: all from the first step).
    head
        Chunks used from the first step on.
    chunk
        Minibatches per chunk (default :data:`STREAM_CHUNK`).
    """

    def __init__(
        self,
        kind: CouplingKind,
        x0: Tensor,
        x1: Tensor,
        *,
        generator: torch.Generator,
        ramp_steps: int,
        reg: float | None = None,
        reg_m: float | None = None,
        source_weights: Tensor | np.ndarray | None = None,
        target_weights: Tensor | np.ndarray | None = None,
        batch: int | None = None,
        rounds: int | None = None,
        head: int = 1,
        chunk: int | None = None,
    ):
        if isinstance(ramp_steps, bool) or not isinstance(ramp_steps, int) or ramp_steps < 0:
            raise ValueError(f"ramp_steps must be an integer >= 0, got {ramp_steps!r}.")
        if isinstance(head, bool) or not isinstance(head, int) or head < 1:
            raise ValueError(
                f"head must be an integer >= 1 (chunks of the first step), got {head!r}."
            )
        self.shape, self.device = (len(x0), len(x1)), x0.device
        self._solve_args = (kind, x0, x1, reg, reg_m)
        chunk = STREAM_CHUNK if chunk is None else chunk
        i, j = _minibatches(x0, x1, generator, source_weights, target_weights, batch, rounds)
        self._batches = [(i[s : s + chunk], j[s : s + chunk]) for s in range(0, len(i), chunk)]
        n_chunks = len(self._batches)
        seeds = torch.randint(2**62, (n_chunks,), generator=generator, device=self.device)
        self._seeds = seeds.tolist()
        per_pair = 1 if kind == "exact" and reg_m is None else BANK_DRAWS
        sizes = [per_pair * bi.numel() for bi, _ in self._batches]
        self._ends = np.cumsum(sizes).tolist()
        total = self._ends[-1]
        self._rows = torch.empty(total, dtype=torch.long, device=self.device)
        self._cols = torch.empty(total, dtype=torch.long, device=self.device)
        self._cumulative = torch.empty(total, dtype=torch.float64, device=self.device)
        self.n_chunks, self.ramp_steps, self.head = n_chunks, ramp_steps, min(head, n_chunks)
        self._futures: list[Future] | None = None
        self._done = 0  # chunks copied into the tables, in order
        self.step = 0

    def solve_chunk(self, c: int) -> tuple[Tensor, Tensor, Tensor]:
        """The pairs of chunk ``c`` (runs on a pool thread)."""
        kind, x0, x1, reg, reg_m = self._solve_args
        gen = torch.Generator(device=self.device).manual_seed(self._seeds[c])
        bi, bj = self._batches[c]
        return _solve_minibatches(kind, x0, x1, bi, bj, reg, reg_m, gen, solve_map=_in_order)

    def chunks_at(self, step: int) -> int:
        """How many chunks step ``step`` draws from."""
        if step >= self.ramp_steps:
            return self.n_chunks
        return self.head + -(-(self.n_chunks - self.head) * step // self.ramp_steps)

    @property
    def complete(self) -> bool:
        """Whether every chunk is in the tables: the steps from now on do the same work on the
        same tensors (what a CUDA graph needs)."""
        return self._done == self.n_chunks

    def tables(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """As :meth:`~trajflow.core.couplings.PlanCoupling.tables` once :attr:`complete`, else
        ``None`` (the pairs are still growing)."""
        return (self._cumulative, self._rows, self._cols) if self.complete else None

    def skip_to(self, step: int) -> None:
        """Continue as if ``step`` steps had drawn already (a resumed fit): the chunks those
        steps used are taken now, so the next step sees the tables an uninterrupted fit saw."""
        self.step = step
        self._take(self.chunks_at(max(step - 1, 0)))

    def _take(self, upto: int) -> None:
        """Copy chunks ``self._done .. upto - 1`` into the tables, waiting for their solves
        (solving here those not started or cancelled)."""
        for c in range(self._done, upto):
            future = None if self._futures is None else self._futures[c]
            if future is None or future.cancelled():
                rows, cols, mass = self.solve_chunk(c)
            else:
                rows, cols, mass = future.result()
            lo = self._ends[c - 1] if c else 0
            hi = self._ends[c]
            self._rows[lo:hi], self._cols[lo:hi] = rows, cols
            base = self._cumulative[lo - 1] if c else 0.0
            self._cumulative[lo:hi] = torch.cumsum(mass, 0) + base
            self._done = c + 1
            if self._futures is not None:
                self._futures[c] = None  # type: ignore[call-overload]  # free the result

    @property
    def uniform(self) -> bool:
        """Whether every pair weighs the same: balanced banks (an exact minibatch plan is a
        permutation; an entropic one sums to 1 per minibatch and its pairs are draws from it).
        A draw is then a uniform index among the pairs solved so far."""
        return self._solve_args[4] is None

    def pairs(self) -> tuple[Tensor, Tensor]:
        """Source and target cells of every pair, in chunk order (the first :meth:`advance`
        entries are filled)."""
        return self._rows, self._cols

    def advance(self) -> int:
        """Take the chunks this step draws from (waiting for their solves) and move to the
        next step; returns how many pairs this step draws from."""
        used = self.chunks_at(self.step)
        self.step += 1
        self._take(used)
        return self._ends[used - 1]

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        end = self.advance()
        cumulative = self._cumulative[:end]
        u = torch.rand(n, generator=generator, device=self.device, dtype=torch.float64)
        k = torch.searchsorted(cumulative, u * cumulative[-1]).clamp_(max=end - 1)
        return self._rows.index_select(0, k), self._cols.index_select(0, k)

    def to_plan(self) -> PlanCoupling:
        """The whole bank as a fixed plan (waits for every chunk)."""
        self._take(self.n_chunks)
        mass = torch.diff(self._cumulative, prepend=self._cumulative.new_zeros(1))
        return PlanCoupling.from_pairs(self._rows, self._cols, mass, self.shape)


def _in_order(fn: Callable, items: Sequence[tuple]) -> list:
    """``[fn(*item) for item in items]`` on the calling thread (a pool thread already)."""
    return [fn(*item) for item in items]


def start_streams(banks: Sequence[StreamingBank]) -> ThreadPoolExecutor | None:
    """Solve the chunks of ``banks`` on a thread pool, in the order training needs them (by
    the first step that draws from each chunk; chunks already taken are skipped). Returns the
    pool (``None`` when there is nothing to solve); shut it down with ``cancel_futures=True``
    to stop early (a cancelled chunk is solved on the calling thread if a step needs it)."""

    def first_step(bank: StreamingBank, c: int) -> int:
        if c < bank.head or bank.ramp_steps == 0:
            return 0
        # smallest step k with chunks_at(k) > c (chunks_at is non-decreasing)
        lo, hi = 0, bank.ramp_steps
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if bank.chunks_at(mid) <= c else (lo, mid)
        return lo

    order = sorted(
        (first_step(bank, c), c, b)
        for b, bank in enumerate(banks)
        for c in range(bank._done, bank.n_chunks)
    )
    if not order:
        return None
    pool = ThreadPoolExecutor(solver_workers(), thread_name_prefix="trajflow-bank")
    for bank in banks:
        bank._futures = [None] * bank.n_chunks  # type: ignore[list-item]
    for _, c, b in order:
        banks[b]._futures[c] = pool.submit(banks[b].solve_chunk, c)  # type: ignore[index]
    return pool
