"""Built-in attack ``mtp``: the online model-targeted poisoning attack (Suya et al., Algorithm 1).

    D_p = ∅
    repeat until stop:
        θ_t = argmin L(θ; D_c ∪ D_p)                                  (warm-started refit)
        (x*, y*) = argmax_{x ∈ X, y} l(θ_t; x, y) − l(θ_p; x, y)      (plugins.max_loss_diff)
        D_p ← D_p ∪ {k copies of (x*, y*)}

Stopping: the budget, ε-closeness (max loss difference ≤ ε, Definition 1), or an accuracy
goal. Repeated points are kept once with a weight equal to their multiplicity, so the
training set grows only by distinct points and the learner's warm start stays cheap.

Every yielded batch carries the diagnostics of the model trained *with* its points: the
first batch is empty and describes the clean model θ_0. The Theorem-2 quantity z(θ_t) and its
running maximum (``lower_bound``) are reported against the attack's own target; the paper's
lower bound for an induced model is :func:`plugins.lower_bound.certified_lower_bound`. The
attack targets the plain learner: ``scenario.defence`` is not consulted (MTP assumes none).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np

from harness import hookimpl
from harness.attack import PoisonBatch, Scenario
from harness.learner import Model

LOSS_OF_LEARNER = {"svm": "hinge", "logistic": "logistic"}


def learner_loss_kind(learner: Any) -> str:
    """``"hinge"`` or ``"logistic"`` for the built-in learners; ValueError for any other."""
    kind = LOSS_OF_LEARNER.get(getattr(learner, "name", None))
    if kind is None:
        raise ValueError(
            f"mtp: expected a linear learner named one of {sorted(LOSS_OF_LEARNER)}, got {getattr(learner, 'name', learner)!r}"
        )
    return kind


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
        key = (float(y), np.ascontiguousarray(x, dtype=np.float64).tobytes())
        row = self._index.get(key)
        if row is not None:
            self._w[row] += k
            return
        if self.n_rows == self._X.shape[0]:
            cap = 2 * self.n_rows
            for name in ("_X", "_y", "_w"):
                old = getattr(self, name)
                new = np.empty((cap,) + old.shape[1:])
                new[: self.n_rows] = old[: self.n_rows]
                setattr(self, name, new)
        self._X[self.n_rows], self._y[self.n_rows], self._w[self.n_rows] = x, y, k
        self._index[key] = self.n_rows
        self.n_rows += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.n_rows
        return self._X[:n], self._y[:n], self._w[:n]

    def poisons(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct poison points, their labels and multiplicities."""
        X, y, w = self.arrays()
        return X[self.n_clean:], y[self.n_clean:], w[self.n_clean:]


def run_mtp(scenario: Scenario, target: Model, *, epsilon: float | None = None, copies: int = 1,
            max_poisons: int | None = None, accuracy_goal: float | None = None, solver: str = "auto",
            onehot: str = "ignore", restarts: int = 10, lr: float = 0.1, max_steps: int = 20_000,
            adam_tol: float = 1e-7) -> Iterator[PoisonBatch]:
    """Algorithm 1 toward the model ``target``; yields one batch per iteration (module doc).

    Parameters
    ----------
    epsilon
        Stop once the max loss difference of θ_t to the target is ≤ ε (ε-close, Definition 1).
    copies
        k, copies of (x*, y*) added per iteration (1 in the paper; 2 roughly halves the time).
    max_poisons
        Own cap on the poisons, combined with ``scenario.budget`` (the smaller applies).
    accuracy_goal
        Stop once θ_t's accuracy on the target subpopulation (or on the test split when the
        scenario has none) is ≤ this value.
    solver, onehot, restarts, lr, max_steps, adam_tol
        The max-loss-difference method (:class:`plugins.max_loss_diff.MaxLossDiffSolver`).
    """
    from plugins.lower_bound import theorem2_z
    from plugins.max_loss_diff import MaxLossDiffSolver

    if int(copies) != copies or copies < 1:
        raise ValueError(f"copies: expected a positive integer, got {copies!r}")
    if epsilon is not None and not epsilon > 0:
        raise ValueError(f"epsilon: expected a positive distance or None, got {epsilon!r}")
    caps = [c for c in (scenario.budget, max_poisons) if c is not None]
    if max_poisons is not None and (int(max_poisons) != max_poisons or max_poisons < 0):
        raise ValueError(f"max_poisons: expected a non-negative integer or None, got {max_poisons!r}")
    budget = int(min(caps)) if caps else None
    if budget is None and epsilon is None and accuracy_goal is None:
        raise ValueError("mtp: no stopping rule; give epsilon, accuracy_goal, max_poisons or a scenario budget")
    data, learner = scenario.dataset, scenario.learner
    loss = learner_loss_kind(learner)
    if target.w.shape[0] != data.n_features:
        raise ValueError(f"target: expected a model with {data.n_features} weights, got {target.w.shape[0]}")
    search = MaxLossDiffSolver(loss, scenario.feasible, solver=solver, onehot=onehot, restarts=restarts, lr=lr,
                               max_steps=max_steps, tol=adam_tol)
    rng = scenario.rng(stream=7)
    sub = data.subpopulation(scenario.subpopulation) if scenario.subpopulation else None
    X_c, y_c = data.X_train, data.y_train
    theta_p = target.theta
    target_clean_loss = float(learner.loss(target, X_c, y_c).sum())
    pool = WeightedPool(X_c, y_c)
    start = time.perf_counter()
    t0 = time.perf_counter()
    model = learner.fit(X_c, y_c)
    fit_s = time.perf_counter() - t0
    n_poisons, bound = 0, 0.0
    new_X, new_y = np.empty((0, data.n_features)), np.empty(0)
    previous_x = None
    while True:
        t0 = time.perf_counter()
        best = search(model.theta, theta_p, rng=rng, init=previous_x)
        search_s = time.perf_counter() - t0
        previous_x = best.x
        z = theorem2_z(learner, model, target, X_c, y_c, best.value, target_clean_loss)
        if z is not None:
            bound = max(bound, z)
        test_acc = model.accuracy(data.X_test, data.y_test)
        sub_acc = model.accuracy(data.X_test[sub.test_idx], data.y_test[sub.test_idx]) if sub is not None else None
        close = epsilon is not None and best.value <= epsilon
        goal_acc = sub_acc if sub is not None else test_acc
        reached = accuracy_goal is not None and goal_acc <= accuracy_goal
        spent = budget is not None and n_poisons >= budget
        diagnostics: dict[str, Any] = {
            "n_poisons": n_poisons,
            "max_loss_diff": best.value,
            "max_loss_diff_exact": best.exact,
            "param_distance": float(np.linalg.norm(model.theta - theta_p)),
            "test_accuracy": test_acc,
            "subpop_accuracy": sub_acc,
            "z": z,
            "lower_bound": bound,
            "lower_bound_certified": loss == "hinge" and best.exact,
            "epsilon_close": close,
            "fit_seconds": fit_s,
            "search_seconds": search_s,
            "wall_seconds": time.perf_counter() - start,
        }
        yield PoisonBatch(new_X, new_y, diagnostics)
        if close or reached or spent:
            return
        k = int(copies) if budget is None else min(int(copies), budget - n_poisons)
        pool.add(best.x, best.y, k)
        n_poisons += k
        new_X, new_y = np.repeat(best.x[None, :], k, axis=0), np.full(k, best.y)
        X, y, w = pool.arrays()
        t0 = time.perf_counter()
        model = learner.fit(X, y, sample_weight=w, warm_start=model)
        fit_s = time.perf_counter() - t0


