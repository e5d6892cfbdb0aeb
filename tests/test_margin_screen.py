"""Safe margin screening (issue #17): the sketch's bounds, the screen's sides and sums against a
full read, the SVM's screened certificate against the full one, and the screened MTP metrics."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.plugins.learners._dual_cd import DualState
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.plugins.margin_screen import MAX_GENERATIONS, MarginScreen, RowSketch
from poisonbench.plugins.mtp_algorithm import MTPSettings, WeightedPool, _OnlineRun
from poisonbench.plugins.screened_metrics import ScreenedAccuracy
from poisonbench.plugins.targets import error_target
from poisonbench.plugins.theorem2 import theorem2_z
from poisonbench.testing import toy_dataset


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONBENCH_CACHE", str(tmp_path / "cache"))


def _low_rank_rows(n: int, d: int, rank: int, seed: int) -> np.ndarray:
    """Rows with a dominant ``rank``-dimensional subspace plus a small full-rank part."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + 0.05 * rng.normal(size=(n, d))


def _path(d: int, steps: int, seed: int, scale: float = 0.05) -> list[np.ndarray]:
    """A random walk of weight vectors (what successive fits look like)."""
    rng = np.random.default_rng(seed)
    w = [rng.normal(size=d)]
    for _ in range(steps):
        w.append(w[-1] + scale * rng.normal(size=d))
    return w


def _with_adversarial_rows(X: np.ndarray, path: list[np.ndarray]) -> np.ndarray:
    """X plus rows parallel to the path's moves: for them Cauchy–Schwarz is tight, so a radius
    missing any term (a generation's move, the merged slack) is too small."""
    moves = [path[k] - path[0] for k in range(1, len(path), 3)] + [path[-1] - path[k] for k in range(0, len(path), 5)]
    return np.vstack([X, np.array(moves)])


@pytest.mark.parametrize("rank", [0, 8])
def test_sketch_bounds_hold_for_every_row(rank):
    X = _low_rank_rows(300, 40, 6, seed=rank)
    X.flags.writeable = False
    sketch = RowSketch.randomised(X, rank=rank) if rank else RowSketch.plain(X)
    Z = X @ sketch.P  # float64 z: the stored float32 z is accounted for in ``ortho``
    R = X - Z @ sketch.P.T
    assert np.all(np.linalg.norm(R, axis=1) <= sketch.resid)
    assert np.all(np.linalg.norm(R @ sketch.P, axis=1) <= sketch.ortho + 1e-300)
    np.testing.assert_allclose(sketch.norms, np.linalg.norm(X, axis=1), rtol=1e-14)
    if rank:  # the sketch is worth having: the residuals are well below the norms
        assert np.median(sketch.resid / sketch.norms) < 0.2


