"""``poisonbench.testing.check_attack`` catches each broken promise with a message naming it:
an unbounded scenario (``budget=None``), one-hot data, diagnostics the store cannot keep."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.learner import Model
from poisonbench.testing import UNBOUNDED_BATCHES, check_attack, toy_dataset


class FlipFirst:
    """A valid attack: flip the first training points, two per batch."""

    name = "flip-first"
    needs_budget = False

    def diagnostics(self, step: int) -> dict:
        return {"step": np.int64(step), "share": np.float64(0.5), "curve": np.array([1.0, 2.0]), "note": None}

    def poison(self, scenario: Scenario):
        data = scenario.dataset
        budget = data.n_train if scenario.budget is None else scenario.budget
        for step, start in enumerate(range(0, budget, 2)):
            idx = np.arange(start, min(start + 2, budget))
            yield PoisonBatch(data.X_train[idx], -data.y_train[idx], self.diagnostics(step))


class Endless(FlipFirst):
    """Valid: without a budget it never stops (check_attack takes a bounded number of batches)."""

    def poison(self, scenario: Scenario):
        data = scenario.dataset
        for step in itertools.count() if scenario.budget is None else range(scenario.budget):
            yield PoisonBatch(data.X_train[:1], -data.y_train[:1], self.diagnostics(step))


class RefusesUnbounded(FlipFirst):
    """Valid: needs a budget and says so with a ValueError."""

    needs_budget = True

    def poison(self, scenario: Scenario):
        if scenario.budget is None:
            raise ValueError("refuses-unbounded: give the scenario a budget")
        yield from super().poison(scenario)


class CrashesUnbounded(FlipFirst):
    """Broken: arithmetic on a None budget."""

    def poison(self, scenario: Scenario):
        data = scenario.dataset
        for i in range(scenario.budget):
            yield PoisonBatch(data.X_train[i : i + 1], -data.y_train[i : i + 1], {})


class LeavesTheBoxUnbounded(FlipFirst):
    """Broken: without a budget its poisons leave the feasible box."""

    def poison(self, scenario: Scenario):
        if scenario.budget is not None:
            yield from super().poison(scenario)
            return
        yield PoisonBatch(scenario.dataset.X_train[:1] + 5.0, scenario.dataset.y_train[:1], {})


class Averages(FlipFirst):
    """Broken on one-hot data: its poison is the mean training point (fractional features)."""

    def poison(self, scenario: Scenario):
        data = scenario.dataset
        yield PoisonBatch(data.X_train.mean(axis=0, keepdims=True), np.array([1.0]), {})


class NaNDiagnostics(FlipFirst):
    """Broken: a NaN diagnostic (the store would keep null)."""

    def diagnostics(self, step: int) -> dict:
        return {"loss": float("nan") if step else 1.0}


class ObjectDiagnostics(FlipFirst):
    """Broken: a model object as a diagnostic (the store would keep only its repr)."""

    def diagnostics(self, step: int) -> dict:
        return {"target": {"model": Model(np.zeros(4), 0.0)}}


@pytest.mark.parametrize(
    "attack", [FlipFirst(), Endless(), RefusesUnbounded()], ids=["flip-first", "endless", "refuses-unbounded"]
)
def test_valid_attacks_pass(attack):
    batches = check_attack(attack, toy_dataset(), budget=5)
    assert sum(len(b) for b in batches) == 5


def test_an_endless_stream_is_read_only_so_far():
    seen = []

    class Counting(Endless):
        def poison(self, scenario):
            for batch in super().poison(scenario):
                seen.append(scenario.budget)
                yield batch

    check_attack(Counting(), budget=3)
    assert seen.count(None) == UNBOUNDED_BATCHES


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (CrashesUnbounded(), r"with budget=None: the attack raised TypeError: .*refuse it with a ValueError"),
        (
            LeavesTheBoxUnbounded(),
            r"with budget=None: batch 0 has poisons outside the feasible set: 1 poison\(s\) outside the feasible box",
        ),
        (
            Averages(),
            r"on one-hot data \(toy_dataset\(onehot=True\)\): batch 0 has poisons outside the feasible set: "
            r"1 poison\(s\) with a non-integer value of an integer feature",
        ),
        (
            NaNDiagnostics(),
            r"batch 1: diagnostics\['loss'\] is nan; diagnostics must be finite \(use None for unknown\)",
        ),
        (ObjectDiagnostics(), r"batch 0: diagnostics\['target'\]\['model'\] is a Model, not JSON-serialisable"),
    ],
    ids=[
        "crashes-unbounded",
        "leaves-the-box-unbounded",
        "fractional-on-one-hot",
        "nan-diagnostic",
        "object-diagnostic",
    ],
)
def test_broken_attacks_fail_with_the_broken_promise(attack, message):
    with pytest.raises(AssertionError, match=message):
        check_attack(attack, toy_dataset(), budget=5)


def test_feasibility_box_accepts_fractional_poisons_on_one_hot_data():
    """As the campaign key ``feasibility = "box"``: only the box is checked."""
    check_attack(Averages(), toy_dataset(), budget=5, feasibility="box")
    with pytest.raises(ValueError, match="feasibility: expected 'exact' or 'box'"):
        check_attack(Averages(), feasibility="boxed")


def test_the_one_hot_toy_dataset_is_one_hot():
    data = toy_dataset(d=5, onehot=True)
    X = np.vstack([data.X_train, data.X_test, data.X_val])
    assert set(np.unique(X)) == {0.0, 1.0} and data.feasible.integer.all()
    assert data.feasible.onehot_groups == ((0, 1, 2),) and (X[:, :3].sum(axis=1) == 1).all()
    assert data.feasible.violation(X) is None and len(data.subpopulation("corner").train_idx) > 0
    assert toy_dataset().digest() == toy_dataset(onehot=False).digest()
