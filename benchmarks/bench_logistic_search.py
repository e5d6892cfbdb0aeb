"""Speed of the logistic max-loss-difference search (MTP line 4 for logistic regression) against
the reference code's Adam search, timed in the same run with the values compared.

Baseline: projected Adam ascent with the reference settings (10 random restarts per label plus
the previous maximiser, lr 0.1, at most 20,000 steps, stop when the objective changes by less
than 1e-7; :func:`poisonbench.plugins.max_loss_diff.logistic_max_loss_diff`). Ours: the global
maximum over the box by branch and bound on the zonotope boundary
(:func:`poisonbench.plugins.max_loss_diff.logistic_max_loss_diff_box`). The check of the
value: ours is at least Adam's at the reference settings and at a high effort (100 restarts).

States: the first ``STATES`` iterates of an MTP run (logistic regression, C_R = 0.09, toward an
``error:0.05`` target of the reference grid, as in ``campaigns/paper-mnist-mtp-lr.toml``) on the
shipped MNIST 1 vs 7 with ``POISONBENCH_BENCH_FULL=1``; on the toy data of
``poisonbench.testing`` toward ``error:0.1`` by default (CI runs this file once with ``--benchmark-disable``).

    POISONBENCH_BENCH_FULL=1 python -m pytest benchmarks/bench_logistic_search.py -s -p no:cacheprovider
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.plugins.datasets.mnist import mnist
from poisonbench.plugins.learners.linear import LogisticRegression
from poisonbench.plugins.max_loss_diff import logistic_max_loss_diff, logistic_max_loss_diff_box
from poisonbench.plugins.mtp_algorithm import MTPSettings, _OnlineRun
from poisonbench.plugins.targets import error_target
from poisonbench.testing import toy_dataset

FULL = os.environ.get("POISONBENCH_BENCH_FULL") == "1"
STATES = 8 if FULL else 3


@pytest.fixture(scope="module")
def states():
    """(θ_t, θ_p, previous maximiser) at the first STATES iterations of a run, and the feasible set."""
    data = mnist(seed=0, pair="1v7") if FULL else toy_dataset(n=200, d=20, seed=2)
    scenario = Scenario(data, LogisticRegression(C_R=0.09))
    target = error_target(scenario, 0.05) if FULL else error_target(scenario, 0.1, quantiles=[0.5], repeats=[1, 2])
    run = _OnlineRun(scenario, target, MTPSettings(max_poisons=STATES, logistic_search="zonotope"))
    out = []
    for _ in run.batches():
        out.append((run.model.theta.copy(), target.theta, run.previous_x))
    return out[:STATES], scenario.feasible


def test_logistic_search_speedup(benchmark, states):
    cases, feasible = states
    rows = []
    for k, (theta_t, theta_p, previous) in enumerate(cases):
        t0 = time.perf_counter()
        adam = logistic_max_loss_diff(theta_t, theta_p, feasible, np.random.default_rng(k), init=previous)
        adam_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = logistic_max_loss_diff_box(theta_t, theta_p, feasible)
        ours_s = time.perf_counter() - t0
        high = logistic_max_loss_diff(theta_t, theta_p, feasible, np.random.default_rng(100 + k), restarts=100)
        rows.append((adam_s, ours_s, adam.value, ours.value, high.value))
        assert ours.value >= adam.value - 1e-9 and ours.value >= high.value - 1e-9
        assert ours.exact
    adam_s, ours_s = (float(np.median([r[i] for r in rows])) for i in (0, 1))
    total_adam, total_ours = (float(sum(r[i] for r in rows)) for i in (0, 1))
    gain = max(r[3] - r[2] for r in rows)
    benchmark.extra_info.update(
        states=len(rows),
        adam_median_s=adam_s,
        ours_median_s=ours_s,
        speedup_median=adam_s / ours_s,
        speedup_total=total_adam / total_ours,
        largest_gain_over_adam=gain,
    )
    benchmark.pedantic(lambda: logistic_max_loss_diff_box(cases[0][0], cases[0][1], feasible), rounds=3, iterations=1)
    print(
        f"\nlogistic search over {len(rows)} states: Adam median {adam_s * 1e3:.1f} ms, ours {ours_s * 1e3:.2f} ms, "
        f"ratio {adam_s / ours_s:.0f}x (total {total_adam / total_ours:.0f}x); ours - Adam at most {gain:.3g} higher"
    )
    for adam_s_k, ours_s_k, a, o, h in rows:
        print(
            f"  Adam {adam_s_k * 1e3:8.1f} ms value {a:.10f} | ours {ours_s_k * 1e3:6.2f} ms value {o:.10f} | high {h:.10f}"
        )
