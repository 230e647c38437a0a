"""The torch core on tensors alone: couplings, paths, training, integration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trajflow.core import (
    IndependentCoupling,
    MinibatchOTCoupling,
    MixtureObjective,
    PairwiseObjective,
    PlanCoupling,
    TrainConfig,
    VelocityNet,
    bridge_path,
    build_coupling,
    entropic_ot_plan,
    exact_ot_plan,
    integrate_ode,
    integrate_sde,
    optimise,
    straight_path,
)
from trajflow.core.objectives import within_spread
from trajflow.core.plans import SINKHORN_TOL, scaled_sinkhorn_plan


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_exact_plan_recovers_shifted_permutation():
    x0 = torch.randn(50, 3, generator=gen())
    perm = torch.randperm(50, generator=gen(1))
    x1 = x0[perm] + 0.01
    plan = exact_ot_plan(x0, x1)
    assert plan.shape == (50, 50)
    assert torch.allclose(plan.sum(1), torch.full((50,), 1 / 50), atol=1e-6)
    i, j = PlanCoupling(plan).sample(1000, gen())
    # x1[j] must be the (shifted) copy of x0[i]: the OT plan undoes the permutation.
    assert torch.allclose(x1[j] - x0[i], torch.full((1000, 3), 0.01), atol=1e-5)


def test_entropic_plan_has_uniform_marginals_and_is_diffuse():
    x0, x1 = torch.randn(40, 2, generator=gen()), torch.randn(60, 2, generator=gen(1)) + 1
    plan = entropic_ot_plan(x0, x1, reg=1.0)
    assert torch.allclose(plan.sum(1), torch.full((40,), 1 / 40), atol=1e-5)
    assert torch.allclose(plan.sum(0), torch.full((60,), 1 / 60), atol=1e-5)
    assert (plan > 1e-8).sum() > 40 + 60  # more than an exact plan's support
    with pytest.raises(ValueError, match="positive"):
        entropic_ot_plan(x0, x1, reg=0.0)


def _clusters(n: int, m: int, dim: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(4, dim))
    x0 = centres[rng.integers(4, size=n)] + rng.normal(size=(n, dim))
    x1 = centres[rng.integers(4, size=m)] + rng.normal(size=(m, dim)) + 1.0
    return x0, x1


@pytest.mark.parametrize("rel_reg", [5e-2, 1e-2])
def test_scaled_sinkhorn_matches_pot(rel_reg):
    """At a tight tolerance the epsilon-scaling solve is POT's entropic plan (same objective).
    (At 1e-3 POT's own sinkhorn_log does not converge on this case in 50,000 iterations.)"""
    ot = pytest.importorskip("ot")
    x0, x1 = _clusters(40, 30)
    cost = ot.dist(x0, x1)
    cost /= cost.mean()
    a = np.random.default_rng(1).uniform(0.5, 1.5, size=40)
    a /= a.sum()
    b = ot.unif(30)
    ref = ot.bregman.sinkhorn_log(a, b, cost, rel_reg, numItermax=20_000, stopThr=1e-12)
    plan = scaled_sinkhorn_plan(torch.as_tensor(cost), rel_reg, a=a, b=b, tol=1e-11).numpy()
    np.testing.assert_allclose(plan, ref, atol=1e-10)
    assert float((plan * cost).sum()) == pytest.approx(float((ref * cost).sum()), rel=1e-8)


def test_scaled_sinkhorn_meets_marginals_at_moscots_epsilon():
    x0, x1 = _clusters(300, 200, dim=20, seed=3)
    cost = torch.cdist(torch.as_tensor(x0), torch.as_tensor(x1)).pow(2)
    cost = cost / cost.mean()
    b = np.random.default_rng(2).uniform(size=200)
    plan = scaled_sinkhorn_plan(cost, 1e-3, b=b)
    assert plan.dtype == torch.float64 and torch.isfinite(plan).all()
    assert float((plan.sum(1) - 1 / 300).abs().sum()) < SINKHORN_TOL
    np.testing.assert_allclose(plan.sum(0).numpy(), b / b.sum(), rtol=1e-5)  # float32 sums
    # at moscot's epsilon the plan is close to the exact one: its cost within 1%
    exact = float(
        (exact_ot_plan(torch.as_tensor(x0), torch.as_tensor(x1), b=b).double() * cost).sum()
    )
    assert exact * 0.999 <= float((plan * cost).sum()) < exact * 1.01


def test_scaled_sinkhorn_warns_at_its_cap_and_checks_arguments():
    x0, x1 = _clusters(50, 40)
    cost = torch.cdist(torch.as_tensor(x0), torch.as_tensor(x1)).pow(2)
    with pytest.warns(RuntimeWarning, match=r"Sinkhorn stopped after 3 iterations \(max_iter=3\)"):
        plan = scaled_sinkhorn_plan(cost / cost.mean(), 1e-3, max_iter=3)
    assert torch.isfinite(plan).all()  # approximate, but a plan
    for bad, match in (
        ({"reg": 0.0}, "positive"),
        ({"tol": 0.0}, "tol"),
        ({"max_iter": 0}, "max_iter"),
    ):
        kw = {"reg": 1e-3, **bad}
        with pytest.raises(ValueError, match=match):
            scaled_sinkhorn_plan(cost, kw.pop("reg"), **kw)


def test_independent_and_minibatch_couplings_index_ranges():
    x0, x1 = torch.randn(30, 2), torch.randn(20, 2)
    for coupling in (
        IndependentCoupling(30, 20, torch.device("cpu")),
        MinibatchOTCoupling(x0, x1, "exact"),
        MinibatchOTCoupling(x0, x1, "entropic", reg=0.5),
    ):
        i, j = coupling.sample(16, gen())
        assert i.shape == j.shape == (16,)
        assert int(i.max()) < 30 and int(j.max()) < 20


def test_build_coupling_strategy_and_errors():
    x0, x1 = torch.randn(10, 2), torch.randn(12, 2)
    assert isinstance(build_coupling("exact", x0, x1), PlanCoupling)
    large = build_coupling("exact", x0, x1, max_full_entries=50, generator=gen())
    assert isinstance(large, PlanCoupling) and large.n_support >= 2 * 12  # a bank plan
    with pytest.raises(ValueError, match="pass a generator"):
        build_coupling("exact", x0, x1, strategy="bank")
    assert isinstance(build_coupling("exact", x0, x1, strategy="minibatch"), MinibatchOTCoupling)
    assert isinstance(build_coupling("independent", x0, x1), IndependentCoupling)
    with pytest.raises(ValueError, match="Unknown coupling kind"):
        build_coupling("sinkhorn", x0, x1)
    with pytest.raises(ValueError, match="positive reg"):
        build_coupling("entropic", x0, x1)
    with pytest.raises(ValueError, match="strategy"):
        build_coupling("exact", x0, x1, strategy="sometimes")


def test_paths_end_points_and_velocity():
    x0, x1 = torch.zeros(5, 2), torch.ones(5, 2)
    noise = torch.randn(5, 2, generator=gen())
    xs, us = straight_path(x0, x1, torch.full((5, 1), 0.25), 0.0, noise)
    assert torch.allclose(xs, torch.full((5, 2), 0.25)) and torch.allclose(us, x1 - x0)
    xs, us, lam = bridge_path(x0, x1, torch.full((5, 1), 0.5), 1.0, noise)
    # At s = 1/2 the bridge is widest (sd sigma/2) and its flow velocity is the straight one.
    assert torch.allclose(lam, torch.full((5, 1), 0.5))
    assert torch.allclose(us, x1 - x0, atol=1e-6)
    assert torch.allclose(xs, 0.5 + 0.5 * noise)


def test_restoring_offset_is_shed_along_the_path():
    """restore: the path starts at x0 + e, ends at x1, and its velocity is the derivative of
    its position (x1 - x0 - e), so the field learns to remove an offset e by the next time."""
    x0, x1 = torch.zeros(5, 2), torch.ones(5, 2)
    noise, e = torch.randn(5, 2, generator=gen()), torch.randn(5, 2, generator=gen(1))
    at = {s: straight_path(x0, x1, torch.full((5, 1), s), 0.0, noise, restore=e) for s in (0, 1)}
    assert torch.allclose(at[0][0], x0 + e) and torch.allclose(at[1][0], x1)
    assert torch.allclose(at[0][1], x1 - x0 - e) and torch.allclose(at[1][1], x1 - x0 - e)
    with pytest.raises(ValueError, match="restore must be >= 0, and 0 unless path='straight'"):
        PairwiseObjective([x0, x1], [0.0, 1.0], [None], path="bridge", sigma=1.0, restore=0.3)


def test_restoring_offset_follows_the_spread_within_time_points():
    """The offset's width per dimension is the populations' own spread within each time point
    (mean square 1, so ``restore`` stays its root-mean-square width): dimension 1 moves far
    between the times but is narrow within them, so it gets the narrow offset."""
    g = gen()
    a = torch.randn(4000, 2, generator=g) * torch.tensor([2.0, 0.5])
    b = torch.randn(4000, 2, generator=g) * torch.tensor([2.0, 0.5]) + torch.tensor([0.0, 30.0])
    w = within_spread([a, b])
    assert torch.allclose(w.pow(2).mean(), torch.tensor(1.0))
    assert torch.allclose(w, torch.tensor([4.0, 0.25]).div(2.125).sqrt(), rtol=0.05)
    objective = PairwiseObjective([a, b], [0.0, 1.0], [None], restore=0.3)
    assert torch.equal(objective._restore_width, 0.3 * w)
    # a dimension constant within every time point gets none; all-constant: isotropic
    flat = within_spread([torch.stack([torch.randn(50, generator=g), torch.zeros(50)], 1)])
    assert flat[1] == 0 and flat[0] > 0
    assert torch.equal(within_spread([torch.ones(5, 3), torch.zeros(5, 3)]), torch.ones(3))


def test_integrators_on_constant_field():
    x0 = torch.zeros(4, 2)
    field = lambda x, t: torch.ones_like(x)  # noqa: E731
    for solver in ("euler", "rk4", "dopri5"):
        out = integrate_ode(field, x0, torch.tensor([0.0, 0.5, 2.0]), solver=solver, n_steps=10)
        assert out.shape == (3, 4, 2)
        assert torch.allclose(out[-1], torch.full((4, 2), 2.0), atol=1e-4)
    back = integrate_ode(field, x0, torch.tensor([1.0, 0.0]), n_steps=5)
    assert torch.allclose(back[-1], torch.full((4, 2), -1.0), atol=1e-5)
    sde = integrate_sde(field, 0.0, x0, torch.tensor([0.0, 1.0]), n_steps=10, generator=gen())
    assert torch.allclose(sde[-1], torch.ones(4, 2), atol=1e-5)
    noisy = integrate_sde(
        field, 1.0, torch.zeros(4000, 1), torch.tensor([0.0, 1.0]), generator=gen()
    )
    assert abs(float(noisy[-1].std()) - 1.0) < 0.06
    with pytest.raises(ValueError, match="Unknown solver"):
        integrate_ode(field, x0, torch.tensor([0.0, 1.0]), solver="leapfrog")


def test_auto_solver_ends_its_steps_on_the_outputs_and_beats_euler():
    """``solver="auto"``: rk4 in a twelfth of the (Euler) steps, every output time a step's end
    (no interpolation between steps), forward and backward; on a rotation it is far closer to
    the exact solution than 100 Euler steps."""
    from trajflow.core.integrate import steps_through

    grid = steps_through(torch.tensor([0.0, 0.5, 2.0]), 8)
    assert torch.allclose(grid, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]))
    assert len(steps_through(torch.linspace(0, 1, 20), 3)) == 20  # at least a step per interval
    rotate = lambda x, t: torch.stack([-x[:, 1], x[:, 0]], dim=1)  # noqa: E731
    x0 = torch.tensor([[1.0, 0.0]])
    for times in (torch.linspace(0, 2, 20), torch.tensor([2.0, 0.5, 0.0])):
        exact = torch.stack([torch.cos(times - times[0]), torch.sin(times - times[0])], dim=1)
        auto = integrate_ode(rotate, x0, times, solver="auto", n_steps=100)[:, 0]
        euler = integrate_ode(rotate, x0, times, solver="euler", n_steps=100)[:, 0]
        assert (auto - exact).abs().max() < 1e-4 < 1e-2 < (euler - exact).abs().max()