@pytest.mark.parametrize("rank", [0, 8])
def test_screen_sides_and_sums_match_a_full_read_along_a_path(rank):
    d = 40
    path = _path(d, 3 * MAX_GENERATIONS, seed=2)
    X = _with_adversarial_rows(_low_rank_rows(400, d, 6, seed=3), path)
    X.flags.writeable = False
    n = X.shape[0]
    rng = np.random.default_rng(4)
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    levels0 = rng.normal(size=n)
    sketch = RowSketch.randomised(X, rank=rank) if rank else None
    screen = MarginScreen.from_pass(X, y, path[0], levels0, sketch)
    coef = np.ones(n)
    checked = 0
    for k, w in enumerate(path[1:], start=1):
        levels = levels0 + 0.01 * k
        if k % 7 == 0:  # a coefficient change makes its rows leave A / enter below afresh
            coef = coef.copy()
            coef[rng.integers(n, size=5)] += 1.0
        answer = screen.query(w, levels, coef, n)
        exact = y * (X @ w) - levels
        below = answer.below
        near = np.zeros(n, dtype=bool)
        near[answer.near] = True
        assert np.all(exact[below] < 0), "a row placed surely below is above its level"
        assert np.all(exact[~below & ~near] > 0), "a row placed surely above is below its level"
        np.testing.assert_allclose(answer.near_margins, X[answer.near] @ w, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(answer.below_sum, (coef * y)[below] @ X[below], rtol=1e-10, atol=1e-10)
        far = ~near
        assert np.all(np.sign(y[far] * answer.margins[far] - levels[far]) == np.sign(exact[far]))
        checked += int(far.sum())
    assert len(screen.weights) <= MAX_GENERATIONS
    assert checked > 0.3 * n * (len(path) - 1)  # the screen does place most rows without a read


def test_screen_refuses_rather_than_read_past_its_limit():
    X = _low_rank_rows(200, 20, 4, seed=5)
    X.flags.writeable = False
    y = np.ones(200)
    screen = MarginScreen.from_pass(X, y, np.zeros(20), np.zeros(200))
    assert screen.query(np.full(20, 10.0), np.zeros(200), np.ones(200), max_rows=10) is None


def test_screen_copy_keeps_its_own_cache():
    X = _low_rank_rows(100, 10, 3, seed=6)
    X.flags.writeable = False
    y = np.ones(100)
    screen = MarginScreen.from_pass(X, y, np.zeros(10), np.zeros(100))
    twin = screen.copy()
    screen.query(np.full(10, 0.1), np.zeros(100), np.ones(100), 100)
    assert len(twin.weights) == 1 and np.all(twin.generation == 0)


def test_covers_only_the_same_read_only_memory():
    pool = WeightedPool(np.arange(12.0).reshape(6, 2), np.array([1.0, -1, 1, -1, 1, -1]))
    X, y, _ = pool.arrays()
    screen = MarginScreen.from_pass(X, y, np.zeros(2), np.zeros(6))
    pool.add(np.array([5.0, 5.0]), 1.0, 1)
    X2, y2, _ = pool.arrays()
    assert screen.covers(X2, y2)  # rows appended in the same buffer
    assert not screen.covers(np.array(X2), y2)  # a copy
    writeable = pool._X[: pool.n_rows]
    assert not screen.covers(writeable, y2)  # writeable memory is not trusted
    assert not screen.covers(X2, -y2)  # other labels


def test_pool_views_are_read_only():
    data = toy_dataset(n=30, d=3, seed=0)
    pool = WeightedPool(data.X_train, data.y_train)
    for view in pool.arrays():
        with pytest.raises(ValueError):
            view[0] = 0.0


def _mtp_like_refits(learner: LinearSVM, n: int = 1500, d: int = 30, steps: int = 25, seed: int = 7):
    """Warm re-fits on a growing pool (a point added or a weight raised each step), with the
    same fit done from scratch on a private copy (a full certificate): yields both models."""
    X = _low_rank_rows(n, d, 5, seed=seed)
    rng = np.random.default_rng(seed)
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)
    pool = WeightedPool(X, y)
    model = learner.fit(*pool.arrays()[:2], sample_weight=pool.arrays()[2])
    last = None
    for step in range(steps):
        if last is not None and step % 4 == 3:
            x, lab = last  # a repeated point raises its row's weight
        else:
            x, lab = 0.5 * rng.normal(size=d), float(rng.choice([-1.0, 1.0]))
        pool.add(x, lab, 1)
        last = (x, lab)
        Xp, yp, sp = pool.arrays()
        model = learner.fit(Xp, yp, sample_weight=sp, warm_start=model)
        yield model, learner.fit(np.array(Xp), yp, sample_weight=sp), (Xp, yp, sp)


def test_screened_svm_certificate_matches_the_full_one():
    learner = LinearSVM(C_R=0.01, tol=1e-10)
    screened = 0
    for warm, cold, (X, y, s) in _mtp_like_refits(learner):
        assert warm.info["converged"] and warm.info["relative_gap"] <= 1e-10
        assert cold.info["screened_certificate"] is False
        obj_warm, obj_cold = learner.objective(warm, X, y, s), learner.objective(cold, X, y, s)
        assert abs(obj_warm - obj_cold) <= 2e-10 * obj_cold
        assert warm.info["objective"] == pytest.approx(obj_warm, rel=1e-12)  # the screened primal is exact
        screened += bool(warm.info["screened_certificate"])
    assert screened >= 10


def test_screened_svm_state_pickles_without_the_screen():
    learner = LinearSVM(C_R=0.01, tol=1e-10)
    warm, _, _ = next(_mtp_like_refits(learner, steps=2))
    assert isinstance(warm.state, DualState) and warm.state.screen is not None
    back = pickle.loads(pickle.dumps(warm.state))
    assert back.screen is None and np.array_equal(back.beta, warm.state.beta) and back.C == warm.state.C


