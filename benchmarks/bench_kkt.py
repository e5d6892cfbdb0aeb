"""Speed of the KKT hinge search against the reference code's approach, timed in the same run
with the same minimum asserted.

Koh et al.'s grid over the split n₊/n is one second-order cone program per grid point (200 of
them at their step 0.005), each built and compiled afresh: the baseline here (a fresh
``_HingeSearch`` per point). Ours (``plugins/attacks/kkt.py``): the split's value is convex in
n₊ (the perspective argument of the module's docstring), so one SOCP over the continuous split
and the two grid points each side of its minimiser (``_HingeSearch.bracketed``: 5 solves). In
between, for reference: every grid point re-solved on one parameterised problem, compiled once
(the search before the bracketing).

Problem: a target trained on the clean data plus two known points (weights 25 and 15), budget
``BUDGET``. By default (CI runs this file once with ``--benchmark-disable``) the toy data of
``poisonbench.testing`` (400 × 50), grid step 0.05 (21 splits); with ``POISONBENCH_BENCH_FULL=1``
the shipped MNIST 1 vs 7 (800 × 784), budget 240, at Koh et al.'s step 0.005 (201 splits).

    POISONBENCH_BENCH_FULL=1 python -m pytest benchmarks/bench_kkt.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from poisonbench.plugins.attacks.kkt import _Box, _HingeSearch, _Residual, _split_grid
from poisonbench.plugins.datasets.mnist import mnist
from poisonbench.plugins.learners.linear import LinearSVM
from poisonbench.testing import toy_dataset

FULL = os.environ.get("POISONBENCH_BENCH_FULL") == "1"
STEP = 0.005 if FULL else 0.05
BUDGET = 240 if FULL else 40  # 30 % of the 800 MNIST points: 201 distinct splits at step 0.005


@pytest.fixture(scope="module")
def problem():
    data = mnist(seed=0, pair="1v7") if FULL else toy_dataset(n=400, d=50, seed=3)
    d = data.n_features
    learner = LinearSVM()
    X = np.vstack([data.X_train, np.full(d, 0.3), np.full(d, 0.7)])
    y = np.append(data.y_train, [1.0, -1.0])
    target = learner.fit(X, y, sample_weight=np.append(np.ones(data.n_train), [25, 15]))
    residual = _Residual(learner, target, data.X_train, data.y_train, BUDGET, True, 1e-6)
    splits = _split_grid(BUDGET, STEP, residual.exact_bias_n_pos())
    return data, residual, splits


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def test_bracketed_vs_rebuilt_problem(benchmark, problem):
    data, residual, splits = problem
    box = _Box.of(data.feasible, data.X_train)

    def rebuilt():
        out = []
        for k in splits:
            candidates, failed = _HingeSearch(residual, box).run(np.array([k]))
            assert failed == 0
            out += candidates
        return out

    _HingeSearch(residual, box).bracketed(splits)  # untimed: cvxpy's and the solvers' first-call costs
    ours_s, (ours, failed, solved) = _timed(lambda: _HingeSearch(residual, box).bracketed(splits))
    grid_s, (grid, grid_failed) = _timed(lambda: _HingeSearch(residual, box).run(splits))
    base_s, base = _timed(rebuilt)
    benchmark.pedantic(lambda: _HingeSearch(residual, box).bracketed(splits), rounds=1, iterations=1)
    best = min(c.search_value for c in ours)
    values_grid = np.array([c.search_value for c in grid])
    values_base = np.array([c.search_value for c in base])
    info = {
        "n_train": data.n_train,
        "d": data.n_features,
        "splits": len(splits),
        "solved": solved,
        "ours_s": ours_s,
        "grid_parameterised_s": grid_s,
        "baseline_s": base_s,
        "speedup": base_s / ours_s,
        "grid_speedup": base_s / grid_s,
        "best": best,
        "best_baseline": float(values_base.min()),
        "grid_max_value_diff": float(np.abs(values_grid - values_base).max()),
    }
    benchmark.extra_info.update(info)
    print("\nKKT search:", {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in info.items()})
    assert failed == grid_failed == 0 and len(grid) == len(base) == len(splits) and solved <= 4
    assert np.allclose(values_grid, values_base, rtol=1e-5, atol=1e-7)  # the same problems, solved alike
    assert best == pytest.approx(values_base.min(), rel=1e-5, abs=1e-7)  # the bracket holds the grid's minimum