@pytest.mark.parametrize(
    "path,kind,reg",
    [("straight", "exact", None), ("straight", "independent", None), ("bridge", "entropic", 0.5)],
)
def test_training_lowers_loss(path, kind, reg):
    torch.manual_seed(0)
    pops = [torch.randn(100, 2, generator=gen(k)) + 3 * k for k in range(3)]
    couplings = [build_coupling(kind, pops[k], pops[k + 1], reg=reg) for k in range(2)]
    net = VelocityNet(2, hidden=32, n_layers=2)
    score = VelocityNet(2, hidden=32, n_layers=2) if path == "bridge" else None
    objective = PairwiseObjective(
        pops, [0.0, 1.0, 2.0], couplings, path=path, sigma=0.3 if path == "bridge" else 0.1,
        batch_size=64,
    )  # fmt: skip
    cfg = TrainConfig(n_steps=300, check_every=25)
    result = optimise(objective, net, cfg, generator=gen(), score_net=score, progress=False)
    assert result.steps_done == 300 and not result.interrupted
    assert np.mean(result.losses[-3:]) < 0.5 * np.mean(result.losses[:2])


def test_train_config_rejects_bad_values():
    for bad in (
        {"n_steps": 0},
        {"n_steps": True},
        {"lr": 0.0},
        {"weight_decay": -1.0},
        {"lr_schedule": "step"},
        {"ema": 1.0},
    ):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_objectives_reject_bad_values():
    pops = [torch.randn(20, 2, generator=gen(k)) for k in range(2)]
    couplings = [build_coupling("exact", pops[0], pops[1])]
    for bad in (
        {"batch_size": -1},
        {"path": "curvy"},
        {"path": "bridge", "sigma": 0.0},
        {"sigma": -0.1},
    ):
        with pytest.raises(ValueError):
            PairwiseObjective(pops, [0.0, 1.0], couplings, **bad)
    with pytest.raises(ValueError, match="strictly increasing"):
        PairwiseObjective(pops, [1.0, 1.0], couplings)


