"""An example third-party poisonbench plugin: the ``boundary-flip`` attack.

It fits the victim on the clean data, takes the training points with the smallest margin
``|w·x + b|`` (the ones whose flipped copies pull the boundary hardest), flips their labels and
injects them, a batch at a time, until the budget is spent.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from poisonbench import Param, PoisonBatch, Scenario, hookimpl
from poisonbench.params import declare

__version__ = "0.1.0"


@declare({"batch_size": Param(int, "flipped points per batch", low=1)})
class BoundaryFlip:
    """Flip the labels of the training points nearest the clean decision boundary."""

    name = "boundary-flip"
    needs_budget = False

    def __init__(self, batch_size: int = 10):
        self.batch_size = batch_size

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        data = scenario.dataset
        budget = data.n_train if scenario.budget is None else scenario.budget
        model = scenario.learner.fit(data.X_train, data.y_train)
        order = np.argsort(np.abs(model.decision_function(data.X_train)), kind="stable")[:budget]
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield PoisonBatch(
                data.X_train[idx], -data.y_train[idx], {"test_accuracy": model.accuracy(data.X_test, data.y_test)}
            )


@hookimpl
def register_attacks(register):
    register(BoundaryFlip)
