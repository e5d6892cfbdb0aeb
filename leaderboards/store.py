"""The leaderboard store: one directory per campaign, one Parquet file per finished trial.

Layout (``docs/campaigns.md``)::

    <root>/<campaign>/_campaign.json            resolved campaign + every trial's config (JSON)
    <root>/<campaign>/trial-<trial_id>.parquet  the rows of one trial (schema: poisonbench.results)

Each file is written to a hidden temporary file in the same directory, flushed, fsynced and
renamed over its final name (``os.replace``, atomic on POSIX), so a killed run leaves either
the whole file or none (``_campaign.json`` starts with ``_`` so that readers of the directory
as a Parquet dataset, e.g. ``pandas.read_parquet(dir)``, skip it); a re-run of a trial replaces its file, so rows are never duplicated.
The schema version is in each file's metadata (``poisonbench.schema_version``). Files that
are corrupt, foreign or from another schema version are reported with a
:class:`StoreWarning` naming the file, and skipped. Nothing is ever pickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from poisonbench.results import ADDED_COLUMNS, SCHEMA, SCHEMA_VERSION, rows_to_table, to_json

SCHEMA_KEY = b"poisonbench.schema_version"
CAMPAIGN_FILE = "_campaign.json"
TRIAL_FILE = re.compile(r"^trial-([0-9a-f]{16})\.parquet$")
TEMP_FILE = re.compile(r"^\..+\.tmp$")
LOCK_FILE = ".lock"
DEFAULT_STORE = "poisonbench-store"


class StoreWarning(UserWarning):
    """A file in the store could not be used (corrupt, foreign, other schema version)."""


class Store:
    """A directory of campaign result sets."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def campaign_dir(self, campaign: str) -> Path:
        if not campaign or "/" in campaign or "\\" in campaign or campaign.startswith("."):
            raise ValueError(f"campaign name {campaign!r}: expected a plain directory name")
        return self.root / campaign

    def trial_path(self, campaign: str, trial_id: str) -> Path:
        return self.campaign_dir(campaign) / f"trial-{trial_id}.parquet"

    def campaigns(self) -> list[str]:
        """Names of the campaigns that have results or a ``_campaign.json``."""
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir() and ((entry / CAMPAIGN_FILE).exists() or any(entry.glob("trial-*.parquet"))):
                out.append(entry.name)
            else:
                _warn(entry, "not a campaign directory of this store (no _campaign.json or trial files)")
        return out

    def write_trial(self, campaign: str, trial_id: str, rows: list[dict[str, Any]]) -> Path:
        """Write the rows of one trial atomically (replacing an earlier file of the same trial)."""
        if not re.fullmatch(r"[0-9a-f]{16}", trial_id):
            raise ValueError(f"trial id {trial_id!r}: expected 16 hex digits")
        if not rows:
            raise ValueError(f"trial {trial_id}: no rows to write")
        table = rows_to_table(rows, {"campaign": campaign, "trial_id": trial_id})
        path = self.trial_path(campaign, trial_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            if not _writer_alive(stale):  # another live process's temp file is its business
                stale.unlink(missing_ok=True)
        _atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))
        return path

    def write_campaign(self, campaign: str, payload: dict[str, Any], trials: dict[str, dict[str, Any]]) -> Path:
        """Write ``_campaign.json``: ``payload`` (the parsed campaign) and the union of ``trials``
        with those recorded before (trial id -> resolved config)."""
        path = self.campaign_dir(campaign) / CAMPAIGN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        known: dict[str, Any] = {}
        if path.exists():
            try:
                known = dict(json.loads(path.read_text(encoding="utf-8")).get("trials", {}))
            except (ValueError, AttributeError) as exc:
                _warn(path, f"unreadable _campaign.json, rewritten ({exc})")
        data = {"schema_version": SCHEMA_VERSION, **payload, "trials": {**known, **trials}}
        text = json.dumps(json.loads(to_json(data)), indent=2, sort_keys=True) + "\n"
        _atomic_write(path, lambda f: f.write(text.encode()))
        return path

    def read_campaign(self, campaign: str) -> dict[str, Any]:
        """The ``_campaign.json`` of ``campaign`` (empty dict when absent or unreadable, with a warning)."""
        path = self.campaign_dir(campaign) / CAMPAIGN_FILE
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            _warn(path, f"not valid JSON ({exc})")
            return {}

    def finished(self, campaign: str) -> dict[str, str]:
        """Trial id -> ``"ok"`` or ``"failed"`` for every readable trial file of ``campaign``."""
        out = {}
        for path, trial_id in self._trial_files(campaign):
            table = _read(path, columns=["trial_id", "status"])
            if table is None:
                continue
            statuses = set(table.column("status").to_pylist())
            out[trial_id] = "ok" if statuses == {"ok"} else "failed"
        return out

    def read(self, campaigns: Iterable[str] | None = None, columns: list[str] | None = None) -> pa.Table:
        """All rows of ``campaigns`` (default: every campaign) as one table with the store schema."""
        names = list(campaigns) if campaigns is not None else self.campaigns()
        schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
        tables = []
        for name in names:
            if not self.campaign_dir(name).is_dir():
                raise ValueError(
                    f"campaign {name!r} has no results in {self.root}; found: {', '.join(self.campaigns()) or '(none)'}"
                )
            for path, _ in self._trial_files(name):
                table = _read(path, columns)
                if table is not None:
                    tables.append(table.cast(schema))
        if not tables:
            return schema.empty_table()
        return pa.concat_tables(tables).replace_schema_metadata(None)

    def _trial_files(self, campaign: str) -> list[tuple[Path, str]]:
        folder = self.campaign_dir(campaign)
        if not folder.is_dir():
            return []
        out = []
        for entry in sorted(folder.iterdir()):
            match = TRIAL_FILE.match(entry.name)
            if match and entry.is_file():
                out.append((entry, match.group(1)))
            elif entry.name not in (CAMPAIGN_FILE, LOCK_FILE) and not TEMP_FILE.match(entry.name):
                _warn(entry, "foreign file in a campaign directory, ignored")
        return out


