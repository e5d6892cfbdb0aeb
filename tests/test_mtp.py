"""The MTP attack (Algorithm 1), its diagnostics and the Theorem-2 lower bound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from poisonbench.attack import Scenario
from poisonbench.capabilities import CapabilityError
from poisonbench.learner import Model
from poisonbench.plugins.attacks.mtp import ModelTargetedPoisoning
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.plugins.lower_bound import certified_lower_bound
from poisonbench.plugins.max_loss_diff import logistic_loss_diff
from poisonbench.plugins.mtp_algorithm import MTPSettings, WeightedPool, run_mtp
from poisonbench.plugins.targets import error_target, save_target
from poisonbench.plugins.theorem2 import theorem2_z
from poisonbench.testing import check_attack, toy_dataset


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def svm_case():
    data = toy_dataset(n=120, d=4, seed=1)
    scenario = Scenario(data, LinearSVM(), subpopulation="corner")
    target = error_target(scenario, 0.2, quantiles=[0.1, 0.3], repeats=[1, 3])
    return scenario, target


def _induced(scenario: Scenario, batches) -> tuple[Model, int]:
    """Fit the learner on D_c ∪ D_p from the batches; return the model and |D_p|."""
    X = np.vstack([scenario.dataset.X_train] + [b.X for b in batches])
    y = np.concatenate([scenario.dataset.y_train] + [b.y for b in batches])
    return scenario.learner.fit(X, y), len(y) - scenario.dataset.n_train


def test_contract_budget_and_file_target(tmp_path):
    data = toy_dataset()
    scenario = Scenario(data, LinearSVM())
    path = tmp_path / "target.npz"
    save_target(path, error_target(scenario, 0.2, quantiles=[0.2], repeats=[5]))
    # onehot = "ignore" (the reference code's search) may set several columns of a one-hot group:
    # only the box holds, as in the Adult campaigns' feasibility = "box"
    attack = ModelTargetedPoisoning(target=f"file:{path}", copies=2)
    batches = check_attack(attack, data, budget=9, feasibility="box")
    assert sum(len(b) for b in batches) == 9  # the last step adds 1 copy, not 2
    assert len(batches[0]) == 0 and batches[0].diagnostics["n_poisons"] == 0


def test_convergence_reaches_epsilon_with_a_falling_trend(svm_case):
    """MTP Theorem 1: the max loss difference to the target falls toward 0."""
    scenario, target = svm_case
    batches = list(run_mtp(scenario, target, MTPSettings(epsilon=0.01, max_poisons=3000)))
    curve = np.array([b.diagnostics["max_loss_diff"] for b in batches])
    assert batches[-1].diagnostics["epsilon_close"] and curve[-1] <= 0.01
    assert curve[0] > 0.1
    blocks = np.array_split(curve, 8)
    means = [blk.mean() for blk in blocks]
    assert spearmanr(np.arange(len(means)), means).statistic < -0.8
    dist = np.array([b.diagnostics["param_distance"] for b in batches])
    assert dist[-1] < 0.2 * dist[0]


def test_diagnostics_keys_and_weights_for_repeated_points(svm_case):
    scenario, target = svm_case
    batches = list(run_mtp(scenario, target, MTPSettings(max_poisons=40)))
    d = batches[-1].diagnostics
    for key in (
        "max_loss_diff",
        "param_distance",
        "test_accuracy",
        "subpop_accuracy",
        "lower_bound",
        "lower_bound_certified",
        "wall_seconds",
        "z",
        "n_poisons",
    ):
        assert key in d
    assert d["n_poisons"] == 40 and d["lower_bound_certified"] is True
    bounds = [b.diagnostics["lower_bound"] for b in batches]
    assert all(b2 >= b1 for b1, b2 in zip(bounds, bounds[1:]))  # a running maximum
    distinct = {(b.y[0], b.X[0].tobytes()) for b in batches if len(b)}
    assert len(distinct) < 40  # vertices repeat: the pool keeps them once, as weights


def test_weighted_pool_weight_equals_copies():
    data = toy_dataset()
    pool = WeightedPool(data.X_train, data.y_train)
    x = np.full(data.n_features, 0.9)
    for _ in range(3):
        pool.add(x, 1.0, 2)
    pool.add(np.zeros(data.n_features), -1.0, 1)
    X, y, w = pool.arrays()
    assert X.shape[0] == data.n_train + 2 and w[-2] == 6.0 and w[-1] == 1.0
    learner = LinearSVM()
    weighted = learner.fit(X, y, sample_weight=w)
    copies = learner.fit(
        np.vstack([data.X_train] + [x] * 6 + [np.zeros(data.n_features)]),
        np.concatenate([data.y_train, np.ones(6), [-1.0]]),
    )
    np.testing.assert_allclose(weighted.theta, copies.theta, atol=1e-6)
    for _ in range(200):  # growing past the initial capacity keeps the clean prefix
        pool.add(np.random.default_rng(_).uniform(size=data.n_features), 1.0, 1)
    np.testing.assert_array_equal(pool.arrays()[0][: data.n_train], data.X_train)


def test_lower_bound_never_exceeds_the_poisons_that_induced_the_model(svm_case):
    """Theorem 2 via the paper's procedure (Algorithm 1 with the induced model as target)."""
    scenario, target = svm_case
    for n_p in (15, 60):
        batches = list(run_mtp(scenario, target, MTPSettings(max_poisons=n_p)))
        induced, used = _induced(scenario, batches)
        assert used == n_p
        lb = certified_lower_bound(scenario, induced, epsilon=0.01, max_poisons=4 * n_p)
        assert lb.certified
        assert 0 < lb.value <= n_p
        assert lb.poisons_at_least <= n_p
        assert np.nanmax(lb.curve) == pytest.approx(lb.value)


