"""Core types reject bad input with a ValueError that says what was wrong and what was expected."""

from __future__ import annotations

import numpy as np
import pytest

from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.dataset import Dataset, FeasibleSet, Subpopulation
from poisonbench.learner import Model
from poisonbench.testing import toy_dataset


def _data(**overrides):
    rng = np.random.default_rng(0)
    args = dict(
        name="t",
        X_train=rng.random((6, 3)),
        y_train=np.array([1, -1, 1, -1, 1, -1.0]),
        X_test=rng.random((4, 3)),
        y_test=np.array([1, -1, 1, -1.0]),
        feasible=FeasibleSet.box(3),
    )
    args.update(overrides)
    return Dataset(**args)


def test_valid_dataset_is_frozen_and_copied():
    X = np.random.default_rng(1).random((6, 3))
    data = _data(X_train=X)
    X[0, 0] = 5.0
    assert data.X_train[0, 0] != 5.0
    with pytest.raises(ValueError, match="read-only"):
        data.X_train[0, 0] = 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"X_train": np.ones(6)}, r"train X: expected a 2-D array \(n_samples, n_features\), got shape \(6,\)"),
        ({"X_test": np.ones((4, 2))}, "test X: expected 3 features, got 2"),
        ({"y_train": np.ones(5)}, "train y: expected 6 entries, got 5"),
        ({"X_train": np.full((6, 3), np.nan)}, "train X: expected finite values, found 18 NaN and 0 inf"),
        ({"X_test": np.full((4, 3), np.inf)}, "test X: expected finite values, found 0 NaN and 12 inf"),
        ({"y_train": np.array([0, 1, 0, 1, 0, 1.0])}, r"train y: binary labels must be -1 or \+1, found \[0.0\]"),
        ({"y_test": np.array([1, 2, 1, -1.0])}, r"test y: binary labels must be -1 or \+1, found \[2.0\]"),
        ({"X_train": [["a", "b", "c"]] * 6}, "train X: expected a numeric 2-D array"),
        ({"feasible": FeasibleSet.box(2)}, "feasible set: expected 3 features"),
        ({"X_val": np.ones((2, 3))}, "give both X_val and y_val"),
        ({"feature_names": ("a",)}, "feature_names: expected 3 names, got 1"),
        (
            {"subpopulations": {"s": Subpopulation("s", np.array([9]), np.array([0]))}},
            r"subpopulation 's': train index out of range 0\.\.5",
        ),
    ],
)
def test_dataset_validation_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        _data(**overrides)


def test_feasible_set_lo_above_hi_is_empty():
    with pytest.raises(
        ValueError,
        match=r"feasible set is empty: lo > hi for 1 feature\(s\), first at index 1 \(lo=2, hi=1\); expected lo <= hi",
    ):
        FeasibleSet(np.array([0.0, 2.0]), np.array([1.0, 1.0]))


def test_feasible_set_with_no_features_is_empty():
    with pytest.raises(ValueError, match="expected at least one feature"):
        FeasibleSet(np.array([]), np.array([]))


def test_feasible_set_nan_bound():
    with pytest.raises(ValueError, match="feasible.hi: expected finite values"):
        FeasibleSet(np.zeros(2), np.array([1.0, np.nan]))


def test_feasible_set_bad_onehot_group():
    with pytest.raises(ValueError, match=r"onehot_groups: index out of range 0\.\.1"):
        FeasibleSet(np.zeros(2), np.ones(2), onehot_groups=((0, 5),))


def test_feasible_set_contains_and_project():
    box = FeasibleSet(np.zeros(2), np.array([1.0, 2.0]))
    X = np.array([[0.5, 1.5], [-1.0, 3.0]])
    assert box.contains(X).tolist() == [True, False]
    assert box.project(X).tolist() == [[0.5, 1.5], [0.0, 2.0]]


def test_poison_batch_validation():
    with pytest.raises(ValueError, match=r"poison y: binary labels must be -1 or \+1"):
        PoisonBatch(np.zeros((2, 3)), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="poison X: expected finite values"):
        PoisonBatch(np.full((1, 3), np.nan), np.array([1.0]))
    with pytest.raises(ValueError, match="poison y: expected 2 entries, got 1"):
        PoisonBatch(np.zeros((2, 3)), np.array([1.0]))
    assert len(PoisonBatch(np.zeros((0, 3)), np.zeros(0))) == 0


def test_model_validation_and_prediction():
    with pytest.raises(ValueError, match="model.b: expected a finite bias"):
        Model(np.ones(2), float("nan"))
    model = Model(np.array([1.0, -1.0]), 0.5)
    assert model.theta.tolist() == [1.0, -1.0, 0.5]
    assert model.predict(np.array([[0.0, 1.0], [1.0, 0.0]])).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="X: expected 2 features, got 3"):
        model.predict(np.ones((1, 3)))


def test_scenario_validation():
    data = toy_dataset()
    with pytest.raises(ValueError, match="scenario.budget: expected a non-negative integer, got -1"):
        Scenario(data, learner=None, budget=-1)
    with pytest.raises(KeyError, match=r"unknown subpopulation 'nope'; valid: \['corner'\]"):
        Scenario(data, learner=None, subpopulation="nope")
    rng_a, rng_b = Scenario(data, None, seed=3).rng(1), Scenario(data, None, seed=3).rng(1)
    assert rng_a.random() == rng_b.random()


def test_scenario_target_defaults_to_none_and_must_be_a_spec_string():
    data = toy_dataset()
    from poisonbench.testing import default_learner

    learner = default_learner()
    assert Scenario(data, learner).target is None
    assert Scenario(data, learner, target="error:0.1").target == "error:0.1"
    with pytest.raises(ValueError, match="scenario.target: expected a target-model spec string or None, got 3"):
        Scenario(data, learner, target=3)


class _TargetEcho:
    """Reports the scenario's target (and flips nothing)."""

    name = "target-echo"
    needs_budget = False

    def __init__(self, target: str = "error:0.3"):
        self.target = target

    def poison(self, scenario):
        yield PoisonBatch(np.empty((0, scenario.dataset.n_features)), np.empty(0), {"seen": scenario.target})


class _NoTarget(_TargetEcho):
    """Reports the scenario's target; has no target parameter of its own."""

    name = "no-target"

    def __init__(self):
        pass


@pytest.mark.parametrize(
    ("attack", "params", "expected"),
    [
        ("target-echo", {"target": "file:theta.npz"}, "file:theta.npz"),
        ("target-echo", {}, None),
        ("no-target", {}, None),
    ],
)
def test_a_trial_gives_the_attack_the_campaigns_target(attack, params, expected):
    """``Scenario.target`` is the target spec the campaign names (the row's ``target`` column);
    an attack's own default is not the campaign naming one."""
    import json

    from poisonbench.campaign import parse_campaign
    from poisonbench.host import load_host
    from poisonbench.registry import Component
    from poisonbench.trial import run_trial

    host = load_host(load_external=False)
    for factory in (_TargetEcho, _NoTarget):
        host.registry.add(Component("attacks", factory.name, factory, "test", "0", ""))
    raw = {
        "budgets": [1],
        "isolation": "none",
        "datasets": [{"name": "gaussians"}],
        "learners": [{"name": "svm"}],
        "attacks": [{"name": attack, "params": params}],
    }
    (trial,) = parse_campaign(raw).trials(host.registry)
    rows = run_trial(trial, host)
    assert [r["status"] for r in rows] == ["ok"], rows[0].get("error")  # stopped early, at 0 poisons
    assert json.loads(rows[0]["diagnostics"]) == {"seen": expected} and rows[0]["target"] == expected
