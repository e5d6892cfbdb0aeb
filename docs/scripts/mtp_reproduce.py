"""Reproduce the MTP paper's numbers on the data shipped here (results quoted in docs/mtp.md).

    python docs/scripts/mtp_reproduce.py mnist    [--copies 1] [--full-grid]
    python docs/scripts/mtp_reproduce.py adult    --learner svm|logistic [--clusters 3] [--max-steps 20000]
    python docs/scripts/mtp_reproduce.py copies   (k = 1 vs k = 2 on MNIST 1–7, 10 % target)

Each finished experiment prints one JSON line (n_p, accuracies, lower bound, wall time).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from poisonbench.attack import Scenario
from poisonbench.plugins.datasets.adult import adult, top_subpopulations
from poisonbench.plugins.datasets.mnist import mnist
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.plugins.lower_bound import certified_lower_bound
from poisonbench.plugins.mtp_algorithm import MTPSettings, run_mtp
from poisonbench.plugins.targets import make_target

LEARNERS = {"svm": LinearSVM, "logistic": LogisticRegression}


def attack(scenario: Scenario, target, epsilon: float | None, copies: int = 1, cap: int = 20_000, **kw):
    """Run MTP to ε-closeness; return (induced model, n_p, last diagnostics, max-loss curve, seconds)."""
    t0 = time.perf_counter()
    X, y, curve, last = [scenario.dataset.X_train], [scenario.dataset.y_train], [], {}
    for batch in run_mtp(scenario, target, MTPSettings(epsilon=epsilon, copies=copies, max_poisons=cap, **kw)):
        X.append(batch.X)
        y.append(batch.y)
        last = batch.diagnostics
        curve.append((last["n_poisons"], last["max_loss_diff"]))
    secs = time.perf_counter() - t0
    induced = scenario.learner.fit(np.vstack(X), np.concatenate(y))
    return induced, int(last["n_poisons"]), last, curve, secs


def emit(**row) -> None:
    print(json.dumps(row, default=float), flush=True)


def run_mnist(copies: int, full_grid: bool) -> None:
    data = mnist(seed=0, pair="1v7")
    scenario = Scenario(data, LinearSVM())
    grid = (
        {} if full_grid else dict(quantiles=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], repeats=[1, 2, 3, 5, 8, 12, 20, 30])
    )
    clean = scenario.learner.fit(data.X_train, data.y_train)
    emit(
        experiment="mnist17-clean",
        n_train=data.n_train,
        n_test=len(data.y_test),
        test_accuracy=clean.accuracy(data.X_test, data.y_test),
    )
    for rate in (0.05, 0.10, 0.15):
        for improved in (False, True):
            spec = f"error:{rate}" + (":improved" if improved else "")
            target = make_target(spec, scenario, **grid)
            induced, n_p, last, curve, secs = attack(scenario, target, 0.1, copies)
            lb = certified_lower_bound(scenario, induced, epsilon=0.1, max_poisons=4 * max(n_p, 1))
            emit(
                experiment="mnist17",
                spec=spec,
                copies=copies,
                n_p=n_p,
                target_test_accuracy=target.accuracy(data.X_test, data.y_test),
                target_clean_loss=target.info["clean_objective"] * data.n_train,
                induced_test_accuracy=induced.accuracy(data.X_test, data.y_test),
                max_loss_diff=last["max_loss_diff"],
                lower_bound=lb.value,
                lower_bound_poisons=lb.poisons_at_least,
                certified=lb.certified,
                seconds=secs,
                curve=curve[:: max(1, len(curve) // 40)],
            )


def run_copies() -> None:
    data = mnist(seed=0, pair="1v7")
    scenario = Scenario(data, LinearSVM())
    target = make_target(
        "error:0.1", scenario, quantiles=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], repeats=[1, 2, 3, 5, 8, 12, 20, 30]
    )
    n_p = None
    for k in (1, 2):  # k = 1 to ε-closeness, then k = 2 with the same number of poisons (paper §4.1)
        induced, used, last, _, secs = attack(
            scenario, target, 0.1 if k == 1 else None, copies=k, cap=20_000 if k == 1 else n_p
        )
        n_p = n_p or used
        emit(
            experiment="mnist17-copies",
            copies=k,
            n_poisons=used,
            iterations=int(np.ceil(used / k)),
            test_accuracy=induced.accuracy(data.X_test, data.y_test),
            max_loss_diff=last["max_loss_diff"],
            target_test_accuracy=target.accuracy(data.X_test, data.y_test),
            seconds=secs,
        )


def run_adult(learner: str, clusters: int, max_steps: int) -> None:
    data = adult()
    scenario0 = Scenario(data, LEARNERS[learner]())
    clean = scenario0.learner.fit(data.X_train, data.y_train)
    names = top_subpopulations(data, clean, k=clusters)
    emit(
        experiment="adult-clean",
        learner=learner,
        test_accuracy=clean.accuracy(data.X_test, data.y_test),
        n_train=data.n_train,
        clusters=names,
    )
    epsilon = 0.01 if learner == "svm" else 0.05
    for name in names:
        scenario = Scenario(data, scenario0.learner, subpopulation=name)
        t0 = time.perf_counter()
        target = make_target("subpop", scenario)
        target_s = time.perf_counter() - t0
        induced, n_p, last, curve, secs = attack(scenario, target, epsilon, max_steps=max_steps)
        sub = data.subpopulation(name)
        row = dict(
            experiment="adult",
            learner=learner,
            cluster=name,
            n_p=n_p,
            epsilon=epsilon,
            subpop_test_points=int(sub.test_idx.size),
            subpop_accuracy=induced.accuracy(data.X_test[sub.test_idx], data.y_test[sub.test_idx]),
            target_subpop_accuracy=target.accuracy(data.X_test[sub.test_idx], data.y_test[sub.test_idx]),
            test_accuracy=induced.accuracy(data.X_test, data.y_test),
            max_loss_diff=last["max_loss_diff"],
            target_seconds=target_s,
            seconds=secs,
            curve=curve[:: max(1, len(curve) // 40)],
        )
        if learner == "svm":
            lb = certified_lower_bound(scenario, induced, epsilon=epsilon, max_poisons=4 * max(n_p, 1))
            row.update(lower_bound=lb.value, lower_bound_poisons=lb.poisons_at_least, certified=lb.certified)
        emit(**row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["mnist", "adult", "copies"])
    parser.add_argument("--learner", choices=sorted(LEARNERS), default="svm")
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=20_000, help="Adam steps (logistic max loss difference)")
    parser.add_argument("--full-grid", action="store_true", help="the reference's 12 x 13 target grid")
    args = parser.parse_args()
    if args.what == "mnist":
        run_mnist(args.copies, args.full_grid)
    elif args.what == "copies":
        run_copies()
    else:
        run_adult(args.learner, args.clusters, args.max_steps)


if __name__ == "__main__":
    main()
