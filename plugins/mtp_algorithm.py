"""The online model-targeted poisoning loop (Suya et al., Algorithm 1), independent of any plugin.

    D_p = ∅
    repeat until stop:
        θ_t = argmin L(θ; D_c ∪ D_p)                                  (warm-started refit)
        (x*, y*) = argmax_{x ∈ X, y} l(θ_t; x, y) − l(θ_p; x, y)      (max_loss_diff)
        D_p ← D_p ∪ {k copies of (x*, y*)}

Stopping: the budget, ε-closeness (max loss difference ≤ ε, Definition 1), or an accuracy
goal. Repeated points are kept once with a weight equal to their multiplicity
(:class:`WeightedPool`), so the training set grows only by distinct points and the learner's
warm start stays cheap.

Every yielded batch carries the diagnostics of the model trained *with* its points: the
first batch is empty and describes the clean model θ_0. The Theorem-2 quantity z(θ_t) and its
running maximum (``lower_bound``) are against the run's own target; the paper's bound for an
induced model is :func:`poisonbench.plugins.lower_bound.certified_lower_bound` (a second run
toward that model). The learner must be a :class:`poisonbench.capabilities.LinearModelLearner`
and every fit must be certified (``info["converged"]``): an uncertified iterate would make
both the chosen point and z(θ_t) meaningless, so the run raises instead.

Per iteration the clean loss of z(θ_t) comes from the learner's reported objective and the
poisons (:meth:`_OnlineRun._clean_loss`), the test accuracy reads only the rows near the
decision boundary (:mod:`poisonbench.plugins.screened_metrics`), and the pool hands the learner
read-only views, so that the SVM's certificate can do the same
(:mod:`poisonbench.plugins.margin_screen`): no step reads all of D_c.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.capabilities import LinearModelLearner, require
from poisonbench.learner import Model, require_certified
from poisonbench.plugins.max_loss_diff import MaxLossDiff, MaxLossDiffSolver
from poisonbench.plugins.screened_metrics import ScreenedAccuracy
from poisonbench.plugins.theorem2 import theorem2_z


@dataclass(frozen=True)
class MTPSettings:
    """Stopping rules and max-loss-difference settings of one Algorithm 1 run.

    epsilon: stop once the max loss difference to the target is ≤ ε (ε-close, Definition 1).
    copies: k, copies of (x*, y*) added per iteration (1 in the paper).
    max_poisons: own cap on the poisons, combined with ``scenario.budget`` (the smaller applies).
    accuracy_goal: stop once the accuracy on the target subpopulation (or on the test split when
    the scenario has none) is ≤ this. solver, onehot, restarts, lr, max_steps, adam_tol,
    logistic_search: the max-loss-difference method (:class:`poisonbench.plugins.max_loss_diff.MaxLossDiffSolver`)."""

    epsilon: float | None = None
    copies: int = 1
    max_poisons: int | None = None
    accuracy_goal: float | None = None
    solver: str = "auto"
    onehot: str = "ignore"
    restarts: int = 10
    lr: float = 0.1
    max_steps: int = 20_000
    adam_tol: float = 1e-7
    logistic_search: str = "adam"

    def __post_init__(self) -> None:
        if int(self.copies) != self.copies or self.copies < 1:
            raise ValueError(f"copies: expected a positive integer, got {self.copies!r}")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ValueError(f"epsilon: expected a positive distance or None, got {self.epsilon!r}")
        if self.max_poisons is not None and (int(self.max_poisons) != self.max_poisons or self.max_poisons < 0):
            raise ValueError(f"max_poisons: expected a non-negative integer or None, got {self.max_poisons!r}")

    def budget(self, scenario: Scenario) -> int | None:
        """The poisons this run may use: the smaller of the scenario's budget and ``max_poisons``."""
        caps = [c for c in (scenario.budget, self.max_poisons) if c is not None]
        return int(min(caps)) if caps else None


