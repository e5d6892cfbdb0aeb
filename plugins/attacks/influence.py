"""Built-in attack ``influence``: the influence attack of Koh, Steinhardt & Liang (2018),
"Stronger data poisoning attacks break data sanitization defenses" (§4, after Koh & Liang 2017,
"Understanding black-box predictions via influence functions", §5.2), without the defence
constraints, as the MTP paper's appendix E runs it for Table 6 ("Koh & Liang (2017)/SVM").

The attacker's problem is the bilevel one of :mod:`.gradient_poisoning` — maximise the mean
validation loss L_val of the model θ* trained on D_fit plus the poisons, with the same seeded
70 : 30 split of the training data — but over the **whole poison set at once** (the budget is
fixed up front, ``needs_budget``), not one point after another:

    max_{x_+, x_- ∈ box}  L_val(θ*),
    θ* = argmin_θ (1/Σ s) [Σ_{i ∈ D_fit} ℓ(θ; x_i, y_i) + n_+ ℓ(θ; x_+, +1) + n_- ℓ(θ; x_-, −1)] + C_R R(θ).

**Initialisation** (Koh et al.'s ``use_copy`` start, ``init_gradient_attack_from_mask`` of their
release): the budget B becomes n_+ copies of one point labelled +1 and n_- = B − n_+ copies of one
labelled −1, in inverse class balance, n_+ = round(B · |{i ∈ D_fit : y_i = −1}| / |D_fit|); the
point labelled +1 starts at a random D_fit point of class −1 (its label flipped), and vice versa.
Copies of two points are what the attack converges to anyway, and they make every step two
hypergradients instead of B.

**Steps.** The influence of moving a poison x_j (weight n_j) on the validation loss is the
implicit derivative ∇_{x_j} L_val = −(∂²J/∂θ∂x_j)ᵀ H⁻¹ ∇_θ L_val (Koh & Liang 2017, eq. for
I_pert,loss; for the SVM the exact piecewise derivative of the margin-set system of
:mod:`.biggio_svm` replaces their smoothed hinge, for LR the Hessian solve of :mod:`.gradient_lr`).
Both poisons move together by projected ascent on the stacked gradient (the box's tangent cone,
unit length, ``step_size · ‖hi − lo‖₂``, a rejected move halves the step), with a certified warm
re-fit after each move — :meth:`GradientPoisoning.ascend` over the two rows. It stops after
``max_steps`` fits, when an accepted move gains less than ``tol``, or when the projected gradient
vanishes. The attacker's objective is the validation split's loss, not the test loss Koh et al.
use, so that no test data leaks into the attack (the rule the MTP paper's appendix E sets for the
gradient attacks it compares).

**Feasible set**: the box only (integer / one-hot features relaxed), as for the other gradient
attacks. **Diagnostics** (one batch of B rows): ``validation_loss``, ``validation_accuracy``,
``gradient_norm``, ``steps``, ``copies_positive`` (n_+), ``copies_negative`` (n_-).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.capabilities import LinearModelLearner, require
from poisonbench.learner import Model
from poisonbench.params import declare
from poisonbench.plugins.attacks.biggio_svm import svm_hypergradient
from poisonbench.plugins.attacks.gradient_lr import logistic_hypergradient
from poisonbench.plugins.attacks.gradient_poisoning import AttackerProblem, GradientPoisoning

_INIT_STREAM = 0x494E46  # "INF": the training points the two poisons start from


def copy_counts(budget: int, y_fit: np.ndarray) -> tuple[int, int]:
    """``(n_+, n_-)``: the budget split in inverse class balance of the attacker's data,
    n_+ = round(budget · share of class −1)."""
    n_pos = int(np.round(budget * float(np.mean(y_fit == -1))))
    return n_pos, budget - n_pos


@declare(
    {
        "step_size": Param(float, "ascent step as a fraction of the box diagonal ‖hi − lo‖₂", low=0, low_open=True),
        "max_steps": Param(int, "re-fits (ascent steps) of the whole poison set", low=1),
        "tol": Param(float, "stop when an accepted step raises L_val by less", low=0),
    }
)
class InfluencePoisoning(GradientPoisoning):
    """Koh et al. (2018)'s influence attack: the whole budget as copies of two points, moved jointly
    by influence-function gradients of the validation loss."""

    name = "influence"
    needs_budget = True

    def __init__(self, step_size: float = 0.05, max_steps: int = 200, tol: float = 1e-6) -> None:
        super().__init__(repeat=1, step_size=step_size, max_steps=max_steps, tol=tol)

    def hypergradient(self, learner: Any, model: Model, problem: AttackerProblem, row: int) -> np.ndarray:
        X, y, s = problem.rows()
        if learner.loss_kind == "hinge":
            return svm_hypergradient(model, X, y, s, row, problem.X_val, problem.y_val, learner.regularise_bias)
        return logistic_hypergradient(
            model, X, y, s, row, problem.X_val, problem.y_val, learner.C_R, learner.regularise_bias
        )

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield one batch: the ``scenario.budget`` poisons (n_+ rows of x_+, then n_- of x_-)."""
        learner = require(scenario.learner, LinearModelLearner, self.name, ("hinge", "logistic"))
        if scenario.budget is None:
            raise ValueError("influence needs its budget up front: set scenario.budget to the number of poisons")
        budget = int(scenario.budget)
        problem = AttackerProblem.of(scenario, 2)
        n_fit = problem.k
        y_fit = problem.y[:n_fit]
        n_pos, n_neg = copy_counts(budget, y_fit)
        counts = [(label, copies) for label, copies in ((1.0, n_pos), (-1.0, n_neg)) if copies > 0]
        if not counts:
            yield PoisonBatch(np.empty((0, scenario.dataset.n_features)), np.empty(0), {})
            return
        rng = scenario.rng(_INIT_STREAM)
        for j, (label, copies) in enumerate(counts):
            sources = np.flatnonzero(y_fit == -label)
            if sources.size == 0:
                raise ValueError(f"influence: the attacker's 70 % split has no point of class {-label:+.0f} to flip")
            start = int(rng.choice(sources))
            problem.X[n_fit + j] = scenario.feasible.project(problem.X[start])
            problem.y[n_fit + j], problem.s[n_fit + j] = label, copies
        rows = n_fit + np.arange(len(counts))
        problem.k = int(rows[-1])
        model = self.fit(learner, (problem.X[:n_fit], problem.y[:n_fit], problem.s[:n_fit]), None)
        _, diagnostics = self.ascend(learner, problem, model, scenario.feasible, rows)
        diagnostics.update(copies_positive=n_pos, copies_negative=n_neg)
        X = np.repeat(problem.X[rows], [c for _, c in counts], axis=0)
        y = np.repeat(problem.y[rows], [c for _, c in counts])
        yield PoisonBatch(X, y, diagnostics)


@hookimpl
def register_attacks(register: Any) -> None:
    register(InfluencePoisoning)
