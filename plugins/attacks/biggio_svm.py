"""Built-in attack ``biggio-svm``: the gradient poisoning attack on the SVM of Biggio, Nelson &
Laskov (2012), "Poisoning attacks against support vector machines" (linear kernel).

The ascent, the 70 : 30 validation split and repeat-N are :mod:`.gradient_poisoning`'s; this
module gives the hypergradient of the validation hinge loss

    L_val(θ) = (1/m) Σ_{k ∈ val} max(0, 1 − y_k (w·x_k + b))

(Biggio et al.'s objective, §3, as a mean instead of a sum) with respect to the poison's
features x_c, by implicit differentiation of the SVM's optimality (KKT) conditions at the exact
optimum — Biggio et al.'s §3 derivation ("adiabatic" update of the incremental SVM of
Cauwenberghs & Poggio: the support vectors with 0 < α < C stay on the margin while x_c moves),
here for the linear kernel Q_ij = y_i y_j x_i·x_j.

**Units.** The learner (``svm``, ``plugins/learners/_dual_cd.py``) solves J / C_R, i.e.
liblinear's dual with C = 1 / (C_R Σ s) and box 0 ≤ α_i ≤ C s_i; its ``Model.state`` keeps
β = α / C. With the bias regularised, the bias is a constant feature, x̃ = (x, 1), and

    θ = Σ_i α_i y_i x̃_i,        y_k θ·x̃_k = 1  for k ∈ S = {k : 0 < α_k < C s_k}  (the margin set).

**Derivative.** Moving x_c by dx with the sets R (α = 0), S and E (α = C s) fixed, α_c stays
put unless c ∈ S, and (E = [I; 0] the embedding of dx into θ's space)

    dθ = Σ_{j∈S} dα_j y_j x̃_j + α_c y_c E dx,
    y_k (x̃_k · dθ + [k = c] w · dx) = 0   for k ∈ S,

so Q̃_SS dα_S = −R dx with Q̃_kj = y_k y_j x̃_k·x̃_j and R_k = α_c y_c y_k x_kᵀ + [k = c] y_c wᵀ:
Biggio et al.'s margin-set system (their Q_ss, with ∂Q_sc/∂x_c α_c as the right-hand side). When
the bias is not regularised (Biggio's own setting), θ = (w, b) with w = Σ α_i y_i x_i, the dual
gains Σ α_i y_i = 0 and the system becomes the bordered one

    [Q_SS  y_S] [dα_S]   [−R dx]
    [y_Sᵀ   0 ] [ db ] = [  0  ]

(Q without the constant feature; Biggio et al. solve it through ζ = y_sᵀ Q_ss⁻¹ y_s and
υ = Q_ss⁻¹ y_s). With g = ∇_θ L_val = −(1/m) Σ_{y_k f(x_k) < 1} y_k x̃_k, the chain rule in
adjoint form needs one solve of the (bordered) margin-set matrix M:

    z = M⁻¹ v,   v = (y_S ⊙ (X_S g_w + g_b))   (bordered: v = (y_S ⊙ X_S g_w, g_b)),
    ∇_{x_c} L_val = α_c y_c g_w − α_c y_c X_Sᵀ (y_S ⊙ z_S) − [c ∈ S] y_c z_c w.

If the poison is not a support vector (α_c = 0) the gradient is zero — why the attack starts
from a flipped-label point, which lands in E. M is solved in the least-squares sense
(duplicated margin points make it singular; θ's derivative is still unique). The sets are read
from the certified dual variables; the derivative is that of the piece where they do not change
(L_val and θ* are piecewise smooth in x_c). When d + 1 points are on the margin (typical when
n ≫ d) their margin equations alone fix θ, so the gradient is zero on that piece and the ascent
of the point stops there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from poisonbench import hookimpl
from poisonbench.learner import Model
from poisonbench.params import declare
from poisonbench.plugins.attacks.gradient_poisoning import GRADIENT_PARAMETERS, AttackerProblem, GradientPoisoning
from poisonbench.plugins.learners._dual_cd import DualState


def svm_hypergradient(
    model: Model,
    X: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    c: int,
    X_val: np.ndarray,
    y_val: np.ndarray,
    regularise_bias: bool,
) -> np.ndarray:
    """``∇_{x_c} L_val`` (mean validation hinge loss) for training row ``c`` of the SVM fit
    ``model`` on ``(X, y, s)`` (a fit of the built-in ``svm`` learner: its dual variables are
    needed), by the margin-set solve in this module's docstring; shape (d,)."""
    if not isinstance(model.state, DualState) or model.state.beta.shape[0] != X.shape[0]:
        raise ValueError("biggio-svm: needs a fit of the built-in 'svm' learner (its dual variables) on these rows")
    w, b = model.w, model.b
    alpha = model.state.C * model.state.beta
    a_c = float(alpha[c])
    if a_c <= 0.0:
        return np.zeros(X.shape[1])
    ub = model.state.C * s
    S = np.flatnonzero((alpha > 0.0) & (alpha < ub))
    XS, yS = X[S], y[S]
    active = y_val * (X_val @ w + b) < 1.0
    g_w = -(y_val[active] @ X_val[active]) / y_val.shape[0]
    g_b = -float(y_val[active].sum()) / y_val.shape[0]
    y_c = float(y[c])
    if regularise_bias:
        M = (XS @ XS.T + 1.0) * np.outer(yS, yS)
        v = yS * (XS @ g_w + g_b)
    else:
        M = np.zeros((S.size + 1, S.size + 1))
        M[: S.size, : S.size] = (XS @ XS.T) * np.outer(yS, yS)
        M[: S.size, S.size] = M[S.size, : S.size] = yS
        v = np.append(yS * (XS @ g_w), g_b)
    z = scipy.linalg.lstsq(M, v, cond=1e-12, check_finite=False)[0][: S.size] if v.size else v
    grad = a_c * y_c * (g_w - XS.T @ (yS * z))
    pos = int(np.searchsorted(S, c))
    if pos < S.size and S[pos] == c:  # the poison is on the margin: its own condition's term
        grad -= y_c * float(z[pos]) * w
    return grad


@declare(GRADIENT_PARAMETERS)
class BiggioSVMPoisoning(GradientPoisoning):
    """Biggio et al. (2012) gradient poisoning of the linear SVM: maximise the validation hinge loss."""

    name = "biggio-svm"
    loss_kind = "hinge"

    def hypergradient(self, learner: Any, model: Model, problem: AttackerProblem, row: int) -> np.ndarray:
        X, y, s = problem.rows()
        return svm_hypergradient(model, X, y, s, row, problem.X_val, problem.y_val, learner.regularise_bias)


@hookimpl
def register_attacks(register: Any) -> None:
    register(BiggioSVMPoisoning)
