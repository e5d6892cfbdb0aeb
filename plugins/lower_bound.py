"""Certified lower bound on the number of poisons (MTP paper, Theorem 2 and Section 4.3).

For any model θ, every poisoning set that makes θ_p the minimiser of eq. (1) on D_c ∪ D_p has

    |D_p| ≥ z(θ) = [L(θ_p; D_c) − L(θ; D_c) + N C_R (R(θ_p) − R(θ))]
                   / [sup_{x,y} (l(θ; x, y) − l(θ_p; x, y)) + C_R (R(θ) − R(θ_p))]

(L a sum over the N clean points; z is informative only when both parts are positive). The
paper's procedure: run Algorithm 1 with the *induced* model as the target and keep the
largest z(θ_t) over the iterates (:func:`certified_lower_bound`). The bound is certified only
when the supremum is exact (hinge loss with the closed form, LP or MILP); for logistic
regression the Adam search under-estimates the supremum and the bound may be invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.attack import Scenario
from harness.learner import Learner, Model


def theorem2_z(learner: Learner, model: Model, target: Model, X_clean: np.ndarray, y_clean: np.ndarray,
               sup_loss_diff: float, target_clean_loss: float | None = None) -> float | None:
    """z(θ) of Theorem 2 for ``model`` θ against ``target`` θ_p, or None when the numerator or
    the denominator is not positive (then θ gives no bound).

    ``sup_loss_diff`` must be ``sup_{x,y} l(θ; x, y) − l(θ_p; x, y)`` for the learner's own loss
    (the reference code uses the hinge loss here even for logistic regression; we do not).
    ``target_clean_loss``: L(θ_p; D_c) when already known (it does not change between iterates)."""
    n = X_clean.shape[0]
    reg_diff = learner.regulariser(model) - learner.regulariser(target)
    if target_clean_loss is None:
        target_clean_loss = float(learner.loss(target, X_clean, y_clean).sum())
    numerator = target_clean_loss - float(learner.loss(model, X_clean, y_clean).sum()) - n * learner.C_R * reg_diff
    denominator = sup_loss_diff + learner.C_R * reg_diff
    if numerator < 0 or denominator <= 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class LowerBound:
    """Largest z(θ_t) over the iterates (``value``), z per iteration (NaN where θ_t gave no
    bound), the poisons the run used, and whether the bound is certified."""

    value: float
    curve: list[float] = field(default_factory=list)
    n_poisons: int = 0
    certified: bool = False

    @property
    def poisons_at_least(self) -> int:
        """The bound as a count: ⌈value⌉ (a poison count is an integer), minus a 1e-9 slack."""
        return int(np.ceil(self.value - 1e-9)) if self.value > 0 else 0


def certified_lower_bound(scenario: Scenario, induced: Model, epsilon: float, copies: int = 1,
                          max_poisons: int | None = None, solver: str = "auto", onehot: str = "ignore") -> LowerBound:
    """Theorem-2 lower bound on the poisons needed to induce ``induced`` from the clean data.

    Runs Algorithm 1 with ``induced`` as its target until the iterate is ``epsilon``-close (or
    ``max_poisons`` are used) and returns the running maximum of z(θ_t) (MTP Section 4.3)."""
    from plugins.attacks.mtp import run_mtp

    curve: list[float] = []
    last: dict = {}
    for batch in run_mtp(scenario, induced, epsilon=epsilon, copies=copies, max_poisons=max_poisons,
                         solver=solver, onehot=onehot):
        last = batch.diagnostics
        curve.append(np.nan if last["z"] is None else float(last["z"]))
    return LowerBound(float(last["lower_bound"]), curve, int(last["n_poisons"]), bool(last["lower_bound_certified"]))