class WeightedPool:
    """Clean rows followed by the distinct poison points; a repeated point raises its weight.

    Rows live in buffers that double in capacity, so the arrays handed to the learner are
    views whose first rows never change (the learners' warm-start contract)."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        n, d = X.shape
        cap = n + max(64, n // 4)
        self._X = np.empty((cap, d))
        self._y = np.empty(cap)
        self._w = np.empty(cap)
        self._X[:n], self._y[:n], self._w[:n] = X, y, 1.0
        self.n_rows = self.n_clean = n
        self._index: dict[tuple[float, bytes], int] = {}

    def add(self, x: np.ndarray, y: float, k: int) -> None:
        """Add ``k`` copies of ``(x, y)``: a new row of weight ``k``, or ``k`` more weight on its row."""
        key = (float(y), np.ascontiguousarray(x, dtype=np.float64).tobytes())
        row = self._index.get(key)
        if row is not None:
            self._w[row] += k
            return
        if self.n_rows == self._X.shape[0]:
            self._grow()
        self._X[self.n_rows], self._y[self.n_rows], self._w[self.n_rows] = x, y, k
        self._index[key] = self.n_rows
        self.n_rows += 1

    def _grow(self) -> None:
        cap = 2 * self.n_rows
        for name in ("_X", "_y", "_w"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]))
            new[: self.n_rows] = old[: self.n_rows]
            setattr(self, name, new)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, labels and weights (multiplicities) of the whole pool, as read-only views: a
        learner may then trust that the rows it saw stay as they were
        (:class:`poisonbench.plugins.margin_screen.MarginScreen`)."""
        n = self.n_rows
        views = self._X[:n], self._y[:n], self._w[:n]
        for view in views:
            view.flags.writeable = False
        return views

    def poisons(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct poison points, their labels and multiplicities."""
        X, y, w = self.arrays()
        return X[self.n_clean :], y[self.n_clean :], w[self.n_clean :]


def run_mtp(scenario: Scenario, target: Model, settings: MTPSettings | None = None) -> Iterator[PoisonBatch]:
    """Algorithm 1 toward the model ``target``; yields one batch per iteration (module doc)."""
    return _OnlineRun(scenario, target, settings or MTPSettings()).batches()


class _OnlineRun:
    """The state of one Algorithm 1 run: the pool, the current model θ_t and the running bound."""

    def __init__(self, scenario: Scenario, target: Model, settings: MTPSettings) -> None:
        self.settings = settings
        self.budget = settings.budget(scenario)
        if self.budget is None and settings.epsilon is None and settings.accuracy_goal is None:
            raise ValueError("mtp: no stopping rule; give epsilon, accuracy_goal, max_poisons or a scenario budget")
        self.learner: LinearModelLearner = require(scenario.learner, LinearModelLearner, "mtp")
        data = scenario.dataset
        if target.w.shape[0] != data.n_features:
            raise ValueError(f"target: expected a model with {data.n_features} weights, got {target.w.shape[0]}")
        self.data, self.target = data, target
        self.search = MaxLossDiffSolver(
            self.learner.loss_kind,
            scenario.feasible,
            solver=settings.solver,
            onehot=settings.onehot,
            restarts=settings.restarts,
            lr=settings.lr,
            max_steps=settings.max_steps,
            tol=settings.adam_tol,
            logistic_search=settings.logistic_search,
        )
        self.rng = scenario.rng(stream=7)
        self.sub = data.subpopulation(scenario.subpopulation) if scenario.subpopulation else None
        self.target_clean_loss = float(self.learner.loss(target, data.X_train, data.y_train).sum())
        self.test_accuracy = ScreenedAccuracy(data.X_test, data.y_test)
        self.pool = WeightedPool(data.X_train, data.y_train)
        self.n_poisons, self.bound = 0, 0.0
        self.previous_x: np.ndarray | None = None
        self.start = time.perf_counter()

    def batches(self) -> Iterator[PoisonBatch]:
        """Fit θ_0, then per iteration: search, measure, yield, stop or add the point and re-fit."""
        fit_s = self._fit(warm=None)
        new_X, new_y = np.empty((0, self.data.n_features)), np.empty(0)
        while True:
            t0 = time.perf_counter()
            best = self.search(self.model.theta, self.target.theta, rng=self.rng, init=self.previous_x)
            search_s = time.perf_counter() - t0
            self.previous_x = best.x
            diagnostics = self._measure(best, fit_s, search_s)
            stop = self._stops(diagnostics)
            diagnostics["final"] = stop  # the run ends after this batch
            yield PoisonBatch(new_X, new_y, diagnostics)
            if stop:
                return
            new_X, new_y = self._add(best)
            fit_s = self._fit(warm=self.model)

    def _fit(self, warm: Model | None) -> float:
        """θ_t on the pool (warm-started from ``warm``), certified; returns the seconds it took."""
        X, y, w = self.pool.arrays()
        t0 = time.perf_counter()
        model = self.learner.fit(X, y, sample_weight=w, warm_start=warm)
        self.model = require_certified(model, f"mtp: learner {self.learner.name!r} after {self.n_poisons} poisons")
        return time.perf_counter() - t0

    def _measure(self, best: MaxLossDiff, fit_s: float, search_s: float) -> dict[str, Any]:
        """The diagnostics of θ_t: distance to the target, accuracies and the Theorem-2 z(θ_t)."""
        data, model, target = self.data, self.model, self.target
        z = theorem2_z(
            self.learner,
            model,
            target,
            data.X_train,
            data.y_train,
            best.value,
            self.target_clean_loss,
            self._clean_loss(),
        )
        if z is not None:
            self.bound = max(self.bound, z)
        sub_acc = None
        if self.sub is not None:
            sub_acc = model.accuracy(data.X_test[self.sub.test_idx], data.y_test[self.sub.test_idx])
        return {
            "n_poisons": self.n_poisons,
            "max_loss_diff": best.value,
            "max_loss_diff_exact": best.exact,
            "param_distance": float(np.linalg.norm(model.theta - target.theta)),
            "test_accuracy": self.test_accuracy(model),
            "subpop_accuracy": sub_acc,
            "z": z,
            "lower_bound": self.bound,
            "lower_bound_certified": self.learner.loss_kind == "hinge" and best.exact,
            "epsilon_close": self.settings.epsilon is not None and best.value <= self.settings.epsilon,
            "fit_seconds": fit_s,
            "search_seconds": search_s,
            "wall_seconds": time.perf_counter() - self.start,
        }

    def _clean_loss(self) -> float | None:
        """``L(θ_t; D_c)`` without a pass over D_c when the learner reports its objective
        (``objective_in_info``): J(θ_t) on the pool is ``(1/Σs) Σ s_i l_i + C_R R(θ_t)``, so

            Σ_{D_c} l = Σs · (J(θ_t) − C_R R(θ_t)) − Σ_p s_p l(θ_t; x_p, y_p)

        over the few distinct poisons. None otherwise (:func:`theorem2_z` then sums the loss)."""
        model, learner = self.model, self.learner
        if not getattr(learner, "objective_in_info", False) or "objective" not in model.info:
            return None
        X_p, y_p, s_p = self.pool.poisons()
        poisons = float(s_p @ learner.loss(model, X_p, y_p)) if len(y_p) else 0.0
        total = float(self.pool.arrays()[2].sum())
        return total * (float(model.info["objective"]) - learner.C_R * learner.regulariser(model)) - poisons

    def _stops(self, diagnostics: dict[str, Any]) -> bool:
        """ε-close, the accuracy goal reached (subpopulation, else test), or the budget spent."""
        goal = self.settings.accuracy_goal
        accuracy = diagnostics["subpop_accuracy"] if self.sub is not None else diagnostics["test_accuracy"]
        reached = goal is not None and accuracy <= goal
        spent = self.budget is not None and self.n_poisons >= self.budget
        return bool(diagnostics["epsilon_close"] or reached or spent)

    def _add(self, best: MaxLossDiff) -> tuple[np.ndarray, np.ndarray]:
        """Add k copies of the maximiser (fewer when the budget has less left); return them."""
        copies = int(self.settings.copies)
        k = copies if self.budget is None else min(copies, self.budget - self.n_poisons)
        self.pool.add(best.x, best.y, k)
        self.n_poisons += k
        return np.repeat(best.x[None, :], k, axis=0), np.full(k, best.y)
