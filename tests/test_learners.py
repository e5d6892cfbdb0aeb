"""Built-in learners ``svm`` and ``logistic``: exact optimum (vs cvxpy/Clarabel and scikit-learn),
weights as multiplicities, warm starts, the per-point loss interface, input checks, sklearn interop."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from poisonbench.host import load_host
from poisonbench.learner import Learner, Model
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.plugins.learners.sklearn_interop import from_sklearn, sklearn_estimator, to_sklearn

REL = 1e-6
LEARNERS = [LinearSVM, LogisticRegression]


def problem(seed: int, n: int = 120, d: int = 6, weighted: bool = True):
    """Overlapping two-class Gaussians with integer weights (some zero)."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.45, 1.0, -1.0)
    X = rng.normal(size=(n, d)) + 0.8 * y[:, None] * rng.normal(size=d)[None, :]
    s = rng.integers(0, 4, n).astype(float) if weighted else None
    return X, y, s


def cvxpy_objective(kind: str, X, y, s, C_R: float, regularise_bias: bool) -> float:
    """J* by Clarabel at tight tolerances."""
    n, d = X.shape
    s = np.ones(n) if s is None else s
    w, b = cp.Variable(d), cp.Variable()
    z = cp.multiply(y, X @ w + b)
    loss = cp.pos(1 - z) if kind == "svm" else cp.logistic(-z)
    reg = 0.5 * (cp.sum_squares(w) + (cp.square(b) if regularise_bias else 0))
    prob = cp.Problem(cp.Minimize(cp.sum(cp.multiply(s, loss)) / s.sum() + C_R * reg))
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    assert prob.status == "optimal"
    return float(prob.value)


