"""The benchmarks' MNIST 1–7 at the MTP paper's size: the shipped subset's ~800 training ones and
sevens grown to 13,007 rows (the paper's MNIST 1–7 training set) by random shifts of up to 2
pixels. Shared by ``bench_mtp.py`` and ``bench_gradient_attacks.py``, so that their problems are
the same."""

from __future__ import annotations

import numpy as np

from poisonbench.dataset import Dataset
from poisonbench.plugins.datasets.mnist import mnist


def augmented_mnist17(n_train: int, seed: int = 0) -> Dataset:
    """MNIST 1 vs 7 (shipped subset) with the training split grown to ``n_train`` rows by
    random shifts of up to 2 pixels (originals kept first)."""
    base = mnist(seed=seed, pair="1v7")
    rng = np.random.default_rng(seed)
    X, y = base.X_train, base.y_train
    extra = n_train - X.shape[0]
    pick = rng.integers(0, X.shape[0], size=extra)
    shifts = rng.integers(-2, 3, size=(extra, 2))
    imgs = X[pick].reshape(-1, 28, 28)
    aug = np.stack([np.roll(np.roll(im, dy, axis=0), dx, axis=1) for im, (dy, dx) in zip(imgs, shifts)])
    return Dataset(
        name="mnist17-augmented",
        X_train=np.vstack([X, aug.reshape(extra, -1)]),
        y_train=np.concatenate([y, y[pick]]),
        X_test=base.X_test,
        y_test=base.y_test,
        feasible=base.feasible,
        provenance=dict(base.provenance, augmented_to=n_train, augment="random shifts |d| <= 2 px", augment_seed=seed),
    )