# --------------------------------------------------------------------------- bank couplings
def test_fused_draws_follow_every_coupling_and_stream_until_static():
    from trajflow.core.bank import StreamingBank

    pops = [torch.randn(n, 2, generator=gen(n)) for n in (3, 4, 2)]
    plans = [torch.rand(3, 4, generator=gen(1)), torch.rand(4, 2, generator=gen(2))]
    plans[0][0, 1] = 0.0  # a pair off the support
    bends = [torch.randn(int((p > 0).sum()), 2, generator=gen(3)) for p in plans]
    obj = PairwiseObjective(pops, [0.0, 1.0, 2.0], [PlanCoupling(p) for p in plans],
                            batch_size=20_000, bends=bends)  # fmt: skip
    assert obj.static
    obj._fused = obj._fuse()
    x0, x1, bend = obj._draw_fused(gen(4))
    cells = torch.cat(pops)
    for k, plan in enumerate(plans):  # the first 20,000 draws are pair 0's, then pair 1's
        part = slice(k * 20_000, (k + 1) * 20_000)
        i = torch.cdist(x0[part], pops[k]).argmin(1)  # which cells were drawn
        j = torch.cdist(x1[part], pops[k + 1]).argmin(1)
        freq = torch.bincount(i * plan.shape[1] + j, minlength=plan.numel()) / 20_000
        np.testing.assert_allclose(freq, (plan / plan.sum()).flatten(), atol=0.012)
        # each draw's bend is its own support pair's
        rows, cols = PlanCoupling(plan).support_pairs()
        support = {(int(r), int(c)): b for r, c, b in zip(rows, cols, bends[k], strict=True)}
        for a in range(0, 20_000, 997):
            want = support[int(i[a]), int(j[a])]
            assert torch.equal(bend[part][a], want)
    assert torch.all(torch.isin(x0, cells).all(1))
    # an unbalanced bank still growing draws coupling by coupling; whole, it is fused
    x = [torch.randn(n, 2, generator=gen(n)) for n in (300, 240, 280)]

    def banks(**kw):
        kw.update(batch=20, ramp_steps=3, chunk=4)
        return [StreamingBank("exact", x[k], x[k + 1], generator=gen(7 + k), **kw) for k in (0, 1)]

    obj = PairwiseObjective(x[:2], [0.0, 1.0], banks(reg_m=1.0)[:1], batch_size=8)
    for step in range(5):
        assert obj.static == (step > 3)  # step 3 takes the last chunk
        obj.loss(VelocityNet(2), gen(step))
    assert obj._fused and not obj._uniform
    # balanced banks: every step draws all its pairs at once, uniformly among the pairs each
    # bank has so far: the very draws each bank makes on its own, growing or whole
    obj, twins = PairwiseObjective(x, [0.0, 1.0, 2.0], banks(), batch_size=8), banks()
    assert obj._uniform
    for step in range(5):
        assert obj.static == (step > 3)
        x0, x1, _ = obj._draw_banks(gen(step))
        g = gen(step)
        for k, twin in enumerate(twins):
            i, j = twin.sample(8, g)
            assert torch.equal(x0[8 * k : 8 * (k + 1)], x[k][i])
            assert torch.equal(x1[8 * k : 8 * (k + 1)], x[k + 1][j])
    assert obj._fused is None


