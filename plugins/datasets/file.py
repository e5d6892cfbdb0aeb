"""Built-in dataset ``file``: any NPZ / CSV / Parquet table with named columns as a binary task.

CSV needs a header row; in an NPZ every 1-D array is a column and a 2-D array of shape (n, k) a
block of k feature columns named ``name[j]``. Every problem is one ``ValueError`` line naming
the file and the column: a missing column, a non-numeric feature column, missing / NaN / inf
values, a label column without exactly two distinct values, an unknown split value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.dataset import Dataset, FeasibleSet
from poisonbench.params import declare
from poisonbench.plugins.datasets._io import file_format, md5_file, read_columns
from poisonbench.plugins.datasets._splits import split_sizes, stratified_split

SPLIT_VALUES = {
    "train": "train",
    "test": "test",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
}


@declare(
    {
        "path": Param(str, "an NPZ, CSV or Parquet file (relative: to the campaign file)", path=True),
        "label": Param(str, "the label column"),
        "features": Param(list, "feature columns (default: all but label and split)", optional=True),
        "split": Param(str, "a column of train / test / val rows (default: a stratified random split)", optional=True),
        "test_fraction": Param(float, "test share of a random split", low=0, high=1, low_open=True, high_open=True),
        "val_fraction": Param(float, "validation share of a random split", low=0, high=1, high_open=True),
        "lo": Param((float, list), "feasible lower bound(s) (default: the training rows' minimum)", optional=True),
        "hi": Param((float, list), "feasible upper bound(s) (default: the training rows' maximum)", optional=True),
        "positive": Param((str, int, float, bool), "the label value mapped to +1", optional=True),
        "data_seed": Param(int, "seed of the split (default: the trial seed)", low=0, optional=True),
    }
)
def load_file(
    path: str,
    label: str,
    features: Sequence[str] | None = None,
    split: str | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    lo: float | Sequence[float] | None = None,
    hi: float | Sequence[float] | None = None,
    positive: str | int | float | bool | None = None,
    seed: int = 0,
    data_seed: int | None = None,
) -> Dataset:
    """A binary task from a user's NPZ / CSV / Parquet file: label column, feature columns, splits.

    Parameters
    ----------
    path
        The file (``.npz``, ``.csv``, ``.csv.gz``, ``.parquet`` / ``.pq``).
    label
        The label column: exactly two distinct values.
    features
        Feature columns (numbers or booleans); default: every column but ``label`` and ``split``.
    split
        Optional column with values ``train`` / ``test`` / ``val`` (or ``validation``) per row.
        Without it, a split stratified by label and seeded by ``data_seed`` (else ``seed``):
        ``round(test_fraction · n)`` test and ``round(val_fraction · n)`` validation rows.
    lo, hi
        Poison feasible box: one number for every feature, one per feature, or ``None`` for the
        per-feature minimum / maximum over the *training* rows (never the test rows: the box is
        what the attacker may know of the data).
    positive
        The label value mapped to +1 (the other to −1); default: the larger of the two values.
    seed
        Trial seed: seeds the random split unless ``data_seed`` is given (unused with ``split``).
    data_seed
        Seed of the random split, to keep it across trial seeds; ``None``: ``seed``.
    """
    source = Path(path).expanduser()
    columns = read_columns(source)
    where = f"file {source}"
    wanted = [label] + ([split] if split else []) + list(features or [])
    for column in wanted:
        if column not in columns:
            raise ValueError(f"{where}: column {column!r} not found; available: {', '.join(columns)}")
    if features is None:
        features = [c for c in columns if c not in (label, split)]
    if not features:
        raise ValueError(
            f"{where}: no feature columns (only {label!r}{' and ' + repr(split) if split else ''}); expected at least one"
        )
    n = len(columns[label])
    for column in wanted[:2] + list(features):
        if len(columns[column]) != n:
            raise ValueError(
                f"{where}: column {column!r} has {len(columns[column])} rows, column {label!r} {n}; expected equal"
            )

    X, names, integer = _features(columns, features, where)
    y, pos_value, neg_value = _labels(columns[label], label, positive, where)
    split_seed = seed if data_seed is None else data_seed
    rng = np.random.default_rng(split_seed)
    if split:
        idx = _split_column(columns[split], split, where)
        split_rule = f"column {split!r}"
    else:
        if not 0 <= val_fraction < 1:
            raise ValueError(f"{where}: val_fraction={val_fraction}: expected a fraction in [0, 1)")
        sizes = split_sizes(n, None, int(round(val_fraction * n)), test_fraction)
        idx = dict(zip(("train", "validation", "test"), stratified_split(y, sizes, rng)))
        split_rule = (
            f"stratified random split, test_fraction={test_fraction}, val_fraction={val_fraction}, seed={split_seed}"
        )
    box_lo = _bound(lo, X[idx["train"]].min(axis=0), "lo", names, where)
    box_hi = _bound(hi, X[idx["train"]].max(axis=0), "hi", names, where)
    has_val = idx["validation"].size > 0
    return Dataset(
        name=f"file:{source.name}",
        X_train=X[idx["train"]],
        y_train=y[idx["train"]],
        X_test=X[idx["test"]],
        y_test=y[idx["test"]],
        X_val=X[idx["validation"]] if has_val else None,
        y_val=y[idx["validation"]] if has_val else None,
        feasible=FeasibleSet(box_lo, box_hi, integer=integer),
        feature_names=tuple(names),
        provenance={
            "source": {"path": str(source), "md5": md5_file(source), "format": file_format(source)},
            "label": {"column": label, "positive (+1)": pos_value, "negative (-1)": neg_value},
            "features": list(features),
            "split": split_rule,
            "seed": seed,
            "split_sizes": {k: int(v.size) for k, v in idx.items()},
            "bounds": {
                "lo": "given" if lo is not None else "min over the training rows",
                "hi": "given" if hi is not None else "max over the training rows",
            },
        },
    )


def _features(
    columns: dict[str, np.ndarray], features: Sequence[str], where: str
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Feature matrix, feature names and the integer mask (integer and boolean columns)."""
    blocks, names, integer = [], [], []
    for column in features:
        values = columns[column]
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            kind = "text" if values.dtype.kind in "OUS" else str(values.dtype)
            raise ValueError(
                f"{where}: feature column {column!r} has dtype {kind}; expected numbers (int, float or bool)"
            )
        block = values.astype(np.float64).reshape(values.shape[0], -1)
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{where}: column {column!r} has {int(bad.sum())} row(s) with missing, NaN or inf values "
                f"(first at row {int(np.flatnonzero(bad)[0])}); expected finite numbers"
            )
        blocks.append(block)
        names += [column] if values.ndim == 1 else [f"{column}[{j}]" for j in range(block.shape[1])]
        integer += [np.issubdtype(values.dtype, np.integer) or values.dtype == bool] * block.shape[1]
    return np.hstack(blocks), names, np.array(integer)


