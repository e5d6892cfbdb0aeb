"""Seeded, class-stratified train / validation / test splits and class balancing.

Stratification: each class's indices are shuffled and spread evenly along one ordering of all
points (the i-th of c points of a class sits at position (i + u)/c, u uniform in [0, 1)); the
splits are consecutive blocks of that ordering (train, then validation, then test). Every
block of size s then holds s·c/n ± 1 points of a class with c of n points: for two classes of
500 a block of 256 has exactly 128 of each.
"""

from __future__ import annotations

import numpy as np


def split_sizes(n: int, n_train: int | None, n_val: int, test_fraction: float) -> tuple[int, int, int]:
    """Sizes ``(n_train, n_val, n_test)`` of ``n`` points.

    With ``n_train=None`` the test split is ``round(test_fraction · n)`` points and the train
    split what remains after validation; with ``n_train`` given the test split is the rest
    (``test_fraction`` is then not used).
    """
    if n_val < 0:
        raise ValueError(f"n_val: expected a count >= 0, got {n_val}")
    if n_train is None:
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction: expected a fraction in [0, 1), got {test_fraction}")
        n_test = int(round(test_fraction * n))
        n_train = n - n_val - n_test
    else:
        n_test = n - n_train - n_val
    if n_train < 1 or n_test < 0 or n_train + n_val + n_test != n:
        raise ValueError(
            f"split sizes: {n} points cannot be split into n_train={n_train}, n_val={n_val}, "
            f"n_test={n_test}; expected n_train >= 1 and n_train + n_val <= {n}"
        )
    return n_train, n_val, n_test


def stratified_split(y: np.ndarray, sizes: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Disjoint index arrays of the given ``sizes`` (sum ≤ len(y)), each stratified by ``y``
    and in random order; points beyond ``sum(sizes)`` are left out."""
    y = np.asarray(y)
    if sum(sizes) > y.shape[0] or min(sizes, default=0) < 0:
        raise ValueError(f"split sizes {sizes}: expected non-negative sizes summing to at most {y.shape[0]}")
    position = np.empty(y.shape[0])
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        position[members] = (np.arange(members.size) + rng.random(members.size)) / members.size
    order = np.argsort(position, kind="stable")
    bounds = np.cumsum((0,) + tuple(sizes))
    return tuple(rng.permutation(order[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:]))


def balance_by_downsampling(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices (in file order) keeping every point of the smallest class and an equal-size
    uniform random sample, without replacement, of every other class."""
    y = np.asarray(y)
    labels, counts = np.unique(y, return_counts=True)
    keep = [rng.choice(np.flatnonzero(y == label), size=counts.min(), replace=False) for label in labels]
    return np.sort(np.concatenate(keep))
