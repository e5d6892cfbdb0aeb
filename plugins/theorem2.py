"""The Theorem-2 quantity z(θ) of the MTP paper: a certified lower bound from one model θ.

For any model θ, every poisoning set that makes θ_p the minimiser of eq. (1) on D_c ∪ D_p has

    |D_p| ≥ z(θ) = [L(θ_p; D_c) − L(θ; D_c) + N C_R (R(θ_p) − R(θ))]
                   / [sup_{x,y} (l(θ; x, y) − l(θ_p; x, y)) + C_R (R(θ) − R(θ_p))]

(L a sum over the N clean points; z is informative only when both parts are positive).
"""

from __future__ import annotations

import numpy as np

from poisonbench.capabilities import LinearModelLearner
from poisonbench.learner import Model


def theorem2_z(
    learner: LinearModelLearner,
    model: Model,
    target: Model,
    X_clean: np.ndarray,
    y_clean: np.ndarray,
    sup_loss_diff: float,
    target_clean_loss: float | None = None,
    model_clean_loss: float | None = None,
) -> float | None:
    """z(θ) of Theorem 2 for ``model`` θ against ``target`` θ_p, or None when the numerator or
    the denominator is not positive (then θ gives no bound).

    ``sup_loss_diff`` must be ``sup_{x,y} l(θ; x, y) − l(θ_p; x, y)`` for the learner's own loss
    (the reference code uses the hinge loss here even for logistic regression; we do not).
    ``target_clean_loss``: L(θ_p; D_c) when already known (it does not change between iterates);
    ``model_clean_loss``: L(θ; D_c) when already known (the MTP loop has it from the learner's
    objective)."""
    n = X_clean.shape[0]
    reg_diff = learner.regulariser(model) - learner.regulariser(target)
    if target_clean_loss is None:
        target_clean_loss = float(learner.loss(target, X_clean, y_clean).sum())
    if model_clean_loss is None:
        model_clean_loss = float(learner.loss(model, X_clean, y_clean).sum())
    numerator = target_clean_loss - model_clean_loss - n * learner.C_R * reg_diff
    denominator = sup_loss_diff + learner.C_R * reg_diff
    if numerator < 0 or denominator <= 0:
        return None
    return numerator / denominator
