"""Speed of the ``learned-l2`` defence's λ search for the SVM: fits warm-started from the previous
λ's against a cold fit per evaluation (the search before), timed in the same run with the same
λ and validation loss asserted.

For a learner with a non-smooth loss (the hinge SVM) ``learned-l2`` has no hypergradient: it
evaluates the validation loss A(λ) on a 9-point grid, then runs Brent's method between the best
point's neighbours, each evaluation an exact, certified SVM fit at that λ. Ours: each fit starts
from the previous evaluation's model (``LinearSVM.fit(..., warm_start=...)``). Baseline: the same
search with every fit cold.

Problem: MNIST 1 vs 7 as ``paper-learned-l2`` has it (600 training points after its 200
validation points, the trusted validation set for A) plus 200 poisons of the KKT kind (two
points, repeated), the defence's own λ range [−8, log 200]; with ``POISONBENCH_BENCH_FULL=1`` the
training points are grown to 13,007 by ``augmented_mnist`` (the validation set stays the same).

    POISONBENCH_BENCH_FULL=1 python -m pytest benchmarks/bench_learned_l2.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest
from augmented_mnist import augmented_mnist17

from poisonbench.plugins.datasets.mnist import mnist
from poisonbench.plugins.defences.l2 import LearnedL2
from poisonbench.plugins.learners.linear import LinearSVM

FULL = os.environ.get("POISONBENCH_BENCH_FULL") == "1"
N_POISONS = 200


class ColdSVM(LinearSVM):
    """The ``svm`` learner with every warm start dropped: the baseline's fits."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None, warm_start: Any = None) -> Any:
        return super().fit(X, y, sample_weight)


@pytest.fixture(scope="module")
def problem():
    data = mnist(seed=0, pair="1v7", n_val=200)
    X, y = data.X_train, data.y_train
    if FULL:
        grown = augmented_mnist17(13_007)
        X, y = grown.X_train, grown.y_train
    d = X.shape[1]
    X = np.vstack(
        [X, np.repeat(np.full((1, d), 0.3), N_POISONS // 2, 0), np.repeat(np.full((1, d), 0.7), N_POISONS // 2, 0)]
    )
    y = np.concatenate([y, np.ones(N_POISONS // 2), -np.ones(N_POISONS // 2)])
    return X, y, data.X_val, data.y_val


def test_warm_vs_cold_search(benchmark, problem):
    X, y, X_val, y_val = problem
    defence = LearnedL2(method="search")

    def run(learner: LinearSVM) -> tuple[float, Any]:
        t0 = time.perf_counter()
        out = defence.fit(learner, X, y, None, X_val, y_val)
        return time.perf_counter() - t0, out

    run(LinearSVM())  # untimed: numba compilation and caches
    ours_s, ours = run(LinearSVM())
    base_s, base = run(ColdSVM())
    benchmark.pedantic(lambda: run(LinearSVM()), rounds=1, iterations=1)
    info = {
        "n_rows": X.shape[0],
        "evaluations": int(ours.hyperparameters["iterations"]),
        "ours_s": ours_s,
        "baseline_s": base_s,
        "speedup": base_s / ours_s,
        "lambda": ours.hyperparameters["lambda"],
        "lambda_baseline": base.hyperparameters["lambda"],
        "validation_loss": ours.hyperparameters["validation_loss"],
    }
    benchmark.extra_info.update(info)
    print("\nlearned-l2 search:", {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in info.items()})
    assert ours.hyperparameters["iterations"] == base.hyperparameters["iterations"]
    assert ours.hyperparameters["lambda"] == pytest.approx(base.hyperparameters["lambda"], abs=1e-6)
    assert ours.hyperparameters["validation_loss"] == pytest.approx(base.hyperparameters["validation_loss"], rel=1e-8)
