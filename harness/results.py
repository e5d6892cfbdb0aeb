"""Result rows: the column schema of the leaderboard store and run provenance.

One row per (trial, checkpoint): the trial's identity and configuration, the metrics of the
model the defence fitted on clean data ∪ the first ``budget`` poisons, the attack's latest
diagnostics, status / error text and provenance (versions, git revision, host, device,
timestamps). Rows of kind ``"trace"`` hold the attack's diagnostics every ``record_every``
steps (no refit), for convergence plots. Every value is a plain JSON-friendly type; nested
values (parameters, diagnostics, the resolved config) are JSON strings, never pickles.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

#: Version of the row schema, stored in every Parquet file's metadata.
SCHEMA_VERSION = 5
#: Columns added by each schema version after the first: a file of an older version is read
#: with these columns null (they were not measured then).
ADDED_COLUMNS: dict[int, tuple[str, ...]] = {
    2: ("fit_gap", "fit_converged", "diagnostics_n_poisons", "code_hash"),
    3: ("lower_bound_induced",),
    4: ("n_removed_poisons", "n_removed_clean"),
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
    ("test_accuracy", pa.float64(), "accuracy of the defended model on the test split"),
    ("subpop_accuracy", pa.float64(), "accuracy on the subpopulation's test points (null without one)"),
    ("lambda", pa.float64(), "the defence's 'lambda' hyperparameter (log L2 strength), when reported"),
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