def _read(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """The table in ``path`` when it is a poisonbench file of this schema version, else None + warning."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        _warn(path, f"not a readable Parquet file ({exc})")
        return None
    version = (schema.metadata or {}).get(SCHEMA_KEY)
    if version is None:
        _warn(path, "Parquet file without poisonbench metadata (foreign file)")
        return None
    readable = [str(v) for v in range(1, SCHEMA_VERSION + 1)]
    if version.decode() not in readable:
        _warn(
            path, f"written with schema version {version.decode()}, this poisonbench reads versions 1–{SCHEMA_VERSION}"
        )
        return None
    later = {c for v, cols in ADDED_COLUMNS.items() if v > int(version.decode()) for c in cols}
    wanted = list(columns or SCHEMA.names)
    missing = sorted(set(wanted) - set(schema.names) - later)
    if missing:
        _warn(path, f"missing column(s) {', '.join(missing)}")
        return None
    try:
        table = pq.read_table(path, columns=[c for c in wanted if c in schema.names])
    except (OSError, pa.ArrowException) as exc:
        _warn(path, f"corrupt Parquet data ({exc})")
        return None
    for name in wanted:
        if name not in table.column_names:
            table = table.append_column(SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type))
    return table.select(wanted)


def _writer_alive(temp: Path) -> bool:
    """Whether the process whose pid is in the temp file's name (``.<file>.<pid>.tmp``) runs."""
    try:
        pid = int(temp.name.rsplit(".", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def campaign_lock(store: Store, campaign: str, on_wait: Any = None) -> Iterator[None]:
    """Hold the campaign's lock (``<store>/<campaign>/.lock``, ``flock``) for a run; a second run
    of the same campaign into the same store waits for it (calling ``on_wait(pid)`` once) and
    then finds the finished trials done. The kernel releases a crashed holder's lock."""
    folder = store.campaign_dir(campaign)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            if on_wait is not None:
                on_wait(handle.read().strip() or "?")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _warn(path: Path, problem: str) -> None:
    warnings.warn(f"store: {path}: {problem}", StoreWarning, stacklevel=3)
