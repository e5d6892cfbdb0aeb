"""Reading tabular files (NPZ / CSV / Parquet) into named numpy columns, and checksums.

One representation for all three formats: an ordered ``dict`` from column name to a numpy
array with one entry per row. Numeric columns come back as numbers with ``NaN`` for missing
cells; text columns as ``object`` arrays with ``None`` for missing cells. An NPZ file may hold
2-D arrays (e.g. ``X`` of shape ``(n, 784)``): they are kept as one 2-D block column. CSV and
Parquet are read with pyarrow (a ``.csv.gz`` is decompressed on the fly).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

SUFFIXES = (".npz", ".csv", ".csv.gz", ".parquet", ".pq")


def package_data(name: str) -> Path:
    """Path of a data file shipped inside ``plugins/datasets/data/``."""
    path = Path(str(resources.files("poisonbench.plugins.datasets") / "data" / name))
    if not path.is_file():
        raise FileNotFoundError(f"shipped data file {name!r} is missing from {path.parent}; reinstall poisonbench")
    return path


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_file(path: str | Path) -> str:
    """MD5 of a file's bytes as stored on disk (compressed files are not decompressed)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_format(path: str | Path) -> str:
    """``"npz"``, ``"csv"`` or ``"parquet"`` from the file name; ``ValueError`` otherwise."""
    name = str(path).lower()
    for suffix, fmt in (
        (".npz", "npz"),
        (".csv", "csv"),
        (".csv.gz", "csv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"{path}: unsupported file type; expected one of {', '.join(SUFFIXES)}")


def read_columns(path: str | Path, header: bool = True) -> dict[str, np.ndarray]:
    """Read ``path`` into ``{column name: values}``, in file order.

    ``header=False`` applies to CSV only: columns are then named ``"0"``, ``"1"``, ...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = file_format(path)
    if fmt == "npz":
        return _read_npz(path)
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pa_parquet

    try:
        if fmt == "parquet":
            table = pa_parquet.read_table(path)
        else:
            read = pa_csv.ReadOptions(autogenerate_column_names=not header)
            convert = pa_csv.ConvertOptions(strings_can_be_null=True)
            table = pa_csv.read_csv(path, read_options=read, convert_options=convert)
    except Exception as exc:  # pyarrow raises several exception types for malformed files
        raise ValueError(f"{path}: cannot read as {fmt} ({type(exc).__name__}: {exc})") from None
    columns: dict[str, np.ndarray] = {}
    for i, name in enumerate(table.column_names):
        key = str(i) if (fmt == "csv" and not header) else name
        if key in columns:
            raise ValueError(f"{path}: column {key!r} appears twice; expected unique column names")
        columns[key] = _arrow_to_numpy(table.column(i))
    return columns


def _arrow_to_numpy(column) -> np.ndarray:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        if column.null_count:
            return column.to_numpy(zero_copy_only=False).astype(np.float64)
        return column.to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(kind) and not column.null_count:
        return column.to_numpy(zero_copy_only=False).astype(bool)
    return np.asarray(column.to_pylist(), dtype=object)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            columns = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        raise ValueError(
            f"{path}: cannot read as npz ({exc}); expected numeric or string arrays, no pickled objects"
        ) from None
    except Exception as exc:  # zipfile / OSError variants for a corrupt archive
        raise ValueError(f"{path}: cannot read as npz ({type(exc).__name__}: {exc})") from None
    for name, arr in columns.items():
        if arr.ndim not in (1, 2):
            raise ValueError(
                f"{path}: array {name!r} has shape {arr.shape}; expected 1-D (a column) or 2-D (a block of columns)"
            )
    return columns