def test_exact_bank_pairs_every_cell_by_exact_minibatch_assignment():
    from scipy.optimize import linear_sum_assignment

    from trajflow.core.bank import bank_coupling

    x0 = torch.randn(300, 3, generator=gen(1))
    x1 = torch.randn(200, 3, generator=gen(2)) + 2.0
    bank = bank_coupling("exact", x0, x1, generator=gen(3), batch=50, rounds=2)
    rows, cols = bank.support_pairs()
    # every source cell twice (2 rounds over the larger side), every target cell at least twice
    assert torch.bincount(rows, minlength=300).eq(2).all()
    assert torch.bincount(cols, minlength=200).ge(2).all()
    again = bank_coupling("exact", x0, x1, generator=gen(3), batch=50, rounds=2)
    assert torch.equal(again.support_pairs()[1], cols)  # seeded, so reproducible
    # the first minibatch of the first round is an exact assignment (same draws as the bank's)
    g = gen(3)
    i = torch.randperm(300, generator=g)[:50]
    torch.randperm(300, generator=g)  # the second round's source cells
    j = torch.randperm(200, generator=g)[:50]
    cost = torch.cdist(x0[i].double(), x1[j].double()).pow(2).numpy()
    _, c = linear_sum_assignment(cost)
    chosen = {(int(a), int(b)) for a, b in zip(i, j[c], strict=True)}
    assert chosen <= set(zip(rows.tolist(), cols.tolist(), strict=True))
    i0, j0 = bank.sample(1000, gen(4))
    assert i0.max() < 300 and j0.max() < 200


