"""Result rows: the column schema of the leaderboard store and run provenance.

One row per (trial, checkpoint): the trial's identity and configuration, the metrics of the
model the defence fitted on clean data ∪ the first ``budget`` poisons, the attack's latest
diagnostics, status / error text and provenance (versions, git revision, host, device,
timestamps). Rows of kind ``"trace"`` hold the attack's diagnostics every ``record_every``
steps (no refit), for convergence plots. Every value is a plain JSON-friendly type; nested
values (parameters, diagnostics, the resolved config) are JSON strings, never pickles.

A trial's poisons are data too: a :class:`PoisonSet` (points, labels, their order, the batch and
the first checkpoint each belongs to) is written as a Parquet artefact of plain numeric columns
next to the trial's rows, and its content hash (:meth:`PoisonSet.sha256`) is every row's
``poisons_sha256`` (``docs/campaigns.md``, "Poison sets").
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: Version of the row schema, stored in every Parquet file's metadata.
SCHEMA_VERSION = 7
#: Columns added by each schema version after the first: a file of an older version is read
#: with these columns null (they were not measured then).
ADDED_COLUMNS: dict[int, tuple[str, ...]] = {
    2: ("fit_gap", "fit_converged", "diagnostics_n_poisons", "code_hash"),
    3: ("lower_bound_induced",),
    4: ("n_removed_poisons", "n_removed_clean"),
    6: ("poisons_sha256",),
    7: ("clean_loss", "clean_objective"),
}
#: Columns that only checkpoint rows fill since schema version 5 (the harness's measurement of
#: a fitted model). Before it, trace rows held the attack's own estimates there; the store reads
#: such rows with these columns null (the estimates remain in ``diagnostics``).
MEASURED_COLUMNS = ("test_accuracy", "subpop_accuracy", "lambda")
MEASURED_ONLY_SINCE = 5

#: (column, Arrow type, meaning). The order is the column order of the Parquet files.
COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("campaign", pa.string(), "campaign name"),
    ("trial_id", pa.string(), "16 hex digits of config_hash: identifies a trial across runs"),
    ("config_hash", pa.string(), "SHA-256 of the canonical JSON of the resolved trial config"),
    ("kind", pa.string(), "'checkpoint' (a fitted model at a budget) or 'trace' (diagnostics of one attack step)"),
    ("checkpoint", pa.int32(), "index of the budget among the trial's budgets (-1 for trace rows)"),
    ("step", pa.int64(), "number of attack batches consumed when the row was recorded"),
    ("status", pa.string(), "'ok' or 'failed'"),
    ("error", pa.string(), "one-line error ('<component> <name>: <type>: <message>'), null when ok"),
    ("traceback", pa.string(), "full traceback of a failure, null when ok"),
    ("dataset", pa.string(), "dataset name"),
    ("dataset_params", pa.string(), "dataset parameters (JSON)"),
    ("dataset_label", pa.string(), "dataset label (name, or the campaign's label for a parameter setting)"),
    ("learner", pa.string(), "learner name"),
    ("learner_params", pa.string(), "learner parameters (JSON)"),
    ("learner_label", pa.string(), "learner label (name, or the campaign's label for a parameter setting)"),
    ("defence", pa.string(), "defence name"),
    ("defence_params", pa.string(), "defence parameters (JSON)"),
    ("defence_label", pa.string(), "defence label (name, or the campaign's label for a parameter setting)"),
    ("attack", pa.string(), "attack name"),
    ("attack_label", pa.string(), "attack label (name, or the campaign's label for a parameter setting)"),
    ("attack_params", pa.string(), "attack parameters (JSON)"),
    ("target", pa.string(), "the attack's 'target' parameter (target-model spec) when it has one"),
    ("subpopulation", pa.string(), "target subpopulation name, null when none"),
    ("seed", pa.int64(), "trial seed (dataset factory and Scenario.seed)"),
    ("budget_spec", pa.string(), "the budget as written in the campaign ('100' or '0.05')"),
    ("budget", pa.int64(), "the budget in poisons (fractions resolved against n_train)"),
    ("n_poisons", pa.int64(), "poisons in the fitted training set (< budget when the attack stopped early)"),
    ("n_train", pa.int64(), "clean training points"),
    ("poison_fraction", pa.float64(), "n_poisons / n_train"),
    ("stopped_early", pa.bool_(), "the attack stopped before reaching this budget"),
    (
        "poisons_sha256",
        pa.string(),
        "content hash of the trial's poison set (its _poisons artefact), the same in every row of the trial; "
        "null when the trial produced no poisons",
    ),
    ("test_accuracy", pa.float64(), "accuracy of the defended model on the test split"),
    ("subpop_accuracy", pa.float64(), "accuracy on the subpopulation's test points (null without one)"),
    ("lambda", pa.float64(), "the defence's 'lambda' hyperparameter (log L2 strength), when reported"),
    (
        "clean_loss",
        pa.float64(),
        "mean loss of the defended model on the clean training points (the learner's loss; null without one)",
    ),
    (
        "clean_objective",
        pa.float64(),
        "the learner's objective on the clean training points, clean_loss + C_R R(θ) for the linear learners "
        "(what min-max's attack.upper_bound bounds); null when the defence chose its own L2 strength",
    ),
    ("n_removed", pa.int64(), "training rows the defence removed (null when it reports none)"),
    ("n_removed_poisons", pa.int64(), "poisons among the removed rows (a sanitiser's true positives)"),
    ("n_removed_clean", pa.int64(), "clean training points among the removed rows (false positives)"),
    (
        "fit_gap",
        pa.float64(),
        "certified optimality gap of the defended model's fit (SVM: relative duality gap; logistic: gradient norm)",
    ),
    ("fit_converged", pa.bool_(), "the defended model's fit reached its tolerance (a row is never ok without it)"),
    (
        "diagnostics_n_poisons",
        pa.int64(),
        "poisons of the model the attack's diagnostics describe; the diagnostic columns are null unless it is n_poisons",
    ),
    ("max_loss_diff", pa.float64(), "attack diagnostic: loss-based distance (MTP Definition 1)"),
    ("param_distance", pa.float64(), "attack diagnostic: ‖θ_t − θ_p‖₂"),
    (
        "lower_bound",
        pa.float64(),
        "attack diagnostic: running max of z(θ_t) toward the run's own target θ_p (MTP Theorem 2): poisons "
        "needed to reach θ_p exactly, which can exceed the poisons used",
    ),
    (
        "lower_bound_induced",
        pa.float64(),
        "attack diagnostic: the paper's certified bound for the model this row's poisons induce (a second "
        "Algorithm 1 run toward it, MTP Section 4.3); never above n_poisons when certified",
    ),
    ("diagnostics", pa.string(), "every latest attack diagnostic (JSON)"),
    ("hyperparameters", pa.string(), "the defence's hyperparameters (JSON)"),
    ("wall_seconds", pa.float64(), "seconds since the trial started, when the row was recorded"),
    ("config", pa.string(), "the resolved trial configuration (JSON)"),
    ("executor", pa.string(), "executor that ran the trial ('local' or 'ray')"),
    ("poisonbench_version", pa.string(), "version of the poisonbench package"),
    ("package_versions", pa.string(), "versions of python, numpy, scipy, scikit-learn, pyarrow (JSON)"),
    ("plugin_versions", pa.string(), "plugin module and version of each component (JSON)"),
    ("code_hash", pa.string(), "hash of the components' plugin code (poisonbench.code_identity), to detect stale rows"),
    ("git_revision", pa.string(), "git revision of the poisonbench checkout (+ '-dirty'), null if none"),
    ("host", pa.string(), "host name of the machine that ran the trial"),
    ("device", pa.string(), "processor / accelerator description"),
    ("started_at", pa.timestamp("us", tz="UTC"), "trial start (UTC)"),
    ("finished_at", pa.timestamp("us", tz="UTC"), "trial end (UTC)"),
)

COLUMN_NAMES = tuple(name for name, _, _ in COLUMNS)
SCHEMA = pa.schema([pa.field(name, typ) for name, typ, _ in COLUMNS])
METRIC_COLUMNS = (
    "test_accuracy",
    "subpop_accuracy",
    "lambda",
    "clean_loss",
    "clean_objective",
    "max_loss_diff",
    "param_distance",
    "lower_bound",
    "lower_bound_induced",
    "n_removed",
    "n_removed_poisons",
    "n_removed_clean",
)
#: Attack diagnostics copied into columns of their own (the rest stay in ``diagnostics``).
DIAGNOSTIC_COLUMNS = ("max_loss_diff", "param_distance", "lower_bound", "lower_bound_induced")


def to_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces; NaN/inf written as null)."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python types and non-finite floats into None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def finite_or_none(value: Any) -> float | None:
    """A float column value: finite numbers pass, anything else (NaN, None, non-numbers) is None."""
    if isinstance(value, bool):
        return float(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """``git rev-parse HEAD`` of the checkout holding this package (+ ``-dirty``), or None."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev or None


