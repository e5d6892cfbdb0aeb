"""The objective-driven gradient attacks ``biggio-svm`` and ``gradient-lr``: exact hypergradients
(against central finite differences of the re-fitted validation loss), effect against random
label flipping, feasibility, repeat-N bookkeeping and the attack contract."""

from __future__ import annotations

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.capabilities import CapabilityError
from poisonbench.host import load_host
from poisonbench.learner import Model
from poisonbench.plugins.attacks.biggio_svm import BiggioSVMPoisoning, svm_hypergradient
from poisonbench.plugins.attacks.gradient_lr import GradientLRPoisoning, logistic_hypergradient
from poisonbench.plugins.attacks.gradient_poisoning import AttackerProblem, validation_split
from poisonbench.plugins.attacks.label_flip import RandomLabelFlip
from poisonbench.plugins.datasets.gaussians import gaussians
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.testing import check_attack, toy_dataset

D = 4


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = toy_dataset(n=80, d=D, seed=1)
    return data.X_train[:56], data.y_train[:56], data.X_train[56:], data.y_train[56:]


def _with_poison(X: np.ndarray, y: np.ndarray, x_c: np.ndarray, y_c: float, weight: float):
    return np.vstack([X, x_c]), np.append(y, y_c), np.append(np.ones(len(y)), weight)


