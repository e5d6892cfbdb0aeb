"""Max loss difference (MTP Algorithm 1, line 4): the hinge closed form against cvxpy LPs and
MILPs and against sampling; the logistic Adam search against a grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from poisonbench.dataset import FeasibleSet
from poisonbench.plugins.max_loss_diff import (
    CvxpyHinge,
    MaxLossDiffSolver,
    box_knapsack,
    hinge_loss_diff,
    hinge_max_loss_diff_box,
    logistic_loss_diff,
    logistic_max_loss_diff,
)


def _instance(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple]:
    """A random (θ_t, θ_p, lo, hi, labels) of one degenerate family."""
    d = int(rng.integers(1, 9))
    lo = rng.uniform(-1.0, 0.5, d)
    hi = lo + rng.uniform(0.0, 1.5, d)
    theta_t = rng.normal(size=d + 1) * rng.choice([0.1, 1.0, 5.0])
    theta_p = rng.normal(size=d + 1) * rng.choice([0.1, 1.0, 5.0])
    labels: tuple = (-1.0, 1.0)
    if kind == "equal":
        theta_p = theta_t.copy()
    elif kind == "zeros":
        theta_t[rng.random(d + 1) < 0.5] = 0.0
        theta_p[rng.random(d + 1) < 0.5] = 0.0
    elif kind == "tight":
        fixed = rng.random(d) < 0.6
        hi[fixed] = lo[fixed]
    elif kind == "point":
        hi = lo.copy()
    elif kind == "target-zero":  # v = 1 everywhere: piece A (v <= 0) is empty
        theta_p = np.zeros(d + 1)
    elif kind == "one-label":  # a single label: the maximum can be below zero
        labels = (float(rng.choice([-1.0, 1.0])),)
        theta_p = theta_t + rng.normal(size=d + 1) * 0.05
        theta_t[-1] += 3.0 * labels[0]
    return theta_t, theta_p, lo, hi, labels


KINDS = ["generic", "equal", "zeros", "tight", "point", "target-zero", "one-label"]


@pytest.mark.parametrize("kind", KINDS)
def test_closed_form_equals_cvxpy_lp(kind):
    """Hundreds of instances in all: the closed form and the LPs agree to 1e-6, and the
    returned point attains the value."""
    rng = np.random.default_rng(KINDS.index(kind))
    negatives = 0
    for _ in range(30):  # 7 families x 30 = 210 instances
        theta_t, theta_p, lo, hi, labels = _instance(rng, kind)
        fs = FeasibleSet(lo, hi)
        ours = hinge_max_loss_diff_box(theta_t, theta_p, lo, hi, labels)
        ref = CvxpyHinge(fs, integer=False).max_loss_diff(theta_t, theta_p, labels)
        assert ours.value == pytest.approx(ref.value, abs=1e-6, rel=1e-9)
        assert fs.contains(ours.x, atol=1e-12).all()
        assert hinge_loss_diff(theta_t, theta_p, ours.x, ours.y)[0] == pytest.approx(ours.value, abs=1e-12)
        negatives += ours.value < -1e-9
        if kind == "equal":
            assert ours.value == pytest.approx(0.0, abs=1e-12)
    if kind == "one-label":
        assert negatives > 0, "the one-label family should include maxima below zero"


@pytest.mark.parametrize("seed", range(40))
def test_closed_form_dominates_samples_and_vertices(seed):
    """Independent of any solver: no sampled point or box vertex beats the closed form."""
    rng = np.random.default_rng(1000 + seed)
    theta_t, theta_p, lo, hi, labels = _instance(rng, KINDS[seed % len(KINDS)])
    best = hinge_max_loss_diff_box(theta_t, theta_p, lo, hi, labels)
    d = lo.shape[0]
    samples = rng.uniform(lo, hi, size=(4000, d))
    vertices = np.array(list(itertools.product(*zip(lo, hi))))
    for y in labels:
        for X in (samples, vertices):
            assert hinge_loss_diff(theta_t, theta_p, X, y).max() <= best.value + 1e-9


def test_knapsack_reports_an_empty_piece_and_solves_the_fractional_case():
    lo, hi = np.zeros(3), np.ones(3)
    assert box_knapsack(np.ones(3), np.ones(3), -0.5, lo, hi) is None  # a·x >= 0 > β
    x = box_knapsack(np.array([3.0, 2.0, 1.0]), np.array([1.0, 1.0, 1.0]), 1.5, lo, hi)
    np.testing.assert_allclose(x, [1.0, 0.5, 0.0])  # best ratio first, last one fractional
    x = box_knapsack(np.array([1.0, -1.0]), np.array([1.0, -1.0]), 5.0, np.zeros(2), np.ones(2))
    np.testing.assert_allclose(x, [1.0, 0.0])  # slack constraint: the unconstrained corner


def test_milp_matches_enumeration_of_binary_features():
    """Integer (0/1) features: the MILP equals brute force over the binary part, with the
    continuous part solved exactly by the closed form for each binary assignment. The cases
    include pieces settled by the closed-form shortcut and pieces that needed the MILP solver
    (a fractional integer feature), so both paths are checked."""
    solves = [_check_milp_case(seed) for seed in range(12)]
    assert 0 < sum(solves) < 12 * 6


def _check_milp_case(seed: int) -> int:
    rng = np.random.default_rng(seed)
    d_real, d_bin = 2, 5
    d = d_real + d_bin
    lo, hi = np.zeros(d), np.ones(d)
    integer = np.r_[np.zeros(d_real, bool), np.ones(d_bin, bool)]
    fs = FeasibleSet(lo, hi, integer=integer)
    theta_t, theta_p = rng.normal(size=d + 1), rng.normal(size=d + 1)
    solver = CvxpyHinge(fs)
    milp = solver.max_loss_diff(theta_t, theta_p)
    assert milp.exact and not milp.relaxed
    brute = -np.inf
    for bits in itertools.product([0.0, 1.0], repeat=d_bin):
        b = np.array(bits)
        # fold the fixed binary part into the biases, then solve the continuous part exactly
        tt = np.r_[theta_t[:d_real], theta_t[-1] + theta_t[d_real:d] @ b]
        tp = np.r_[theta_p[:d_real], theta_p[-1] + theta_p[d_real:d] @ b]
        brute = max(brute, hinge_max_loss_diff_box(tt, tp, lo[:d_real], hi[:d_real]).value)
    assert milp.value == pytest.approx(brute, abs=1e-6)
    assert np.allclose(milp.x[integer], np.round(milp.x[integer]), atol=1e-6)
    relaxed = hinge_max_loss_diff_box(theta_t, theta_p, lo, hi)
    assert relaxed.value >= milp.value - 1e-9  # the relaxation is an upper bound
    return solver.milp_solves


def test_onehot_constraints_restrict_the_lp():
    rng = np.random.default_rng(3)
    d = 6
    fs = FeasibleSet(np.zeros(d), np.ones(d), onehot_groups=((1, 2, 3),))
    theta_t, theta_p = rng.normal(size=d + 1) * 3, rng.normal(size=d + 1) * 3
    free = CvxpyHinge(fs, onehot="ignore").max_loss_diff(theta_t, theta_p)
    exact = CvxpyHinge(fs, onehot="exact").max_loss_diff(theta_t, theta_p)
    at_most = CvxpyHinge(fs, onehot="at-most-one").max_loss_diff(theta_t, theta_p)
    assert exact.x[[1, 2, 3]].sum() == pytest.approx(1.0, abs=1e-7)
    assert at_most.x[[1, 2, 3]].sum() <= 1.0 + 1e-7
    assert exact.value <= at_most.value + 1e-9 <= free.value + 2e-9
    assert free.relaxed and not exact.relaxed


def test_solver_auto_choice_and_bad_input():
    box = FeasibleSet.box(3)
    ints = FeasibleSet(np.zeros(3), np.ones(3), integer=np.array([False, True, True]))
    assert MaxLossDiffSolver("hinge", box).solver == "closed-form"
    assert MaxLossDiffSolver("hinge", ints).solver == "milp"
    assert MaxLossDiffSolver("hinge", ints, solver="closed-form")(np.ones(4), np.zeros(4)).relaxed
    with pytest.raises(ValueError, match="solver"):
        MaxLossDiffSolver("hinge", box, solver="gurobi")
    with pytest.raises(ValueError, match="loss"):
        MaxLossDiffSolver("squared", box)
    with pytest.raises(ValueError, match="onehot"):
        MaxLossDiffSolver("hinge", box, onehot="maybe")


@pytest.mark.parametrize("seed", range(6))
def test_logistic_adam_finds_the_grid_maximum_in_2d(seed):
    rng = np.random.default_rng(seed)
    fs = FeasibleSet(np.array([-1.0, 0.0]), np.array([1.0, 2.0]))
    theta_t, theta_p = rng.normal(size=3) * 2, rng.normal(size=3) * 2
    res = logistic_max_loss_diff(theta_t, theta_p, fs, np.random.default_rng(0), restarts=10, max_steps=5000)
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(0, 2, 201)), -1).reshape(-1, 2)
    grid = max(logistic_loss_diff(theta_t, theta_p, g, y).max() for y in (-1.0, 1.0))
    assert not res.exact
    assert res.value >= grid - 1e-3
    assert res.value == pytest.approx(logistic_loss_diff(theta_t, theta_p, res.x, res.y)[0], abs=1e-12)
    assert fs.contains(res.x).all()


def test_logistic_adam_rounds_integer_features():
    rng = np.random.default_rng(4)
    integer = np.array([False, True, True, True, False])
    fs = FeasibleSet(np.zeros(5), np.ones(5), integer=integer)
    theta_t, theta_p = rng.normal(size=6) * 2, rng.normal(size=6) * 2
    res = logistic_max_loss_diff(theta_t, theta_p, fs, np.random.default_rng(0), restarts=4, max_steps=2000)
    assert set(np.unique(res.x[integer])) <= {0.0, 1.0}
    assert res.value == pytest.approx(logistic_loss_diff(theta_t, theta_p, res.x, res.y)[0], abs=1e-12)
    brute = -np.inf  # integer part enumerated, continuous part on a grid
    g = np.linspace(0, 1, 101)
    for bits in itertools.product([0.0, 1.0], repeat=3):
        pts = np.array([[a, *bits, c] for a in g for c in g])
        brute = max(brute, max(logistic_loss_diff(theta_t, theta_p, pts, y).max() for y in (-1.0, 1.0)))
    assert res.value >= brute - 1e-2


def test_logistic_adam_is_seeded():
    fs = FeasibleSet.box(20)
    rng = np.random.default_rng(5)
    theta_t, theta_p = rng.normal(size=21), rng.normal(size=21)
    a = logistic_max_loss_diff(theta_t, theta_p, fs, np.random.default_rng(7), restarts=3, max_steps=50)
    b = logistic_max_loss_diff(theta_t, theta_p, fs, np.random.default_rng(7), restarts=3, max_steps=50)
    assert a.value == b.value and np.array_equal(a.x, b.x)
