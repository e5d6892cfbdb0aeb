"""The ``influence`` attack (Koh, Steinhardt & Liang 2018): Koh et al.'s two-point copy start in
inverse class balance, the joint gradient of both poisons against central finite differences,
its effect against label flipping, the box, and the attack contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.capabilities import CapabilityError
from poisonbench.host import load_host
from poisonbench.plugins.attacks.gradient_poisoning import AttackerProblem
from poisonbench.plugins.attacks.influence import InfluencePoisoning, copy_counts
from poisonbench.plugins.attacks.label_flip import RandomLabelFlip
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.testing import check_attack, toy_dataset

D = 4
LEARNERS = [pytest.param(LinearSVM, id="svm"), pytest.param(LogisticRegression, id="logistic")]


def _imbalanced(seed: int = 1):
    """Toy data with about twice as many −1 as +1 points, so the inverse balance is visible."""
    data = toy_dataset(n=120, d=D, seed=seed)
    keep = np.flatnonzero((data.y_train < 0) | (np.arange(data.n_train) % 4 == 0))
    return dataclasses.replace(data, X_train=data.X_train[keep], y_train=data.y_train[keep], subpopulations={})


def _attacker_fit(scenario: Scenario, X_p: np.ndarray, y_p: np.ndarray):
    problem = AttackerProblem.of(scenario, 0)
    X = np.vstack([problem.X[: problem.k], X_p])
    y = np.concatenate([problem.y[: problem.k], y_p])
    model = scenario.learner.fit(X, y)
    return model, problem


def test_copy_counts_are_in_inverse_class_balance():
    y = np.array([-1.0] * 30 + [1.0] * 10)
    assert copy_counts(8, y) == (6, 2)  # 6 = round(8 · 30/40) poisons labelled +1
    assert copy_counts(1, np.array([-1.0, 1.0, 1.0])) == (0, 1)
    assert copy_counts(0, y) == (0, 0)


@pytest.mark.parametrize("learner_cls", LEARNERS)
def test_start_is_two_flipped_training_points_in_inverse_balance(learner_cls):
    """With one fit allowed (``max_steps = 1``) no step is taken: the batch is n_+ copies of a
    class −1 point of the attacker's split labelled +1, then n_- copies of a class +1 point."""
    data = _imbalanced()
    scenario = Scenario(data, learner_cls(), budget=9, seed=3)
    (batch,) = InfluencePoisoning(max_steps=1).poison(scenario)
    problem = AttackerProblem.of(scenario, 0)
    y_fit = problem.y[: problem.k]
    n_pos, n_neg = copy_counts(9, y_fit)
    assert n_pos > n_neg and batch.diagnostics["copies_positive"] == n_pos
    assert np.array_equal(batch.y, np.r_[np.ones(n_pos), -np.ones(n_neg)])
    x_pos, x_neg = batch.X[0], batch.X[-1]
    assert np.ptp(batch.X[:n_pos], axis=0).max() == 0 and np.ptp(batch.X[n_pos:], axis=0).max() == 0
    X_fit = problem.X[: problem.k]
    assert (np.abs(X_fit[y_fit == -1] - x_pos).max(axis=1) == 0).any()
    assert (np.abs(X_fit[y_fit == 1] - x_neg).max(axis=1) == 0).any()


