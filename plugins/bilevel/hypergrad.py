"""Hypergradients of the validation loss ``A(w)`` with respect to the poisons ``X_p`` and ``Λ``.

Three ways, all on an :class:`~poisonbench.plugins.bilevel.inner.InnerProblem`:

- :func:`rmd` — reverse mode through the stored trajectory ``w_0 … w_T`` (Algorithm 2). It is
  torch autograd over the unrolled GD steps (``create_graph=True``): the backward pass is exactly
  Algorithm 2's recursion ``dw ← dw − η ∇²_w J dw``, ``dX_p ← dX_p − η (∇_{X_p}∇_w J)ᵀ dw``
  (and the same for Λ), with the Hessian-vector products of eq. 7 done by autograd.
- :func:`fmd_lambda` — forward mode for Λ (Algorithm 3): carry ``Z_t = dw_t/dΛ`` along the
  training, ``Z_{t+1} = Z_t − η (∇²_w J Z_t + ∇_Λ∇_w J)``, then ``∇_Λ A = Z_Tᵀ ∇_w A(w_T)``; one
  Jacobian-vector product (``torch.func.jvp`` of ``∇_w J``) per λ and step.
- :func:`implicit` — the exact hypergradient at the inner minimiser (eq. 4):
  ``∇A = −(∇∇_w J)ᵀ v`` with ``∇²_w J v = ∇_w A`` solved by conjugate gradient on
  Hessian-vector products; ``w*`` from :func:`solve_inner` (Newton-CG). Meaningful for a convex
  inner problem (logistic regression).

RMD and FMD give the gradient of ``A(w_T)`` (truncated training); the implicit one the gradient
of ``A(w*)``; they agree as ``T`` grows when GD converges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from poisonbench.plugins.bilevel import require_torch
from poisonbench.plugins.bilevel.inner import InnerProblem, objective_on

torch = require_torch()

Tensor = Any


@dataclass(frozen=True)
class Hypergradient:
    """``A`` at the trained weights and its gradients (``None`` where not requested)."""

    value: float
    X_p: Tensor | None = None
    lam: Tensor | None = None
    params: list[Tensor] = field(default_factory=list)
    info: dict[str, float] = field(default_factory=dict)


def rmd(
    problem: InnerProblem,
    params0: Sequence[Tensor],
    X_p: Tensor,
    lam: Tensor,
    wrt: Sequence[str] = ("X_p", "lam"),
) -> Hypergradient:
    """Reverse-mode hypergradient of ``A(w_T)`` through the stored trajectory (Algorithm 2).

    ``wrt`` names the inputs to differentiate: any of ``"X_p"``, ``"lam"``."""
    unknown = set(wrt) - {"X_p", "lam"}
    if unknown or not wrt:
        raise ValueError(f"wrt: expected a non-empty subset of ('X_p', 'lam'), got {tuple(wrt)}")
    X_p = X_p.detach().requires_grad_("X_p" in wrt)
    lam = lam.detach().requires_grad_("lam" in wrt)
    params = problem.train(params0, X_p, lam, create_graph=True)
    A = problem.outer(params)
    inputs = [t for name, t in (("X_p", X_p), ("lam", lam)) if name in wrt]
    grads = dict(zip([n for n in ("X_p", "lam") if n in wrt], torch.autograd.grad(A, inputs)))
    return Hypergradient(float(A.detach()), grads.get("X_p"), grads.get("lam"), [p.detach() for p in params])


def fmd_lambda(problem: InnerProblem, params0: Sequence[Tensor], X_p: Tensor, lam: Tensor) -> Hypergradient:
    """Forward-mode hypergradient of ``A(w_T)`` with respect to Λ (Algorithm 3)."""
    from torch.func import grad as func_grad
    from torch.func import jvp

    X, y, s = problem.training_set(X_p.detach())
    arch = problem.arch

    def J(params: tuple, lam_: Tensor) -> Tensor:
        return objective_on(arch, params, X, y, s, lam_)

    grad_J = func_grad(J, argnums=0)
    lam = lam.detach()
    params = tuple(p.detach() for p in params0)
    Z = [tuple(torch.zeros_like(p) for p in params) for _ in range(lam.numel())]
    for _ in range(problem.steps):
        new_Z = []
        for k in range(lam.numel()):
            e_k = torch.zeros_like(lam)
            e_k[k] = 1.0
            g, dg = jvp(grad_J, (params, lam), (Z[k], e_k))  # dg = ∇²_w J Z_k + ∂_{λ_k} ∇_w J
            new_Z.append(tuple(z - problem.lr * d for z, d in zip(Z[k], dg)))
        params = tuple(p - problem.lr * gi for p, gi in zip(params, g))
        Z = new_Z
    leaves = [p.requires_grad_(True) for p in params]
    with torch.enable_grad():
        A = problem.outer(leaves)
        dA = torch.autograd.grad(A, leaves)
    grad_lam = torch.stack([sum((z * d).sum() for z, d in zip(Zk, dA)) for Zk in Z])
    return Hypergradient(float(A.detach()), None, grad_lam, [p.detach() for p in params])


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(v: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, i = [], 0
    for t in like:
        out.append(v[i : i + t.numel()].reshape(t.shape))
        i += t.numel()
    return out


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, tol: float = 1e-12, max_iter: int | None = None
) -> tuple[Tensor, int, float]:
    """Solve ``M x = b`` for symmetric positive definite ``M`` given by ``matvec``.

    Stops when ``‖r‖ ≤ tol ‖b‖``; returns ``(x, iterations, relative residual)``."""
    max_iter = 10 * b.numel() if max_iter is None else max_iter
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    b_norm = float(torch.linalg.vector_norm(b)) or 1.0
    it = 0
    while it < max_iter and float(rr.sqrt()) > tol * b_norm:
        Mp = matvec(p)
        alpha = rr / (p @ Mp)
        x = x + alpha * p
        r = r - alpha * Mp
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
        it += 1
    return x, it, float(rr.sqrt()) / b_norm


def _hvp_operator(problem: InnerProblem, params: Sequence[Tensor], X_p: Tensor, lam: Tensor) -> Callable:
    """``v ↦ ∇²_w J(w) v`` (eq. 7), on flat vectors."""
    leaves = [p.detach().requires_grad_(True) for p in params]
    with torch.enable_grad():
        grads = torch.autograd.grad(problem.objective(leaves, X_p.detach(), lam.detach()), leaves, create_graph=True)

    def matvec(v: Tensor) -> Tensor:
        with torch.enable_grad():
            hv = torch.autograd.grad(grads, leaves, grad_outputs=_unflat(v, leaves), retain_graph=True)
        return _flat(hv)

    return matvec


def solve_inner(
    problem: InnerProblem,
    params0: Sequence[Tensor],
    X_p: Tensor,
    lam: Tensor,
    tol: float = 1e-11,
    max_iter: int = 100,
) -> tuple[list[Tensor], dict[str, float]]:
    """``w* = argmin_w J(w; Λ)`` by Newton-CG with backtracking, to ``‖∇_w J‖ ≤ tol``.

    For the convex (logistic) inner problem; returns ``(w*, {"grad_norm", "iterations"})``."""
    params = [p.detach().clone() for p in params0]
    X_p, lam = X_p.detach(), lam.detach()

    def value_and_grad(ps: list[Tensor]) -> tuple[float, Tensor]:
        leaves = [p.detach().requires_grad_(True) for p in ps]
        with torch.enable_grad():
            J = problem.objective(leaves, X_p, lam)
            g = torch.autograd.grad(J, leaves)
        return float(J.detach()), _flat(g)

    J, g = value_and_grad(params)
    it = 0
    while float(torch.linalg.vector_norm(g)) > tol and it < max_iter:
        step, _, _ = conjugate_gradient(
            _hvp_operator(problem, params, X_p, lam), g, tol=1e-3 * min(1.0, float(g.norm()))
        )
        t = 1.0
        while True:
            trial = [p - t * s for p, s in zip(params, _unflat(step, params))]
            J_new, g_new = value_and_grad(trial)
            if J_new <= J - 1e-4 * t * float(g @ step) or t < 1e-10:
                break
            t *= 0.5
        params, J, g = trial, J_new, g_new
        it += 1
    return params, {"grad_norm": float(torch.linalg.vector_norm(g)), "iterations": float(it)}


def implicit(
    problem: InnerProblem,
    params_star: Sequence[Tensor],
    X_p: Tensor,
    lam: Tensor,
    wrt: Sequence[str] = ("X_p", "lam"),
    cg_tol: float = 1e-12,
) -> Hypergradient:
    """Exact hypergradient at a stationary point ``w*`` (eq. 4): solve ``∇²_w J v = ∇_w A`` by CG,
    then ``∇_{X_p} A = −∇_{X_p}(vᵀ∇_w J)``, ``∇_Λ A = −∇_Λ(vᵀ∇_w J)``.

    ``params_star`` must minimise ``J`` (e.g. from :func:`solve_inner`); the result's
    ``info["stationarity"]`` reports ``‖∇_w J(w*)‖``."""
    unknown = set(wrt) - {"X_p", "lam"}
    if unknown or not wrt:
        raise ValueError(f"wrt: expected a non-empty subset of ('X_p', 'lam'), got {tuple(wrt)}")
    leaves = [p.detach().requires_grad_(True) for p in params_star]
    X_p = X_p.detach().requires_grad_("X_p" in wrt)
    lam = lam.detach().requires_grad_("lam" in wrt)
    with torch.enable_grad():
        A = problem.outer(leaves)
        dA = _flat(torch.autograd.grad(A, leaves))
        v, iters, resid = conjugate_gradient(_hvp_operator(problem, leaves, X_p, lam), dA, tol=cg_tol)
        g = torch.autograd.grad(problem.objective(leaves, X_p, lam), leaves, create_graph=True)
        inner = (_flat(g) * v).sum()
        names = [n for n in ("X_p", "lam") if n in wrt]
        inputs = [X_p if n == "X_p" else lam for n in names]
        grads = dict(zip(names, (-gr for gr in torch.autograd.grad(inner, inputs))))
    info = {
        "stationarity": float(torch.linalg.vector_norm(_flat(g).detach())),
        "cg_iterations": float(iters),
        "cg_residual": resid,
    }
    return Hypergradient(float(A.detach()), grads.get("X_p"), grads.get("lam"), [p.detach() for p in leaves], info)
