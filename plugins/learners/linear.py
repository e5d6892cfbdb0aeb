"""Built-in learners ``svm`` (hinge loss) and ``logistic``: exact, warm-started convex ERM.

Both minimise the MTP paper's eq. (1) with per-sample weights as exact multiplicities::

    J(θ) = (1/Σ_i s_i) Σ_i s_i l(θ; x_i, y_i) + C_R R(θ),   θ = (w, b)

with ``R(θ) = (‖w‖² + b²)/2`` when ``regularise_bias`` (liblinear and the reference code) else
``‖w‖²/2``. ``svm``: ``l = max(0, 1 − y(w·x + b))``, solved by dual coordinate descent to a
certified relative duality gap. ``logistic``: ``l = log(1 + exp(−y(w·x + b)))``, solved by
Newton-CG to a gradient-norm tolerance. Both warm-start from a previous fit (see ``fit``).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.special import expit, log_expit

from poisonbench import Param, hookimpl
from poisonbench.learner import Model
from poisonbench.params import declare
from poisonbench.validation import check_binary_labels, check_matrix, check_weights

LINEAR_PARAMETERS = {
    "C_R": Param(float, "weight of R(θ) against the mean loss (eq. 1)", low=0, low_open=True),
    "regularise_bias": Param(bool, "R penalises the bias too (liblinear, the reference code)"),
    "tol": Param(
        float, "certified tolerance (SVM: relative duality gap; logistic: gradient norm)", low=0, low_open=True
    ),
    "max_iter": Param(int, "iteration limit (SVM: coordinate-descent passes; logistic: Newton steps)", low=1),
}


@declare(LINEAR_PARAMETERS)
class _LinearLearner:
    """Shared parameters, checks and the regulariser of the linear learners
    (:class:`~poisonbench.capabilities.LinearModelLearner`)."""

    name = ""
    loss_kind = ""
    objective_in_info = True  # a fit's info["objective"] is J(θ) on its training set, evaluated at θ

    def __init__(self, C_R: float = 0.09, regularise_bias: bool = True, tol: float = 1e-10, max_iter: int = 100_000):
        self.C_R = float(C_R)
        tol = float(tol)
        self.regularise_bias = bool(regularise_bias)
        self.tol = tol
        self.max_iter = int(max_iter)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(C_R={self.C_R!r}, regularise_bias={self.regularise_bias!r}, "
            f"tol={self.tol!r}, max_iter={self.max_iter!r})"
        )

    def with_regularisation(self, C_R: float) -> _LinearLearner:
        """A copy of this learner with L2 strength ``C_R`` (what the L2 defences tune)."""
        LINEAR_PARAMETERS["C_R"].validate("C_R", C_R)
        out = copy.copy(self)
        out.C_R = float(C_R)
        return out

    def _check_fit_input(
        self, X: Any, y: Any, sample_weight: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Checked ``X`` (C-contiguous float64), ``y``, weights, and the squared row norms of X."""
        Xa, sqnorms = _matrix_and_sqnorms(X)
        return (*self._check_labelled_input(Xa, y, sample_weight), sqnorms)

    def _check_labelled_input(
        self, Xa: np.ndarray, y: Any, sample_weight: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``Xa`` (a 2-D float64 array) with at least one row, checked labels and weights."""
        if Xa.shape[0] == 0:
            raise ValueError("X: expected at least one training point, got 0 rows")
        ya = check_binary_labels(y, "y", Xa.shape[0])
        sa = check_weights(sample_weight, Xa.shape[0])
        return Xa, ya, sa

    def _check_eval_input(self, model: Model, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(model, Model):
            raise ValueError(f"model: expected a poisonbench.learner.Model, got {type(model).__name__}")
        Xa = check_matrix(X, "X", model.w.shape[0])
        ya = check_binary_labels(y, "y", Xa.shape[0])
        return Xa, ya

    def _margins(self, model: Model, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Xa, ya = self._check_eval_input(model, X, y)
        return Xa, ya, ya * (Xa @ model.w + model.b)

    def _reg_mask(self, d: int) -> np.ndarray:
        mask = np.ones(d + 1)
        mask[-1] = 1.0 if self.regularise_bias else 0.0
        return mask

    def regulariser(self, model: Model) -> float:
        """``R(θ) = (‖w‖² + b²)/2``, or ``‖w‖²/2`` when the bias is not regularised."""
        theta = model.theta
        return 0.5 * float(theta @ (self._reg_mask(model.w.shape[0]) * theta))

    def regulariser_grad(self, model: Model) -> np.ndarray:
        """``∇R(θ) = (w, b)``, or ``(w, 0)`` when the bias is not regularised; shape (d + 1,)."""
        return self._reg_mask(model.w.shape[0]) * model.theta

    def loss(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def objective(self, model: Model, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """``J(θ) = (1/Σs) Σ s_i l(θ; x_i, y_i) + C_R R(θ)`` (MTP eq. 1)."""
        losses = self.loss(model, X, y)
        s = check_weights(sample_weight, losses.shape[0])
        return float(s @ losses) / float(s.sum()) + self.C_R * self.regulariser(model)


@declare(
    {
        **LINEAR_PARAMETERS,
        "cd_passes": Param(int, "coordinate-descent passes before the interior-point fallback", low=1),
    }
)
class LinearSVM(_LinearLearner):
    """Linear SVM (hinge loss, L2), exact by dual coordinate descent with warm start.

    Coordinate descent converges at a rate set by the data's conditioning; a fit that is not
    certified after ``cd_passes`` passes is re-solved by an interior-point method (Clarabel) and
    polished by coordinate descent from its dual variables, so any finite data reach the
    tolerance (:mod:`poisonbench.plugins.learners._svm_ipm`)."""

    name = "svm"
    loss_kind = "hinge"

    def __init__(
        self,
        C_R: float = 0.09,
        regularise_bias: bool = True,
        tol: float = 1e-10,
        max_iter: int = 100_000,
        cd_passes: int = 200,
    ):
        super().__init__(C_R=C_R, regularise_bias=regularise_bias, tol=tol, max_iter=max_iter)
        self.cd_passes = int(cd_passes)

    def loss(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Hinge loss ``max(0, 1 − y(w·x + b))`` per point, shape (n,)."""
        _, _, m = self._margins(model, X, y)
        return np.maximum(0.0, 1.0 - m)

    def loss_grad(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A subgradient ``−y (x, 1)`` where ``y f(x) < 1``, else 0 (also at the kink); shape (n, d + 1)."""
        Xa, ya, m = self._margins(model, X, y)
        coef = np.where(m < 1.0, -ya, 0.0)
        return np.hstack([coef[:, None] * Xa, coef[:, None]])

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        warm_start: Model | None = None,
    ) -> Model:
        """Minimise J to a relative duality gap ``(P − D)/P ≤ tol``.

        Parameters
        ----------
        X, y, sample_weight
            Training points, labels in {−1, +1} and non-negative weights (multiplicities).
        warm_start
            A model returned by an earlier ``fit`` of this class. Its dual variables start the
            solver: the contract is that the first rows of ``X`` are the rows it was fitted on
            (rows appended, weights changed — e.g. raised to add copies — and C_R changed are
            all fine); α of appended rows starts at 0. The result never depends on the warm
            start beyond ``tol``, since the fit stops only on the certified gap; a start that
            breaks the contract only costs time. A model without dual state (from another
            learner or from scikit-learn) is ignored except for its bias. With a warm start (and
            the bias regularised) X is checked for NaN and inf by the solver's certificate pass
            instead of by a separate read up front; the error is the same ValueError.

        Returns
        -------
        Model
            With ``info`` = objective, duality_gap (in units of J), relative_gap, iterations
            (coordinate-descent passes), converged, and ``state`` holding the dual variables.
        """
        from poisonbench.plugins.learners._dual_cd import DualState, solve_svm

        warm = None
        b0 = 0.0
        if warm_start is not None:
            warm = warm_start.state if isinstance(warm_start.state, DualState) else None
            b0 = warm_start.b
        if warm is not None and self.regularise_bias:
            # the solver checks X's finiteness in its certificate pass and computes the norms it needs
            Xa, ya, sa, sqnorms = *self._check_labelled_input(_as_matrix(X), y, sample_weight), None
        else:
            Xa, ya, sa, sqnorms = self._check_fit_input(X, y, sample_weight)
        if warm_start is not None and warm_start.w.shape[0] != Xa.shape[1]:
            raise ValueError(f"warm_start: expected a model with {Xa.shape[1]} weights, got {warm_start.w.shape[0]}")
        with _blas_controller().limit(limits=1, user_api="blas"):
            budget = min(self.max_iter, self.cd_passes)
            sol = solve_svm(Xa, ya, sa, sqnorms, self.C_R, self.regularise_bias, self.tol, budget, warm=warm, b0=b0)
            remaining = self.max_iter - sol.info["iterations"]
            if not sol.info["converged"] and remaining > 0:
                sol = self._from_interior_point(Xa, ya, sa, min(remaining, self.cd_passes), sol.info["iterations"])
        return Model(sol.w, sol.b, info=_plain(sol.info), state=sol.state)

    def _from_interior_point(self, X: np.ndarray, y: np.ndarray, s: np.ndarray, passes: int, used: int) -> Any:
        """Dual coordinate descent warm-started from the interior-point α (:mod:`._svm_ipm`),
        for data on which plain coordinate descent converges too slowly; certified as usual."""
        from poisonbench.plugins.learners._dual_cd import DualState, solve_svm
        from poisonbench.plugins.learners._svm_ipm import svm_dual_by_ipm

        C = 1.0 / (self.C_R * float(s.sum()))
        alpha, b = svm_dual_by_ipm(X, y, s, C, self.regularise_bias)
        coef = alpha * y
        w_alpha = X.T @ coef
        b_alpha = float(coef.sum()) if self.regularise_bias else b
        state = DualState(alpha / C, y * (X @ w_alpha + b_alpha), w_alpha / C, C)
        sol = solve_svm(X, y, s, None, self.C_R, self.regularise_bias, self.tol, passes, warm=state, b0=b)
        sol.info.update(solver="clarabel+dual-cd", iterations=used + sol.info["iterations"], fallback=True)
        return sol


class LogisticRegression(_LinearLearner):
    """Logistic regression (L2), exact by Newton-CG with warm start."""

    name = "logistic"
    loss_kind = "logistic"

    def __init__(self, C_R: float = 0.09, regularise_bias: bool = True, tol: float = 1e-10, max_iter: int = 200):
        super().__init__(C_R=C_R, regularise_bias=regularise_bias, tol=tol, max_iter=max_iter)

    def loss(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Logistic loss ``log(1 + exp(−y(w·x + b)))`` per point, shape (n,)."""
        _, _, m = self._margins(model, X, y)
        return -log_expit(m)

    def loss_grad(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Gradient ``−y σ(−y f(x)) (x, 1)`` per point, shape (n, d + 1)."""
        Xa, ya, m = self._margins(model, X, y)
        coef = -ya * expit(-m)
        return np.hstack([coef[:, None] * Xa, coef[:, None]])

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        warm_start: Model | None = None,
    ) -> Model:
        """Minimise J until ``‖∇J(θ)‖₂ ≤ tol``.

        Parameters
        ----------
        X, y, sample_weight
            Training points, labels in {−1, +1} and non-negative weights (multiplicities).
        warm_start
            Any earlier model with the same number of features: Newton starts from its θ, and
            from a fit of this class it also reuses the stored Hessian preconditioner. Intended
            for re-fits after small changes (rows appended, weights raised); the result never
            depends on it beyond ``tol``.

        Returns
        -------
        Model
            With ``info`` = objective, grad_norm, iterations (Newton steps), cg_iterations,
            converged (and suboptimality_bound ``‖∇J‖²/(2 C_R)`` when the bias is regularised).

        Raises
        ------
        ValueError
            Also when the bias is not regularised and only one class has positive weight (then
            no minimiser exists: the bias diverges).
        """
        from poisonbench.plugins.learners._newton import NewtonState, solve_logistic

        Xa, ya, sa, _ = self._check_fit_input(X, y, sample_weight)
        if not self.regularise_bias and (sa[ya > 0].sum() == 0 or sa[ya < 0].sum() == 0):
            raise ValueError("y: both classes need positive weight when the bias is not regularised")
        theta0 = warm = None
        if warm_start is not None:
            if warm_start.w.shape[0] != Xa.shape[1]:
                raise ValueError(
                    f"warm_start: expected a model with {Xa.shape[1]} weights, got {warm_start.w.shape[0]}"
                )
            theta0 = warm_start.theta
            warm = warm_start.state if isinstance(warm_start.state, NewtonState) else None
        with _blas_controller().limit(limits=1, user_api="blas"):
            sol = solve_logistic(Xa, ya, sa, self.C_R, self.regularise_bias, self.tol, self.max_iter, theta0, warm)
        return Model.from_theta(sol.theta, info=_plain(sol.info), state=sol.state)


def _as_matrix(X: Any) -> np.ndarray:
    """``X`` as a C-contiguous 2-D float64 array, not yet checked for finiteness (lists and
    other array-likes go through :func:`poisonbench.validation.check_matrix`, which checks it)."""
    arr = np.asarray(X, dtype=np.float64) if isinstance(X, np.ndarray) else check_matrix(X, "X")
    if arr.ndim != 2:
        check_matrix(arr, "X")
    return np.ascontiguousarray(arr)


def _matrix_and_sqnorms(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as a C-contiguous float64 matrix and ``‖x_i‖²``, checked finite in the same pass.

    A row's squared norm is finite exactly when all its entries are (unless huge finite values
    overflow, which only sends us to the full check); the solvers need the norms anyway, so a
    cold fit reads the matrix once here instead of twice. Anything else goes to
    :func:`poisonbench.validation.check_matrix` for its error message."""
    arr = _as_matrix(X)
    sqnorms = np.einsum("ij,ij->i", arr, arr)
    if not np.isfinite(sqnorms).all():
        check_matrix(arr, "X")
    return arr, sqnorms


@lru_cache(maxsize=1)
def _blas_controller():
    """The BLAS thread-pool controller; fits run BLAS single-threaded.

    Their matrix-vector products are memory-bound (threads gain little) and their small dense
    solves lose badly to thread contention: on a loaded 2-core machine a 13k × 784 SVM fit took
    4.2 s with two OpenBLAS threads and 0.18 s with one. Campaigns parallelise across trials."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _plain(info: dict) -> dict:
    """Diagnostics as plain Python scalars (JSON-friendly)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in info.items()}


@hookimpl
def register_learners(register):
    register(LinearSVM)
    register(LogisticRegression)
