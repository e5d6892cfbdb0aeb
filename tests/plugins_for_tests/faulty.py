"""Attacks that misbehave in every way the harness must survive."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from poisonbench import hookimpl
from poisonbench.attack import PoisonBatch
from poisonbench.dataset import FeasibleSet
from poisonbench.testing import toy_dataset


class RaisingAttack:
    """Yields ``after`` good batches, then raises RuntimeError('boom'); appends a line to ``log``
    (when given) at every run, so tests can count the runs."""

    name = "fault-raise"
    needs_budget = False

    def __init__(self, after: int = 0, log: str = ""):
        self.after, self.log = after, log

    def poison(self, scenario):
        ds = scenario.dataset
        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write("run\n")
        for _ in range(self.after):
            yield PoisonBatch(ds.X_train[:1], -ds.y_train[:1])
        raise RuntimeError("boom")


class HangingAttack:
    """Sleeps ``seconds`` before its first batch (a hang, for timeouts)."""

    name = "fault-hang"
    needs_budget = False

    def __init__(self, seconds: float = 3600.0):
        self.seconds = seconds

    def poison(self, scenario):
        time.sleep(self.seconds)
        yield PoisonBatch(scenario.dataset.X_train[:1], -scenario.dataset.y_train[:1])


class NaNAttack:
    """Builds a batch with NaN features (PoisonBatch refuses it inside the attack)."""

    name = "fault-nan"
    needs_budget = False

    def poison(self, scenario):
        X = np.full((1, scenario.dataset.n_features), np.nan)
        yield PoisonBatch(X, np.ones(1))


class _Batch:
    def __init__(self, X, y):
        self.X, self.y, self.diagnostics = X, y, {}


class BadOutputAttack:
    """Yields a malformed stream: ``mode`` in shape / infeasible / overbudget / type."""

    name = "fault-bad"
    needs_budget = False

    def __init__(self, mode: str = "shape"):
        self.mode = mode

    def poison(self, scenario):
        ds = scenario.dataset
        d = ds.n_features
        if self.mode == "shape":
            yield PoisonBatch(np.zeros((2, d + 1)), np.ones(2))
        elif self.mode == "infeasible":
            yield PoisonBatch(np.full((1, d), ds.feasible.hi[0] + 5.0), np.ones(1))
        elif self.mode == "overbudget":
            n = scenario.budget + 1
            yield PoisonBatch(np.repeat(ds.X_train[:1], n, axis=0), np.ones(n))
        elif self.mode == "type":
            yield _Batch(ds.X_train[:1], ds.y_train[:1])
        else:
            raise ValueError(f"mode: expected shape / infeasible / overbudget / type, got {self.mode!r}")


class CrashingAttack:
    """Ends its process with ``os._exit(3)`` (a worker crash), after appending a line to ``log``
    (when given). Run it only with a timeout (in a child process) or on Ray: in-process it
    would end the caller."""

    name = "fault-crash"
    needs_budget = False

    def __init__(self, log: str = ""):
        self.log = log

    def poison(self, scenario):
        import os

        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write("run\n")
        os._exit(3)
        yield


class ExitingAttack:
    """Calls ``sys.exit(3)`` (a SystemExit, which is not an Exception)."""

    name = "fault-exit"
    needs_budget = False

    def poison(self, scenario):
        import sys

        sys.exit(3)
        yield


class SegfaultAttack:
    """Sends itself SIGSEGV (a crash in C code). Only in a worker process."""

    name = "fault-segfault"
    needs_budget = False

    def poison(self, scenario):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)
        yield


class MemoryHogAttack:
    """Asks for 64 GiB at once (run it under a memory limit)."""

    name = "fault-hog"
    needs_budget = False

    def poison(self, scenario):
        hog = np.ones(8 * 1024**3)
        yield PoisonBatch(hog[: scenario.dataset.n_features][None, :] * 0, np.ones(1))


class TamperingAttack:
    """Unlocks the dataset's arrays and flips every test label, then poisons honestly."""

    name = "fault-tamper"
    needs_budget = False

    def poison(self, scenario):
        ds = scenario.dataset
        ds.y_test.setflags(write=True)
        ds.y_test[:] = -ds.y_test
        yield PoisonBatch(ds.X_train[:1], -ds.y_train[:1])


class WideningAttack:
    """Widens the feasible box to 1e6 and puts a poison there."""

    name = "fault-widen"
    needs_budget = False

    def poison(self, scenario):
        fs = scenario.dataset.feasible
        fs.hi.setflags(write=True)
        fs.hi[:] = 1e6
        yield PoisonBatch(np.full((1, fs.n_features), 1e6), np.ones(1))


class FractionalAttack:
    """Poisons of 0.51 in every feature: inside a [0, 1] box, but not integer and not one-hot."""

    name = "fault-fractional"
    needs_budget = False

    def poison(self, scenario):
        yield PoisonBatch(np.full((1, scenario.dataset.n_features), 0.51), np.ones(1))


def tiny_coded(seed: int = 0, n: int = 40):
    """The toy blobs plus an integer feature (0..3) and a one-hot group of three columns (first
    level dropped: at most one 1), like Adult's encoding."""
    base = toy_dataset(n=n, d=2, seed=seed)
    rng = np.random.default_rng(seed + 1)

    def coded(X):
        level = rng.integers(0, 3, len(X))
        onehot = np.zeros((len(X), 3))
        onehot[level > 0, level[level > 0]] = 1.0
        return np.hstack([X, rng.integers(0, 4, (len(X), 1)), onehot])

    d = 6
    feasible = FeasibleSet(
        np.zeros(d), np.array([1.0, 1.0, 3.0, 1.0, 1.0, 1.0]), integer=np.arange(d) >= 2, onehot_groups=((3, 4, 5),)
    )
    return dataclasses.replace(
        base,
        X_train=coded(base.X_train),
        X_test=coded(base.X_test),
        X_val=coded(base.X_val),
        feasible=feasible,
        subpopulations={},
    )


class _LyingModel:
    def __init__(self, model, labels):
        self.model, self.labels = model, labels

    def decision_function(self, X):
        return self.model.decision_function(X)

    def predict(self, X):
        return self.model.predict(X) if self.labels == "honest" else np.full(len(X), np.nan)

    def accuracy(self, X, y):
        return 7.5


class LyingLearner:
    """The toy ridge learner whose models claim accuracy 7.5; with ``labels="nan"`` they also
    predict NaN."""

    name = "fault-liar"

    def __init__(self, labels: str = "honest"):
        from plugins_for_tests.toy import RidgeLearner

        self.inner, self.labels = RidgeLearner(), labels

    def fit(self, X, y, sample_weight=None, warm_start=None):
        return _LyingModel(self.inner.fit(X, y, sample_weight), self.labels)

    def loss(self, model, X, y):
        return self.inner.loss(model.model, X, y)

    def objective(self, model, X, y, sample_weight=None):
        return self.inner.objective(model.model, X, y, sample_weight)


@hookimpl
def register_attacks(register):
    for attack in (
        RaisingAttack,
        HangingAttack,
        NaNAttack,
        BadOutputAttack,
        CrashingAttack,
        ExitingAttack,
        SegfaultAttack,
        MemoryHogAttack,
        TamperingAttack,
        WideningAttack,
        FractionalAttack,
    ):
        register(attack)


@hookimpl
def register_datasets(register):
    register(tiny_coded, name="tiny-coded")


@hookimpl
def register_learners(register):
    register(LyingLearner)
