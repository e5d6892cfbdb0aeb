"""``kkt-defence-aware`` (Koh, Steinhardt & Liang 2018, the constrained KKT attack): every poison
inside the oracle sphere / slab set point by point, the chosen split's value against an
independent solve (SLSQP over the same constraints), ``defence = "box"`` equal to plain ``kkt``,
and a smaller set never giving a better value."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from poisonbench.attack import Scenario
from poisonbench.capabilities import CapabilityError
from poisonbench.host import load_host
from poisonbench.learner import Model
from poisonbench.plugins.attacks.kkt import KKTAttack, _Residual
from poisonbench.plugins.attacks.kkt_defence_aware import DefenceAwareKKT
from poisonbench.plugins.attacks.minmax import OracleFeasibleSet
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.testing import check_attack, toy_dataset

FRACTION = 0.1
BUDGET = 30
D = 3


@pytest.fixture(scope="module")
def toy():
    return toy_dataset(n=120, d=D, seed=2)


@pytest.fixture(scope="module")
def target(toy) -> Model:
    """A worse model than the clean one: the SVM on the training data with a fifth of labels flipped."""
    y = toy.y_train.copy()
    y[::5] *= -1
    return LinearSVM().fit(toy.X_train, y)


def _oracle(toy, defence: str) -> OracleFeasibleSet:
    return OracleFeasibleSet.from_clean(toy.feasible, LinearSVM(), toy.X_train, toy.y_train, FRACTION, defence)


def _run(toy, target, defence: str):
    attack = DefenceAwareKKT(target=target, split_step=0.05, fraction=FRACTION, defence=defence)
    (batch,) = attack.poison(Scenario(toy, LinearSVM(), budget=BUDGET))
    return batch


@pytest.mark.parametrize("defence", ["sphere+slab", "sphere", "slab"])
def test_every_poison_lies_inside_the_oracle_set(toy, target, defence):
    batch = _run(toy, target, defence)
    F = _oracle(toy, defence)
    assert len(batch) == BUDGET
    plain = next(iter(KKTAttack(target=target, split_step=0.05).poison(Scenario(toy, LinearSVM(), budget=BUDGET))))
    outside_plain = 0
    for X, y, must in ((batch.X, batch.y, True), (plain.X, plain.y, False)):
        for x, label in zip(X, y):
            region = F.regions[float(label)]
            z = x - region.centroid
            inside = bool(toy.feasible.contains(x[None], atol=0.0).all())
            if region.sphere_radius is not None:
                inside &= float(np.linalg.norm(z)) <= region.sphere_radius * (1 + 1e-12)
            if region.slab_radius is not None:
                inside &= abs(float(F.direction @ z)) <= region.slab_radius * (1 + 1e-12)
            if must:
                assert inside, (label, x)
            else:
                outside_plain += not inside
    assert outside_plain > 0  # the constraint binds: plain KKT's points leave F


def test_box_is_plain_kkt(toy, target):
    """Without sphere and slab the problem is ``kkt``'s: same split, same value."""
    aware = _run(toy, target, "box")
    plain = next(iter(KKTAttack(target=target, split_step=0.05).poison(Scenario(toy, LinearSVM(), budget=BUDGET))))
    assert aware.diagnostics["n_pos"] == plain.diagnostics["n_pos"]
    assert aware.diagnostics["kkt_objective"] == pytest.approx(plain.diagnostics["kkt_objective"], rel=1e-5, abs=1e-8)


def test_a_smaller_set_never_gives_a_better_value(toy, target):
    values = {d: _run(toy, target, d).diagnostics["kkt_objective"] for d in ("box", "sphere", "sphere+slab")}
    assert values["box"] <= values["sphere"] * (1 + 1e-6) + 1e-9
    assert values["sphere"] <= values["sphere+slab"] * (1 + 1e-6) + 1e-9
    assert values["sphere+slab"] > values["box"] * (1 + 1e-3)  # and here the sanitiser costs the attack


