"""Hypergradients of the RMD paper: RMD (Alg. 2), FMD (Alg. 3) and the implicit one (eq. 4).

Checks in float64 on tiny problems: each against central finite differences (relative error
< 1e-4), RMD = FMD for Λ with the stored trajectory, RMD → exact as T grows.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from poisonbench.plugins.bilevel import hypergrad as hg
from poisonbench.plugins.bilevel.inner import Architecture, InnerProblem

CPU = torch.device("cpu")
F64 = torch.float64


def make_problem(arch: Architecture, steps: int = 30, lr: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = arch.n_features
    X = rng.normal(size=(12, d))
    y = np.where(X[:, 0] + 0.5 * rng.normal(size=12) >= 0, 1.0, -1.0)
    X_val = rng.normal(size=(10, d))
    y_val = np.where(X_val[:, 0] >= 0, 1.0, -1.0)
    problem = InnerProblem.from_numpy(
        arch, X, y, X_val, y_val, y_p=np.array([1.0, -1.0]), lr=lr, steps=steps, device=CPU, dtype=F64
    )
    X_p = problem.tensor(rng.normal(size=(2, d)))
    lam = problem.tensor(np.linspace(-1.0, 0.0, arch.n_layers))
    return problem, X_p, lam, arch.init(F64, CPU, seed=1)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def central_differences(f, X_p, lam, eps: float = 1e-6):
    """Gradient of ``f(X_p, lam)`` over every entry of X_p and lam by central differences."""
    gX = torch.zeros_like(X_p)
    for idx in np.ndindex(*X_p.shape):
        E = torch.zeros_like(X_p)
        E[idx] = eps
        gX[idx] = (f(X_p + E, lam) - f(X_p - E, lam)) / (2 * eps)
    gl = torch.zeros_like(lam)
    for k in range(lam.numel()):
        e = torch.zeros_like(lam)
        e[k] = eps
        gl[k] = (f(X_p, lam + e) - f(X_p, lam - e)) / (2 * eps)
    return gX, gl


@pytest.mark.parametrize("arch", [Architecture.logistic(3), Architecture.mlp(3, (4, 3))], ids=["lr", "mlp"])
def test_rmd_matches_finite_differences(arch):
    problem, X_p, lam, w0 = make_problem(arch)
    out = hg.rmd(problem, w0, X_p, lam)
    fd_X, fd_lam = central_differences(lambda X, lam_: float(problem.outer(problem.train(w0, X, lam_))), X_p, lam)
    assert rel_err(out.X_p, fd_X) < 1e-4
    assert rel_err(out.lam, fd_lam) < 1e-4
    assert out.value == pytest.approx(float(problem.outer(problem.train(w0, X_p, lam))), rel=1e-12)


@pytest.mark.parametrize("arch", [Architecture.logistic(3), Architecture.mlp(3, (4, 3))], ids=["lr", "mlp"])
def test_fmd_equals_rmd_for_lambda(arch):
    problem, X_p, lam, w0 = make_problem(arch)
    rmd = hg.rmd(problem, w0, X_p, lam, wrt=("lam",))
    fmd = hg.fmd_lambda(problem, w0, X_p, lam)
    assert rmd.X_p is None and fmd.X_p is None
    assert rel_err(fmd.lam, rmd.lam) < 1e-10
    assert fmd.value == pytest.approx(rmd.value, rel=1e-12)


def test_implicit_matches_finite_differences_of_exact_solution():
    problem, X_p, lam, w0 = make_problem(Architecture.logistic(3))
    w_star, info = hg.solve_inner(problem, w0, X_p, lam)
    assert info["grad_norm"] < 1e-10
    out = hg.implicit(problem, w_star, X_p, lam)

    def exact(X, lam_):
        return float(problem.outer(hg.solve_inner(problem, w0, X, lam_)[0]))

    fd_X, fd_lam = central_differences(exact, X_p, lam)
    assert rel_err(out.X_p, fd_X) < 1e-4
    assert rel_err(out.lam, fd_lam) < 1e-4


def test_rmd_converges_to_exact_as_T_grows():
    problem, X_p, lam, w0 = make_problem(Architecture.logistic(3))
    exact = hg.implicit(problem, hg.solve_inner(problem, w0, X_p, lam)[0], X_p, lam)
    errors = []
    for T in (10, 100, 1000):
        problem.steps = T
        out = hg.rmd(problem, w0, X_p, lam)
        errors.append(rel_err(np.r_[out.X_p.ravel(), out.lam], np.r_[exact.X_p.ravel(), exact.lam]))
    assert errors[0] > errors[1] > errors[2]
    assert errors[0] > 1e-2 and errors[2] < 1e-6


def test_conjugate_gradient_solves_spd_system():
    rng = np.random.default_rng(3)
    B = torch.as_tensor(rng.normal(size=(6, 6)))
    M = B @ B.T + torch.eye(6, dtype=F64)
    b = torch.as_tensor(rng.normal(size=6))
    x, iters, resid = hg.conjugate_gradient(lambda v: M @ v, b)
    assert resid < 1e-12 and iters <= 12
    assert torch.allclose(M @ x, b, atol=1e-10)


def test_bad_inputs_raise_value_error():
    problem, X_p, lam, w0 = make_problem(Architecture.logistic(3))
    with pytest.raises(ValueError, match="wrt"):
        hg.rmd(problem, w0, X_p, lam, wrt=("w",))
    with pytest.raises(ValueError, match="X_p: expected shape"):
        hg.rmd(problem, w0, X_p[:1], lam)
    with pytest.raises(ValueError, match="architecture sizes"):
        Architecture((3, 2))
    with pytest.raises(ValueError, match="learning rate"):
        InnerProblem.from_numpy(
            Architecture.logistic(1),
            np.zeros((2, 1)),
            np.ones(2),
            np.zeros((1, 1)),
            np.ones(1),
            lr=0.0,
            steps=3,
            device=CPU,
            dtype=F64,
        )
