"""Core type: a binary classification data set with its poison feasible set.

``Dataset`` holds train / test (and optional validation) splits with labels in {-1, +1},
the feasible set from which an attacker may draw poison features (a box ``[lo, hi]`` per
feature, plus which features are integer or one-hot), named subpopulations and provenance.
Construction validates everything once; downstream code can trust the arrays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonbench.validation import check_vector, check_X_y


@dataclass(frozen=True)
class FeasibleSet:
    """Box ``lo <= x <= hi`` for poison features; ``integer`` marks integer features and
    ``onehot_groups`` lists column-index groups of which at most one is 1 (one-hot encodings,
    possibly with the first level dropped)."""

    lo: np.ndarray
    hi: np.ndarray
    integer: np.ndarray | None = None
    onehot_groups: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        lo = check_vector(self.lo, "feasible.lo")
        hi = check_vector(self.hi, "feasible.hi", lo.shape[0])
        if lo.shape[0] == 0:
            raise ValueError("feasible set: expected at least one feature, got an empty box")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            j = int(bad[0])
            raise ValueError(
                f"feasible set is empty: lo > hi for {bad.size} feature(s), first at index {j} "
                f"(lo={lo[j]:g}, hi={hi[j]:g}); expected lo <= hi"
            )
        integer = np.zeros(lo.shape[0], bool) if self.integer is None else np.asarray(self.integer, bool)
        if integer.shape != lo.shape:
            raise ValueError(f"feasible.integer: expected {lo.shape[0]} flags, got shape {integer.shape}")
        groups = tuple(tuple(int(j) for j in g) for g in self.onehot_groups)
        for g in groups:
            if any(j < 0 or j >= lo.shape[0] for j in g):
                raise ValueError(f"feasible.onehot_groups: index out of range 0..{lo.shape[0] - 1} in {g}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "integer", integer)
        object.__setattr__(self, "onehot_groups", groups)

    @classmethod
    def box(cls, d: int, lo: float = 0.0, hi: float = 1.0) -> FeasibleSet:
        """The box ``[lo, hi]^d``."""
        return cls(np.full(d, float(lo)), np.full(d, float(hi)))

    @property
    def n_features(self) -> int:
        return int(self.lo.shape[0])

    def contains(self, X: np.ndarray, atol: float = 1e-9) -> np.ndarray:
        """Boolean mask of the rows of ``X`` inside the box (to ``atol``)."""
        X = np.atleast_2d(X)
        return np.asarray(((self.lo - atol <= X) & (self.hi + atol >= X)).all(axis=1))

    def violation(self, X: np.ndarray, atol: float = 1e-9, exact: bool = True) -> str | None:
        """The first constraint a row of ``X`` breaks, in words, or None when every row is inside:
        the box (to ``atol``) and, when ``exact``, integer features integral (to ``atol``) and
        each one-hot group 0/1 with at most one 1 (Σ ≤ 1 + ``atol``)."""
        X = np.atleast_2d(X)
        outside = (self.lo - atol > X) | (self.hi + atol < X)
        if outside.any():
            i, j = np.argwhere(outside)[0]
            return (
                f"{int(outside.any(axis=1).sum())} poison(s) outside the feasible box (first: feature {j} = "
                f"{X[i, j]:g} not in [{self.lo[j]:g}, {self.hi[j]:g}], tolerance {atol:g})"
            )
        if not exact:
            return None
        fractional = np.abs(X - np.round(X)) > atol
        fractional &= np.asarray(self.integer, bool)
        if fractional.any():
            i, j = np.argwhere(fractional)[0]
            return (
                f"{int(fractional.any(axis=1).sum())} poison(s) with a non-integer value of an integer feature "
                f"(first: feature {j} = {X[i, j]:.6g}, tolerance {atol:g})"
            )
        for g in self.onehot_groups:
            block = X[:, list(g)]
            binary = (np.abs(block) <= atol) | (np.abs(block - 1.0) <= atol)
            bad = ~binary.all(axis=1) | (block.sum(axis=1) > 1.0 + atol)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                return (
                    f"{int(bad.sum())} poison(s) break the one-hot group of columns {list(g)} (first: values "
                    f"{np.round(block[i], 6).tolist()}; expected 0/1 with at most one 1)"
                )
        return None

    def project(self, X: np.ndarray) -> np.ndarray:
        """Euclidean projection onto the box (clip)."""
        return np.clip(X, self.lo, self.hi)


@dataclass(frozen=True)
class Subpopulation:
    """A named group of points: indices into the train and test splits."""

    name: str
    train_idx: np.ndarray
    test_idx: np.ndarray
    description: str = ""

    def __post_init__(self) -> None:
        for attr in ("train_idx", "test_idx"):
            idx = np.asarray(getattr(self, attr))
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise ValueError(f"subpopulation {self.name!r}: {attr} must be a 1-D integer index array")
            object.__setattr__(self, attr, idx.astype(np.int64))


@dataclass(frozen=True)
class Dataset:
    """Train / test (/ validation) splits of a binary task, labels in {-1, +1}."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feasible: FeasibleSet
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    subpopulations: dict[str, Subpopulation] = field(default_factory=dict)
    feature_names: tuple[str, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        X_train, y_train = check_X_y(self.X_train, self.y_train, prefix="train ")
        d = X_train.shape[1]
        X_test, y_test = check_X_y(self.X_test, self.y_test, d, prefix="test ")
        object.__setattr__(self, "X_train", X_train)
        object.__setattr__(self, "y_train", y_train)
        object.__setattr__(self, "X_test", X_test)
        object.__setattr__(self, "y_test", y_test)
        if (self.X_val is None) != (self.y_val is None):
            raise ValueError("validation split: give both X_val and y_val, or neither")
        if self.X_val is not None:
            X_val, y_val = check_X_y(self.X_val, self.y_val, d, prefix="validation ")
            object.__setattr__(self, "X_val", X_val)
            object.__setattr__(self, "y_val", y_val)
        if self.feasible.n_features != d:
            raise ValueError(f"feasible set: expected {d} features (as X_train), got {self.feasible.n_features}")
        if self.feature_names is not None and len(self.feature_names) != d:
            raise ValueError(f"feature_names: expected {d} names, got {len(self.feature_names)}")
        for sp in self.subpopulations.values():
            for idx, n, split in ((sp.train_idx, len(y_train), "train"), (sp.test_idx, len(y_test), "test")):
                if idx.size and (idx.min() < 0 or idx.max() >= n):
                    raise ValueError(f"subpopulation {sp.name!r}: {split} index out of range 0..{n - 1}")
        for attr in ("X_train", "y_train", "X_test", "y_test", "X_val", "y_val"):
            arr = getattr(self, attr)
            if arr is not None:
                frozen = arr.copy()
                frozen.setflags(write=False)
                object.__setattr__(self, attr, frozen)

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    def digest(self) -> str:
        """SHA-256 of every array: splits, labels, the feasible box and its integer mask (what an
        attack must leave unchanged; the harness and the contract checks compare it)."""
        h = hashlib.sha256()
        arrays = (
            self.X_train,
            self.y_train,
            self.X_test,
            self.y_test,
            self.X_val,
            self.y_val,
            self.feasible.lo,
            self.feasible.hi,
            self.feasible.integer,
        )
        for arr in arrays:
            h.update(b"-" if arr is None else np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def subpopulation(self, name: str) -> Subpopulation:
        """The subpopulation called ``name``; ``KeyError`` listing the valid names otherwise."""
        try:
            return self.subpopulations[name]
        except KeyError:
            raise KeyError(f"unknown subpopulation {name!r}; valid: {sorted(self.subpopulations)}") from None
