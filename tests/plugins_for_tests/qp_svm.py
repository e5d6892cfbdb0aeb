"""A third party's linear SVM, written against the capability protocol only.

Nothing here is imported from the built-in learners: the fit is a QP solved by cvxpy
(Clarabel), so MTP, KKT and the Theorem-2 bound attack it only because it implements
:class:`poisonbench.LinearModelLearner`::

    J(θ) = (1/Σ s_i) Σ s_i max(0, 1 − y_i (w·x_i + b)) + C_R (‖w‖² + b²)/2
"""

from __future__ import annotations

from typing import Any

import cvxpy as cp
import numpy as np

from poisonbench import Model, hookimpl


class QPSVM:
    """Linear SVM (MTP eq. 1, hinge loss) solved as a QP by cvxpy with Clarabel."""

    name = "qp-svm"
    loss_kind = "hinge"
    regularise_bias = True

    def __init__(self, C_R: float = 0.09) -> None:
        self.C_R = float(C_R)

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None, warm_start: Any = None
    ) -> Model:
        X, y = np.asarray(X, float), np.asarray(y, float)
        s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        w, b = cp.Variable(X.shape[1]), cp.Variable()
        hinge = cp.pos(1 - cp.multiply(y, X @ w + b))
        problem = cp.Problem(cp.Minimize(s @ hinge / s.sum() + self.C_R / 2 * (cp.sum_squares(w) + cp.square(b))))
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
        return Model(
            w.value, float(b.value), info={"converged": problem.status == cp.OPTIMAL, "objective": float(problem.value)}
        )

    def loss(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, 1.0 - np.asarray(y) * (np.asarray(X) @ model.w + model.b))

    def loss_grad(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        X, y = np.asarray(X), np.asarray(y)
        coef = np.where(y * (X @ model.w + model.b) < 1.0, -y, 0.0)
        return np.hstack([coef[:, None] * X, coef[:, None]])

    def regulariser(self, model: Model) -> float:
        return 0.5 * float(model.theta @ model.theta)

    def regulariser_grad(self, model: Model) -> np.ndarray:
        return model.theta

    def objective(self, model: Model, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        return float(s @ self.loss(model, X, y) / s.sum()) + self.C_R * self.regulariser(model)

    def with_regularisation(self, C_R: float) -> QPSVM:
        return QPSVM(C_R)


@hookimpl
def register_learners(register: Any) -> None:
    register(QPSVM)
