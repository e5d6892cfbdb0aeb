"""Shared machinery of the objective-driven gradient attacks ``biggio-svm`` and ``gradient-lr``.

Both attacks (Biggio, Nelson & Laskov 2012, "Poisoning attacks against support vector machines",
Algorithm 1; Demontis et al. 2019, the logistic-regression gradient attack) solve, one poison
point at a time, the bilevel problem

    max_{x_c ∈ box}  L_val(θ*(x_c)) = (1/m) Σ_{k ∈ val} ℓ(θ*; x_k, y_k),
    θ*(x_c) = argmin_θ J(θ) = (1/Σ s) Σ_i s_i ℓ(θ; x_i, y_i) + C_R R(θ)   over D_fit ∪ D_p ∪ {(x_c, y_c)}

with the learner's own objective (MTP eq. 1, ``plugins/learners/linear.py``; weights ``s`` are
multiplicities) and loss ℓ: hinge for the SVM, logistic for LR. As in the MTP paper's
appendix E (comparison with objective-driven attacks, Table 6), the validation set is taken from
the training data: a seeded 70 : 30 split (``scenario.rng``), the attacker's model is trained on
the 70 % part D_fit plus the poisons, and L_val is measured on the 30 %. The victim (the harness)
later trains on the whole training set plus the poisons.

**Incremental ascent** (Biggio et al. 2012, Algorithm 1). For each new point: pick a random
point of D_fit and flip its label (y_c = −y), then projected gradient ascent on x_c with the
label fixed. Each step takes the hypergradient ``u = ∇_{x_c} L_val`` (implicit differentiation
at the exact optimum, by the attack's module), projects it on the box's tangent cone at x_c
(components pushing out of an active bound are zeroed), normalises it to unit length as
Algorithm 1 does, moves x_c by ``step_size · ‖hi − lo‖₂`` and clips to the box. The learner is
re-fitted warm-started from the previous fit after every move, and the fit's certificate is
checked (:func:`poisonbench.learner.require_certified`: an uncertified fit raises). A move that
does not raise L_val is rejected and the step halved (at most ``MAX_HALVINGS`` times in a row);
the ascent stops after ``max_steps`` fits, when an accepted move raised L_val by less than
``tol``, or when the projected gradient vanishes. The accepted point joins D_p with weight
``repeat`` (the paper's repeat-N speed-up: N = 100 for Biggio's SVM attack, N = 10 for LR), and
is yielded as ``repeat`` identical rows (fewer for the last point if the budget ends first).

**Feasible set.** Only the box is honoured: integer features and one-hot groups are relaxed to
their box (the poisons are fractional), so a campaign on such data (Adult) needs
``feasibility = "box"``.

**Diagnostics per batch**: ``validation_loss`` and ``validation_accuracy`` of the attacker's
model on the 30 % split after the point joined, ``gradient_norm`` (the last projected
hypergradient's norm), ``steps`` (fits of the ascent), ``copies``, ``poisons_total``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from poisonbench import Param
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.capabilities import LinearModelLearner, require
from poisonbench.dataset import FeasibleSet
from poisonbench.learner import Model, require_certified

#: share of the training data held out as the attacker's validation set (MTP paper, appendix E)
VALIDATION_FRACTION = 0.3
#: consecutive step halvings after rejected moves before the ascent of a point stops
MAX_HALVINGS = 8
_SPLIT_STREAM = 0x475653  # "GVS": the 70 : 30 split
_INIT_STREAM = 0x475049  # "GPI": the training points the poisons start from

GRADIENT_PARAMETERS = {
    "repeat": Param(int, "copies of each crafted point (the paper's N: 100 for Biggio's SVM, 10 for LR)", low=1),
    "step_size": Param(float, "ascent step as a fraction of the box diagonal ‖hi − lo‖₂", low=0, low_open=True),
    "max_steps": Param(int, "re-fits (ascent steps) per crafted point", low=1),
    "tol": Param(float, "stop a point's ascent when an accepted step raises L_val by less", low=0),
    "max_poisons": Param(int, "own cap on the poisons (needed when the scenario has no budget)", low=0, optional=True),
}


def validation_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(fit, val)`` of a random 70 : 30 split of ``n`` training points (each part
    non-empty; ``n ≥ 2``), both sorted."""
    if n < 2:
        raise ValueError(f"gradient attacks: need at least 2 training points for the 70 : 30 split, got {n}")
    n_val = min(max(1, round(VALIDATION_FRACTION * n)), n - 1)
    order = rng.permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def tangent_direction(g: np.ndarray, x: np.ndarray, feasible: FeasibleSet) -> np.ndarray:
    """``g`` with the components that push ``x`` out of an active bound zeroed (the projection
    of an ascent direction onto the box's tangent cone at ``x``)."""
    blocked = ((x >= feasible.hi) & (g > 0)) | ((x <= feasible.lo) & (g < 0))
    return np.where(blocked, 0.0, g)