def test_attacks_report_the_induced_bound_on_their_last_batch(svm_case, tmp_path):
    """``bound_induced``: MTP's last batch (budget spent or ε-close) and KKT's batch carry the
    paper's bound for the model their poisons induce: certified, ≤ the poisons used, and equal
    to a separate certified_lower_bound run toward that model."""
    from poisonbench.plugins.attacks.kkt import KKTAttack

    scenario, target = svm_case
    path = tmp_path / "target.npz"
    save_target(path, target)
    for budget, epsilon in ((40, None), (400, 0.05)):
        attack = ModelTargetedPoisoning(target=f"file:{path}", epsilon=epsilon, bound_induced=True, bound_epsilon=0.01)
        batches = list(
            attack.poison(Scenario(scenario.dataset, scenario.learner, budget=budget, subpopulation="corner"))
        )
        final = batches[-1].diagnostics
        assert final["final"] and not any("lower_bound_induced" in b.diagnostics for b in batches[:-1])
        used = sum(len(b) for b in batches)
        assert (used == budget) == (epsilon is None)  # stopped by the budget, then by ε-closeness
        induced, _ = _induced(scenario, batches)
        again = certified_lower_bound(
            Scenario(scenario.dataset, scenario.learner, budget=budget), induced, epsilon=0.01, max_poisons=budget
        )
        assert final["lower_bound_induced_certified"] and 0 < final["lower_bound_induced"] <= used
        assert final["lower_bound_induced"] == again.poisons_at_least
        assert final["lower_bound_induced_value"] == pytest.approx(again.value, rel=1e-9)
    kkt = KKTAttack(target=f"file:{path}", bound_induced=True)
    (batch,) = kkt.poison(Scenario(scenario.dataset, scenario.learner, budget=30))
    assert batch.diagnostics["lower_bound_induced_certified"] and 0 < batch.diagnostics["lower_bound_induced"] <= 30


def test_theorem2_z_uses_the_learners_own_loss():
    data = toy_dataset()
    learner = LogisticRegression()
    model = learner.fit(data.X_train, data.y_train)
    target = Model(model.w * 0.3 + 0.1, model.b - 0.2)
    sup = 0.5
    n = data.n_train
    num = logistic_loss_diff(target.theta, model.theta, data.X_train, data.y_train).sum() - n * learner.C_R * (
        learner.regulariser(model) - learner.regulariser(target)
    )
    den = sup + learner.C_R * (learner.regulariser(model) - learner.regulariser(target))
    z = theorem2_z(learner, model, target, data.X_train, data.y_train, sup)
    assert num > 0 and den > 0
    assert z == pytest.approx(num / den, rel=1e-12)
    assert theorem2_z(learner, model, target, data.X_train, data.y_train, -10.0) is None


def test_logistic_attack_runs_and_is_not_certified():
    data = toy_dataset(n=80, d=3, seed=2)
    scenario = Scenario(data, LogisticRegression())
    target = error_target(scenario, 0.2, quantiles=[0.2, 0.4], repeats=[2, 5])
    batches = list(run_mtp(scenario, target, MTPSettings(max_poisons=25, max_steps=300, restarts=3)))
    d = batches[-1].diagnostics
    assert d["lower_bound_certified"] is False and d["max_loss_diff_exact"] is False
    assert batches[-1].diagnostics["max_loss_diff"] < batches[0].diagnostics["max_loss_diff"]


def test_accuracy_goal_stops_early(svm_case):
    scenario, target = svm_case
    data = scenario.dataset
    plain = Scenario(data, scenario.learner)  # no subpopulation: the test accuracy decides
    clean_acc = scenario.learner.fit(data.X_train, data.y_train).accuracy(data.X_test, data.y_test)
    goal = 0.5 * (clean_acc + target.accuracy(data.X_test, data.y_test))
    batches = list(run_mtp(plain, target, MTPSettings(accuracy_goal=goal, max_poisons=3000)))
    assert batches[-1].diagnostics["test_accuracy"] <= goal
    assert all(b.diagnostics["test_accuracy"] > goal for b in batches[:-1])


def test_bad_parameters_raise_value_errors(svm_case):
    scenario, target = svm_case
    with pytest.raises(ValueError, match="stopping rule"):
        next(run_mtp(scenario, target))
    with pytest.raises(ValueError, match="copies"):
        ModelTargetedPoisoning(target="subpop", copies=0)
    with pytest.raises(ValueError, match="solver"):
        ModelTargetedPoisoning(target="subpop", solver="gurobi")

    class Renamed(LinearSVM):
        name = "ridge"

    # any name works: MTP asks for the capability, not for a learner called "svm"
    assert next(run_mtp(Scenario(scenario.dataset, Renamed()), target, MTPSettings(epsilon=0.1))).diagnostics

    class NoLossKind:
        name = "opaque"

        def fit(self, X, y, sample_weight=None, warm_start=None):
            raise AssertionError("never fitted")

    with pytest.raises(
        CapabilityError, match=r"'opaque' is not a LinearModelLearner \(missing: C_R, loss, loss_grad, loss_kind"
    ):
        next(run_mtp(Scenario(scenario.dataset, NoLossKind()), target, MTPSettings(epsilon=0.1)))
    with pytest.raises(ValueError, match="weights"):
        next(run_mtp(scenario, Model(np.ones(2), 0.0), MTPSettings(epsilon=0.1)))