class ModelTargetedPoisoning:
    """Model-targeted poisoning (MTP, Suya et al.): online max-loss-difference points toward a target model.

    Parameters
    ----------
    target : str
        Target model spec for :func:`plugins.targets.make_target`: ``"subpop"``,
        ``"error:<rate>"``, ``"error:<rate>:improved"`` or ``"file:<path.npz>"``.
    epsilon : float or None
        Stop when ε-close (paper: 0.01 SVM / 0.05 LR on Adult, 0.1 on MNIST 1–7).
    copies : int
        Copies of each chosen point per iteration.
    max_poisons : int or None
        Own cap on the poisons (``scenario.budget`` also applies).
    accuracy_goal : float or None
        Stop when the subpopulation (or test) accuracy is ≤ this.
    solver : {"auto", "closed-form", "cvxpy", "milp"}
        Hinge max-loss-difference method (``auto``: MILP for integer features, else closed form).
    onehot : {"ignore", "exact", "at-most-one"}
        One-hot groups in the LP / MILP (``ignore`` as the reference code does for Adult).
    restarts, lr, max_steps, adam_tol
        Logistic regression: projected Adam search settings (reference: 10, 0.1, 20000, 1e-7).
    target_quantiles, target_repeats : list or None
        Grids of the label-flip target heuristic (None: the reference grids).
    target_flip_source : {"test", "train"}
        Which split the target heuristic flips (``test``: as the reference code).
    """

    name = "mtp"
    needs_budget = False

    def __init__(self, target: str = "subpop", epsilon: float | None = None, copies: int = 1,
                 max_poisons: int | None = None, accuracy_goal: float | None = None, solver: str = "auto",
                 onehot: str = "ignore", restarts: int = 10, lr: float = 0.1, max_steps: int = 20_000,
                 adam_tol: float = 1e-7, target_quantiles: list | None = None, target_repeats: list | None = None,
                 target_flip_source: str = "test") -> None:
        from plugins.max_loss_diff import ONEHOT_MODES, SOLVERS

        if not isinstance(target, str) or not target:
            raise ValueError(f"target: expected a spec string such as 'subpop' or 'error:0.1', got {target!r}")
        if solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
        if onehot not in ONEHOT_MODES:
            raise ValueError(f"onehot: expected one of {ONEHOT_MODES}, got {onehot!r}")
        if int(copies) != copies or copies < 1:
            raise ValueError(f"copies: expected a positive integer, got {copies!r}")
        self.target = target
        self.run_params = dict(epsilon=epsilon, copies=int(copies), max_poisons=max_poisons, accuracy_goal=accuracy_goal,
                               solver=solver, onehot=onehot, restarts=restarts, lr=lr, max_steps=max_steps,
                               adam_tol=adam_tol)
        self.target_params = dict(quantiles=target_quantiles, repeats=target_repeats, flip_source=target_flip_source)

    def target_model(self, scenario: Scenario) -> Model:
        """θ_p for this scenario (cached on disk by :func:`plugins.targets.make_target`)."""
        from plugins.targets import make_target

        return make_target(self.target, scenario, **self.target_params)

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield one batch per iteration of Algorithm 1 (the first one empty: the clean model)."""
        target = self.target_model(scenario)
        for i, batch in enumerate(run_mtp(scenario, target, **self.run_params)):
            if i == 0:
                batch.diagnostics.update(target=self.target, target_test_accuracy=target.accuracy(
                    scenario.dataset.X_test, scenario.dataset.y_test))
            yield batch


@hookimpl
def register_attacks(register):
    register(ModelTargetedPoisoning)
