"""The global logistic max-loss-difference search over a box (zonotope boundary, branch and
bound): against dense grids, vertex enumeration and high-effort Adam."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from poisonbench.dataset import FeasibleSet
from poisonbench.plugins.max_loss_diff import (
    MaxLossDiffSolver,
    logistic_loss_diff,
    logistic_max_loss_diff,
    logistic_max_loss_diff_box,
)


def _box(d: int, lo: float = 0.0, hi: float = 1.0, integer: np.ndarray | None = None) -> FeasibleSet:
    ints = np.zeros(d, bool) if integer is None else integer
    return FeasibleSet(np.full(d, lo), np.full(d, hi), ints, ())


@pytest.mark.parametrize("seed", range(12))
def test_global_maximum_on_a_dense_grid(seed):
    rng = np.random.default_rng(seed)
    d = 3
    theta_t, theta_p = 3 * rng.normal(size=d + 1), 3 * rng.normal(size=d + 1)
    box = _box(d, -1.0, 2.0)
    res = logistic_max_loss_diff_box(theta_t, theta_p, box)
    grid = np.array(list(itertools.product(np.linspace(-1, 2, 61), repeat=d)))
    best = max(float(logistic_loss_diff(theta_t, theta_p, grid, y).max()) for y in (-1.0, 1.0))
    assert res.exact and res.solver == "zonotope-bb"
    assert res.value >= best - 1e-12
    assert np.all(res.x >= -1.0) and np.all(res.x <= 2.0)
    assert res.value == pytest.approx(float(logistic_loss_diff(theta_t, theta_p, res.x, res.y)[0]), abs=1e-15)
    # the grid is dense: the maximiser's value is not far above the grid's
    assert res.value <= best + 0.05


@pytest.mark.parametrize("seed", range(4))
def test_at_least_the_best_of_many_adam_restarts(seed):
    rng = np.random.default_rng(seed)
    d = 25
    theta_t = rng.normal(size=d + 1)
    theta_p = theta_t + 0.7 * rng.normal(size=d + 1)
    box = _box(d)
    res = logistic_max_loss_diff_box(theta_t, theta_p, box)
    adam = logistic_max_loss_diff(theta_t, theta_p, box, np.random.default_rng(seed), restarts=60)
    assert res.value >= adam.value - 1e-10


def test_integer_features_are_rounded_and_not_certified():
    rng = np.random.default_rng(5)
    d = 6
    ints = np.array([True, False, True, False, False, False])
    box = _box(d, 0.0, 4.0, ints)
    theta_t, theta_p = rng.normal(size=d + 1), rng.normal(size=d + 1)
    res = logistic_max_loss_diff_box(theta_t, theta_p, box)
    assert not res.exact
    assert np.array_equal(res.x[ints], np.rint(res.x[ints]))
    assert res.value == pytest.approx(float(logistic_loss_diff(theta_t, theta_p, res.x, res.y)[0]), abs=1e-15)


def test_constant_objective_has_a_maximiser():
    box = _box(4)
    theta = np.array([0.0, 0.0, 0.0, 0.0, 0.5])
    res = logistic_max_loss_diff_box(theta, np.array([0.0, 0.0, 0.0, 0.0, -0.5]), box)
    assert res.x.shape == (4,) and np.isfinite(res.value)


def test_solver_option_selects_the_search():
    box = _box(5)
    rng = np.random.default_rng(1)
    theta_t, theta_p = rng.normal(size=6), rng.normal(size=6)
    assert MaxLossDiffSolver("logistic", box, logistic_search="zonotope")(theta_t, theta_p).solver == "zonotope-bb"
    assert MaxLossDiffSolver("logistic", box)(theta_t, theta_p, rng=rng).solver == "adam"
    with pytest.raises(ValueError, match="logistic_search"):
        MaxLossDiffSolver("logistic", box, logistic_search="lbfgs")


@pytest.mark.parametrize("y", [-1.0, 1.0])
def test_segment_bound_is_above_the_objective_on_the_segment(y):
    from poisonbench.plugins.logistic_box_search import _g, _segment_bound

    rng = np.random.default_rng(int(y > 0))
    a0, a1, c0, c1 = (4 * rng.normal(size=500) for _ in range(4))
    b_t, b_p = 0.3, -0.7
    bound = _segment_bound(a0, a1, c0, c1, y, b_t, b_p)
    t = np.linspace(0.0, 1.0, 201)[:, None]
    f = _g(a0 + t * (a1 - a0), y, b_t) - _g(c0 + t * (c1 - c0), y, b_p)
    assert np.all(bound >= f.max(axis=0) - 1e-12)
    a_end, c_end = a0 + 1e-3 * (a1 - a0), c0 + 1e-3 * (c1 - c0)
    short = _segment_bound(a0, a_end, c0, c_end, y, b_t, b_p)
    ends = np.maximum(_g(a0, y, b_t) - _g(c0, y, b_p), _g(a_end, y, b_t) - _g(c_end, y, b_p))
    assert np.all(short - ends < 1e-5)  # the gap shrinks as the square of the segment's length