@pytest.mark.parametrize("cls", LEARNERS)
@pytest.mark.parametrize("regularise_bias", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_optimum_matches_cvxpy(cls, regularise_bias, seed):
    X, y, s = problem(seed)
    C_R = [0.09, 0.01][seed]
    learner = cls(C_R=C_R, regularise_bias=regularise_bias)
    model = learner.fit(X, y, s)
    ours = learner.objective(model, X, y, s)
    ref = cvxpy_objective(learner.name, X, y, s, C_R, regularise_bias)
    assert model.info["converged"]
    assert ours == pytest.approx(model.info["objective"], rel=1e-12)
    assert abs(ours - ref) <= REL * ref
    assert ours <= ref * (1 + 1e-9)  # never worse than the interior-point solution


def test_svm_certificate_bounds_the_suboptimality():
    X, y, s = problem(2)
    learner = LinearSVM(tol=1e-4)
    model = learner.fit(X, y, s)
    ref = cvxpy_objective("svm", X, y, s, learner.C_R, True)
    assert model.info["relative_gap"] <= 1e-4
    gap = model.info["duality_gap"]
    assert -1e-9 * ref <= learner.objective(model, X, y, s) - ref <= gap + 1e-9 * ref


def test_logistic_gradient_vanishes_at_the_optimum():
    X, y, s = problem(3)
    learner = LogisticRegression(tol=1e-9)
    model = learner.fit(X, y, s)
    grad = (s @ learner.loss_grad(model, X, y)) / s.sum() + learner.C_R * learner.regulariser_grad(model)
    assert np.linalg.norm(grad) <= 1e-9
    assert model.info["grad_norm"] == pytest.approx(np.linalg.norm(grad), abs=1e-12)


@pytest.mark.parametrize("cls", LEARNERS)
def test_matches_sklearn(cls):
    X, y, s = problem(4)
    learner = cls()
    model = learner.fit(X, y, s)
    est = sklearn_estimator(learner, n_samples=int(s.sum())).fit(X, y, sample_weight=s)
    theirs = learner.objective(from_sklearn(est), X, y, s)
    ours = learner.objective(model, X, y, s)
    # liblinear stops on its own tolerance; ours is certified, so never worse, and equal within 1e-6.
    assert ours <= theirs * (1 + 1e-12)
    assert abs(ours - theirs) <= REL * ours


def test_logistic_free_bias_matches_sklearn_lbfgs():
    X, y, _ = problem(5, weighted=False)
    learner = LogisticRegression(regularise_bias=False)
    est = sklearn_estimator(learner, n_samples=len(y), tol=1e-12).fit(X, y)
    ours = learner.objective(learner.fit(X, y), X, y)
    theirs = learner.objective(from_sklearn(est), X, y)
    assert ours <= theirs * (1 + 1e-12)
    assert abs(ours - theirs) <= REL * ours


@pytest.mark.parametrize("cls", LEARNERS)
@pytest.mark.parametrize("regularise_bias", [True, False])
def test_weight_k_equals_k_copies(cls, regularise_bias):
    X, y, s = problem(6, n=60)
    s = s + 1.0
    learner = cls(regularise_bias=regularise_bias)
    rows = np.repeat(np.arange(len(y)), s.astype(int))
    weighted = learner.fit(X, y, s)
    copies = learner.fit(X[rows], y[rows])
    assert learner.objective(weighted, X, y, s) == pytest.approx(learner.objective(copies, X[rows], y[rows]), rel=1e-8)
    assert np.allclose(weighted.theta, copies.theta, atol=1e-4)


@pytest.mark.parametrize("cls", LEARNERS)
def test_zero_weight_equals_dropping_the_row(cls):
    X, y, s = problem(7)
    keep = s > 0
    learner = cls()
    full = learner.fit(X, y, s)
    dropped = learner.fit(X[keep], y[keep], s[keep])
    assert learner.objective(full, X, y, s) == pytest.approx(
        learner.objective(dropped, X[keep], y[keep], s[keep]), rel=1e-9
    )


@pytest.mark.parametrize("cls", LEARNERS)
@pytest.mark.parametrize("regularise_bias", [True, False])
def test_warm_start_sequence_matches_cold_fits(cls, regularise_bias):
    """MTP's pattern: append a point, or raise the weight of an appended one, and re-fit."""
    X, y, _ = problem(8, n=150)
    rng = np.random.default_rng(0)
    learner = cls(regularise_bias=regularise_bias)
    Xc, yc, sc = X[:100], y[:100], np.ones(100)
    model = learner.fit(Xc, yc, sc)
    for step in range(6):
        if step % 2 == 0:
            x_new = rng.normal(size=(1, X.shape[1])) * 3
            Xc, yc, sc = np.vstack([Xc, x_new]), np.append(yc, -1.0 if step % 4 else 1.0), np.append(sc, 1.0)
        else:
            sc = sc.copy()
            sc[-1] += 2.0
        warm = learner.fit(Xc, yc, sc, warm_start=model)
        cold = learner.fit(Xc, yc, sc)
        assert warm.info["converged"]
        assert learner.objective(warm, Xc, yc, sc) == pytest.approx(learner.objective(cold, Xc, yc, sc), rel=1e-9)
        model = warm


@pytest.mark.parametrize("cls", LEARNERS)
def test_warm_start_tolerates_a_broken_contract(cls):
    """A warm start from other rows, another C_R or fewer features' worth of state only costs time."""
    X, y, s = problem(9)
    other = cls(C_R=0.5).fit(X[::-1] * 2, y[::-1], s[::-1])
    learner = cls()
    warm = learner.fit(X[:80], y[:80], s[:80], warm_start=other)
    cold = learner.fit(X[:80], y[:80], s[:80])
    assert learner.objective(warm, X[:80], y[:80], s[:80]) == pytest.approx(
        learner.objective(cold, X[:80], y[:80], s[:80]), rel=1e-9
    )
    plain = Model(np.ones(X.shape[1]), 3.0)
    assert learner.fit(X, y, s, warm_start=plain).info["converged"]


@pytest.mark.parametrize("regularise_bias", [True, False])
@pytest.mark.parametrize("where", ["old row", "new row", "zero-weight row"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_svm_warm_fit_rejects_non_finite_rows(regularise_bias, where, value):
    """A warm re-fit checks X for finiteness in its certificate pass instead of up front: a
    non-finite entry anywhere (also in a row it never visits) still raises ValueError."""
    X, y, s = problem(19, n=80, d=5)
    learner = LinearSVM(regularise_bias=regularise_bias)
    model = learner.fit(X[:-1], y[:-1], s[:-1])
    bad = X.copy()
    row = {"old row": int(np.argmax(s)), "new row": len(y) - 1, "zero-weight row": int(np.flatnonzero(s == 0)[0])}[
        where
    ]
    bad[row, 2] = value
    with pytest.raises(ValueError, match="NaN" if np.isnan(value) else "inf"):
        learner.fit(bad, y, s, warm_start=model)


@pytest.mark.parametrize(
    "change", ["rows rewritten", "rows scaled", "weights lowered", "rows dropped", "labels flipped"]
)
def test_svm_warm_start_from_changed_rows_is_still_exact(change):
    """The warm start trusts its stored weights ``Σ β_i y_i x_i`` only as a starting point: the
    certificate recomputes them from X, so a start whose rows no longer match costs a round but
    never the result."""
    X, y, s = problem(20, n=200, d=6)
    s = s + 1.0
    learner = LinearSVM()
    model = learner.fit(X, y, s)
    X2, y2, s2 = X.copy(), y.copy(), s.copy()
    if change == "rows rewritten":
        X2[::3] = np.random.default_rng(1).normal(size=X2[::3].shape)
    elif change == "rows scaled":
        X2 *= 3.0
    elif change == "weights lowered":
        s2[::2] = 0.5
    elif change == "rows dropped":
        X2, y2, s2 = X2[:150], y2[:150], s2[:150]
    else:
        y2[::4] *= -1.0
    warm = learner.fit(X2, y2, s2, warm_start=model)
    cold = learner.fit(X2, y2, s2)
    assert warm.info["converged"]
    assert learner.objective(warm, X2, y2, s2) == pytest.approx(learner.objective(cold, X2, y2, s2), rel=1e-9)
    assert learner.objective(warm, X2, y2, s2) <= cold.info["objective"] * (1 + 1e-10) + 1e-15


def test_svm_warm_start_is_cheaper():
    X, y, _ = problem(10, n=400, d=20)
    learner = LinearSVM()
    model = learner.fit(X[:-1], y[:-1])
    warm = learner.fit(X, y, warm_start=model)
    cold = learner.fit(X, y)
    assert warm.info["iterations"] < cold.info["iterations"]


def test_svm_warm_refit_reads_x_once():
    """MTP's two re-fits (a point appended, its weight raised) certify after one pass over X:
    the stored margins and weights predict the start exactly, so the first round is the last."""
    X, y, _ = problem(10, n=400, d=20)
    learner = LinearSVM()
    model = learner.fit(X[:-1], y[:-1])
    s = np.ones(len(y))
    for _ in range(3):
        model = learner.fit(X, y, s, warm_start=model)
        assert model.info["converged"] and model.info["rounds"] == 1
        s[-1] += 1.0


@pytest.mark.parametrize("cls", LEARNERS)
def test_loss_grad_matches_finite_differences(cls):
    X, y, _ = problem(11, n=20, d=4)
    learner = cls()
    rng = np.random.default_rng(1)
    model = Model(rng.normal(size=4), 0.3)
    grads = learner.loss_grad(model, X, y)
    assert grads.shape == (20, 5)
    h = 1e-6
    for k in range(5):
        e = np.zeros(5)
        e[k] = h
        up = learner.loss(Model.from_theta(model.theta + e), X, y)
        down = learner.loss(Model.from_theta(model.theta - e), X, y)
        numeric = (up - down) / (2 * h)
        smooth = np.abs(1 - y * model.decision_function(X)) > 1e-3  # away from the hinge's kink
        assert np.allclose(grads[smooth, k], numeric[smooth], atol=1e-6)


def test_losses_and_regulariser_values():
    X = np.array([[1.0, 0.0], [0.0, 2.0]])
    y = np.array([1.0, -1.0])
    model = Model(np.array([0.5, 1.0]), -0.5)  # margins: y f = 0, -1.5
    svm, lr = LinearSVM(C_R=0.2), LogisticRegression(C_R=0.2, regularise_bias=False)
    assert np.allclose(svm.loss(model, X, y), [1.0, 2.5])
    assert np.allclose(lr.loss(model, X, y), [np.log(2.0), np.log1p(np.exp(1.5))])
    assert svm.regulariser(model) == pytest.approx(0.5 * (0.25 + 1.0 + 0.25))
    assert lr.regulariser(model) == pytest.approx(0.5 * 1.25)
    assert np.allclose(svm.regulariser_grad(model), [0.5, 1.0, -0.5])
    assert np.allclose(lr.regulariser_grad(model), [0.5, 1.0, 0.0])
    s = np.array([3.0, 1.0])
    assert svm.objective(model, X, y, s) == pytest.approx((3 * 1.0 + 2.5) / 4 + 0.2 * 0.75)


@pytest.mark.parametrize("cls", LEARNERS)
def test_with_regularisation_copies_settings(cls):
    learner = cls(C_R=0.09, regularise_bias=False, tol=1e-8, max_iter=50)
    other = learner.with_regularisation(0.5)
    assert isinstance(other, cls) and isinstance(other, Learner)
    assert (other.C_R, other.regularise_bias, other.tol, other.max_iter) == (0.5, False, 1e-8, 50)
    assert learner.C_R == 0.09


def test_registered_under_their_names():
    host = load_host(load_external=False)
    assert isinstance(host.create("learners", "svm", C_R=0.5), LinearSVM)
    lr = host.create("learners", "logistic", regularise_bias=False)
    assert isinstance(lr, LogisticRegression) and not lr.regularise_bias


@pytest.mark.parametrize("cls", LEARNERS)
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda X, y, s: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), y, s), "NaN"),
        (lambda X, y, s: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), y, s), "inf"),
        (lambda X, y, s: (X[:, 0], y, s), "2-D"),
        (lambda X, y, s: (X, (y + 1) / 2, s), "-1 or \\+1"),
        (lambda X, y, s: (X, y[:-1], s), "entries"),
        (lambda X, y, s: (X, y, -s), "non-negative"),
        (lambda X, y, s: (X, y, 0 * s), "all be zero"),
        (lambda X, y, s: (X[:0], y[:0], None), "at least one"),
    ],
)
def test_bad_input_raises_value_error(cls, change, message):
    X, y, _s = problem(12, n=10, d=3, weighted=False)
    Xb, yb, sb = change(X, y, np.ones(10))
    with pytest.raises(ValueError, match=message):
        cls().fit(Xb, yb, sb)


