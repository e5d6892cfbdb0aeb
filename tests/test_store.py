"""The Parquet leaderboard store (leaderboards/store.py): atomic files, schema, bad files, readers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonbench.campaign import load_campaign
from poisonbench.host import load_host
from poisonbench.leaderboards.store import Store, StoreWarning
from poisonbench.results import COLUMN_NAMES, SCHEMA_VERSION
from poisonbench.trial import run_trial

CAMPAIGNS = Path(__file__).parent / "campaigns"


@pytest.fixture(scope="module")
def results():
    """Rows of four toy trials: (trial, rows)."""
    host = load_host(("plugins_for_tests.toy", "plugins_for_tests.faulty"), load_external=False)
    trials = load_campaign(CAMPAIGNS / "toy.toml").trials(host.registry)[:4]
    return [(t, run_trial(t, host)) for t in trials]


def fill(store: Store, results, campaign: str = "toy") -> None:
    for trial, rows in results:
        store.write_trial(campaign, trial.trial_id, [dict(r, campaign=campaign) for r in rows])


def test_trial_files_are_atomic_versioned_and_complete(tmp_path, results):
    store = Store(tmp_path)
    fill(store, results)
    files = sorted((tmp_path / "toy").iterdir())
    assert [f.name for f in files] == sorted(f"trial-{t.trial_id}.parquet" for t, _ in results)
    meta = pq.read_schema(files[0]).metadata
    assert meta[b"poisonbench.schema_version"] == str(SCHEMA_VERSION).encode()
    table = store.read()
    assert table.schema.names == list(COLUMN_NAMES)
    assert table.num_rows == sum(len(rows) for _, rows in results)
    assert store.finished("toy") == {t.trial_id: "ok" for t, _ in results}


def test_rewriting_a_trial_replaces_its_rows(tmp_path, results):
    store = Store(tmp_path)
    trial, rows = results[0]
    store.write_trial("toy", trial.trial_id, rows)
    failed = [dict(rows[0], status="failed", error="attack 'x': boom")]
    store.write_trial("toy", trial.trial_id, failed)
    assert store.finished("toy") == {trial.trial_id: "failed"}
    assert store.read().num_rows == 1
    store.write_trial("toy", trial.trial_id, rows)
    assert store.read().num_rows == len(rows) and store.finished("toy")[trial.trial_id] == "ok"


def test_pandas_polars_and_duckdb_read_the_store_unchanged(tmp_path, results):
    import duckdb
    import pandas as pd
    import polars as pl

    store = Store(tmp_path)
    fill(store, results)
    store.write_campaign("toy", {"campaign": "toy"})
    expected = store.read().sort_by(
        [("trial_id", "ascending"), ("kind", "ascending"), ("step", "ascending"), ("checkpoint", "ascending")]
    )
    pattern = str(tmp_path / "toy" / "*.parquet")
    keys = ["trial_id", "kind", "step", "checkpoint"]
    df = pd.read_parquet(tmp_path / "toy").sort_values(keys).reset_index(drop=True)
    pldf = pl.read_parquet(pattern).sort(keys)
    con = duckdb.connect()
    db = con.sql(f"SELECT * FROM read_parquet('{pattern}') ORDER BY trial_id, kind, step, checkpoint").to_arrow_table()
    for frame_cols, frame_rows in (
        (list(df.columns), len(df)),
        (pldf.columns, pldf.height),
        (db.column_names, db.num_rows),
    ):
        assert frame_cols == list(COLUMN_NAMES) and frame_rows == expected.num_rows
    want = expected.column("test_accuracy").to_pylist()
    assert [None if x != x else x for x in df["test_accuracy"].tolist()] == want
    assert pldf["test_accuracy"].to_list() == want
    assert db.column("test_accuracy").to_pylist() == want
    assert str(df["started_at"].dt.tz) == "UTC" and pldf["config"].dtype == pl.String
    ok = con.execute(
        f"SELECT count(*) FROM read_parquet('{pattern}') WHERE status = 'ok' AND kind = 'checkpoint'"
    ).fetchone()[0]
    assert ok == expected.filter(pa.compute.equal(expected["kind"], "checkpoint")).num_rows


def test_corrupt_foreign_and_other_version_files_warn_but_do_not_stop(tmp_path, results):
    store = Store(tmp_path)
    fill(store, results[:2])
    folder = tmp_path / "toy"
    (folder / "trial-00000000deadbeef.parquet").write_bytes(b"PAR1 this is not parquet")
    (folder / "notes.txt").write_text("my notes")
    pq.write_table(pa.table({"x": [1, 2]}), folder / "trial-00000000cafecafe.parquet")
    other = pq.read_table(folder / f"trial-{results[0][0].trial_id}.parquet")
    other = other.replace_schema_metadata({b"poisonbench.schema_version": b"999"})
    pq.write_table(other, folder / "trial-0000000000000999.parquet")
    (folder / ".trial-0000000000000001.parquet.123.tmp").write_bytes(b"half a file")  # left by a kill: ignored
    (tmp_path / "README").write_text("not a campaign")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = store.read()
        finished = store.finished("toy")
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert table.num_rows == sum(len(r) for _, r in results[:2])
    assert set(finished) == {t.trial_id for t, _ in results[:2]}
    for name, problem in (
        ("trial-00000000deadbeef.parquet", "not a readable Parquet file"),
        ("notes.txt", "foreign file"),
        ("trial-00000000cafecafe.parquet", "without poisonbench metadata"),
        ("trial-0000000000000999.parquet", "schema version 999"),
        ("README", "not a campaign directory"),
    ):
        assert any(name in m and problem in m for m in messages), (name, messages)
    assert not any(".tmp" in m for m in messages)
    store.write_trial("toy", "0000000000000001", [dict(r, trial_id="0000000000000001") for r in results[0][1]])
    assert not (folder / ".trial-0000000000000001.parquet.123.tmp").exists()


def test_two_campaigns_share_one_store(tmp_path, results):
    store = Store(tmp_path)
    fill(store, results[:2], "first")
    fill(store, results[1:], "second")
    assert store.campaigns() == ["first", "second"]
    both = store.read()
    assert set(both["campaign"].to_pylist()) == {"first", "second"}
    assert both.num_rows == sum(len(r) for _, r in results[:2]) + sum(len(r) for _, r in results[1:])
    assert store.read(["second"]).num_rows == sum(len(r) for _, r in results[1:])
    with pytest.raises(ValueError, match="campaign 'third' has no results.*found: first, second"):
        store.read(["third"])


def test_campaign_json_holds_the_source_and_the_hash_of_every_version_run(tmp_path):
    store = Store(tmp_path)
    first = {"campaign": "toy", "source": {"seeds": [0]}, "source_file": "a.toml"}
    second = {"campaign": "toy", "source": {"seeds": [0, 1]}, "source_file": "a.toml"}
    path = tmp_path / "toy" / "_campaign.json"
    assert store.write_campaign("toy", first) == path
    mtime = path.stat().st_mtime_ns
    assert store.write_campaign("toy", first) is None and path.stat().st_mtime_ns == mtime  # unchanged: not rewritten
    store.write_campaign("toy", second)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["source"] == {"seeds": [0, 1]}
    assert len(data["sources"]) == 2 and data["source_sha256"] in data["sources"]
    assert "trials" not in data  # the rows carry each trial's configuration; the file stays small
    assert store.read_campaign("toy")["campaign"] == "toy"


def test_bad_names_are_refused(tmp_path, results):
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="16 hex digits"):
        store.write_trial("toy", "../../etc", results[0][1])
    with pytest.raises(ValueError, match="plain directory name"):
        store.write_trial("../x", results[0][0].trial_id, results[0][1])
    with pytest.raises(ValueError, match="unknown column"):
        store.write_trial("toy", results[0][0].trial_id, [dict(results[0][1][0], bogus=1)])


def _row(trial_id, attack, budget, acc, status="ok", seed=0):
    return {
        "campaign": "c",
        "trial_id": trial_id,
        "kind": "checkpoint",
        "status": status,
        "dataset_label": "d",
        "learner_label": "l",
        "defence_label": "none",
        "attack_label": attack,
        "budget_spec": str(budget),
        "budget": budget,
        "n_poisons": budget,
        "test_accuracy": acc,
        "seed": seed,
    }


def test_leaderboard_ties_share_a_rank_and_budget_zero_is_not_ranked():
    from poisonbench.leaderboards.query import leaderboard
    from poisonbench.results import rows_to_table

    table = rows_to_table(
        [
            _row("a0", "x", 0, 0.95),
            _row("b0", "y", 0, 0.95),
            _row("a1", "x", 10, 0.8),
            _row("b1", "y", 10, 0.8),
            _row("c1", "z", 10, 0.9),
            _row("d1", "w", 10, 0.7),
        ]
    )
    ranks = {(e["budget_spec"], e["attack_label"]): e["rank"] for e in leaderboard(table)}
    assert ranks == {
        ("0", "x"): None,
        ("0", "y"): None,
        ("10", "w"): 1,
        ("10", "x"): 2,
        ("10", "y"): 2,
        ("10", "z"): 4,
    }


def test_leaderboard_means_standard_errors_ranks_and_failures():
    from poisonbench.leaderboards.query import compare, leaderboard
    from poisonbench.results import rows_to_table

    table = rows_to_table(
        [
            _row("a0", "weak", 10, 0.9),
            _row("a1", "weak", 10, 0.8, seed=1),
            _row("b0", "strong", 10, 0.5),
            _row("b1", "strong", 10, 0.7, seed=1),
            _row("c0", "broken", 10, None, status="failed"),
        ]
    )
    entries = leaderboard(table)
    assert [(e["attack_label"], e["rank"], e["seeds"], e["failed"]) for e in entries] == [
        ("strong", 1, 2, 0),
        ("weak", 2, 2, 0),
        ("broken", None, 0, 1),
    ]
    assert entries[0]["test_accuracy"] == pytest.approx(0.6)
    assert entries[0]["test_accuracy_se"] == pytest.approx(0.1)  # s = 0.1414, s / sqrt(2)
    assert entries[1]["test_accuracy_se"] == pytest.approx(0.05)
    (row,) = compare(table, "attacks", ["weak", "strong"])
    # paired by seed: differences 0.5 - 0.9 = -0.4 (seed 0) and 0.7 - 0.8 = -0.1 (seed 1)
    assert (row["a"], row["b"], row["metric"], row["pairs"]) == ("weak", "strong", "test_accuracy", 2)
    assert row["diff"] == pytest.approx(-0.25) and row["diff_se"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="budget 7.*budgets in the store: 10"):
        leaderboard(table, budgets=["7"])


def test_exports_are_escaped_for_their_format():
    from poisonbench.leaderboards.export import render

    rows = [{"attack_label": "<script>alert(1)</script>|x", "n_poisons": 3}, {"attack_label": '=HYPERLINK("x")'}]
    columns = [("attack", "attack_label", None), ("n_poisons", "n_poisons", None)]
    md = render(rows, columns, "md")
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\|x" in md
    csv_text = render(rows, columns, "csv")
    assert "'=HYPERLINK" in csv_text and "\n=HYPERLINK" not in csv_text
    assert "<script>" not in render(rows, columns, "html")


def _sorted(table: pa.Table) -> list[dict]:
    keys = [("trial_id", "ascending"), ("kind", "ascending"), ("step", "ascending"), ("checkpoint", "ascending")]
    return table.sort_by(keys).to_pylist()


def test_compaction_keeps_every_row_once_and_removes_what_it_absorbed(tmp_path, results):
    store = Store(tmp_path)
    fill(store, results)
    before = _sorted(store.read())
    report = store.compact("toy")
    files = sorted(p.name for p in (tmp_path / "toy").iterdir())
    assert report.files_merged == len(results) and report.rows == len(before)
    assert files == [report.part.name] and report.part.name.startswith("part-00000001-")
    assert _sorted(store.read()) == before
    assert store.finished("toy") == {t.trial_id: "ok" for t, _ in results}
    assert store.compact("toy").part is None  # one file: nothing to do


def test_a_trial_file_wins_over_parts_and_the_newest_part_over_older_ones(tmp_path, results):
    store = Store(tmp_path)
    fill(store, results)
    store.compact("toy")
    trial, rows = results[0]
    failed = [dict(rows[0], status="failed", error="attack 'x': boom")]
    store.write_trial("toy", trial.trial_id, failed)  # a re-run after the compaction
    assert store.finished("toy")[trial.trial_id] == "failed"
    assert store.read().num_rows == sum(len(r) for _, r in results[1:]) + 1
    first = next((tmp_path / "toy").glob("part-*.parquet"))
    kept = first.read_bytes()
    store.compact("toy")  # generation 2 holds the re-run's row
    assert [p.name[:13] for p in (tmp_path / "toy").glob("part-*")] == ["part-00000002"]
    first.write_bytes(kept)  # as if killed before the older part was deleted: superseded, not counted
    assert store.finished("toy")[trial.trial_id] == "failed"
    assert store.read().num_rows == sum(len(r) for _, r in results[1:]) + 1


def test_a_compaction_killed_before_deleting_leaves_the_same_rows(tmp_path, results):
    store = Store(tmp_path)
    fill(store, results)
    before = _sorted(store.read())
    copies = {p.name: p.read_bytes() for p in (tmp_path / "toy").glob("trial-*.parquet")}
    store.compact("toy")
    for name, data in copies.items():  # the trial files the compaction had not yet deleted
        (tmp_path / "toy" / name).write_bytes(data)
    assert _sorted(store.read()) == before
    store.compact("toy")
    assert _sorted(store.read()) == before and len(list((tmp_path / "toy").iterdir())) == 1


def test_unreadable_and_copied_files_are_named_skipped_and_never_deleted(tmp_path, results):
    store = Store(tmp_path)
    fill(store, results[:2])
    folder = tmp_path / "toy"
    (t1, _), (t2, _) = results[:2]
    copied = folder / "trial-0123456789abcdef.parquet"
    copied.write_bytes((folder / f"trial-{t1.trial_id}.parquet").read_bytes())
    typed = pq.read_table(folder / f"trial-{t2.trial_id}.parquet")
    typed = typed.set_column(typed.schema.get_field_index("seed"), "seed", pa.array(["x"] * typed.num_rows))
    bad = folder / "trial-00000000000000aa.parquet"
    pq.write_table(typed.replace_schema_metadata({b"poisonbench.schema_version": b"2"}), bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = store.read()
        store.compact("toy")
    messages = [str(w.message) for w in caught]
    assert table.num_rows == sum(len(r) for _, r in results[:2])  # the copy is not counted twice
    assert any(copied.name in m and "a copied file?" in m for m in messages), messages
    assert any(bad.name in m and "other types" in m for m in messages), messages
    assert copied.exists() and bad.exists()  # left for the user to look at
    assert store.read().num_rows == table.num_rows


def test_external_readers_see_each_row_once_after_a_compaction(tmp_path, results):
    import duckdb

    store = Store(tmp_path)
    fill(store, results)
    store.compact("toy")
    pattern = str(tmp_path / "toy" / "*.parquet")
    count = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchone()[0]
    assert count == store.read().num_rows


def test_trace_rows_of_files_before_schema_5_lose_the_attacks_estimates_in_measured_columns(tmp_path):
    """Before schema 5 a trace row's test_accuracy / subpop_accuracy / lambda held the attack's
    own estimate; they are read as null (the estimate stays in ``diagnostics``), while checkpoint
    rows keep the measured values; a version-5 file is read as written."""
    from poisonbench.leaderboards.query import with_metric
    from poisonbench.results import rows_to_table

    trace = {
        **_row("00000000000000a0", "x", 2, 0.25),
        "kind": "trace",
        "subpop_accuracy": 0.5,
        "lambda": -1.0,
        "diagnostics": '{"test_accuracy":0.25}',
        "diagnostics_n_poisons": 2,
    }
    checkpoint = {**_row("00000000000000a0", "x", 2, 0.75), "subpop_accuracy": 0.5, "lambda": -1.0}
    table = rows_to_table([trace, checkpoint])
    folder = tmp_path / "c"
    folder.mkdir()
    for version in (b"4", b"5"):
        pq.write_table(
            table.replace_schema_metadata({b"poisonbench.schema_version": version}),
            folder / "trial-00000000000000a0.parquet",
        )
        for columns in (None, ["test_accuracy", "subpop_accuracy", "lambda"]):
            read = Store(tmp_path).read(["c"], columns).to_pylist()
            trace_row, checkpoint_row = read
            expected_trace = (None, None, None) if version == b"4" else (0.25, 0.5, -1.0)
            assert (trace_row["test_accuracy"], trace_row["subpop_accuracy"], trace_row["lambda"]) == expected_trace
            assert (checkpoint_row["test_accuracy"], checkpoint_row["subpop_accuracy"]) == (0.75, 0.5)
    estimates = with_metric(Store(tmp_path).read(["c"]), "attack.test_accuracy")["attack.test_accuracy"]
    assert estimates.to_pylist() == [0.25, None]