@functools.lru_cache(maxsize=1)
def package_versions() -> str:
    """JSON of the versions of the libraries that decide the numbers."""
    out = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "scikit-learn", "pyarrow", "cvxpy", "torch"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return to_json(out)


def device() -> str:
    """The accelerator when torch is already loaded and sees one, else the CPU description."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}"


def provenance(executor: str) -> dict[str, Any]:
    """The provenance columns shared by every row a process writes."""
    from poisonbench.version import __version__

    return {
        "executor": executor,
        "poisonbench_version": __version__,
        "package_versions": package_versions(),
        "git_revision": git_revision(),
        "host": socket.gethostname(),
        "device": device(),
    }


def complete_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every schema column present (missing ones None); unknown keys raise ValueError."""
    unknown = sorted(set(row) - set(COLUMN_NAMES))
    if unknown:
        raise ValueError(f"result row: unknown column(s) {', '.join(unknown)}; valid: {', '.join(COLUMN_NAMES)}")
    return {name: row.get(name) for name in COLUMN_NAMES}


def rows_to_table(rows: list[dict[str, Any]], metadata: dict[str, str] | None = None) -> pa.Table:
    """An Arrow table of ``rows`` with the store schema (+ schema version in the metadata)."""
    full = [complete_row(r) for r in rows]
    meta = {b"poisonbench.schema_version": str(SCHEMA_VERSION).encode()}
    for k, v in (metadata or {}).items():
        meta[f"poisonbench.{k}".encode()] = v.encode()
    return pa.Table.from_pylist(full, schema=SCHEMA.with_metadata(meta))


