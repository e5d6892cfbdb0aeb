"""The store at scale: ``leaderboard show`` and the resume of a finished campaign at 10⁵ trials.

A synthetic campaign of ``N`` trials (the toy plugins' grid over ``N`` seeds, 4 rows a trial,
the rows of one real trial with each trial's id and seed) is written two ways in the same run:

- **compacted**: one part file (what ``run`` leaves once a campaign has 256 trial files, and
  what ``poisonbench leaderboard compact`` writes);
- **one file per trial** (the layout before compaction, the baseline), for the first ``M``
  trials only: writing 10⁵ fsynced files takes minutes, and its read cost is linear in files.

Timed in-process through the CLI (``poisonbench.cli.main.main``, interpreter start-up not
included): ``leaderboard show`` on each store, and ``run`` of the finished ``N``-trial campaign
(expands the grid, reads which trials are done, runs nothing, writes nothing). The goals are
``show`` under 2 s and the resume under 10 s at ``N = 10⁵``; per-trial costs give the ratio to
the baseline. Peak traced memory of a second (untimed) resume is reported.

    POISONBENCH_BENCH_FULL=1 python -m pytest benchmarks/bench_store.py -s   # N = 10⁵, M = 2,000
    python -m pytest benchmarks/bench_store.py                                # CI smoke: N = 3,000, M = 200
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from poisonbench.campaign import load_campaign
from poisonbench.cli.main import main
from poisonbench.host import load_host
from poisonbench.leaderboards.store import Store
from poisonbench.results import SCHEMA, rows_to_table
from poisonbench.trial import run_trial

FULL = os.environ.get("POISONBENCH_BENCH_FULL") == "1"
N_TRIALS = 100_000 if FULL else 3_000
N_FILES = 2_000 if FULL else 200
PLUGINS = ("plugins_for_tests.toy",)
RESULTS: dict[str, float] = {}


def campaign_file(folder: Path, n: int) -> Path:
    path = folder / "big.toml"
    path.write_text(
        f'name = "big"\nseeds = {list(range(n))}\nbudgets = [0, 2, 4]\nrecord_every = 0\n'
        '[[datasets]]\nname = "tiny"\nparams = { n = 40 }\n'
        '[[learners]]\nname = "toy-ridge"\n[[attacks]]\nname = "toy-flip"\n'
    )
    return path


def synthetic_table(trials: list) -> pa.Table:
    """The rows of ``trials[0]`` (really run) repeated for every trial, with its id, hash and seed."""
    host = load_host(PLUGINS, load_external=False)
    template = rows_to_table(run_trial(trials[0], host))
    k = template.num_rows
    table = template.take(np.tile(np.arange(k), len(trials)))
    for column, values in (
        ("trial_id", [t.trial_id for t in trials]),
        ("config_hash", [t.config_hash for t in trials]),
        ("seed", [t.seed for t in trials]),
    ):
        array = pa.array(np.repeat(np.asarray(values), k), SCHEMA.field(column).type)
        table = table.set_column(table.schema.get_field_index(column), SCHEMA.field(column), array)
    return table


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-store")
    path = campaign_file(folder, N_TRIALS)
    trials = load_campaign(path).trials(load_host(PLUGINS, load_external=False).registry)
    table = synthetic_table(trials)
    compacted, per_file = Store(folder / "compacted"), Store(folder / "files")
    t0 = time.perf_counter()
    k = table.num_rows // len(trials)
    for i, trial in enumerate(trials[:N_FILES]):
        per_file.write_trial("big", trial.trial_id, table.slice(i * k, k).to_pylist())
    RESULTS["write_file_s"] = (time.perf_counter() - t0) / N_FILES
    for i in range(0, N_FILES, N_FILES // 2):  # two half-campaign parts, then one compaction
        part = trials[i : i + N_FILES // 2]
        for j, trial in enumerate(part, start=i):
            compacted.write_trial("big", trial.trial_id, table.slice(j * k, k).to_pylist())
        compacted.compact("big")
    rest = table.slice(N_FILES * k)
    folder_c = compacted.campaign_dir("big")
    import pyarrow.parquet as pq

    (part_file,) = folder_c.glob("part-*.parquet")
    merged = pa.concat_tables([pq.read_table(part_file), rest.cast(pq.read_schema(part_file))])
    pq.write_table(merged, part_file, compression="zstd", row_group_size=65_536)
    assert compacted.read(columns=["trial_id"]).num_rows == table.num_rows
    return path, compacted, per_file


def cli(*args: str) -> tuple[int, str, float]:
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main([*("--plugin", PLUGINS[0]), *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), time.perf_counter() - t0


def test_show_compacted_vs_one_file_per_trial(stores):
    _, compacted, per_file = stores
    code, out, seconds = cli("leaderboard", "show", "--store", str(compacted.root))
    assert code == 0 and "toy-flip" in out
    code, out_files, seconds_files = cli("leaderboard", "show", "--store", str(per_file.root))
    assert code == 0 and "toy-flip" in out_files
    RESULTS.update(show_s=seconds, show_files_s=seconds_files)
    ratio = (seconds_files / N_FILES) / (seconds / N_TRIALS)
    print(
        f"\nshow: {N_TRIALS:,} trials compacted {seconds:.2f} s; {N_FILES:,} trial files {seconds_files:.2f} s; "
        f"per trial {seconds / N_TRIALS * 1e6:.1f} µs vs {seconds_files / N_FILES * 1e6:.0f} µs (×{ratio:.0f})"
    )
    if FULL:
        assert seconds < 2.0


def test_resume_of_a_finished_campaign(stores):
    path, compacted, _ = stores
    before = sorted((p.name, p.stat().st_mtime_ns) for p in compacted.campaign_dir("big").iterdir())
    code, out, seconds = cli("run", str(path), "--store", str(compacted.root))
    tracemalloc.start()  # a second resume, traced (tracing slows Python down, so it is not the timed one)
    cli("run", str(path), "--store", str(compacted.root))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 0 and f"{N_TRIALS} trial(s): 0 ok, 0 failed, {N_TRIALS} skipped" in out
    after = sorted((p.name, p.stat().st_mtime_ns) for p in compacted.campaign_dir("big").iterdir())
    assert after == before  # nothing to run: nothing written, not even the lock
    RESULTS.update(resume_s=seconds, resume_peak_bytes_per_trial=peak / N_TRIALS)
    print(f"\nresume of {N_TRIALS:,} finished trials: {seconds:.2f} s, peak traced memory {peak / 1e6:.0f} MB")
    if FULL:
        assert seconds < 10.0
