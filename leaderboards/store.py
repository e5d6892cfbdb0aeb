"""The leaderboard store: one directory per campaign, one Parquet file per finished trial,
compacted into larger part files as the campaign grows.

Layout (``docs/campaigns.md``)::

    <root>/<campaign>/_campaign.json                  the campaign file as parsed, and its hash (JSON)
    <root>/<campaign>/trial-<trial_id>.parquet        the rows of one trial (schema: poisonbench.results)
    <root>/<campaign>/part-<generation>-<hash>.parquet  the rows of many trials (after compaction)
    <root>/<campaign>/_poisons/poisons-<trial_id>.parquet  the poison set of one trial (data only)

Each file is written to a hidden temporary file in the same directory, flushed, fsynced and
renamed over its final name (``os.replace``, atomic on POSIX), so a killed run leaves either
the whole file or none (``_campaign.json`` starts with ``_`` so that readers of the directory
as a Parquet dataset, e.g. ``pandas.read_parquet(dir)``, skip it); a re-run of a trial
replaces its file, so rows are never duplicated.

**Which rows count.** A trial's rows are those of its trial file when it has one, else those of
the part file of the highest generation that holds it. :meth:`Store.compact` writes a part of
the next generation holding every counted row and only then deletes the files it absorbed, so
a compaction killed at any moment leaves the same counted rows (at worst some files that are
already superseded). A trial file whose rows name another trial or campaign (a copy under
another name) is skipped with a warning, so it is never counted twice.

**Poison sets** (:class:`poisonbench.results.PoisonSet`) live in the campaign's ``_poisons``
folder, one per trial that produced poisons, written (atomically) before the trial's rows, whose
``poisons_sha256`` names their content hash; they are never rows, compaction leaves them alone,
and a trial written again without one loses a poison set whose hash its new rows do not name.

The schema version is in each file's metadata (``poisonbench.schema_version``). Files that
are corrupt, foreign, of another schema version or of other column types are reported with a
:class:`StoreWarning` naming the file, and skipped (never deleted). Nothing is ever pickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from poisonbench.results import (
    ADDED_COLUMNS,
    MEASURED_COLUMNS,
    MEASURED_ONLY_SINCE,
    POISONS_DIR,
    SCHEMA,
    SCHEMA_VERSION,
    PoisonSet,
    poisons_path,
    read_poison_set,
    recorded_poisons_sha256,
    rows_to_table,
    to_json,
)

SCHEMA_KEY = b"poisonbench.schema_version"
CAMPAIGN_FILE = "_campaign.json"
TRIAL_FILE = re.compile(r"^trial-([0-9a-f]{16})\.parquet$")
PART_FILE = re.compile(r"^part-([0-9]{8})-([0-9a-f]{16})\.parquet$")
#: A run compacts its campaign when it holds at least this many trial files (``run`` ends with
#: :meth:`Store.compact`; ``poisonbench leaderboard compact`` does it on demand).
COMPACT_AT = 256
#: Rows per Parquet row group in a part file.
PART_ROW_GROUP = 65_536
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

    def poisons_path(self, campaign: str, trial_id: str) -> Path:
        """The poison-set artefact of a trial (``<campaign>/_poisons/poisons-<trial_id>.parquet``)."""
        self.campaign_dir(campaign)  # checks the name
        return poisons_path(self.root, campaign, trial_id)

    def campaigns(self) -> list[str]:
        """Names of the campaigns that have result files or a ``_campaign.json``."""
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue
            results = (
                any(TRIAL_FILE.match(f.name) or PART_FILE.match(f.name) for f in entry.iterdir())
                if entry.is_dir()
                else False
            )
            if entry.is_dir() and ((entry / CAMPAIGN_FILE).exists() or results):
                out.append(entry.name)
            else:
                _warn(entry, "not a campaign directory of this store (no _campaign.json or trial files)")
        return out

    def write_trial(
        self, campaign: str, trial_id: str, rows: list[dict[str, Any]], poisons: bytes | None = None
    ) -> Path:
        """Write the rows of one trial atomically (replacing an earlier file of the same trial),
        after its poison set when given (the artefact's bytes, whose recorded content hash must be
        the rows' ``poisons_sha256``). Without one, a stored poison set of the trial that the rows
        do not name is deleted (it belonged to an earlier run)."""
        if not re.fullmatch(r"[0-9a-f]{16}", trial_id):
            raise ValueError(f"trial id {trial_id!r}: expected 16 hex digits")
        path = self.trial_path(campaign, trial_id)
        if not rows:
            raise ValueError(f"trial {trial_id}: no rows to write")
        owners = {(r.get("campaign"), r.get("trial_id")) for r in rows}
        if owners != {(campaign, trial_id)}:
            raise ValueError(f"trial {trial_id} of campaign {campaign!r}: the rows belong to {sorted(owners)[:3]}")
        table = rows_to_table(rows, {"campaign": campaign, "trial_id": trial_id})
        named = set(table["poisons_sha256"].to_pylist())
        artefact = self.poisons_path(campaign, trial_id)
        if poisons is not None:
            recorded = recorded_poisons_sha256(poisons)
            if recorded is None or named != {recorded}:
                raise ValueError(
                    f"trial {trial_id}: the poison set's content hash {recorded} is not the rows' "
                    f"poisons_sha256 {sorted(map(str, named))[:2]}"
                )
            artefact.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temp(artefact)
            _atomic_write(artefact, lambda f: f.write(poisons))
        elif artefact.exists() and recorded_poisons_sha256(artefact) not in named:
            artefact.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp(path)
        _atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))
        return path

    def read_poisons(self, campaign: str, trial_id: str) -> PoisonSet:
        """The poison set of a counted trial, verified against the content hash its rows record
        (``ValueError`` with one line: no such trial, no poison set, or a hash mismatch)."""
        table, _ = self._campaign_table(campaign, ["trial_id", "poisons_sha256"])
        hashes = table.filter(pc.equal(table["trial_id"], trial_id))["poisons_sha256"].to_pylist()
        if not hashes:
            raise ValueError(f"campaign {campaign!r} in {self.root} has no trial {trial_id}")
        named = sorted({h for h in hashes if h is not None})
        if not named:
            raise ValueError(
                f"trial {trial_id} of campaign {campaign!r} has no poison set (it produced no poisons, "
                f"or its rows predate schema version 6)"
            )
        if len(named) > 1:
            raise ValueError(f"trial {trial_id} of campaign {campaign!r}: its rows name {len(named)} poison sets")
        path = self.poisons_path(campaign, trial_id)
        if not path.is_file():
            raise ValueError(
                f"trial {trial_id} of campaign {campaign!r}: no stored poison set {path} "
                f"(the campaign ran with store_poisons = false?)"
            )
        return read_poison_set(path, named[0])

    def write_campaign(self, campaign: str, payload: dict[str, Any]) -> Path | None:
        """Record the campaign in ``_campaign.json``: ``payload`` (the parsed campaign file) and its
        SHA-256, with the hashes of every earlier version run into this store (``sources``).
        Nothing is written when the file already says the same (so a finished campaign on a
        read-only store can be resumed); returns the path written, or None."""
        path = self.campaign_dir(campaign) / CAMPAIGN_FILE
        digest = hashlib.sha256(to_json(payload).encode()).hexdigest()
        known = self.read_campaign(campaign)
        sources = known.get("sources") if isinstance(known.get("sources"), dict) else {}
        if known.get("source_sha256") == digest and digest in sources:
            return None
        sources = {**sources, digest: payload.get("source_file")}
        data = {"schema_version": SCHEMA_VERSION, **payload, "source_sha256": digest, "sources": sources}
        text = json.dumps(json.loads(to_json(data)), indent=2, sort_keys=True) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda f: f.write(text.encode()))
        return path

    def read_campaign(self, campaign: str) -> dict[str, Any]:
        """The ``_campaign.json`` of ``campaign`` (empty dict when absent or unreadable, with a warning)."""
        path = self.campaign_dir(campaign) / CAMPAIGN_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            _warn(path, f"not valid JSON ({exc})")
            return {}
        if not isinstance(data, dict):
            _warn(path, f"expected a JSON object, got {type(data).__name__}")
            return {}
        return data

    def finished(self, campaign: str) -> dict[str, str]:
        """Trial id -> ``"ok"`` or ``"failed"`` for every counted trial of ``campaign``."""
        table, _ = self._campaign_table(campaign, ["trial_id", "status"])
        if table.num_rows == 0:
            return {}
        bad = pc.fill_null(pc.not_equal(table["status"], "ok"), True)
        grouped = pa.table({"trial_id": table["trial_id"], "bad": bad}).group_by("trial_id", use_threads=False)
        agg = grouped.aggregate([("bad", "any")])
        return {
            str(tid): "failed" if failed else "ok"
            for tid, failed in zip(agg["trial_id"].to_pylist(), agg["bad_any"].to_pylist())
        }

    def read(self, campaigns: Iterable[str] | None = None, columns: list[str] | None = None) -> pa.Table:
        """The counted rows of ``campaigns`` (default: every campaign) as one table with the store
        schema, or only ``columns`` of it (read from the files column by column)."""
        names = list(campaigns) if campaigns is not None else self.campaigns()
        schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
        tables = []
        for name in names:
            if not self.campaign_dir(name).is_dir():
                raise ValueError(
                    f"campaign {name!r} has no results in {self.root}; found: {', '.join(self.campaigns()) or '(none)'}"
                )
            tables.append(self._campaign_table(name, columns)[0])
        if not tables:
            return schema.empty_table()
        return pa.concat_tables(tables).replace_schema_metadata(None)

    def _campaign_table(self, campaign: str, columns: list[str] | None = None) -> tuple[pa.Table, list[Path]]:
        """The counted rows of one campaign (see the module docstring), with ``columns``, and the
        files that were read (unreadable ones are warned about and left out)."""
        wanted = list(columns or SCHEMA.names)
        keyed = wanted if "trial_id" in wanted else [*wanted, "trial_id"]
        files = self.files(campaign)
        tables: list[pa.Table] = []
        used: list[Path] = []
        seen: set[str] = set()
        for path, trial_id in files.trials:
            table = _read(path, keyed, campaign, trial_id)
            if table is not None:
                tables.append(table)
                used.append(path)
                seen.add(trial_id)
        for path, _ in files.parts_newest_first():
            table = _read(path, keyed, campaign)
            if table is None:
                continue
            used.append(path)
            if seen:
                table = table.filter(pc.invert(pc.is_in(table["trial_id"], pa.array(sorted(seen)))))
            seen.update(pc.unique(table["trial_id"]).to_pylist())
            tables.append(table)
        schema = pa.schema([SCHEMA.field(c) for c in wanted])
        if not tables:
            return schema.empty_table(), used
        return pa.concat_tables(tables).select(wanted).replace_schema_metadata(None), used

    def files(self, campaign: str) -> CampaignFiles:
        """The trial files and part files of ``campaign`` (foreign files are warned about)."""
        folder = self.campaign_dir(campaign)
        out = CampaignFiles([], [])
        if not folder.is_dir():
            return out
        for entry in sorted(folder.iterdir()):
            trial, part = TRIAL_FILE.match(entry.name), PART_FILE.match(entry.name)
            if trial and entry.is_file():
                out.trials.append((entry, trial.group(1)))
            elif part and entry.is_file():
                out.parts.append((entry, int(part.group(1))))
            elif entry.name == POISONS_DIR and entry.is_dir():
                continue  # poison sets: data of the trials, never rows
            elif entry.name not in (CAMPAIGN_FILE, LOCK_FILE) and not TEMP_FILE.match(entry.name):
                _warn(entry, "foreign file in a campaign directory, ignored")
        return out

    def compact(self, campaign: str) -> CompactionReport:
        """Merge the counted rows of ``campaign`` into one part file of the next generation, then
        delete the trial and part files it absorbed (call it holding :func:`campaign_lock`;
        ``run`` and ``leaderboard compact`` do). Unreadable files are left in place."""
        files = self.files(campaign)
        if len(files.trials) + len(files.parts) < 2:
            return CompactionReport(campaign, 0, 0, None)
        table, used = self._campaign_table(campaign)
        generation = max((g for _, g in files.parts), default=0) + 1
        ids = pc.unique(table["trial_id"]).to_pylist()
        digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
        path = self.campaign_dir(campaign) / f"part-{generation:08d}-{digest}.parquet"
        meta = {SCHEMA_KEY: str(SCHEMA_VERSION).encode(), b"poisonbench.campaign": campaign.encode()}
        table = table.sort_by([("trial_id", "ascending")]).cast(SCHEMA.with_metadata(meta))
        _atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd", row_group_size=PART_ROW_GROUP))
        if pq.read_metadata(path).num_rows != table.num_rows:
            raise OSError(
                f"store: {path}: compaction wrote {pq.read_metadata(path).num_rows} rows, expected {table.num_rows}"
            )
        for old in used:
            old.unlink(missing_ok=True)
        return CompactionReport(campaign, len(used), table.num_rows, path)


@dataclass
class CampaignFiles:
    """The result files of one campaign directory."""

    trials: list[tuple[Path, str]]  # (path, trial id)
    parts: list[tuple[Path, int]]  # (path, generation)

    def parts_newest_first(self) -> list[tuple[Path, int]]:
        return sorted(self.parts, key=lambda p: (-p[1], p[0].name))


@dataclass
class CompactionReport:
    """What one :meth:`Store.compact` did: files merged, rows kept and the part written."""

    campaign: str
    files_merged: int
    rows: int
    part: Path | None


def _read(
    path: Path, columns: list[str] | None = None, campaign: str | None = None, trial_id: str | None = None
) -> pa.Table | None:
    """The ``columns`` of ``path``, cast to the store schema, when it is a poisonbench file of a
    readable schema version whose rows belong to ``campaign`` (and to ``trial_id``, for a trial
    file); else None, with a warning naming the file."""
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
    identity = [c for c, v in (("campaign", campaign), ("trial_id", trial_id)) if v is not None]
    missing = sorted(set(wanted + identity) - set(schema.names) - later)
    if missing:
        _warn(path, f"missing column(s) {', '.join(missing)}")
        return None
    migrate = int(version.decode()) < MEASURED_ONLY_SINCE and any(c in MEASURED_COLUMNS for c in wanted)
    present = [c for c in dict.fromkeys(wanted + identity + (["kind"] if migrate else [])) if c in schema.names]
    try:
        table = pq.read_table(path, columns=present)
        table = table.cast(pa.schema([SCHEMA.field(c) for c in present]))
    except (OSError, pa.ArrowException) as exc:
        _warn(path, f"corrupt Parquet data or columns of other types ({_first_line(exc)})")
        return None
    if migrate:
        table = _measured_only(table)
    for column, expected in (("campaign", campaign), ("trial_id", trial_id)):
        if expected is not None and table.num_rows:
            values = pc.unique(table[column]).to_pylist()
            if values != [expected]:
                _warn(path, f"its rows have {column} {values[:3]}, expected {expected!r} (a copied file?); skipped")
                return None
    for name in wanted:
        if name not in table.column_names:
            table = table.append_column(SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type))
    return table.select(wanted)


def _measured_only(table: pa.Table) -> pa.Table:
    """Rows of a file older than schema version 5 with the measured columns of its trace rows
    set to null: those rows held the attack's own estimates there (still in ``diagnostics``)."""
    checkpoint = pc.fill_null(pc.not_equal(table["kind"], "trace"), True)
    for name in MEASURED_COLUMNS:
        if name in table.column_names:
            i = table.column_names.index(name)
            nulls = pa.nulls(table.num_rows, table.schema.field(name).type)
            table = table.set_column(i, table.schema.field(name), pc.if_else(checkpoint, table[name], nulls))
    return table


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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


def _remove_stale_temp(path: Path) -> None:
    """Delete the temporary files of ``path`` that no live process is writing."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if not _writer_alive(stale):  # another live process's temp file is its business
            stale.unlink(missing_ok=True)


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