@pytest.mark.parametrize("learner_cls", LEARNERS)
def test_joint_gradient_matches_finite_differences_of_moving_both_poisons(learner_cls):
    """The stacked gradient of both weighted poisons is the derivative of L_val along a joint
    move of the two (re-fitted from scratch), on a piece where the SVM's sets do not change."""
    data = toy_dataset(n=80, d=D, seed=1)
    learner = learner_cls(tol=1e-14) if learner_cls is LinearSVM else learner_cls(tol=1e-13)
    scenario = Scenario(data, learner, budget=10, seed=0)
    attack = InfluencePoisoning()
    problem = AttackerProblem.of(scenario, 2)
    n = problem.k
    problem.X[n], problem.y[n], problem.s[n] = np.clip(problem.X[0] + 0.05, 0, 1), -problem.y[0], 6.0
    problem.X[n + 1], problem.y[n + 1], problem.s[n + 1] = np.clip(problem.X[1] - 0.05, 0, 1), -problem.y[1], 4.0
    problem.k = n + 1
    X, y, s = (a.copy() for a in problem.rows())
    model = learner.fit(X, y, sample_weight=s)
    grad = np.stack([attack.hypergradient(learner, model, problem, r) for r in (n, n + 1)])
    assert np.abs(grad).min(axis=1).max() > 0  # both poisons matter

    def val_loss(t: float, direction: np.ndarray) -> float:
        X2 = X.copy()
        X2[n : n + 2] += t * direction
        return float(learner.loss(learner.fit(X2, y, sample_weight=s), problem.X_val, problem.y_val).mean())

    rng = np.random.default_rng(0)
    for _ in range(3):
        direction = rng.standard_normal((2, D))
        h = 1e-6
        fd = (val_loss(h, direction) - val_loss(-h, direction)) / (2 * h)
        assert float((grad * direction).sum()) == pytest.approx(fd, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("learner_cls", LEARNERS)
def test_attack_beats_label_flipping_and_reports_the_attackers_model(learner_cls):
    scenario = Scenario(toy_dataset(n=80, d=D, seed=1), learner_cls(), budget=12, seed=0)
    (batch,) = InfluencePoisoning(max_steps=40).poison(scenario)
    assert len(batch) == 12
    (start,) = InfluencePoisoning(max_steps=1).poison(scenario)
    flips = list(RandomLabelFlip(batch_size=12).poison(scenario))
    losses = {}
    for name, (X_p, y_p) in {
        "attack": (batch.X, batch.y),
        "start": (start.X, start.y),
        "flip": (np.vstack([b.X for b in flips]), np.concatenate([b.y for b in flips])),
    }.items():
        model, problem = _attacker_fit(scenario, X_p, y_p)
        losses[name] = float(scenario.learner.loss(model, problem.X_val, problem.y_val).mean())
        if name == "attack":
            assert batch.diagnostics["validation_loss"] == pytest.approx(losses[name], rel=1e-6)
            assert batch.diagnostics["validation_accuracy"] == pytest.approx(
                model.accuracy(problem.X_val, problem.y_val)
            )
    assert losses["attack"] > losses["start"] and losses["attack"] > losses["flip"]
    assert batch.diagnostics["steps"] > 1


@pytest.mark.parametrize("learner_cls", LEARNERS)
def test_poisons_stay_in_the_box(learner_cls):
    data = toy_dataset(n=80, d=D, seed=1)
    (batch,) = InfluencePoisoning(step_size=0.3, max_steps=30).poison(Scenario(data, learner_cls(), budget=8))
    assert data.feasible.contains(batch.X, atol=0.0).all()
    assert (np.equal(batch.X, data.feasible.lo) | np.equal(batch.X, data.feasible.hi)).any()


@pytest.mark.parametrize("learner_cls", LEARNERS)
def test_contract(learner_cls):
    check_attack(InfluencePoisoning(max_steps=5), toy_dataset(), budget=4, learner=learner_cls(), feasibility="box")


def test_refusals_and_zero_budget():
    data = toy_dataset()
    with pytest.raises(ValueError, match="budget"):
        next(iter(InfluencePoisoning().poison(Scenario(data, LinearSVM()))))
    host = load_host(load_external=False)
    with pytest.raises(CapabilityError, match="influence"):
        next(iter(InfluencePoisoning().poison(Scenario(data, host.create("learners", "torch-mlp"), budget=2))))
    (empty,) = InfluencePoisoning().poison(Scenario(data, LinearSVM(), budget=0))
    assert len(empty) == 0


def test_registered_in_the_host():
    host = load_host(load_external=False)
    assert isinstance(host.create("attacks", "influence", max_steps=3), InfluencePoisoning)
    assert host.registry.get("attacks", "influence").create().needs_budget
