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