def test_screened_accuracy_equals_model_accuracy_along_a_path():
    d = 12
    X = _low_rank_rows(500, d, 4, seed=8)
    y = np.where(X[:, 1] > 0, 1.0, -1.0)
    metric = ScreenedAccuracy(X, y)
    from poisonbench.learner import Model

    for k, w in enumerate(_path(d, 60, seed=9, scale=0.02)):
        model = Model(w, 0.01 * k)
        assert metric(model) == model.accuracy(X, y)
    assert metric.rebuilds >= 1


@pytest.mark.parametrize("learner", [LinearSVM(C_R=0.05), LogisticRegression(C_R=0.05)])
def test_mtp_clean_loss_from_the_objective_equals_the_sum(learner):
    data = toy_dataset(n=150, d=4, seed=3)
    scenario = Scenario(data, learner)
    target = error_target(scenario, 0.2, quantiles=[0.1, 0.3], repeats=[1, 3])
    run = _OnlineRun(scenario, target, MTPSettings(max_poisons=12, copies=2))
    for batch in run.batches():
        direct = float(learner.loss(run.model, data.X_train, data.y_train).sum())
        assert run._clean_loss() == pytest.approx(direct, rel=1e-9, abs=1e-9)
        z = theorem2_z(learner, run.model, target, data.X_train, data.y_train, batch.diagnostics["max_loss_diff"])
        assert batch.diagnostics["z"] == (pytest.approx(z, rel=1e-8) if z is not None else None)


def test_screened_fits_do_not_leak_between_model_copies():
    learner = LinearSVM(C_R=0.01, tol=1e-10)
    fits = _mtp_like_refits(learner, steps=3)
    first, _, (X, y, s) = next(fits)
    twin = dataclasses.replace(first, state=dataclasses.replace(first.state, screen=first.state.screen.copy()))
    a = learner.fit(X, y, sample_weight=s, warm_start=first)
    b = learner.fit(X, y, sample_weight=s, warm_start=twin)
    assert a.info["objective"] == pytest.approx(b.info["objective"], rel=1e-12)


def _bound_holds(screen: MarginScreen, X: np.ndarray, y: np.ndarray, w: np.ndarray, levels: np.ndarray) -> None:
    offset, radius = screen.bounds(w, levels)
    exact = y * (X @ w) - levels
    worst = np.max(np.abs(exact - offset) - radius)
    assert worst <= 0, f"a row is {worst:.3g} outside its radius"


def test_radius_covers_merged_generations():
    """Big moves first, then tiny ones: after the early generations are merged, a merged row's
    deviation is mostly the merged move, which only its slack covers."""
    d, n = 30, 600
    X = _low_rank_rows(n, d, 5, seed=11)
    X.flags.writeable = False
    rng = np.random.default_rng(12)
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    path = [rng.normal(size=d)]
    for k in range(4 * MAX_GENERATIONS):
        path.append(path[-1] + (0.3 if k < 2 * MAX_GENERATIONS else 1e-4) * rng.normal(size=d))
    levels = y * (X @ path[0]) + 0.05 * rng.normal(size=n)  # many rows near their level: read often
    screen = MarginScreen.from_pass(X, y, path[0], levels, RowSketch.randomised(X, rank=6))
    for w in path[1:]:
        _bound_holds(screen, X, y, w, levels)
        screen.query(w, levels, np.ones(n), n)
    assert np.any(screen.slack > 0)  # merges happened
    _bound_holds(screen, X, y, path[-1], levels)
    screen.query(path[-1], levels, np.ones(n), n)
    second = screen.query(path[-1], levels, np.ones(n), n)  # every row just read: radii are rounding only
    exact = y * (X @ path[-1]) - levels
    assert second.near.size == int((np.abs(exact) < 1e-9).sum())


def test_radius_covers_the_float32_sketch_rounding():
    """Rows and moves inside the sketch's subspace: the only deviation left is the float32
    rounding of z_i, which the ``‖Pᵀ r_i‖ ‖c‖`` term must cover."""
    d, n, k = 30, 200, 6
    rng = np.random.default_rng(13)
    basis = np.linalg.qr(rng.normal(size=(d, k)))[0]
    X = (1e3 * rng.normal(size=(n, k))) @ basis.T
    X.flags.writeable = False
    y = np.ones(n)
    screen = MarginScreen.from_pass(X, y, np.zeros(d), np.zeros(n), RowSketch(X, basis))
    w = basis @ (1e3 * rng.normal(size=k))
    _bound_holds(screen, X, y, w, np.zeros(n))