@pytest.mark.parametrize("defence", ["sphere+slab", "sphere", "slab"])
def test_chosen_split_matches_an_independent_solve(toy, target, defence):
    """At the split the attack chose, SLSQP (restarts) on the same objective — ‖∇J(θ_p)‖ with the
    clean margin points' subgradient weights α ∈ [0, 1] free — over the same constraints (box,
    active side of θ_p's margin, sphere, slab) finds no better value, and reaches ours."""
    batch = _run(toy, target, defence)
    n_pos = int(batch.diagnostics["n_pos"])
    F = _oracle(toy, defence)
    learner = LinearSVM()
    residual = _Residual(learner, target, toy.X_train, toy.y_train, BUDGET, True, 1e-6)
    k = residual.A.shape[1]
    p = np.array([n_pos, BUDGET - n_pos]) / residual.total
    w, b = target.w, target.b

    def unpack(v):
        return v[:D], v[D : 2 * D], v[2 * D :]

    def objective(v):
        x_pos, x_neg, alpha = unpack(v)
        r = residual.g + p[0] * -np.append(x_pos, 1.0) + p[1] * np.append(x_neg, 1.0) + residual.A @ alpha
        return float(r @ r)

    constraints = []
    for i, label in ((0, 1.0), (1, -1.0)):
        region = F.regions[label]

        def point(v, i=i):
            return v[i * D : (i + 1) * D]

        constraints.append({"type": "ineq", "fun": lambda v, point=point, s=label: 1.0 - s * (w @ point(v) + b)})
        if region.sphere_radius is not None:
            constraints.append(
                {
                    "type": "ineq",
                    "fun": lambda v, point=point, r=region: r.sphere_radius**2 - np.sum((point(v) - r.centroid) ** 2),
                }
            )
        if region.slab_radius is not None:
            constraints += [
                {
                    "type": "ineq",
                    "fun": lambda v, point=point, r=region: r.slab_radius - F.direction @ (point(v) - r.centroid),
                },
                {
                    "type": "ineq",
                    "fun": lambda v, point=point, r=region: r.slab_radius + F.direction @ (point(v) - r.centroid),
                },
            ]
    bounds = [(lo, hi) for lo, hi in zip(toy.feasible.lo, toy.feasible.hi)] * 2 + [(0.0, 1.0)] * k
    rng = np.random.default_rng(0)
    best = np.inf
    for _ in range(8):
        start = np.concatenate([F.regions[1.0].centroid, F.regions[-1.0].centroid, rng.random(k)])
        start[: 2 * D] += 0.01 * rng.standard_normal(2 * D)
        res = minimize(
            objective,
            start,
            method="SLSQP",
            bounds=bounds,
            constraints=constraints,
            options={"maxiter": 500, "ftol": 1e-14},
        )
        if res.success and all(c["fun"](res.x) >= -1e-9 for c in constraints):
            best = min(best, float(np.sqrt(max(res.fun, 0.0))))
    assert np.isfinite(best)
    ours = batch.diagnostics["kkt_objective"]
    assert ours <= best + 1e-6
    assert best <= ours + 1e-4


def test_contract_and_refusals(toy, target):
    attack = DefenceAwareKKT(target=target, split_step=0.1, fraction=FRACTION)
    check_attack(attack, toy, budget=6, learner=LinearSVM(), feasibility="box")
    with pytest.raises(CapabilityError, match="kkt-defence-aware"):
        next(iter(DefenceAwareKKT(target=target).poison(Scenario(toy, LogisticRegression(), budget=4))))
    with pytest.raises(ValueError, match="budget"):
        next(iter(DefenceAwareKKT(target=target).poison(Scenario(toy, LinearSVM()))))
    host = load_host(load_external=False)
    attack = host.create("attacks", "kkt-defence-aware", target="error:0.1", defence="sphere")
    assert isinstance(attack, DefenceAwareKKT) and attack.needs_budget


@pytest.mark.parametrize("defence", ["sphere+slab", "sphere", "slab"])
def test_bracketed_search_finds_the_grid_minimum_inside_F(toy, target, defence):
    """F_s's perspective keeps the split problem convex in n₊: the bracket around the continuous
    minimiser holds the minimum of every grid point's solve."""
    from poisonbench.plugins.attacks.kkt import _Box, _split_grid
    from poisonbench.plugins.attacks.kkt_defence_aware import SanitiserAwareKKTSearch

    residual = _Residual(LinearSVM(), target, toy.X_train, toy.y_train, BUDGET, True, 1e-6)
    splits = _split_grid(BUDGET, 1 / BUDGET, residual.exact_bias_n_pos())
    box, F = _Box.of(toy.feasible, toy.X_train), _oracle(toy, defence)
    full, failed = SanitiserAwareKKTSearch(residual, box, F).run(splits)
    values = np.array([c.search_value for c in full])
    candidates, _, solved = SanitiserAwareKKTSearch(residual, box, F).bracketed(splits)
    assert failed == 0 and solved <= 4
    assert min(c.search_value for c in candidates) == pytest.approx(values.min(), rel=1e-6, abs=1e-9)
    n_pos = np.array([c.n_pos for c in full])
    n_star = SanitiserAwareKKTSearch(residual, box, F).split_minimiser()
    assert abs(n_star - n_pos[values.argmin()]) <= 1.0 + 1e-6  # the continuous minimiser, to one grid step


@pytest.mark.parametrize("defence", ["sphere+slab", "sphere", "slab"])
def test_the_continuous_problem_at_a_fixed_split_is_the_split_problem(toy, target, defence):
    """The perspective form (z = p·x, F_s multiplied through by p) restricted to p₊ = n₊/(N + n)
    has exactly the value of the split problem at n₊: it is the same problem, rescaled."""
    from poisonbench.plugins.attacks.kkt import _Box
    from poisonbench.plugins.attacks.kkt_defence_aware import SanitiserAwareKKTSearch

    residual = _Residual(LinearSVM(), target, toy.X_train, toy.y_train, BUDGET, True, 1e-6)
    box, F = _Box.of(toy.feasible, toy.X_train), _oracle(toy, defence)
    search = SanitiserAwareKKTSearch(residual, box, F)
    candidates, failed = search.run(np.array([3, 12, 25]))
    assert failed == 0
    for c in candidates:
        share = c.n_pos / residual.total
        problem, _ = search.continuous_problem(lambda q, share=share: [q == share])
        problem.solve(solver="CLARABEL")
        assert problem.value == pytest.approx(c.search_value, rel=1e-6, abs=1e-9)