def _labels(values: np.ndarray, column: str, positive: Any, where: str) -> tuple[np.ndarray, Any, Any]:
    """Labels in {−1, +1} and the original (positive, negative) values."""
    numeric = np.issubdtype(values.dtype, np.number) or values.dtype == bool
    missing = np.isnan(values.astype(np.float64)) if numeric else np.array([v is None for v in values], bool)
    if missing.any():
        raise ValueError(
            f"{where}: label column {column!r} has {int(missing.sum())} missing/NaN value(s) "
            f"(first at row {int(np.flatnonzero(missing)[0])}); expected a label on every row"
        )
    if not numeric:
        values = values.astype(str)
    distinct = np.unique(values)
    if distinct.size != 2:
        shown = [v.item() if hasattr(v, "item") else v for v in distinct[:5]]
        raise ValueError(
            f"{where}: label column {column!r} has {distinct.size} distinct value(s) {shown}"
            f"{' ...' if distinct.size > 5 else ''}; expected exactly 2 (a binary task)"
        )
    if positive is None:
        pos = distinct[1]
    else:
        matches = [v for v in distinct if (v == positive if numeric else v == str(positive))]
        if not matches:
            raise ValueError(
                f"{where}: positive={positive!r} is not a value of label column {column!r}; values: {distinct.tolist()}"
            )
        pos = matches[0]
    neg = distinct[0] if distinct[1] == pos else distinct[1]
    return np.where(values == pos, 1.0, -1.0), pos.item(), neg.item()


def _split_column(values: np.ndarray, column: str, where: str) -> dict[str, np.ndarray]:
    text = np.array(["" if v is None else str(v).strip().lower() for v in values])
    unknown = sorted(set(text.tolist()) - set(SPLIT_VALUES))
    if unknown:
        raise ValueError(
            f"{where}: split column {column!r} has value(s) {unknown[:5]}; expected train, test, val or validation"
        )
    canonical = np.array([SPLIT_VALUES[t] for t in text])
    idx = {k: np.flatnonzero(canonical == k) for k in ("train", "validation", "test")}
    for k in ("train", "test"):
        if idx[k].size == 0:
            raise ValueError(f"{where}: split column {column!r} has no {k!r} rows; expected at least one")
    return idx


def _bound(value: Any, inferred: np.ndarray, which: str, names: list[str], where: str) -> np.ndarray:
    if value is None:
        return inferred
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(len(names), float(arr))
    if arr.shape != (len(names),):
        raise ValueError(f"{where}: {which}: expected one number or {len(names)} (one per feature), got {arr.size}")
    return arr


@hookimpl
def register_datasets(register):
    register(load_file, name="file")