def test_bank_cost_per_draw_does_not_grow_with_the_populations():
    from trajflow.core.bank import bank_coupling

    for n in (500, 5000):
        x0, x1 = torch.randn(n, 2, generator=gen(1)), torch.randn(n, 2, generator=gen(2))
        bank = bank_coupling("exact", x0, x1, generator=gen(0))
        assert 2 * n <= bank.n_support <= 2 * (n + 128)  # linear in n, never n x n
        i, j = bank.sample(128, gen(5))
        assert i.shape == j.shape == (128,)


def test_streaming_bank_follows_its_schedule_and_ends_as_the_whole_bank():
    from trajflow.core.bank import StreamingBank, bank_coupling, start_streams

    x0 = torch.randn(600, 3, generator=gen(1))
    x1 = torch.randn(500, 3, generator=gen(2)) + 2.0
    kw = {"generator": gen(3), "batch": 50, "rounds": 2}
    bank = StreamingBank("exact", x0, x1, ramp_steps=10, head=2, chunk=3, **kw)
    assert bank.n_chunks == 8  # 2 rounds x 12 minibatches of 50, 3 per chunk
    assert [bank.chunks_at(k) for k in (0, 1, 5, 9, 10, 50)] == [2, 3, 5, 8, 8, 8]
    pool = start_streams([bank])
    rows, _ = bank.sample(4000, gen(4))  # step 0: the first two chunks (6 minibatches) only
    first = set(bank._batches[0][0].flatten().tolist() + bank._batches[1][0].flatten().tolist())
    assert set(rows.tolist()) <= first and not bank.complete
    for _ in range(9):
        bank.sample(10, gen(5))
    assert bank.complete  # step 9 drew from every chunk
    pool.shutdown()
    # whole, it is the bank solved ahead: the same minibatches, the same exact assignments
    ahead = bank_coupling("exact", x0, x1, **{**kw, "generator": gen(3)})
    for got, want in zip(bank.to_plan().support_pairs(), ahead.support_pairs(), strict=True):
        assert torch.equal(got, want)
    # unstarted, it solves on the calling thread, with the same result
    again = StreamingBank("exact", x0, x1, ramp_steps=0, chunk=3, **{**kw, "generator": gen(3)})
    assert torch.equal(again.to_plan().support_pairs()[1], ahead.support_pairs()[1])
    with pytest.raises(ValueError, match="ramp_steps"):
        StreamingBank("exact", x0, x1, ramp_steps=-1, **kw)