@pytest.mark.parametrize("cls", LEARNERS)
def test_bad_parameters_and_warm_start_raise(cls):
    for bad in ({"C_R": 0.0}, {"C_R": float("nan")}, {"tol": -1.0}, {"max_iter": 0}):
        with pytest.raises(ValueError):
            cls(**bad)
    X, y, _ = problem(13, n=10, d=3)
    with pytest.raises(ValueError, match="warm_start"):
        cls().fit(X, y, warm_start=Model(np.zeros(4), 0.0))
    with pytest.raises(ValueError, match="features"):
        cls().loss(Model(np.zeros(4), 0.0), X, y)


def test_one_class():
    X, _y, _ = problem(14, n=20, d=3)
    ones = np.ones(20)
    assert LinearSVM(regularise_bias=False).fit(X, ones).accuracy(X, ones) == 1.0
    assert LogisticRegression().fit(X, ones).info["converged"]
    with pytest.raises(ValueError, match="both classes"):
        LogisticRegression(regularise_bias=False).fit(X, ones)


def test_duplicated_rows_and_max_iter_reported():
    X, y, _ = problem(15, n=30, d=3)
    X2, y2 = np.vstack([X, X, X]), np.concatenate([y, y, y])
    assert LinearSVM().fit(X2, y2).info["converged"]
    capped = LinearSVM(tol=1e-14, max_iter=1).fit(X2, y2)
    assert capped.info["iterations"] == 1 and not capped.info["converged"]


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_to_sklearn_predicts_like_the_model(kind):
    X, y, _ = problem(16)
    model = (LinearSVM() if kind == "svm" else LogisticRegression()).fit(X, y)
    est = to_sklearn(model, kind)
    assert np.array_equal(est.predict(X), model.predict(X))
    assert np.allclose(est.decision_function(X), model.decision_function(X))
    back = from_sklearn(est)
    assert np.array_equal(back.theta, model.theta)


