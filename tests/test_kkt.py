"""KKT attack (plugins/attacks/kkt.py): recovers exactly attainable targets, reports the true
gradient norm of the training objective, respects the feasible set and the budget."""

from __future__ import annotations

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.dataset import Dataset, FeasibleSet
from poisonbench.host import load_host
from poisonbench.learner import Model
from poisonbench.plugins.attacks.kkt import KKTAttack
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.testing import check_attack, toy_dataset

N_POS, N_NEG = 12, 8
X_POS, X_NEG = 0.2, 0.8  # every feature; on the wrong side of the clean model for their labels


def _attainable_target(learner, data: Dataset) -> Model:
    """θ_p = the model trained on D_c + N_POS × (x₊, +1) + N_NEG × (x₋, −1)."""
    d = data.n_features
    X = np.vstack([data.X_train, np.full(d, X_POS), np.full(d, X_NEG)])
    y = np.append(data.y_train, [1.0, -1.0])
    weights = np.append(np.ones(data.n_train), [N_POS, N_NEG])
    return learner.fit(X, y, sample_weight=weights)


def _run(attack: KKTAttack, data: Dataset, learner, budget: int, subpopulation: str | None = None):
    batches = list(attack.poison(Scenario(data, learner, budget=budget, seed=0, subpopulation=subpopulation)))
    assert len(batches) == 1
    return batches[0]


@pytest.fixture(scope="module")
def data() -> Dataset:
    return toy_dataset(n=60, d=4, seed=1)


def test_hinge_recovers_an_attainable_target(data):
    learner = LinearSVM()
    target = _attainable_target(learner, data)
    # the construction's points lie on the active side of θ_p's margin, as the attack requires
    assert (
        target.decision_function(np.full((1, 4), X_POS))[0] < 1
        and -target.decision_function(np.full((1, 4), X_NEG))[0] < 1
    )
    batch = _run(KKTAttack(target, split_step=0.05), data, learner, N_POS + N_NEG)
    diag = batch.diagnostics
    assert len(batch) == N_POS + N_NEG
    assert diag["kkt_objective"] < 1e-8
    assert diag["param_distance"] < 1e-6
    assert diag["param_distance"] <= diag["param_distance_bound"] + 1e-9
    assert diag["max_loss_diff_exact"] and 0 <= diag["max_loss_diff"] < 1e-5  # the target is reached
    assert diag["solver"] in ("CLARABEL", "SCS") and diag["splits_failed"] == 0
    # n₊ identical copies of x₊ then n₋ of x₋
    n_pos = diag["n_pos"]
    assert (batch.y[:n_pos] == 1).all() and (batch.y[n_pos:] == -1).all()
    assert np.unique(batch.X[:n_pos], axis=0).shape[0] == 1 and np.unique(batch.X[n_pos:], axis=0).shape[0] == 1


def test_bias_exact_split_is_searched_off_the_grid(data):
    """With grid {0, n/2, n} only, the split n₊ = 12 of n = 20 comes from the bias equation."""
    learner = LinearSVM()
    target = _attainable_target(learner, data)
    diag = _run(KKTAttack(target, split_step=0.5), data, learner, N_POS + N_NEG).diagnostics
    assert diag["splits_tried"] == 4
    assert diag["n_pos"] == N_POS and diag["kkt_objective"] < 1e-8


def test_logistic_recovers_an_attainable_target(data):
    learner = LogisticRegression()
    target = _attainable_target(learner, data)
    diag = _run(KKTAttack(target, split_step=0.05, restarts=2), data, learner, N_POS + N_NEG).diagnostics
    assert diag["kkt_objective"] < 1e-6
    assert diag["param_distance"] < 1e-5
    assert diag["solver"] == "adam"


def test_objective_is_the_gradient_norm_of_the_training_objective(data):
    """The reported value is ‖∇J(θ_p)‖ for J = mean loss over D_c ∪ D_p + C_R·R: checks the
    (N + n)·C_R scaling of the regulariser against a finite-difference gradient of J."""
    learner = LogisticRegression(C_R=0.5)
    target = Model(np.array([1.0, -2.0, 0.5, 0.3]), -0.2)  # not attainable: the objective stays > 0
    batch = _run(KKTAttack(target, split_step=0.1, restarts=2, max_steps=300), data, learner, 30)
    X = np.vstack([data.X_train, batch.X])
    y = np.concatenate([data.y_train, batch.y])
    theta, h = target.theta, 1e-6
    grad = np.array(
        [
            (
                learner.objective(Model.from_theta(theta + h * e), X, y)
                - learner.objective(Model.from_theta(theta - h * e), X, y)
            )
            / (2 * h)
            for e in np.eye(theta.size)
        ]
    )
    assert batch.diagnostics["kkt_objective"] > 1e-3
    assert batch.diagnostics["kkt_objective"] == pytest.approx(np.linalg.norm(grad), rel=1e-6)


