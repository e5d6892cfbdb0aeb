"""``poisonbench run`` and ``poisonbench leaderboard …``: exit codes, output, resume after kill -9."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poisonbench.cli.main import main
from poisonbench.leaderboards.store import Store

TESTS = Path(__file__).parent
TOY = TESTS / "campaigns" / "toy.toml"
PLUGIN_ARGS = ["--plugin", "plugins_for_tests.toy", "--plugin", "plugins_for_tests.faulty"]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main([*PLUGIN_ARGS, *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def campaign_file(tmp_path: Path, name: str, attacks: str, top: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nseeds = [0, 1]\nbudgets = [0, 2, 4]\n{top}\n'
        '[[datasets]]\nname = "tiny"\n[[learners]]\nname = "toy-ridge"\n' + attacks
    )
    return path


@pytest.fixture
def store_with_toy(tmp_path, capsys):
    store = tmp_path / "store"
    code, _out, err = cli(capsys, "run", str(TOY), "--store", str(store))
    assert code == 0, err
    return store


def test_run_prints_progress_and_summary_and_reruns_skip(store_with_toy, capsys):
    code, out, err = cli(capsys, "run", str(TOY), "--store", str(store_with_toy))
    assert code == 0
    assert "campaign toy: 20 trial(s): 0 ok, 0 failed, 20 skipped" in out
    assert "[toy] 0 trial(s) to run (20 already in the store)" in err


def test_first_run_output(tmp_path, capsys):
    code, out, err = cli(capsys, "run", str(TOY), "--store", str(tmp_path / "s"))
    assert code == 0
    assert "[toy] 20/20 done, 0 failed, 0 remaining" in err and "ETA" in err
    assert "campaign toy: 20 trial(s): 20 ok, 0 failed" in out
    assert "toy-flip(copies=2)" in out and "acc@max budget" in out


def test_dry_run_lists_trials_without_running(tmp_path, capsys):
    store = tmp_path / "s"
    code, out, _ = cli(capsys, "run", str(TOY), "--store", str(store), "--dry-run")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 21 and all(line.startswith("todo") for line in lines[:-1])
    assert lines[-1] == "20 trial(s), 20 to run (dry run: nothing executed)"
    assert not store.exists()


def test_failed_trials_give_exit_code_1_and_are_listed(tmp_path, capsys):
    path = campaign_file(tmp_path, "f", '[[attacks]]\nname = "toy-flip"\n[[attacks]]\nname = "fault-nan"\n')
    code, out, _ = cli(capsys, "run", str(path), "--store", str(tmp_path / "s"))
    assert code == 1
    assert "2 ok, 2 failed" in out and out.count("FAILED ") == 2
    assert "attack 'fault-nan': ValueError: poison X: expected finite values" in out
    code, out, _ = cli(capsys, "run", str(path), "--store", str(tmp_path / "s"))
    assert code == 1 and "2 of them failed, rerun with --retry-failed" in out
    code, out, _ = cli(capsys, "run", str(path), "--store", str(tmp_path / "s"), "--retry-failed")
    assert code == 1 and "0 ok, 2 failed, 2 skipped" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "{bad}"], "unknown attack 'toy-flp'. Did you mean: toy-flip"),
        (["run", "{missing}"], "campaign file not found"),
        (["run", str(TOY), "--address", "ray://h:1"], "only the ray executor connects to a cluster"),
        (["leaderboard", "show", "--store", "{empty}"], "no results in the store"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    bad = campaign_file(tmp_path, "bad", '[[attacks]]\nname = "toy-flp"\n')
    fill = {"bad": str(bad), "missing": str(tmp_path / "nope.toml"), "empty": str(tmp_path / "empty")}
    code, _out, err = cli(capsys, *[a.format(**fill) for a in args])
    assert code == 2
    assert err.startswith("Error: ") and message in err and err.count("\n") == 1


def test_leaderboard_show_ranks_attacks(store_with_toy, capsys):
    code, out, _ = cli(capsys, "leaderboard", "show", "--store", str(store_with_toy), "--budget", "0.1")
    assert code == 0
    assert "== tiny / toy-ridge / none  (subpopulation corner)  [campaign toy] ==" in out
    block = out.split("== tiny / toy-ridge / toy-l2")[0]
    rows = [line.split() for line in block.splitlines() if line.startswith("0.1 ")]
    accuracies = [float(r[4]) for r in rows]
    assert len(rows) == 3 and accuracies == sorted(accuracies)
    competition = [str(1 + sum(a < b for a in accuracies)) for b in accuracies]  # ties share a rank
    assert [r[1] for r in rows] == competition
    code, out, _ = cli(capsys, "leaderboard", "show", "--store", str(store_with_toy), "--budget", "7")
    assert code == 2


def test_leaderboard_export_formats(store_with_toy, capsys, tmp_path):
    code, out, _ = cli(capsys, "leaderboard", "export", "--format", "csv", "--store", str(store_with_toy))
    records = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {"dataset", "attack", "budget", "test_accuracy", "test_accuracy_se", "rank"} <= set(records[0])
    assert not {"attack_label", "budget_spec"} & set(records[0])  # the same names as the text formats
    assert all(r["n_poisons"] == "" or r["n_poisons"].isdigit() for r in records)  # counts, not 0.0
    assert len(records) == 2 * 3 * 3  # defences x budgets x attack labels
    code, out, _ = cli(
        capsys, "leaderboard", "export", "--format", "json", "--store", str(store_with_toy), "--budget", "2"
    )
    data = json.loads(out)
    assert len(data) == 6 and all(0 <= d["test_accuracy"] <= 1 for d in data)
    code, out, _ = cli(capsys, "leaderboard", "export", "--format", "md", "--store", str(store_with_toy))
    assert out.startswith("| campaign | dataset |") and " ± " in out
    target = tmp_path / "lb.html"
    code, _, _err = cli(
        capsys, "leaderboard", "export", "--format", "html", "-o", str(target), "--store", str(store_with_toy)
    )
    assert code == 0 and target.read_text().startswith('<table class="poisonbench-leaderboard">')


def test_compare_two_attacks_and_two_campaigns(tmp_path, capsys):
    store = tmp_path / "store"
    first = campaign_file(tmp_path, "one", '[[attacks]]\nname = "toy-flip"\n[[attacks]]\nname = "toy-budgeted"\n')
    second = campaign_file(tmp_path, "two", '[[attacks]]\nname = "toy-flip"\nparams = { copies = 2 }\n')
    for path in (first, second):
        assert cli(capsys, "run", str(path), "--store", str(store))[0] == 0
    assert Store(store).campaigns() == ["one", "two"]
    code, out, _ = cli(
        capsys,
        "leaderboard",
        "compare",
        "--attacks",
        "toy-flip",
        "toy-budgeted",
        "--campaign",
        "one",
        "--store",
        str(store),
        "--format",
        "json",
    )
    rows = json.loads(out)
    assert code == 0 and [r["budget"] for r in rows] == ["0", "2", "4"]
    assert {(r["a"], r["b"], r["metric"]) for r in rows} == {("toy-flip", "toy-budgeted", "test_accuracy")}
    for r in rows:
        assert r["diff"] == pytest.approx(r["b_mean"] - r["a_mean"])
    code, out, _ = cli(
        capsys, "leaderboard", "compare", "--campaigns", "one", "two", "--store", str(store), "--format", "json"
    )
    rows = json.loads(out)
    assert code == 0 and {(r["a"], r["b"], r["attack"]) for r in rows} == {("one", "two", "toy-flip")}
    code, _, err = cli(capsys, "leaderboard", "compare", "--attacks", "toy-flip", "toy-flap", "--store", str(store))
    assert code == 2 and "attack 'toy-flap' has no results" in err


def test_plots_are_written(store_with_toy, capsys, tmp_path):
    for kind, name in (("accuracy", "acc.png"), ("convergence", "conv.svg"), ("lambda", "lam.png")):
        target = tmp_path / name
        code, _, err = cli(capsys, "leaderboard", "plot", kind, "-o", str(target), "--store", str(store_with_toy))
        assert code == 0, err
        head = target.read_bytes()[:200]
        assert head.startswith(b"\x89PNG") if name.endswith(".png") else b"<svg" in head or b"<?xml" in head
    code, _, err = cli(
        capsys, "leaderboard", "plot", "accuracy", "-o", str(tmp_path / "x.txt"), "--store", str(store_with_toy)
    )
    assert code == 2 and "expected a file name ending in .png" in err


def test_broken_store_files_are_warnings_on_stderr(store_with_toy, capsys):
    (store_with_toy / "toy" / "trial-0123456789abcdef.parquet").write_text("garbage")
    code, out, err = cli(capsys, "leaderboard", "show", "--store", str(store_with_toy))
    assert code == 0 and "== tiny / toy-ridge / none" in out
    assert "Warning: store: " in err and "trial-0123456789abcdef.parquet: not a readable Parquet file" in err


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    path = campaign_file(tmp_path, "k", '[[attacks]]\nname = "toy-flip"\nparams = { sleep = 0.15 }\n')
    path.write_text(path.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3, 4, 5, 6, 7]"))
    store = tmp_path / "store"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "POISONBENCH_LOAD_PLUGINS": "",
    }
    cmd = [
        sys.executable,
        "-m",
        "poisonbench",
        "--plugin",
        "plugins_for_tests.toy",
        "run",
        str(path),
        "--store",
        str(store),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = store / "k"
    deadline = time.monotonic() + 120
    while len(list(folder.glob("trial-*.parquet"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("trial-*.parquet")}
    assert 3 <= len(before) < 8, "the run finished before it could be killed"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} skipped" in done.stdout
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("trial-*.parquet")}
    assert len(after) == 8 and all(after[name] == before[name] for name in before)  # finished files untouched
    assert not list(folder.glob(".*.tmp"))
    table = Store(store).read()
    keys = list(
        zip(
            table["trial_id"].to_pylist(),
            table["checkpoint"].to_pylist(),
            table["kind"].to_pylist(),
            table["step"].to_pylist(),
        )
    )
    assert len(keys) == len(set(keys)) == 8 * 3 and set(table["status"].to_pylist()) == {"ok"}


def test_sigterm_stops_the_run_and_its_trial_worker(tmp_path):
    """SIGTERM unwinds the run: the child process running a hanging trial does not outlive it."""
    path = campaign_file(tmp_path, "t", '[[attacks]]\nname = "fault-hang"\n', top="timeout = 120\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "POISONBENCH_LOAD_PLUGINS": "",
    }
    cmd = [sys.executable, "-m", "poisonbench", *PLUGIN_ARGS, "run", str(path), "--store", str(tmp_path / "store")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    deadline = time.monotonic() + 120
    while not children and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        found = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True, text=True)
        children = [int(p) for p in found.stdout.split()]
    assert children, "no trial worker was started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    time.sleep(0.5)
    alive = [pid for pid in children if subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0]
    assert not alive, f"trial worker(s) {alive} outlived the run"


@pytest.mark.parametrize("problem", ["store is a file", "name too long"])
def test_operating_system_errors_are_one_line(tmp_path, capsys, problem):
    path = campaign_file(tmp_path, "c", '[[attacks]]\nname = "toy-flip"\n', 'isolation = "none"')
    if problem == "name too long":
        path.write_text(path.read_text().replace('name = "c"', 'name = "' + "n" * 300 + '"'))
    store = tmp_path / "store"
    if problem == "store is a file":
        store.write_text("not a folder")
    code, _, err = cli(capsys, "run", str(path), "--store", str(store))
    assert code == 2 and err.startswith("Error: ") and err.count("\n") == 1, err


def test_a_finished_campaign_resumes_without_writing_anything(store_with_toy, capsys):
    folder = store_with_toy / "toy"
    (folder / ".lock").unlink()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    code, out, _ = cli(capsys, "run", str(TOY), "--store", str(store_with_toy))
    assert code == 0 and "20 skipped" in out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before  # no lock, no rewrite


def test_leaderboard_compact_then_a_rerun_keeps_one_row_set_per_trial(store_with_toy, capsys):
    store = Store(store_with_toy)
    before = store.read().sort_by([("trial_id", "ascending"), ("kind", "ascending"), ("step", "ascending")])
    code, _, err = cli(capsys, "leaderboard", "compact", "--store", str(store_with_toy))
    assert code == 0 and "toy: 20 file(s)" in err and "-> part-00000001-" in err
    after = store.read().sort_by([("trial_id", "ascending"), ("kind", "ascending"), ("step", "ascending")])
    assert after.to_pylist() == before.to_pylist()
    grown = store_with_toy.parent / "toy.toml"
    grown.write_text(TOY.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    code, out, _ = cli(capsys, "run", str(grown), "--store", str(store_with_toy))
    assert code == 0 and "10 ok, 0 failed, 20 skipped" in out
    files = sorted(p.name for p in (store_with_toy / "toy").glob("*.parquet"))
    assert len(files) == 1 and files[0].startswith("part-00000002-")  # the run compacted its new trials in
    assert len(store.finished("toy")) == 30
    assert store.read().num_rows == before.num_rows * 3 // 2


def test_any_numeric_attack_diagnostic_is_a_metric(store_with_toy, capsys):
    code, out, err = cli(capsys, "leaderboard", "metrics", "--store", str(store_with_toy))
    names = out.split()
    assert code == 0, err
    assert {"test_accuracy", "attack.extra", "attack.max_loss_diff"} <= set(names)
    assert "attack.lower_bound_certified" not in names  # a boolean is not a metric
    code, out, err = cli(
        capsys, "leaderboard", "export", "--format", "json", "--metric", "attack.extra", "--store", str(store_with_toy)
    )
    rows = json.loads(out)
    assert code == 0, err
    flip = [r for r in rows if r["attack"] == "toy-flip(copies=1)" and r["budget"] == "2"]
    # copies = 1: the batch that reaches 2 poisons is the attack's 2nd step, so its diagnostic "extra" is 2
    assert flip and all(r["attack.extra"] == 2 for r in flip)
    assert [r["rank"] for r in rows if r["budget"] == "0"] == [None] * sum(r["budget"] == "0" for r in rows)
    code, _, err = cli(capsys, "leaderboard", "show", "--metric", "attack.extar", "--store", str(store_with_toy))
    assert code == 2 and "no row has this metric" in err and "Did you mean: attack.extra" in err


def test_compare_any_number_of_attacks_against_the_first(store_with_toy, capsys):
    code, out, err = cli(
        capsys,
        "leaderboard",
        "compare",
        "--attacks",
        "toy-flip(copies=1)",
        "toy-flip(copies=2)",
        "toy-budgeted",
        "--budget",
        "2",
        "--store",
        str(store_with_toy),
        "--format",
        "json",
    )
    rows = json.loads(out)
    assert code == 0, err
    assert {(r["a"], r["b"]) for r in rows} == {
        ("toy-flip(copies=1)", "toy-flip(copies=2)"),
        ("toy-flip(copies=1)", "toy-budgeted"),
    }
    assert all(r["pairs"] == 2 for r in rows)  # seeds 0 and 1 of both sides
