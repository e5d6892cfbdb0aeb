"""Input checks at the edge, in the manner of ``sklearn.utils.validation``.

Every check raises :class:`ValueError` naming the argument, what was wrong and what was
expected, so a user sees one clear line rather than a numpy traceback deep inside a solver.
"""

from __future__ import annotations

import numpy as np


def check_matrix(X: object, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Return ``X`` as a finite float64 array of shape (n, d); raise ``ValueError`` otherwise."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric 2-D array, could not convert ({exc})") from None
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features, got {arr.shape[1]}")
    _check_finite(arr, name)
    return arr


def check_vector(v: object, name: str, length: int | None = None) -> np.ndarray:
    """Return ``v`` as a finite float64 vector, of ``length`` entries when given."""
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric 1-D array, could not convert ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name}: expected {length} entries, got {arr.shape[0]}")
    _check_finite(arr, name)
    return arr


def check_binary_labels(y: object, name: str = "y", length: int | None = None) -> np.ndarray:
    """Return labels as a float64 vector with every entry in {-1, +1}."""
    arr = check_vector(y, name, length)
    bad = ~np.isin(arr, (-1.0, 1.0))
    if bad.any():
        shown = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"{name}: binary labels must be -1 or +1, found {shown}")
    return arr


def check_weights(w: object | None, n: int, name: str = "sample_weight") -> np.ndarray:
    """Return non-negative finite weights of length ``n`` (all ones when ``w`` is None)."""
    if w is None:
        return np.ones(n)
    arr = check_vector(w, name, n)
    if (arr < 0).any():
        raise ValueError(f"{name}: weights must be non-negative, found min {arr.min():g}")
    if arr.sum() <= 0:
        raise ValueError(f"{name}: weights must not all be zero")
    return arr


def check_X_y(X: object, y: object, n_features: int | None = None, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Check a feature matrix and its binary labels together (same number of rows)."""
    Xa = check_matrix(X, f"{prefix}X", n_features)
    ya = check_binary_labels(y, f"{prefix}y", Xa.shape[0])
    return Xa, ya


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(f"{name}: expected finite values, found {n_nan} NaN and {n_inf} inf")
