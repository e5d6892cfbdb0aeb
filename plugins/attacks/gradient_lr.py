"""Built-in attack ``gradient-lr``: gradient poisoning of logistic regression (the attack of
Demontis et al. 2019, "Why do adversarial attacks transfer?", §2 poisoning; Mei & Zhu 2015;
Biggio et al. 2012's Algorithm 1 applied to LR).

The ascent, the 70 : 30 validation split and repeat-N are :mod:`.gradient_poisoning`'s; this
module gives the hypergradient of the mean validation logistic loss

    L_val(θ) = (1/m) Σ_{k ∈ val} log(1 + exp(−y_k (w·x_k + b)))

with respect to the poison's features x_c by implicit differentiation of the stationarity
condition ∇_θ J(θ*) = 0 of the learner's objective (MTP eq. 1, ``plugins/learners/_newton.py``)

    J(θ) = Σ_i s̄_i log(1 + exp(−y_i z_i)) + C_R R(θ),   s̄_i = s_i / Σ s,   z_i = w·x_i + b.

**Derivative** (implicit function theorem; Demontis et al.'s ∂w/∂x_c = −(∇²_θ J)⁻¹ ∇_{x_c}∇_θ J):

    ∂θ*/∂x_c = −H⁻¹ ∂²J/∂θ∂x_c,
    H = Σ_i s̄_i σ(z_i) σ(−z_i) x̃_i x̃_iᵀ + C_R diag(1, …, 1, [bias regularised])   (the full
        regularised Hessian at θ*, the poison's own row included; x̃ = (x, 1)),
    ∂²J/∂θ∂x_c = s̄_c (p_c (1 − p_c) x̃_c wᵀ − y_c p_c E),   p_c = σ(−y_c z_c),   E = [I; 0],

and in adjoint form, one Cholesky solve with g = ∇_θ L_val:

    v = H⁻¹ g,   ∇_{x_c} L_val = −s̄_c (p_c (1 − p_c) (x̃_c·v) w − y_c p_c v_w).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from scipy.special import expit

from poisonbench import hookimpl
from poisonbench.learner import Model
from poisonbench.params import declare
from poisonbench.plugins.attacks.gradient_poisoning import GRADIENT_PARAMETERS, AttackerProblem, GradientPoisoning


def logistic_hessian(model: Model, X: np.ndarray, s: np.ndarray, C_R: float, regularise_bias: bool) -> np.ndarray:
    """``H = ∇²_θ J(θ)`` of the weighted mean logistic loss plus ``C_R R``; shape (d + 1, d + 1)."""
    d = X.shape[1]
    z = X @ model.w + model.b
    D = (s / float(s.sum())) * expit(z) * expit(-z)
    XD = X * D[:, None]
    H = np.empty((d + 1, d + 1))
    H[:d, :d] = X.T @ XD
    H[:d, d] = H[d, :d] = XD.sum(axis=0)
    H[d, d] = D.sum()
    H[np.arange(d), np.arange(d)] += C_R
    if regularise_bias:
        H[d, d] += C_R
    return H


def logistic_hypergradient(
    model: Model,
    X: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    c: int,
    X_val: np.ndarray,
    y_val: np.ndarray,
    C_R: float,
    regularise_bias: bool,
) -> np.ndarray:
    """``∇_{x_c} L_val`` (mean validation logistic loss) for training row ``c`` of the logistic
    fit ``model`` on ``(X, y, s)``, by the Hessian solve in this module's docstring; shape (d,)."""
    w, b = model.w, model.b
    coef = -y_val * expit(-y_val * (X_val @ w + b)) / y_val.shape[0]
    g = np.append(X_val.T @ coef, coef.sum())
    H = logistic_hessian(model, X, s, C_R, regularise_bias)
    v = scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, check_finite=False), g, check_finite=False)
    x_c, y_c = X[c], float(y[c])
    p = float(expit(-y_c * (x_c @ w + b)))
    s_c = float(s[c]) / float(s.sum())
    return -s_c * (p * (1.0 - p) * float(x_c @ v[:-1] + v[-1]) * w - y_c * p * v[:-1])


@declare(GRADIENT_PARAMETERS)
class GradientLRPoisoning(GradientPoisoning):
    """Gradient poisoning of logistic regression (Demontis et al. 2019): maximise the validation log loss."""

    name = "gradient-lr"
    loss_kind = "logistic"

    def hypergradient(self, learner: Any, model: Model, problem: AttackerProblem, row: int) -> np.ndarray:
        X, y, s = problem.rows()
        return logistic_hypergradient(
            model, X, y, s, row, problem.X_val, problem.y_val, learner.C_R, learner.regularise_bias
        )


@hookimpl
def register_attacks(register: Any) -> None:
    register(GradientLRPoisoning)