def test_onehot_groups_and_integer_features_are_respected():
    """Poisons are rounded onto the feasible set: one-hot group with exactly one 1, integers."""
    rng = np.random.default_rng(0)
    n = 80
    cat = rng.integers(0, 3, n)
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    X = np.column_stack(
        [np.clip(0.5 + 0.2 * y + 0.1 * rng.standard_normal(n), 0, 1), np.eye(3)[cat], rng.integers(0, 4, n)]
    )
    feasible = FeasibleSet(
        np.zeros(5), np.array([1, 1, 1, 1, 3.0]), integer=np.array([0, 1, 1, 1, 1], bool), onehot_groups=((1, 2, 3),)
    )
    data = Dataset("onehot", X, y, X, y, feasible)
    learner = LinearSVM()
    target = Model(np.array([-2.0, 0.5, -0.5, 0.0, 0.3]), 0.4)
    batch = _run(KKTAttack(target, split_step=0.1), data, learner, 25)
    assert feasible.contains(batch.X).all()
    assert np.allclose(batch.X[:, 1:4].sum(axis=1), 1.0) and np.isin(batch.X[:, 1:], (0, 1, 2, 3)).all()
    assert np.isfinite(batch.diagnostics["kkt_objective"])


@pytest.mark.parametrize("learner", [LinearSVM(), LogisticRegression()], ids=["svm", "logistic"])
def test_contract_budget_determinism_and_clean_data(data, learner):
    target = _attainable_target(learner, data)
    attack = KKTAttack(target, split_step=0.25, restarts=1, max_steps=200)
    batches = check_attack(attack, data, budget=7, learner=learner)
    assert sum(len(b) for b in batches) == 7
    assert "subpop_accuracy" in batches[0].diagnostics  # check_attack targets the "corner" subpopulation


def test_budget_zero_yields_an_empty_batch(data):
    learner = LinearSVM()
    batch = _run(KKTAttack(_attainable_target(learner, data)), data, learner, 0)
    assert len(batch) == 0 and batch.diagnostics["kkt_objective"] > 0


def test_bad_input_is_a_clear_error(data):
    target = _attainable_target(LinearSVM(), data)
    with pytest.raises(ValueError, match="budget up front"):
        next(KKTAttack(target).poison(Scenario(data, LinearSVM())))
    with pytest.raises(ValueError, match="split_step"):
        KKTAttack(target, split_step=0.0)
    with pytest.raises(ValueError, match="target: expected a string or Model"):
        KKTAttack(3.0)

    class Huber(LinearSVM):
        name = "huber"
        loss_kind = "huber"

    with pytest.raises(ValueError, match="learner 'huber' has loss_kind 'huber'; expected one of hinge, logistic"):
        next(KKTAttack(target).poison(Scenario(data, Huber(), budget=5)))


def test_registered_as_needing_its_budget():
    component = load_host(load_external=False).registry.get("attacks", "kkt")
    assert component.factory.needs_budget is True
    assert component.parameters["target"] == "<required>" and component.parameters["split_step"] == 0.005


def test_a_class_with_no_active_point_gets_count_zero(data):
    """w·x + b ≥ 5 on the box: no (x, +1) is on the active side, so every poison is negative."""
    learner = LinearSVM()
    target = Model(np.full(4, 2.0), 5.0)
    batch = _run(KKTAttack(target, split_step=0.25), data, learner, 9)
    assert batch.diagnostics["n_pos"] == 0 and (batch.y == -1).all() and len(batch) == 9


def _grid_values(search, splits):
    candidates, failed = search.run(splits)
    assert failed == 0
    return np.array([c.n_pos for c in candidates]), np.array([c.search_value for c in candidates])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bracketed_search_finds_the_grid_minimum(seed):
    """The split problem's value is convex in n₊ (the perspective argument of ``kkt``'s
    docstring), so the few grid points around the continuous minimiser hold the whole grid's
    minimum. Checked against every grid point for targets no split reaches exactly."""
    from poisonbench.plugins.attacks.kkt import _Box, _HingeSearch, _Residual, _split_grid

    data = toy_dataset(n=150, d=5, seed=seed)
    y = data.y_train.copy()
    y[seed::3] *= -1
    learner = LinearSVM()
    target = learner.fit(data.X_train, y)
    residual = _Residual(learner, target, data.X_train, data.y_train, 20, True, 1e-6)
    splits = _split_grid(20, 0.05, residual.exact_bias_n_pos())
    box = _Box.of(data.feasible, data.X_train)
    n_pos, values = _grid_values(_HingeSearch(residual, box), splits)
    assert values.min() > 1e-2  # not attainable: the minimum is not a flat zero
    assert 0 < values.argmin() < len(values) - 1  # and it lies inside the grid
    steps = np.diff(n_pos)
    for i in range(1, len(values) - 1):  # f convex: slopes between neighbours never decrease
        left = (values[i] - values[i - 1]) / steps[i - 1]
        right = (values[i + 1] - values[i]) / steps[i]
        assert right >= left - 1e-7, (n_pos, values)
    candidates, failed, solved = _HingeSearch(residual, box).bracketed(splits)
    assert failed == 0 and solved <= 4 < len(splits)
    best = min(c.search_value for c in candidates)
    assert best == pytest.approx(values.min(), rel=1e-6, abs=1e-9)
    n_star = _HingeSearch(residual, box).split_minimiser()
    assert abs(n_star - n_pos[values.argmin()]) <= max(steps) + 1e-6


def test_attack_solves_only_the_bracket_and_reports_it(data):
    learner = LinearSVM()
    y = data.y_train.copy()
    y[::3] *= -1
    target = learner.fit(data.X_train, y)
    diag = _run(KKTAttack(target, split_step=0.01), data, learner, 30).diagnostics
    assert diag["splits_tried"] == 31 and diag["splits_solved"] <= 4
