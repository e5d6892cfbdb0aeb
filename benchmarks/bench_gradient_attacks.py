"""Speed of one ascent step of the gradient attacks (re-fit + hypergradient) against a
straightforward implementation, with the same gradient asserted.

A step moves the poison x_c and needs θ*(x_c) and ``∇_{x_c} L_val``. Ours
(:mod:`poisonbench.plugins.attacks.biggio_svm`, :mod:`~poisonbench.plugins.attacks.gradient_lr`):
the exact learner warm-started from the previous step's fit, then the adjoint form — one solve
of the margin-set system (SVM) or of the Hessian (LR) against ``∇_θ L_val``. Baseline: a fit
from scratch with scikit-learn (``SVC(kernel="linear")`` / ``LogisticRegression``, tight
tolerances), then the full Jacobian ``∂θ*/∂x_c`` by a dense solve with d right-hand sides and
``(∂θ*/∂x_c)ᵀ ∇_θ L_val``. Both learners have an unregularised bias (scikit-learn's, so the
problems are the same: ``C = 1 / (C_R Σ s)``, weights as ``sample_weight``).

Problem: ``gaussians`` with overlapping classes (means ∓0.1 per feature, unit variances), 70 : 30
split of the training data, one poison of weight ``REPEAT`` (a flipped-label training point,
Biggio's start); n = 2,000 training points × d = 200 by default (CI runs this file once with
``--benchmark-disable``, one timed round), n = 13,000 × d = 400 with ``POISONBENCH_BENCH_FULL=1``.
d is high enough that fewer than d + 1 points sit on the margin: with d + 1 of them the margin
equations alone pin θ, ∂θ*/∂x_c = 0 and both gradients are round-off (asserted against).

    POISONBENCH_BENCH_FULL=1 python -m pytest benchmarks/bench_gradient_attacks.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from poisonbench.plugins.attacks.biggio_svm import svm_hypergradient
from poisonbench.plugins.attacks.gradient_lr import logistic_hessian, logistic_hypergradient
from poisonbench.plugins.attacks.gradient_poisoning import validation_split
from poisonbench.plugins.datasets.gaussians import gaussians
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression

FULL = os.environ.get("POISONBENCH_BENCH_FULL") == "1"
N_TRAIN, D = (13_000, 400) if FULL else (2_000, 200)
ROUNDS = 3 if FULL else 1
REPEAT = 10.0
C_R = 0.01
STEP = 0.05
BOUND = 9.5  # the gaussians box


def _median_time(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    """Median wall time of ``rounds`` calls after one untimed call (imports, JIT, caches)."""
    out = fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


@pytest.fixture(scope="module")
def base():
    """Attacker rows (70 % + one poison row last), weights, the validation split."""
    data = gaussians(seed=5, n_train=N_TRAIN, n_val=0, n_test=2, mean0=[-0.1] * D, mean1=[0.1] * D, variances=1.0)
    fit, val = validation_split(data.n_train, np.random.default_rng(0))
    X, y = data.X_train[fit], data.y_train[fit]
    X_rows = np.vstack([X, X[0]])
    y_rows = np.append(y, -y[0])
    s = np.append(np.ones(len(y)), REPEAT)
    return X_rows, y_rows, s, data.X_train[val], data.y_train[val]


def _moved(X_rows: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The rows with the poison moved by one unit-direction ascent step (clipped to [0, 1])."""
    X2 = X_rows.copy()
    X2[-1] = np.clip(X2[-1] + STEP * np.sqrt(D) * grad / np.linalg.norm(grad), -BOUND, BOUND)
    return X2