def test_streaming_entropic_bank_is_reproducible_and_follows_the_plan():
    from trajflow.core.bank import StreamingBank, start_streams

    x0 = torch.randn(400, 2, generator=gen(1))
    x1 = x0 + torch.tensor([1.0, 0.0])
    draws = []
    for _ in range(2):
        bank = StreamingBank("entropic", x0, x1, generator=gen(2), reg=0.1, batch=50,
                             ramp_steps=3, chunk=2)  # fmt: skip
        pool = start_streams([bank])
        draws.append([bank.sample(500, gen(k)) for k in range(5)])
        pool.shutdown()
    for (i, j), (i2, j2) in zip(*draws, strict=True):
        assert torch.equal(i, i2) and torch.equal(j, j2)  # threads do not change the draws
    i, j = draws[0][-1]
    shift = (x1[j] - x0[i]).mean(0)
    assert 0.85 < float(shift[0]) < 1.15 and abs(float(shift[1])) < 0.15


@pytest.mark.parametrize("kwargs", [{"reg": 0.1}, {"reg": 0.1, "reg_m": 10.0}])
def test_entropic_and_unbalanced_banks_follow_the_plan(kwargs):
    from trajflow.core.bank import bank_coupling

    x0 = torch.randn(400, 2, generator=gen(1))
    x1 = x0 + torch.tensor([1.0, 0.0])  # a pure shift: OT pairs each cell near its own copy
    bank = bank_coupling("entropic", x0, x1, generator=gen(2), batch=100, **kwargs)
    i, j = bank.sample(2000, gen(3))
    shift = (x1[j] - x0[i]).mean(0)
    # unbalanced OT lets far pairs lose mass, so its mean displacement comes out shorter
    low = 0.85 if "reg_m" not in kwargs else 0.6
    assert low < float(shift[0]) < 1.15 and abs(float(shift[1])) < 0.15, shift
    # the partner is much closer to the cell's own copy than a random target (about 1.8)
    assert float((x1[j] - x1[i]).norm(dim=1).mean()) < 0.8


