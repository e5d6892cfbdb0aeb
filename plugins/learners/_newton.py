"""Exact L2-regularised logistic regression by preconditioned Newton-CG with line search.

Objective (MTP eq. 1 with the logistic loss), ``s̄_i = s_i / Σ s``, ``z_i = w·x_i + b``::

    J(θ) = Σ_i s̄_i log(1 + exp(−y_i z_i)) + C_R R(θ)
    ∇J   = X̃ᵀ (s̄ ⊙ (−y ⊙ σ(−y z))) + C_R m ⊙ θ
    ∇²J  = X̃ᵀ diag(s̄ ⊙ σ(z)(1 − σ(z))) X̃ + C_R diag(m)

with ``X̃ = [X, 1]`` and ``m = (1, …, 1, 1 if the bias is regularised else 0)``. Each Newton
step solves ``∇²J p = −∇J`` inexactly by preconditioned conjugate gradients (Hessian-vector
products, O(nd) each; forcing term ``min(0.1, √‖∇J‖)`` for superlinear convergence), then
backtracks on J. Warm fits precondition with the Cholesky factor of an exact Hessian kept in
``Model.state``, so a re-fit after a small change needs one or two cheap Newton steps.
Stops when ``‖∇J‖₂ ≤ tol`` (J is C_R-strongly convex when the bias is regularised, so then
``J(θ) − J* ≤ ‖∇J‖² / (2 C_R)``, reported as ``suboptimality_bound``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit

_CG_REFRESH = 10


@dataclass(frozen=True)
class NewtonState:
    """Warm-start state kept in ``Model.state`` by logistic regression.

    ``data_hessian`` is ``X̃ᵀ diag(s̄ σ(1−σ)) X̃`` at some earlier iterate and ``factor`` the
    Cholesky factor of ``data_hessian + shift`` (``shift = C_R diag(m)``): the preconditioner of
    later warm fits, refreshed when conjugate gradients start to need many iterations."""

    data_hessian: np.ndarray
    factor: tuple
    shift: np.ndarray


@dataclass(frozen=True)
class LogisticSolution:
    theta: np.ndarray
    state: NewtonState | None
    info: dict


class _Problem:
    """Value, gradient and Hessian-vector products of J on fixed data."""

    def __init__(self, X: np.ndarray, y: np.ndarray, s: np.ndarray, C_R: float, regularise_bias: bool):
        self.X, self.y = X, y
        self.sbar = s / float(s.sum())
        self.C_R = C_R
        self.mask = np.ones(X.shape[1] + 1)
        self.mask[-1] = 1.0 if regularise_bias else 0.0

    def margins(self, theta: np.ndarray) -> np.ndarray:
        return self.y * (self.X @ theta[:-1] + theta[-1])

    def value(self, theta: np.ndarray, ym: np.ndarray) -> float:
        reg = 0.5 * float(theta @ (self.mask * theta))
        return float(self.sbar @ -log_expit(ym)) + self.C_R * reg

    def grad(self, theta: np.ndarray, ym: np.ndarray) -> np.ndarray:
        coef = -self.sbar * self.y * expit(-ym)
        return np.append(self.X.T @ coef, coef.sum()) + self.C_R * self.mask * theta

    def curvature(self, ym: np.ndarray) -> np.ndarray:
        p = expit(ym)
        return self.sbar * p * (1.0 - p)

    def hessp(self, D: np.ndarray, v: np.ndarray) -> np.ndarray:
        u = D * (self.X @ v[:-1] + v[-1])
        return np.append(self.X.T @ u, u.sum()) + self.C_R * self.mask * v

    def data_hessian(self, D: np.ndarray) -> np.ndarray:
        X = self.X
        d = X.shape[1]
        H = np.empty((d + 1, d + 1))
        XD = X * D[:, None]
        H[:d, :d] = X.T @ XD
        H[:d, d] = H[d, :d] = XD.sum(axis=0)
        H[d, d] = D.sum()
        return H


def solve_logistic(
    X: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    C_R: float,
    regularise_bias: bool,
    tol: float,
    max_iter: int,
    theta0: np.ndarray | None = None,
    warm: NewtonState | None = None,
) -> LogisticSolution:
    """Minimise J from ``theta0`` (zeros when None) until ``‖∇J‖₂ ≤ tol`` or ``max_iter`` steps.

    Preconditioner: a cold fit (no ``theta0``) uses the Jacobi diagonal of the Hessian at the
    start, cheap for a single fit;
    a warm fit uses the Cholesky factor of the exact Hessian kept in ``warm`` (formed at
    ``theta0`` when ``warm`` has none), which makes its one or two Newton steps a few CG
    iterations each, and re-forms it at the current iterate when CG needs more than
    ``_CG_REFRESH`` iterations (the cost, one ``n (d+1)²`` product, is shared by later fits)."""
    from scipy.linalg import cho_solve

    prob = _Problem(X, y, s, C_R, regularise_bias)
    theta = np.zeros(X.shape[1] + 1) if theta0 is None else theta0.astype(np.float64, copy=True)
    ym = prob.margins(theta)
    f = prob.value(theta, ym)
    g = prob.grad(theta, ym)
    shift = C_R * prob.mask
    state = None
    if theta0 is not None:
        usable = warm is not None and warm.data_hessian.shape[0] == theta.size
        state = (
            _state(warm.data_hessian, shift, warm) if usable else _state(prob.data_hessian(prob.curvature(ym)), shift)
        )
    diag = None
    steps = cg_total = refreshes = 0
    while np.linalg.norm(g) > tol and steps < max_iter:
        D = prob.curvature(ym)
        if state is None:
            if diag is None:
                diag = np.append(np.einsum("ij,ij,i->j", X, X, D), D.sum()) + shift
            precond = functools.partial(_jacobi, diag)  # of the Hessian at the start
        else:
            precond = functools.partial(cho_solve, state.factor, check_finite=False)
        gnorm = float(np.linalg.norm(g))
        p, cg_its = _pcg(
            functools.partial(prob.hessp, D), -g, precond, min(0.1, np.sqrt(gnorm)) * gnorm, 4 * theta.size
        )
        cg_total += cg_its
        if state is not None and cg_its > _CG_REFRESH:
            state = _state(prob.data_hessian(D), shift)
            refreshes += 1
        theta, f, ym = _line_search(prob, theta, f, g, p)
        g = prob.grad(theta, ym)
        steps += 1
    gnorm = float(np.linalg.norm(g))
    info = {
        "solver": "newton-cg",
        "objective": f,
        "grad_norm": gnorm,
        "iterations": steps,
        "cg_iterations": cg_total,
        "hessian_refreshes": refreshes,
        "converged": bool(gnorm <= tol),
        "tol": tol,
    }
    if regularise_bias:
        info["suboptimality_bound"] = gnorm**2 / (2 * C_R)
    return LogisticSolution(theta, state, info)


def _state(data_hessian: np.ndarray, shift: np.ndarray, previous: NewtonState | None = None) -> NewtonState:
    """Preconditioner state for ``data_hessian + diag(shift)``, re-using ``previous``'s factor
    when it was made for the same matrix."""
    if previous is not None and previous.data_hessian is data_hessian and np.array_equal(previous.shift, shift):
        return previous
    from scipy.linalg import cho_factor

    factor = cho_factor(data_hessian + np.diag(shift + 1e-12), check_finite=False)
    return NewtonState(data_hessian, factor, shift)


def _pcg(hessp, rhs: np.ndarray, precond, atol: float, max_its: int) -> tuple[np.ndarray, int]:
    """Preconditioned conjugate gradients for ``H x = rhs`` to ``‖H x − rhs‖ ≤ atol``."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = precond(r)
    p = z.copy()
    rz = float(r @ z)
    for its in range(1, max_its + 1):
        Hp = hessp(p)
        step = rz / float(p @ Hp)
        x += step * p
        r -= step * Hp
        if np.linalg.norm(r) <= atol:
            return x, its
        z = precond(r)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, max_its


def _line_search(prob: _Problem, theta: np.ndarray, f: float, g: np.ndarray, p: np.ndarray):
    """Backtracking (Armijo, c = 1e-4) from the full Newton step; accepts ``t`` with no increase
    once the predicted decrease is below round-off."""
    slope = float(g @ p)
    t = 1.0
    while True:
        cand = theta + t * p
        ym = prob.margins(cand)
        f_new = prob.value(cand, ym)
        if f_new <= f + 1e-4 * t * slope or abs(t * slope) <= 1e-16 * max(abs(f), 1.0):
            return cand, f_new, ym
        t *= 0.5


def _jacobi(diag: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The Jacobi preconditioner: ``r / diag(H)``."""
    return r / diag