def _svm_baseline(X, y, s, X_val, y_val) -> np.ndarray:
    """SVC from scratch + the dense Jacobian of Biggio et al.'s bordered margin-set system."""
    from sklearn.svm import SVC

    C = 1.0 / (C_R * float(s.sum()))
    clf = SVC(kernel="linear", C=C, tol=1e-10, cache_size=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, sample_weight=s)
    alpha = np.zeros(len(y))
    alpha[clf.support_] = np.abs(clf.dual_coef_.ravel())
    w, b = clf.coef_.ravel(), float(clf.intercept_[0])
    c, ub = len(y) - 1, C * s
    S = np.flatnonzero((alpha > 1e-9 * ub) & (alpha < ub * (1 - 1e-9)))
    XS, yS = X[S], y[S]
    k = S.size
    M = np.zeros((k + 1, k + 1))
    M[:k, :k] = (XS @ XS.T) * np.outer(yS, yS)
    M[:k, k] = M[k, :k] = yS
    R = np.zeros((k + 1, D))
    R[:k] = alpha[c] * y[c] * yS[:, None] * XS
    R[:k][np.equal(S, c)] += y[c] * w  # the poison on the margin: its own condition
    sol = np.linalg.lstsq(M, -R, rcond=1e-12)[0]  # [∂α_S/∂x_c; ∂b/∂x_c], (k + 1) × d
    dw = XS.T @ (yS[:, None] * sol[:k]) + alpha[c] * y[c] * np.eye(D)
    active = y_val * (X_val @ w + b) < 1.0
    g_w = -(y_val[active] @ X_val[active]) / len(y_val)
    g_b = -float(y_val[active].sum()) / len(y_val)
    return dw.T @ g_w + sol[k] * g_b


def _lr_baseline(X, y, s, X_val, y_val) -> np.ndarray:
    """scikit-learn LogisticRegression from scratch + the dense Jacobian −H⁻¹ ∂²J/∂θ∂x_c."""
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression as SkLR

    from poisonbench.learner import Model

    clf = SkLR(C=1.0 / (C_R * float(s.sum())), tol=1e-12, max_iter=10_000)
    clf.fit(X, y, sample_weight=s)
    model = Model(clf.coef_.ravel(), float(clf.intercept_[0]))
    w, b = model.w, model.b
    H = logistic_hessian(model, X, s, C_R, False)
    c = len(y) - 1
    p = float(expit(-y[c] * (X[c] @ w + b)))
    x_tilde = np.append(X[c], 1.0)
    cross = np.outer(x_tilde, w) * p * (1 - p)
    cross[:D] -= y[c] * p * np.eye(D)
    jac = -np.linalg.solve(H, (s[c] / s.sum()) * cross)  # ∂θ*/∂x_c, (d + 1) × d
    coef = -y_val * expit(-y_val * (X_val @ w + b)) / len(y_val)
    return jac.T @ np.append(X_val.T @ coef, coef.sum())


CASES = {
    "biggio-svm": (
        lambda: LinearSVM(C_R=C_R, regularise_bias=False, tol=1e-12),
        lambda m, X, y, s, Xv, yv: svm_hypergradient(m, X, y, s, len(y) - 1, Xv, yv, False),
        _svm_baseline,
        2e-4,
    ),
    "gradient-lr": (
        lambda: LogisticRegression(C_R=C_R, regularise_bias=False, tol=1e-11),
        lambda m, X, y, s, Xv, yv: logistic_hypergradient(m, X, y, s, len(y) - 1, Xv, yv, C_R, False),
        _lr_baseline,
        1e-5,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_ascent_step_speedup(benchmark, base, name):
    make_learner, hypergradient, baseline, rtol = CASES[name]
    X_rows, y_rows, s, X_val, y_val = base
    learner = make_learner()
    previous = learner.fit(X_rows, y_rows, sample_weight=s)
    X_new = _moved(X_rows, hypergradient(previous, X_rows, y_rows, s, X_val, y_val))

    def ours() -> np.ndarray:
        model = learner.fit(X_new, y_rows, sample_weight=s, warm_start=previous)
        assert model.info["converged"]
        return hypergradient(model, X_new, y_rows, s, X_val, y_val)

    ours_s, grad = _median_time(ours, ROUNDS)
    base_s, grad_base = _median_time(lambda: baseline(X_new, y_rows, s, X_val, y_val), ROUNDS)
    benchmark.pedantic(ours, rounds=ROUNDS, iterations=1)
    rel = float(np.linalg.norm(grad - grad_base) / np.linalg.norm(grad_base))
    info = {
        "attack": name,
        "n_rows": int(X_rows.shape[0]),
        "d": D,
        "ours_s": ours_s,
        "baseline_s": base_s,
        "speedup": base_s / ours_s,
        "gradient_rel_diff": rel,
    }
    benchmark.extra_info.update(info)
    print(f"\n{name} ascent step:", {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in info.items()})
    assert np.linalg.norm(grad_base) > 1e-6  # a non-trivial gradient (fewer than d + 1 margin points)
    assert rel < rtol
