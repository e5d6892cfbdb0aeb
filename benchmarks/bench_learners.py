"""Warm start vs cold fit for the exact learners, on an MNIST 1–7-sized problem.

MTP (Algorithm 1) re-fits after every added poison point, so what matters is the time of a
warm re-fit after one point is appended, next to a cold fit of the same data and next to the
scikit-learn fit the reference code uses (``C = 1/(n C_R)``, tol 1e-8; liblinear, which has
the same objective with a regularised bias). The appended point is the box vertex with the
largest hinge loss for label +1 under the current model (``x_j = 1`` where ``w_j < 0``), a
typical MTP poison.

Data: the paper's MNIST 1–7 has 13,007 × 784 rows; offline there are ~1,000 ones and sevens
(``../shared/data/mnist/mnist_5k.csv.gz``), so rows are augmented: a random original digit
shifted by up to 2 pixels each way and scaled in intensity by [0.8, 1.2] (clipped to [0, 1]).
Without that file, a synthetic two-class problem of the same shape is used (printed).

    POISONBENCH_BENCH_FULL=1 python -m pytest benchmarks/bench_learners.py --benchmark-enable -s

runs 13,007 rows (default 2,000, so that the smoke run with benchmarks disabled stays short);
the last test prints the median-time ratios, how far sklearn's objective is above ours, and the
SVM warm re-fit in units of one pass ``X @ w`` over the data (the least an exact re-fit can read).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.plugins.learners.sklearn_interop import from_sklearn, sklearn_estimator

MNIST_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "mnist_5k.csv.gz"
N_ROWS = 13_007 if os.environ.get("POISONBENCH_BENCH_FULL") == "1" else 2_000
LEARNERS = {"svm": LinearSVM, "logistic": LogisticRegression}
ROUNDS = {"cold": 3, "warm": 10, "sklearn": 3}
MEDIANS: dict[tuple[str, str], float] = {}
EXCESS: dict[str, float] = {}


def augmented_mnist_17(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``n_rows`` augmented 1/7 digits in [0, 1]^784 (+1 for '7', −1 for '1') and a description."""
    rng = np.random.default_rng(seed)
    if not MNIST_FILE.exists():
        y = np.where(rng.random(n_rows) < 0.5, 1.0, -1.0)
        centre = rng.normal(size=784)
        X = np.clip(0.2 + 0.1 * y[:, None] * centre + 0.2 * rng.normal(size=(n_rows, 784)), 0.0, 1.0)
        return X, y, f"synthetic two-class, {n_rows} x 784"
    with gzip.open(MNIST_FILE, "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",")
    keep = np.isin(raw[:, -1], (1, 7))
    digits = raw[keep, :-1].reshape(-1, 28, 28) / 255.0
    labels = np.where(raw[keep, -1] == 7, 1.0, -1.0)
    pick = rng.integers(0, len(digits), n_rows)
    shifts = rng.integers(-2, 3, size=(n_rows, 2))
    scale = rng.uniform(0.8, 1.2, n_rows)
    X = np.empty((n_rows, 784))
    for r, (k, shift) in enumerate(zip(pick, shifts)):
        X[r] = np.clip(np.roll(digits[k], tuple(shift), axis=(0, 1)) * scale[r], 0.0, 1.0).ravel()
    return X, labels[pick], f"augmented MNIST 1-vs-7 ({len(digits)} originals), {n_rows} x 784"


@pytest.fixture(scope="module")
def data():
    X, y, description = augmented_mnist_17(N_ROWS)
    print(f"\n[bench_learners] data: {description}")
    return X, y


@pytest.fixture(scope="module", params=sorted(LEARNERS))
def case(request, data):
    """Learner, the model fitted on the data (warm-start state primed), and the data plus one poison."""
    X, y = data
    learner = LEARNERS[request.param]()
    previous = learner.fit(X, y)
    previous = learner.fit(X, y, warm_start=previous)  # a chained fit, as in MTP: state is primed
    poison = np.where(previous.w < 0, 1.0, 0.0)
    return request.param, learner, previous, np.vstack([X, poison]), np.append(y, 1.0)


def record(benchmark, kind: str, what: str) -> None:
    if benchmark.stats is not None:
        MEDIANS[(kind, what)] = benchmark.stats.stats.median


def test_cold_fit(benchmark, case):
    kind, learner, _, X2, y2 = case
    model = benchmark.pedantic(learner.fit, args=(X2, y2), rounds=ROUNDS["cold"], iterations=1)
    assert model.info["converged"]
    record(benchmark, kind, "cold")


def test_warm_refit_after_one_point(benchmark, case):
    kind, learner, previous, X2, y2 = case
    model = benchmark.pedantic(
        learner.fit, args=(X2, y2), kwargs={"warm_start": previous}, rounds=ROUNDS["warm"], iterations=1
    )
    assert model.info["converged"]
    cold = learner.fit(X2, y2)
    assert learner.objective(model, X2, y2) == pytest.approx(learner.objective(cold, X2, y2), rel=1e-9)
    record(benchmark, kind, "warm")


def test_sklearn_cold_fit(benchmark, case):
    kind, learner, _, X2, y2 = case
    estimator = sklearn_estimator(learner, n_samples=len(y2), tol=1e-8)
    benchmark.pedantic(estimator.fit, args=(X2, y2), rounds=ROUNDS["sklearn"], iterations=1)
    record(benchmark, kind, "sklearn")
    ours = learner.objective(learner.fit(X2, y2), X2, y2)
    theirs = learner.objective(from_sklearn(estimator), X2, y2)
    assert ours <= theirs * (1 + 1e-12)
    EXCESS[kind] = (theirs - ours) / ours


def test_one_pass_over_x(benchmark, data):
    """The floor of an exact re-fit: one product ``X @ w`` (BLAS, one thread), since the SVM's
    duality-gap certificate needs every margin, so it reads every row of X at least once."""
    from threadpoolctl import threadpool_limits

    X, _ = data
    w = np.random.default_rng(0).normal(size=X.shape[1])
    with threadpool_limits(limits=1, user_api="blas"):
        benchmark.pedantic(lambda: X @ w, rounds=ROUNDS["warm"], iterations=1)
    if benchmark.stats is not None:
        MEDIANS[("pass", "X @ w")] = benchmark.stats.stats.median


def test_print_ratios(capsys):
    """Median-time ratios of the tests above (only when benchmarks are enabled)."""
    if not MEDIANS:
        pytest.skip("benchmarks disabled: no timings to compare")
    with capsys.disabled():
        print(f"\n[bench_learners] {N_ROWS} rows, median seconds and ratios")
        for kind in sorted(LEARNERS):
            cold, warm, sk = (MEDIANS.get((kind, w), float("nan")) for w in ("cold", "warm", "sklearn"))
            print(
                f"  {kind:9s} cold {cold:.4f}  warm {warm:.4f}  sklearn {sk:.4f}  "
                f"warm/cold {warm / cold:.3f}  warm/sklearn {warm / sk:.3f}  cold/sklearn {cold / sk:.3f}  "
                f"J(sklearn)/J(ours) - 1 = {EXCESS.get(kind, float('nan')):.1e}"
            )
        one_pass = MEDIANS.get(("pass", "X @ w"), float("nan"))
        print(
            f"  one pass X @ w {one_pass:.4f}  svm warm / one pass {MEDIANS.get(('svm', 'warm'), float('nan')) / one_pass:.2f}"
        )