def test_batched_sinkhorn_matches_one_at_a_time():
    a = torch.randn(3, 40, 2, generator=gen(1))
    b = torch.randn(3, 30, 2, generator=gen(2))
    together = entropic_ot_plan(a, b, 0.5)
    for k in range(3):
        torch.testing.assert_close(
            together[k], entropic_ot_plan(a[k], b[k], 0.5), atol=1e-6, rtol=1e-4
        )


def test_sde_on_a_decreasing_grid_is_the_reverse_time_sde():
    """Brownian motion from N(0, 1) with diffusion g has marginals N(0, 1 + g^2 t), score
    -x / (1 + g^2 t) and probability-flow velocity -g^2/2 score. Started from its marginal at
    t = 1, Euler-Maruyama on the decreasing grid with the reverse drift (v - g^2/2 score) returns
    the marginals at t = 0.5 and 0 (variance 1.5 and 1); its forward drift instead would
    keep widening them."""
    g, n = 1.0, 20_000
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(n, 2, generator=gen) * (1 + g**2) ** 0.5
    score = lambda x, t: -x / (1 + g**2 * t)  # noqa: E731
    reverse = lambda x, t: -(g**2) * score(x, t)  # v - g^2/2 s with v = -g^2/2 s  # noqa: E731
    grid = torch.tensor([1.0, 0.5, 0.0])
    out = integrate_sde(reverse, g, x1, grid, n_steps=200, generator=gen)
    assert out.shape == (3, n, 2)
    np.testing.assert_allclose(out[1].var(0).numpy(), [1.5, 1.5], rtol=0.05)
    np.testing.assert_allclose(out[2].var(0).numpy(), [1.0, 1.0], rtol=0.05)
    wrong = integrate_sde(lambda x, t: 0 * x, g, x1, grid, n_steps=200, generator=gen)
    assert (wrong[2].var(0) > 2.5).all()  # the forward drift run backwards only adds noise
    with pytest.raises(ValueError, match="monotonic"):
        integrate_sde(reverse, g, x1, torch.tensor([0.0, 1.0, 0.5]), generator=gen)


def test_a_mixture_of_objectives_weights_their_losses():
    pops = [torch.randn(40, 3, generator=gen(1)), torch.randn(50, 3, generator=gen(2)) + 2.0]
    times = [0.0, 1.0]
    coupling = build_coupling("exact", pops[0], pops[1])
    straight = PairwiseObjective(pops, times, [coupling], batch_size=16)
    wide = PairwiseObjective(pops, times, [coupling], sigma=0.5, batch_size=16)
    net = VelocityNet(3, hidden=8)
    mixture = MixtureObjective([straight, wide], [3.0, 1.0])
    assert mixture.weights == [0.75, 0.25] and mixture.static
    g = gen(7)  # the parts draw one after the other from the same generator
    apart = 0.75 * straight.loss(net, g) + 0.25 * wide.loss(net, g)
    torch.testing.assert_close(mixture.loss(net, gen(7)), apart)
    with pytest.raises(ValueError, match="at least two objectives"):
        MixtureObjective([straight])
    with pytest.raises(ValueError, match="one positive number per part"):
        MixtureObjective([straight, wide], [1.0, 0.0])
    bridge = PairwiseObjective(pops, times, [coupling], path="bridge", sigma=1.0, batch_size=16)
    with pytest.raises(ValueError, match="cannot train a score"):
        MixtureObjective([straight, bridge])