@dataclass
class AttackerProblem:
    """The attacker's training rows ``X[:k+1]`` (D_fit, the accepted poisons, then the point
    under ascent in row ``k``), their labels and weights, and the validation split. The rows
    live in preallocated buffers, so every fit gets a C-contiguous prefix without a copy."""

    X: np.ndarray
    y: np.ndarray
    s: np.ndarray
    k: int
    X_val: np.ndarray
    y_val: np.ndarray

    @classmethod
    def of(cls, scenario: Scenario, capacity: int) -> AttackerProblem:
        data = scenario.dataset
        fit, val = validation_split(data.n_train, scenario.rng(_SPLIT_STREAM))
        n, d = fit.size, data.n_features
        X = np.empty((n + capacity, d))
        X[:n] = data.X_train[fit]
        y = np.empty(n + capacity)
        y[:n] = data.y_train[fit]
        s = np.zeros(n + capacity)
        s[:n] = 1.0
        return cls(X, y, s, n, data.X_train[val], data.y_train[val])

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, y, s)`` of the clean part, the accepted poisons and the point in row ``k``."""
        end = self.k + 1
        return self.X[:end], self.y[:end], self.s[:end]


class GradientPoisoning:
    """Base of the incremental gradient attacks: the ascent loop and the batches. A subclass
    sets ``name`` and ``loss_kind`` and implements :meth:`hypergradient`."""

    name: ClassVar[str] = ""
    loss_kind: ClassVar[str] = ""
    needs_budget: ClassVar[bool] = False

    def __init__(
        self,
        repeat: int = 1,
        step_size: float = 0.05,
        max_steps: int = 50,
        tol: float = 1e-6,
        max_poisons: int | None = None,
    ) -> None:
        self.repeat = int(repeat)
        self.step_size = float(step_size)
        self.max_steps = int(max_steps)
        self.tol = float(tol)
        self.max_poisons = max_poisons

    def hypergradient(self, learner: Any, model: Model, problem: AttackerProblem, row: int) -> np.ndarray:
        """``∇_{x_c} L_val(θ*)`` for the point in row ``row`` (≤ ``problem.k``) at the certified
        fit ``model``, the other rows held fixed."""
        raise NotImplementedError  # pragma: no cover - abstract

    def validation_loss(self, learner: Any, model: Model, problem: AttackerProblem) -> float:
        """``L_val(θ) = (1/m) Σ_val ℓ(θ; x_k, y_k)``, the learner's own loss."""
        return float(learner.loss(model, problem.X_val, problem.y_val).mean())

    def fit(self, learner: Any, rows: tuple[np.ndarray, ...], warm_start: Model | None) -> Model:
        """The learner's fit on ``rows = (X, y, s)``, certified (an uncertified fit raises)."""
        X, y, s = rows
        return require_certified(
            learner.fit(X, y, sample_weight=s, warm_start=warm_start), f"{self.name}: attacker fit"
        )

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield one batch per crafted point (``repeat`` copies) until the budget is spent."""
        learner = require(scenario.learner, LinearModelLearner, self.name, (self.loss_kind,))
        caps = [c for c in (scenario.budget, self.max_poisons) if c is not None]
        if not caps:
            raise ValueError(f"{self.name}: needs a budget (scenario.budget) or the max_poisons parameter")
        total = int(min(caps))
        problem = AttackerProblem.of(scenario, -(-total // self.repeat))
        rng = scenario.rng(_INIT_STREAM)
        n_fit = problem.k
        model = self.fit(learner, (problem.X[:n_fit], problem.y[:n_fit], problem.s[:n_fit]), None)
        done = 0
        while done < total:
            copies = min(self.repeat, total - done)
            start = int(rng.integers(n_fit))
            problem.X[problem.k] = scenario.feasible.project(problem.X[start])
            problem.y[problem.k] = -problem.y[start]
            problem.s[problem.k] = copies
            model, diagnostics = self.ascend(learner, problem, model, scenario.feasible, np.array([problem.k]))
            x, y_c = problem.X[problem.k].copy(), float(problem.y[problem.k])
            done += copies
            diagnostics.update(copies=copies, poisons_total=done)
            problem.k += 1
            yield PoisonBatch(np.repeat(x[None, :], copies, axis=0), np.full(copies, y_c), diagnostics)

    def ascend(
        self, learner: Any, problem: AttackerProblem, model: Model, feasible: FeasibleSet, rows: np.ndarray
    ) -> tuple[Model, dict[str, Any]]:
        """Projected gradient ascent on the points in ``rows`` jointly (Algorithm 1 for one row);
        returns the fit at the final points (left in those rows) and the diagnostics. On the
        piece where the SVM's index sets or the LR's optimum move smoothly, θ*'s derivative is
        linear in the moves, so the joint gradient is the stack of each row's hypergradient."""
        step = self.step_size * float(np.linalg.norm(feasible.hi - feasible.lo))
        model = self.fit(learner, problem.rows(), model)
        loss = self.validation_loss(learner, model, problem)
        steps, halvings, grad_norm = 1, 0, 0.0
        u: np.ndarray | None = None
        while steps < self.max_steps:
            x = problem.X[rows].copy()
            if u is None:
                g = np.stack([self.hypergradient(learner, model, problem, int(r)) for r in rows])
                u = tangent_direction(g, x, feasible)
                grad_norm = float(np.linalg.norm(u))
                if grad_norm == 0.0:
                    break
            problem.X[rows] = feasible.project(x + (step / grad_norm) * u)
            trial = self.fit(learner, problem.rows(), model)
            steps += 1
            trial_loss = self.validation_loss(learner, trial, problem)
            if trial_loss > loss:
                gain = trial_loss - loss
                model, loss, halvings, u = trial, trial_loss, 0, None
                if gain < self.tol:
                    break
            else:
                problem.X[rows] = x
                step *= 0.5
                halvings += 1
                if halvings > MAX_HALVINGS:
                    break
        accuracy = model.accuracy(problem.X_val, problem.y_val)
        return model, {
            "validation_loss": loss,
            "validation_accuracy": accuracy,
            "gradient_norm": grad_norm,
            "steps": steps,
        }
