"""One campaign of hostile plugins runs to the end: one failed trial each, honest rows for the rest."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from poisonbench.leaderboards.store import Store, campaign_lock

TESTS = Path(__file__).parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    "POISONBENCH_LOAD_PLUGINS": "",
}
CMD = [sys.executable, "-m", "poisonbench", "--plugin", "plugins_for_tests.toy", "--plugin", "plugins_for_tests.faulty"]

#: attack (or learner) -> what its failed trial's error must say
EXPECTED = {
    "fault-exit": "attack 'fault-exit': SystemExit: 3",
    "fault-crash": "worker process died (exit code 3)",
    "fault-segfault": "worker process died (killed by SIGSEGV)",
    "fault-hang": "timeout: trial did not finish within 20 s",
    "fault-hog": "attack 'fault-hog': MemoryError",
    "fault-tamper": "attack 'fault-tamper': modified the scenario's dataset",
    "fault-widen": "outside the feasible box",
    'fault-liar(labels="nan")': "learner 'fault-liar': predict returned",
}

CAMPAIGN = """
name = "hostile"
seeds = [0]
budgets = [0, 2]
timeout = 20
memory_limit_mb = 4000
max_retries = 0

[[datasets]]
name = "tiny"

[[learners]]
name = "toy-ridge"

[[attacks]]
name = "toy-flip"
{attacks}
"""


def _campaign(tmp_path: Path) -> Path:
    attacks = "".join(f'\n[[attacks]]\nname = "{a}"\n' for a in EXPECTED if a.startswith("fault-") and "(" not in a)
    text = CAMPAIGN.format(attacks=attacks)
    text += '\n[[learners]]\nname = "fault-liar"\n[[learners]]\nname = "fault-liar"\ngrid = { labels = ["nan"] }\n'
    path = tmp_path / "hostile.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_hostile_plugins_each_fail_their_own_trial_and_the_campaign_goes_on(tmp_path):
    path, store = _campaign(tmp_path), tmp_path / "store"
    done = subprocess.run(
        [*CMD, "run", str(path), "--store", str(store)], env=ENV, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1, done.stderr  # some trials failed; the run itself completed
    rows = Store(store).read(["hostile"]).to_pylist()
    by_trial: dict[str, list[dict]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    for trial_rows in by_trial.values():
        first = trial_rows[0]
        learner, attack = first["learner_label"], first["attack_label"]
        failed = [r for r in trial_rows if r["status"] == "failed"]
        if learner == 'fault-liar(labels="nan")':
            assert failed and EXPECTED[learner] in failed[-1]["error"], failed[-1]["error"]
        elif attack in EXPECTED:
            assert failed and EXPECTED[attack] in failed[-1]["error"], (attack, failed[-1]["error"])
        else:  # honest: toy-flip with the honest learners
            assert not failed, trial_rows
            for r in trial_rows:
                assert 0.0 <= r["test_accuracy"] <= 1.0  # the liar's claimed 7.5 is never used
    attacks = {r["attack_label"] for r in rows}
    assert {a for a in EXPECTED if "(" not in a} <= attacks


def test_a_second_run_of_the_same_campaign_waits_for_the_first(tmp_path):
    store = Store(tmp_path / "store")
    with campaign_lock(store, "c"):
        lock = store.campaign_dir("c") / ".lock"
        with open(lock) as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released


def test_two_concurrent_runs_neither_aborts_and_no_trial_runs_twice(tmp_path):
    log = tmp_path / "runs.log"
    path = tmp_path / "c.toml"
    path.write_text(
        'name = "c"\nseeds = [0, 1, 2, 3, 4, 5]\nbudgets = [0, 1]\n[[datasets]]\nname = "tiny"\n'
        '[[learners]]\nname = "toy-ridge"\n[[attacks]]\nname = "fault-raise"\n'
        f'params = {{ after = 1, log = "{log}" }}\n',
        encoding="utf-8",
    )
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [*CMD, "run", str(path), "--store", str(store)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs  # both finish; one waited, then found all done
    assert "No such file" not in "".join(o[1] for o in outs)
    assert log.read_text().count("run") == 6  # each trial ran exactly once across both processes
    assert len(Store(store).finished("c")) == 6


def test_kill_9_of_the_runner_leaves_no_worker(tmp_path):
    path = tmp_path / "h.toml"
    path.write_text(
        'name = "h"\nbudgets = [1]\ntimeout = 600\n[[datasets]]\nname = "tiny"\n[[learners]]\nname = "toy-ridge"\n'
        '[[attacks]]\nname = "fault-hang"\n',
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [*CMD, "run", str(path), "--store", str(tmp_path / "s")],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    children: list[int] = []
    while time.monotonic() < deadline and not children:
        time.sleep(0.5)
        children = _children(proc.pid)
    assert children, "no worker process was started"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not any(_alive(c) for c in children)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_poisons_are_checked_against_integer_features_and_one_hot_groups(tmp_path):
    from poisonbench.campaign import parse_campaign
    from poisonbench.host import load_host
    from poisonbench.trial import run_trial

    host = load_host(("plugins_for_tests.toy", "plugins_for_tests.faulty"), load_external=False)

    def rows(feasibility: str | None, attack: str = "fault-fractional") -> list[dict]:
        raw = {
            "name": "coded",
            "budgets": [0, 1],
            "isolation": "none",
            "datasets": [{"name": "tiny-coded"}],
            "learners": [{"name": "toy-ridge"}],
            "attacks": [{"name": attack}],
        }
        if feasibility is not None:
            raw["feasibility"] = feasibility
        (trial,) = parse_campaign(raw).trials(host.registry)
        return run_trial(trial, host)

    exact = rows(None)
    assert {r["status"] for r in exact} == {"failed"}
    assert "non-integer value of an integer feature (first: feature 2 = 0.51" in exact[-1]["error"]
    assert "campaign feasibility = 'exact'" in exact[-1]["error"]
    relaxed = rows("box")
    assert {r["status"] for r in relaxed} == {"ok"}  # the box alone admits 0.51
    assert json.loads(relaxed[0]["config"])["feasibility"] == "box"  # and the row says which check it passed
    flips = rows(None, "toy-flip")  # copies of training points satisfy every constraint
    assert {r["status"] for r in flips} == {"ok"} and "feasibility" not in json.loads(flips[0]["config"])


def test_feasible_set_violations_name_the_constraint():
    from poisonbench.dataset import FeasibleSet

    fs = FeasibleSet(
        np.zeros(5), np.array([1.0, 3.0, 1.0, 1.0, 1.0]), integer=np.arange(5) >= 1, onehot_groups=((2, 3, 4),)
    )
    ok = np.array([[0.3, 2.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    assert fs.violation(ok) is None
    cases = {
        "outside the feasible box (first: feature 1 = 3.5": [0.3, 3.5, 0.0, 0.0, 0.0],
        "non-integer value of an integer feature (first: feature 1 = 1.5": [0.3, 1.5, 0.0, 0.0, 0.0],
        "one-hot group of columns [2, 3, 4] (first: values [1.0, 1.0, 0.0]": [0.3, 1.0, 1.0, 1.0, 0.0],
    }
    for message, row in cases.items():
        problem = fs.violation(np.vstack([ok, row]))
        assert problem is not None and message in problem, (message, problem)
        assert fs.violation(np.vstack([ok, row]), exact=False) == (problem if "box" in message else None)
    assert fs.violation(np.array([[0.3, 1.0 + 1e-12, 0.0, 1.0, 0.0]])) is None  # within the tolerance
