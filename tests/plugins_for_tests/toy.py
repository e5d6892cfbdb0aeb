"""A tiny dataset, a closed-form learner, a deterministic incremental attack, a budget-needing
attack, a defence that reports λ, and an observer of the lifecycle hooks. Self-contained (no
built-in plugin), so that harness tests do not depend on the built-in learners."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from poisonbench import hookimpl
from poisonbench.attack import PoisonBatch
from poisonbench.defence import DefendedFit
from poisonbench.learner import Model
from poisonbench.testing import toy_dataset

#: (hook, trial_id, number of rows) for every lifecycle call in this process.
EVENTS: list[tuple[str, str, int]] = []
#: When set, the observer also appends its events to this file (for subprocess tests).
EVENTS_FILE_ENV = "PB_TEST_EVENTS_FILE"


def tiny(seed: int = 0, n: int = 40, d: int = 3):
    """Two blobs in [0, 1]^d (poisonbench.testing.toy_dataset) with subpopulation 'corner'."""
    return toy_dataset(n=n, d=d, seed=seed)


class RidgeLearner:
    """Least squares on ±1 labels: J = (1/Σs) Σ s_i (y_i − w·x_i − b)² + C_R (‖w‖² + b²)/2 (closed form)."""

    name = "toy-ridge"
    regularise_bias = True

    def __init__(self, C_R: float = 0.09):
        if not C_R > 0:
            raise ValueError(f"C_R: expected > 0, got {C_R}")
        self.C_R = float(C_R)

    def with_regularisation(self, C_R):
        return RidgeLearner(C_R)

    def fit(self, X, y, sample_weight=None, warm_start=None):
        Xt = np.hstack([X, np.ones((len(X), 1))])
        s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        A = 2.0 / s.sum() * (Xt.T * s) @ Xt + self.C_R * np.eye(Xt.shape[1])
        return Model.from_theta(np.linalg.solve(A, 2.0 / s.sum() * (Xt.T * s) @ y))

    def loss(self, model, X, y):
        return (y - model.decision_function(X)) ** 2

    def loss_grad(self, model, X, y):
        r = -2.0 * (y - model.decision_function(X))
        return np.hstack([X * r[:, None], r[:, None]])

    def regulariser(self, model):
        return 0.5 * float(model.theta @ model.theta)

    def regulariser_grad(self, model):
        return model.theta

    def objective(self, model, X, y, sample_weight=None):
        s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        return float(s @ self.loss(model, X, y) / s.sum() + self.C_R * self.regulariser(model))


class FlipAttack:
    """Flip the label of a random training point per step; ``copies`` copies per step."""

    name = "toy-flip"
    needs_budget = False

    def __init__(self, copies: int = 1, stop_after: int = 0, sleep: float = 0.0):
        self.copies, self.stop_after, self.sleep = copies, stop_after, sleep

    def poison(self, scenario):
        ds, rng = scenario.dataset, scenario.rng(1)
        step, total = 0, 0
        while total < scenario.budget and not (self.stop_after and step >= self.stop_after):
            step += 1
            k = min(self.copies, scenario.budget - total)
            i = int(rng.integers(ds.n_train))
            X = np.repeat(ds.X_train[i : i + 1], k, axis=0)
            y = np.full(k, -ds.y_train[i])
            total += k
            if self.sleep:
                time.sleep(self.sleep)
            yield PoisonBatch(
                X,
                y,
                {
                    "max_loss_diff": 1.0 / step,
                    "param_distance": 2.0 / step,
                    "lower_bound": float(step),
                    "extra": step,
                    "lower_bound_certified": False,
                    "test_accuracy": 0.0,  # the attack's own (deliberately wrong) estimate
                },
            )


class BudgetedAttack:
    """Needs its budget up front: yields all ``budget`` poisons (flipped copies of point 0) at once."""

    name = "toy-budgeted"
    needs_budget = True

    def poison(self, scenario):
        ds, n = scenario.dataset, scenario.budget
        yield PoisonBatch(np.repeat(ds.X_train[:1], n, axis=0), np.full(n, -ds.y_train[0]), {"max_loss_diff": 0.5})


class LoggedL2:
    """Fit with C_R = exp(lambda_) and report lambda; keeps every row."""

    name = "toy-l2"

    def __init__(self, lambda_: float = math.log(0.09)):
        self.lambda_ = lambda_

    def fit(self, learner, X, y, sample_weight=None, X_val=None, y_val=None):
        model = learner.with_regularisation(math.exp(self.lambda_)).fit(X, y, sample_weight)
        return DefendedFit(model, {"lambda": self.lambda_}, np.ones(len(y), bool))


@hookimpl
def register_datasets(register):
    register(tiny, name="tiny")


@hookimpl
def register_learners(register):
    register(RidgeLearner)


@hookimpl
def register_attacks(register):
    register(FlipAttack)
    register(BudgetedAttack)


@hookimpl
def register_defences(register):
    register(LoggedL2)


def _log(event):
    EVENTS.append(event)
    path = os.environ.get(EVENTS_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


@hookimpl
def trial_started(trial):
    _log(("started", trial["trial_id"], 0))


@hookimpl
def trial_finished(trial, rows):
    _log(("finished", trial["trial_id"], len(rows)))
