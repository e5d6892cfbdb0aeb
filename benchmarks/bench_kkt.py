"""Speed of the KKT hinge search: one parameterised cvxpy problem re-solved per split vs a
problem rebuilt (and recompiled) per split, as the reference code does.

Problem: the gaussians-like toy data of ``poisonbench.testing`` with d = 50 features and
N = 400 points, a target trained on D_c + two known points, budget n = 40, grid step 0.05
(21 splits; ``POISONBENCH_BENCH_FULL=1``: step 0.005, 201 splits). CI runs this file once with
``--benchmark-disable``.

    POISONBENCH_BENCH_FULL=1 python -m pytest benchmarks/bench_kkt.py --benchmark-enable -s
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.plugins.attacks.kkt import KKTAttack, _Box, _HingeSearch, _Residual, _split_grid
from poisonbench.plugins.learners.linear import LinearSVM
from poisonbench.testing import toy_dataset

STEP = 0.005 if os.environ.get("POISONBENCH_BENCH_FULL") else 0.05
BUDGET = 40


@pytest.fixture(scope="module")
def problem():
    data = toy_dataset(n=400, d=50, seed=3)
    learner = LinearSVM()
    X = np.vstack([data.X_train, np.full(50, 0.3), np.full(50, 0.7)])
    y = np.append(data.y_train, [1.0, -1.0])
    target = learner.fit(X, y, sample_weight=np.append(np.ones(data.n_train), [25, 15]))
    residual = _Residual(learner, target, data.X_train, data.y_train, BUDGET, True, 1e-6)
    splits = _split_grid(BUDGET, STEP, residual.exact_bias_n_pos())
    return data, learner, target, residual, splits


def test_parameterised_problem(benchmark, problem):
    data, _, _, residual, splits = problem
    box = _Box.of(data.feasible, data.X_train)
    candidates, failed = benchmark(lambda: _HingeSearch(residual, box).run(splits))
    assert failed == 0 and len(candidates) == len(splits)
    assert min(c.search_value for c in candidates) < 1e-6


def test_rebuilt_problem_per_split(benchmark, problem):
    """Baseline: a fresh problem for every split (compiled each time)."""
    data, _, _, residual, splits = problem
    box = _Box.of(data.feasible, data.X_train)

    def rebuild():
        out = []
        for k in splits:
            out += _HingeSearch(residual, box).run(np.array([k]))[0]
        return out

    candidates = benchmark(rebuild)
    assert len(candidates) == len(splits)


def test_whole_attack(benchmark, problem):
    data, learner, target, _, _ = problem
    attack = KKTAttack(target, split_step=STEP)
    batch = benchmark(lambda: next(iter(attack.poison(Scenario(data, learner, budget=BUDGET)))))
    assert batch.diagnostics["kkt_objective"] < 1e-6