def _central_differences(learner, X, y, s, X_val, y_val, h: float) -> np.ndarray:
    """``∂L_val/∂x_c`` of the last row by central differences, re-fitting from scratch each time."""

    def val_loss(x: np.ndarray) -> float:
        X2 = X.copy()
        X2[-1] = x
        return float(learner.loss(learner.fit(X2, y, sample_weight=s), X_val, y_val).mean())

    x_c = X[-1]
    return np.array([(val_loss(x_c + h * e) - val_loss(x_c - h * e)) / (2 * h) for e in np.eye(X.shape[1])])


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _support_sets(model: Model, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha, ub = model.state.C * model.state.beta, model.state.C * s
    return alpha > 0, alpha < ub


@pytest.mark.parametrize("regularise_bias", [True, False])
def test_logistic_hypergradient_matches_finite_differences(split, regularise_bias):
    X, y, X_val, y_val = split
    learner = LogisticRegression(tol=1e-13, regularise_bias=regularise_bias)
    Xp, yp, s = _with_poison(X, y, np.clip(X[0] + 0.05, 0, 1), -y[0], 3.0)
    model = learner.fit(Xp, yp, sample_weight=s)
    assert model.info["converged"]
    grad = logistic_hypergradient(model, Xp, yp, s, len(y), X_val, y_val, learner.C_R, regularise_bias)
    fd = _central_differences(learner, Xp, yp, s, X_val, y_val, 1e-5)
    assert _rel_err(grad, fd) < 1e-4


@pytest.mark.parametrize("regularise_bias", [True, False])
def test_svm_hypergradient_matches_finite_differences_error_vector(split, regularise_bias):
    """A flipped-label poison (Biggio's start) is an error vector, α_c = C s_c; the perturbations
    keep every support set, so the re-fitted loss is smooth there."""
    X, y, X_val, y_val = split
    learner = LinearSVM(tol=1e-14, regularise_bias=regularise_bias)
    Xp, yp, s = _with_poison(X, y, np.clip(X[0] + 0.05, 0, 1), -y[0], 3.0)
    model = learner.fit(Xp, yp, sample_weight=s)
    positive, below = _support_sets(model, s)
    assert positive[-1] and not below[-1]  # c ∈ E
    h = 1e-6
    for e in np.eye(D):
        for sign in (1, -1):
            X2 = Xp.copy()
            X2[-1] += sign * h * e
            moved = _support_sets(learner.fit(X2, yp, sample_weight=s), s)
            assert np.array_equal(moved[0], positive) and np.array_equal(moved[1], below)
    grad = svm_hypergradient(model, Xp, yp, s, len(y), X_val, y_val, regularise_bias)
    fd = _central_differences(learner, Xp, yp, s, X_val, y_val, h)
    assert _rel_err(grad, fd) < 1e-3


@pytest.mark.parametrize("regularise_bias", [True, False])
def test_svm_hypergradient_matches_finite_differences_margin_vector(split, regularise_bias):
    """A poison on the margin (0 < α_c < C s_c): its own margin condition enters the system."""
    X, y, X_val, y_val = split
    learner = LinearSVM(tol=1e-14, C_R=0.01, regularise_bias=regularise_bias)
    rng = np.random.default_rng(0)
    for _ in range(50):
        Xp, yp, s = _with_poison(X, y, rng.random(D), 1.0, 2.0)
        model = learner.fit(Xp, yp, sample_weight=s)
        positive, below = _support_sets(model, s)
        if positive[-1] and below[-1]:
            break
    else:
        pytest.fail("no margin poison found")
    grad = svm_hypergradient(model, Xp, yp, s, len(y), X_val, y_val, regularise_bias)
    fd = _central_differences(learner, Xp, yp, s, X_val, y_val, 1e-6)
    assert _rel_err(grad, fd) < 1e-3


def test_svm_hypergradient_is_zero_for_a_non_support_vector(split):
    X, y, X_val, y_val = split
    learner = LinearSVM()
    far = int(np.argmax(y * learner.fit(X, y).decision_function(X)))  # the clean point farthest on its side
    Xp, yp, s = _with_poison(X, y, X[far], y[far], 1.0)
    model = learner.fit(Xp, yp, sample_weight=s)
    assert model.state.beta[-1] == 0.0
    assert not svm_hypergradient(model, Xp, yp, s, len(y), X_val, y_val, True).any()


def _attacker_validation_loss(scenario: Scenario, batches) -> float:
    """L_val of the attacker's model refitted on its 70 % part plus the yielded rows (as rows)."""
    problem = AttackerProblem.of(scenario, 0)
    X = np.vstack([problem.X[: problem.k], *[b.X for b in batches]])
    y = np.concatenate([problem.y[: problem.k], *[b.y for b in batches]])
    model = scenario.learner.fit(X, y)
    return float(scenario.learner.loss(model, problem.X_val, problem.y_val).mean())


ATTACKS = [
    pytest.param(BiggioSVMPoisoning, LinearSVM, id="biggio-svm"),
    pytest.param(GradientLRPoisoning, LogisticRegression, id="gradient-lr"),
]


@pytest.mark.parametrize(("attack_cls", "learner_cls"), ATTACKS)
def test_attack_beats_random_label_flipping(attack_cls, learner_cls):
    data = toy_dataset(n=80, d=D, seed=1)
    scenario = Scenario(data, learner_cls(), budget=10, seed=0)
    batches = list(attack_cls(max_steps=20).poison(scenario))
    flips = list(RandomLabelFlip(batch_size=1).poison(scenario))
    clean = _attacker_validation_loss(scenario, [])
    attacked = _attacker_validation_loss(scenario, batches)
    flipped = _attacker_validation_loss(scenario, flips)
    assert sum(len(b) for b in batches) == sum(len(b) for b in flips) == 10
    assert attacked > flipped > clean
    assert batches[-1].diagnostics["validation_loss"] == pytest.approx(attacked, rel=1e-6)
    problem = AttackerProblem.of(scenario, 0)
    X = np.vstack([problem.X[: problem.k], *[b.X for b in batches]])
    y = np.concatenate([problem.y[: problem.k], *[b.y for b in batches]])
    model = scenario.learner.fit(X, y)
    attacked_acc = model.accuracy(problem.X_val, problem.y_val)
    assert batches[-1].diagnostics["validation_accuracy"] == pytest.approx(attacked_acc)


@pytest.mark.parametrize(("attack_cls", "learner_cls"), ATTACKS)
def test_repeat_yields_copies_and_weights_them(attack_cls, learner_cls):
    """repeat = 3, budget 7: batches of 3, 3, 1 identical rows; the attacker's own model (its
    diagnostics) is the fit on exactly those rows."""
    scenario = Scenario(toy_dataset(n=80, d=D, seed=1), learner_cls(), budget=7, seed=2)
    batches = list(attack_cls(repeat=3, max_steps=10).poison(scenario))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [b.diagnostics["copies"] for b in batches] == [3, 3, 1]
    assert [b.diagnostics["poisons_total"] for b in batches] == [3, 6, 7]
    for b in batches:
        assert np.ptp(b.X, axis=0).max() == 0 and np.ptp(b.y) == 0
    for i in range(1, len(batches) + 1):
        expected = _attacker_validation_loss(scenario, batches[:i])
        assert batches[i - 1].diagnostics["validation_loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("attack_cls", "learner_cls"), ATTACKS)
@pytest.mark.parametrize("dataset", ["toy", "gaussians"])
def test_poisons_stay_in_the_box(attack_cls, learner_cls, dataset):
    data = toy_dataset(n=80, d=D, seed=1) if dataset == "toy" else gaussians(seed=0, n_train=40, n_test=20, bound=6.0)
    scenario = Scenario(data, learner_cls(), budget=6, seed=0)
    batches = list(attack_cls(step_size=0.2, max_steps=15).poison(scenario))
    X = np.vstack([b.X for b in batches])
    assert data.feasible.contains(X, atol=0.0).all()
    if dataset == "toy":  # the ascent ran into the box here, so the clip mattered
        assert (np.equal(X, data.feasible.lo) | np.equal(X, data.feasible.hi)).any()


def test_validation_split_is_70_30_and_seeded():
    fit, val = validation_split(100, np.random.default_rng(0))
    assert (fit.size, val.size) == (70, 30)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(100))
    again = validation_split(100, np.random.default_rng(0))
    assert np.array_equal(again[0], fit) and np.array_equal(again[1], val)


@pytest.mark.parametrize(("attack_cls", "learner_cls"), ATTACKS)
def test_contract(attack_cls, learner_cls):
    check_attack(attack_cls(max_steps=5), toy_dataset(), budget=4, learner=learner_cls(), feasibility="box")


def test_refusals():
    scenario = Scenario(toy_dataset(), LogisticRegression(), budget=2)
    with pytest.raises(CapabilityError, match="biggio-svm"):
        next(iter(BiggioSVMPoisoning().poison(scenario)))
    with pytest.raises(ValueError, match="budget"):
        next(iter(GradientLRPoisoning().poison(Scenario(toy_dataset(), LogisticRegression()))))
    capped = list(GradientLRPoisoning(max_poisons=2, max_steps=3).poison(Scenario(toy_dataset(), LogisticRegression())))
    assert sum(len(b) for b in capped) == 2


def test_registered_in_the_host():
    host = load_host(load_external=False)
    assert isinstance(host.create("attacks", "biggio-svm", repeat=100), BiggioSVMPoisoning)
    assert isinstance(host.create("attacks", "gradient-lr", repeat=10), GradientLRPoisoning)
