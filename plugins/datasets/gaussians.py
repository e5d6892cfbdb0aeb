"""Built-in dataset ``gaussians``: two Gaussian classes, the RMD paper's synthetic example.

RMD paper appendix D.1: class 0 ~ N(μ₀, Σ), class 1 ~ N(μ₁, Σ) with μ₀ = (−3, 0),
μ₁ = (3, 0) and the *covariance* Σ = diag(2.5, 1.5) (so standard deviations √2.5 and √1.5);
32 training points (16 per class), 64 validation points (32 per class), feasible box
[−9.5, 9.5]². Class 0 is labelled −1 and class 1 +1. Any dimension by giving means and
variances of that length. Each class is the Gaussian **truncated to the box** (a point outside
is drawn again), so that every clean point is a feasible point: untruncated, 41 of the seeds
0–1,999 put a training, validation or test point outside the box (about 1 point in 2,000 lies
past 9.5 on the first axis, 6.5 / √2.5 ≈ 4.1 standard deviations from its mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.dataset import Dataset, FeasibleSet
from poisonbench.params import declare


@declare(
    {
        "n_train": Param(int, "training points", low=2),
        "n_val": Param(int, "validation points", low=0),
        "n_test": Param(int, "test points", low=2),
        "mean0": Param((list, tuple), "mean of class -1"),
        "mean1": Param((list, tuple), "mean of class +1"),
        "variances": Param((float, list, tuple), "per-feature variances (one for all)"),
        "bound": Param(float, "feasible box [-bound, bound]^d", low=0, low_open=True),
        "data_seed": Param(int, "seed of the sampling (default: the trial seed)", low=0, optional=True),
    }
)
def gaussians(
    seed: int = 0,
    n_train: int = 32,
    n_val: int = 64,
    n_test: int = 1000,
    mean0: Sequence[float] = (-3.0, 0.0),
    mean1: Sequence[float] = (3.0, 0.0),
    variances: float | Sequence[float] = (2.5, 1.5),
    bound: float = 9.5,
    data_seed: int | None = None,
) -> Dataset:
    """Two Gaussian classes N(mean0, diag(variances)) -> −1 and N(mean1, ·) -> +1 (RMD paper, App. D.1).

    Parameters
    ----------
    seed
        Trial seed: seeds the sampling unless ``data_seed`` is given. Train, validation and test
        come from independent streams, so changing one split's size leaves the others unchanged.
    n_train, n_val, n_test
        Split sizes; each split has ``n // 2`` points of class −1 and the rest of class +1.
    mean0, mean1
        Class means (their length is the dimension d).
    variances
        Diagonal of the shared covariance matrix (variances, not standard deviations): one
        number for an isotropic covariance or d numbers.
    bound
        Feasible box ``[−bound, bound]^d`` for poison points.
    data_seed
        Seed of the sampling, to keep the same points across trial seeds; ``None``: ``seed``.
    """
    mu0 = np.asarray(mean0, dtype=np.float64)
    mu1 = np.asarray(mean1, dtype=np.float64)
    if mu0.ndim != 1 or mu0.shape != mu1.shape or mu0.size == 0:
        raise ValueError(
            f"gaussians: mean0 {mu0.shape} and mean1 {mu1.shape}: expected two vectors of the same length d >= 1"
        )
    var = np.asarray(variances, dtype=np.float64)
    if var.ndim == 0:
        var = np.full(mu0.shape, float(var))
    if var.shape != mu0.shape or not (np.isfinite(var).all() and (var > 0).all()):
        raise ValueError(
            f"gaussians: variances {np.asarray(variances).tolist()}: expected one positive number or {mu0.size} positive numbers"
        )
    if n_train < 2 or n_test < 2 or n_val < 0:
        raise ValueError(
            f"gaussians: n_train={n_train}, n_val={n_val}, n_test={n_test}: expected n_train >= 2, "
            f"n_test >= 2 (both classes) and n_val >= 0"
        )
    sample_seed = seed if data_seed is None else data_seed
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(sample_seed).spawn(3)]
    (X_tr, y_tr), (X_val, y_val), (X_te, y_te) = (
        _sample(n, mu0, mu1, np.sqrt(var), bound, rng) for n, rng in zip((n_train, n_val, n_test), streams)
    )
    d = mu0.size
    return Dataset(
        name="gaussians",
        X_train=X_tr,
        y_train=y_tr,
        X_test=X_te,
        y_test=y_te,
        X_val=X_val if n_val else None,
        y_val=y_val if n_val else None,
        feasible=FeasibleSet.box(d, -bound, bound),
        feature_names=tuple(f"x{j}" for j in range(d)),
        provenance={
            "source": "synthetic: two Gaussians, RMD paper appendix D.1",
            "seed": seed,
            "sample_seed": sample_seed,
            "mean0 (-1)": mu0.tolist(),
            "mean1 (+1)": mu1.tolist(),
            "covariance diagonal": var.tolist(),
            "split_sizes": {"train": n_train, "validation": n_val, "test": n_test},
            "box": [-bound, bound],
        },
    )


def _sample(
    n: int, mu0: np.ndarray, mu1: np.ndarray, std: np.ndarray, bound: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n // 2`` points of class −1 then the rest of class +1, in random order, each drawn from
    its class's Gaussian truncated to ``[−bound, bound]^d`` (rejection: a point outside is redrawn)."""
    y = np.repeat([-1.0, 1.0], [n // 2, n - n // 2])
    mean = np.where(y[:, None] < 0, mu0, mu1)
    X = mean + rng.standard_normal((n, mu0.size)) * std
    outside = (np.abs(X) > bound).any(axis=1)
    for _ in range(10_000):
        if not outside.any():
            break
        X[outside] = mean[outside] + rng.standard_normal((int(outside.sum()), mu0.size)) * std
        outside = (np.abs(X) > bound).any(axis=1)
    else:
        raise ValueError(f"gaussians: the box [-{bound:g}, {bound:g}] holds almost none of the Gaussians' mass")
    order = rng.permutation(n)
    return X[order], y[order]


@hookimpl
def register_datasets(register):
    register(gaussians)