def test_screened_certificate_reads_rows_whose_dual_value_contradicts_their_side():
    """A warm state with some far rows moved off their bound: the certificate must read them
    (their gap terms are not zero) and still certify the same optimum."""
    learner = LinearSVM(C_R=0.01, tol=1e-10)
    *_, (warm, cold, (X, y, s)) = _mtp_like_refits(learner, steps=6)
    state = warm.state
    at_bound = np.flatnonzero(state.beta[: state.screen.n] >= s[: state.screen.n])
    beta = state.beta.copy()
    beta[at_bound[:20]] *= 0.5
    broken = dataclasses.replace(warm, state=dataclasses.replace(state, beta=beta, screen=state.screen.copy()))
    refit = learner.fit(X, y, sample_weight=s, warm_start=broken)
    assert refit.info["converged"]
    assert learner.objective(refit, X, y, s) == pytest.approx(learner.objective(cold, X, y, s), rel=2e-10)


def test_rows_at_their_bound_keep_beta_exactly_at_the_weight():
    learner = LinearSVM(C_R=0.01, tol=1e-10)
    for warm, _, (_, _, s) in _mtp_like_refits(learner, steps=8):
        beta = warm.state.beta
        assert not np.any((beta < s) & (beta > s * (1 - 1e-12)))


def test_screened_certificate_equals_the_full_read_for_any_dual_point():
    """``_screened_certificate`` at a dual point with rows off their side's bound (far rows at
    half their weight, rows appended after the screen): ``w(α)``, the primal and G against a
    full read."""
    from poisonbench.plugins.learners import _dual_cd

    learner = LinearSVM(C_R=0.01, tol=1e-10)
    *_, (warm, _, (X, y, s)) = _mtp_like_refits(learner, steps=5)
    screen = warm.state.screen.copy()
    n = X.shape[0]
    C = 1.0 / (learner.C_R * float(s.sum()))
    ub = C * s
    alpha = np.minimum(C * warm.state.beta, ub)
    far_bound = np.flatnonzero(alpha[: screen.n] >= ub[: screen.n])[:15]
    alpha[far_bound] *= 0.5
    w, b = warm.w * 1.001, warm.b
    rows = np.flatnonzero(s > 0)
    problem = _dual_cd._Dual(X, y, ub, np.full(n, np.nan), rows, 1e-10, 100, 0, s, C)
    g, w_alpha, primal = _dual_cd._screened_certificate(problem, screen, alpha, w, b, max_rows=n)
    np.testing.assert_allclose(w_alpha, X.T @ (alpha * y), rtol=1e-10, atol=1e-12)
    G = y * (X @ w + b) - 1.0
    assert primal == pytest.approx(0.5 * (w @ w + b * b) + float(ub @ np.maximum(0.0, -G)), rel=1e-12)
    assert np.all(np.sign(g) == np.sign(G))


def test_an_older_screen_stays_valid_after_a_newer_one_extends_the_shared_sketch(monkeypatch):
    """Screens of one buffer share their sketch; a newer screen over more rows extends it. The
    older screen must still read only its own rows (the kernels run as Python here, so an index
    past its arrays raises)."""
    import poisonbench.plugins.margin_screen as ms

    monkeypatch.setattr(ms, "_offsets_and_radii", ms._offsets_and_radii.py_func)
    X0 = _low_rank_rows(80, 12, 3, seed=14)
    pool = WeightedPool(X0, np.where(X0[:, 0] > 0, 1.0, -1.0))
    X, y, _ = pool.arrays()
    old = MarginScreen.from_pass(X, y, np.zeros(12), np.zeros(80), RowSketch.randomised(X, rank=3))
    pool.add(np.ones(12), 1.0, 1)
    X2, y2, _ = pool.arrays()
    MarginScreen.from_pass(X2, y2, np.zeros(12), np.zeros(81), old.sketch)
    assert old.sketch.Z.shape[0] == 81
    w = 0.1 * np.ones(12)
    _bound_holds(old, X, y, w, np.zeros(80))
    answer = old.query(w, np.zeros(80), np.ones(80), 80)
    assert answer is not None and answer.margins.shape == (80,)