#: Version of the poison-set artefact format (file metadata ``poisonbench.poisons_version``).
POISONS_VERSION = 1
POISONS_VERSION_KEY = b"poisonbench.poisons_version"
POISONS_SHA_KEY = b"poisonbench.poisons_sha256"
#: The folder of a campaign directory that holds its poison sets (``_``: dataset readers skip it).
POISONS_DIR = "_poisons"
#: Identity entries of a poison set's metadata (informative: not part of its content hash).
POISONS_IDENTITY = ("campaign", "trial_id", "dataset", "seed")
_POISONS_SCHEMA = (
    ("order", pa.int64()),
    ("step", pa.int64()),
    ("checkpoint", pa.int32()),
    ("y", pa.float64()),
)


class PoisonSetError(ValueError):
    """A poison-set artefact is unreadable, of another format, or fails its content hash."""


def poisons_path(root: str | Path, campaign: str, trial_id: str) -> Path:
    """Where a store under ``root`` keeps the poison set of trial ``trial_id`` of ``campaign``."""
    return Path(root) / campaign / POISONS_DIR / f"poisons-{trial_id}.parquet"


@dataclass(frozen=True)
class PoisonSet:
    """The poisons of one trial, in the order its attack yielded them.

    ``X`` (n, d) and ``y`` (n,), float64; ``step[i]``: the 1-based index of the batch that yielded
    point ``i`` (non-decreasing); ``checkpoint[i]``: the index of the first checkpoint (budgets in
    increasing order) whose training set includes point ``i``; ``steps``: the batches the attack
    yielded, empty ones included; ``dataset_digest``: :meth:`poisonbench.dataset.Dataset.digest`
    of the data the poisons were crafted on. ``identity``: the :data:`POISONS_IDENTITY` of the
    trial (campaign, trial id, dataset config JSON, seed), informative only.
    """

    X: np.ndarray
    y: np.ndarray
    step: np.ndarray
    checkpoint: np.ndarray
    steps: int
    dataset_digest: str
    identity: dict[str, str] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def sha256(self) -> str:
        """The content hash: SHA-256 of the format version, the sizes, ``steps``, the dataset
        digest and the little-endian bytes of ``step``, ``checkpoint``, ``y`` and ``X`` (independent
        of the Parquet encoding, so equal poisons have equal hashes wherever they were written)."""
        n, d = self.X.shape
        h = hashlib.sha256(
            f"poisonbench-poisons-v{POISONS_VERSION} {n} {d} {self.steps} {self.dataset_digest}\n".encode()
        )
        for arr, dtype in ((self.step, "<i8"), (self.checkpoint, "<i4"), (self.y, "<f8"), (self.X, "<f8")):
            h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
        return h.hexdigest()

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(X, y)`` of each of the ``steps`` batches in order (empty ones included)."""
        bounds = np.searchsorted(self.step, np.arange(1, self.steps + 2), side="left")
        for start, stop in zip(bounds[:-1], bounds[1:]):
            yield self.X[start:stop], self.y[start:stop]

    def to_parquet(self) -> bytes:
        """The artefact: a zstd Parquet file of plain numeric columns ``order``, ``step``,
        ``checkpoint``, ``y`` and ``x`` (fixed-size list of ``d`` float64), with the format
        version, the content hash, ``steps``, the dataset digest and the identity in its metadata."""
        n, d = self.X.shape
        columns: dict[str, pa.Array] = {
            "order": pa.array(np.arange(n, dtype=np.int64)),
            "step": pa.array(np.asarray(self.step, dtype=np.int64)),
            "checkpoint": pa.array(np.asarray(self.checkpoint, dtype=np.int32)),
            "y": pa.array(np.asarray(self.y, dtype=np.float64)),
            "x": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(self.X, np.float64).ravel()), d),
        }
        meta = {
            POISONS_VERSION_KEY: str(POISONS_VERSION).encode(),
            POISONS_SHA_KEY: self.sha256().encode(),
            b"poisonbench.steps": str(self.steps).encode(),
            b"poisonbench.dataset_digest": self.dataset_digest.encode(),
            **{f"poisonbench.{k}".encode(): v.encode() for k, v in self.identity.items()},
        }
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(columns).replace_schema_metadata(meta), sink, compression="zstd")
        return bytes(sink.getvalue())


def recorded_poisons_sha256(source: bytes | str | Path) -> str | None:
    """The content hash a poison-set artefact records in its metadata (not verified), or None
    for a file that is not one."""
    try:
        schema = pq.read_schema(pa.BufferReader(source) if isinstance(source, bytes) else source)
    except (OSError, pa.ArrowException):
        return None
    value = (schema.metadata or {}).get(POISONS_SHA_KEY)
    return None if value is None else value.decode()


def read_poison_set(source: bytes | str | Path, expected_sha256: str | None = None) -> PoisonSet:
    """The poison set in an artefact (a path, or the file's bytes), verified: its format, and its
    content against the hash in its metadata and against ``expected_sha256`` when given (the
    hash its trial's rows record). :class:`PoisonSetError` with one line naming the problem."""
    where = "poison set" if isinstance(source, bytes) else f"poison set {source}"
    try:
        table = pq.read_table(pa.BufferReader(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise PoisonSetError(f"{where}: no such file") from None
    except (OSError, pa.ArrowException) as exc:
        raise PoisonSetError(f"{where}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
    meta = table.schema.metadata or {}
    if meta.get(POISONS_VERSION_KEY) != str(POISONS_VERSION).encode():
        raise PoisonSetError(f"{where}: not a poisonbench poison set of format version {POISONS_VERSION}")
    x_type = table.schema.field("x").type if "x" in table.column_names else None
    expected = [f"{name} {typ}" for name, typ in _POISONS_SCHEMA]
    found = [f"{f.name} {f.type}" for f in table.schema if f.name != "x"]
    if (
        found != expected
        or x_type is None
        or not pa.types.is_fixed_size_list(x_type)
        or x_type.value_type != pa.float64()
        or any(table[c].null_count for c in table.column_names)
    ):
        raise PoisonSetError(f"{where}: expected null-free columns {', '.join(expected)}, x fixed_size_list<double>")
    n, d = table.num_rows, x_type.list_size
    try:
        steps = int(meta[b"poisonbench.steps"])
        digest, recorded = meta[b"poisonbench.dataset_digest"].decode(), meta[POISONS_SHA_KEY].decode()
    except (KeyError, ValueError):
        raise PoisonSetError(f"{where}: metadata without steps, dataset digest or content hash") from None
    step = table["step"].to_numpy()
    poisons = PoisonSet(
        X=table["x"].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(n, d),
        y=table["y"].to_numpy(),
        step=step,
        checkpoint=table["checkpoint"].to_numpy(),
        steps=steps,
        dataset_digest=digest,
        identity={
            k: meta[f"poisonbench.{k}".encode()].decode()
            for k in POISONS_IDENTITY
            if f"poisonbench.{k}".encode() in meta
        },
    )
    actual = poisons.sha256()
    if actual != recorded:
        raise PoisonSetError(
            f"{where}: content hash {actual[:16]}… differs from the recorded {recorded[:16]}… (modified)"
        )
    if expected_sha256 is not None and actual != expected_sha256:
        raise PoisonSetError(
            f"{where}: content hash {actual[:16]}… is not the {expected_sha256[:16]}… its trial's rows record"
        )
    ordered = np.array_equal(table["order"].to_numpy(), np.arange(n))
    if not ordered or (n and (step[0] < 1 or step[-1] > steps or np.any(np.diff(step) < 0))):
        raise PoisonSetError(f"{where}: rows out of order or steps outside 1..{steps}")
    return poisons