def test_from_sklearn_maps_classes_and_rejects_multiclass():
    X, y, _ = problem(17)
    est = SGDClassifier(random_state=0, max_iter=50, tol=None).fit(X, (y > 0).astype(int))
    model = from_sklearn(est)
    assert np.array_equal(model.predict(X) > 0, est.predict(X) == 1)
    assert model.info["classes"] == [0, 1]
    multi = SGDClassifier(random_state=0, max_iter=5, tol=None).fit(X, np.arange(len(y)) % 3)
    with pytest.raises(ValueError, match="binary"):
        from_sklearn(multi)
    with pytest.raises(ValueError, match="kind"):
        to_sklearn(model, "tree")
    with pytest.raises(ValueError, match="regularise"):
        sklearn_estimator(LinearSVM(regularise_bias=False), 10)


def test_pure_python_kernels_give_the_same_fit(monkeypatch):
    """Without numba the same loops run as Python (``_jit`` falls back to the identity)."""
    import importlib.util

    import poisonbench.plugins.learners._dual_cd as dual_cd

    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba absent: the pure-Python kernels are the ones every other test runs")
    X, y, s = problem(18, n=60, d=4)
    compiled = LinearSVM().fit(X, y, s)
    compiled_warm = LinearSVM().fit(X, y, s + 1.0, warm_start=compiled)
    kernels = [name for name, f in vars(dual_cd).items() if hasattr(f, "py_func")]
    assert {"_dcd_epochs", "_combine_rows", "_certificate_pass", "_row_margins", "_fill_sqnorms"} <= set(kernels)
    for name in kernels:
        monkeypatch.setattr(dual_cd, name, getattr(dual_cd, name).py_func)
    state = np.random.get_state()[1].copy()
    python = LinearSVM().fit(X, y, s)
    assert np.array_equal(np.random.get_state()[1], state)  # no global RNG side effect
    assert python.info["converged"]
    assert np.allclose(python.theta, compiled.theta, atol=1e-10)
    python_warm = LinearSVM().fit(X, y, s + 1.0, warm_start=python)
    assert python_warm.info["converged"]
    assert np.allclose(python_warm.theta, compiled_warm.theta, atol=1e-8)
