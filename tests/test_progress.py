"""Progress inside running trials: the trial runner's reports, the local executor carrying them
from its child, the CLI's bars on a terminal (none elsewhere), and a quiet Ray start.

The Ray executor's progress reports are tested in ``test_executors.py`` (its module Ray)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from poisonbench.campaign import Trial, load_campaign
from poisonbench.cli.main import main
from poisonbench.cli.run_cmd import StderrProgress
from poisonbench.executors import TrialOutcome, run_campaign
from poisonbench.executors.local import LocalExecutor
from poisonbench.host import load_host
from poisonbench.leaderboards.store import Store
from poisonbench.progress import PROGRESS_SECONDS, TrialProgress
from poisonbench.results import METRIC_COLUMNS
from poisonbench.trial import run_trial

TESTS = Path(__file__).parent
PLUGINS = ("plugins_for_tests.toy", "plugins_for_tests.faulty")
PLUGIN_ARGS = ["--plugin", "plugins_for_tests.toy", "--plugin", "plugins_for_tests.faulty"]
#: toy-flip, one poison per step, 0.05 s a step: 12 steps, about 0.6 s, several reports.
SLOW_FLIP = '[[attacks]]\nname = "toy-flip"\nparams = { sleep = 0.05 }\n'
ROW_COLUMNS = ("trial_id", "kind", "checkpoint", "step", "budget", "n_poisons", "status", *METRIC_COLUMNS)


@pytest.fixture(scope="module")
def host():
    return load_host(PLUGINS, load_external=False)


def campaign_file(tmp_path: Path, attacks: str = SLOW_FLIP, top: str = "", seeds: str = "[0]") -> Path:
    path = tmp_path / "p.toml"
    path.write_text(
        f'name = "p"\nseeds = {seeds}\nbudgets = [0, 4, 12]\nrecord_every = 3\n{top}\n'
        '[[datasets]]\nname = "tiny"\n[[learners]]\nname = "toy-ridge"\n' + attacks
    )
    return path


class Recorder:
    """A :class:`poisonbench.executors.Progress` that keeps every report."""

    def __init__(self) -> None:
        self.reports: dict[str, list[TrialProgress]] = {}
        self.finished: list[str] = []

    def start(self, campaign: str, total: int, skipped: int) -> None:
        pass

    def trial_progress(self, trial: Trial, progress: TrialProgress) -> None:
        assert trial.trial_id not in self.finished  # reports come while the trial runs
        self.reports.setdefault(trial.trial_id, []).append(progress)

    def update(self, outcome: TrialOutcome) -> None:
        self.finished.append(outcome.trial.trial_id)

    def finish(self) -> None:
        pass


def assert_advancing(reports: list[TrialProgress], budget: int = 12) -> None:
    """Reports of one toy-flip trial: from the attack's start, iterations and poisons growing,
    the attack's max_loss_diff (1 / step) once it has one."""
    assert len(reports) >= 2, reports
    first, last = reports[0], reports[-1]
    assert (first.step, first.poisons, first.max_loss_diff) == (0, 0, None)
    assert all(r.budget == budget for r in reports)
    assert [r.step for r in reports] == sorted(r.step for r in reports) and last.step > first.step
    assert [r.poisons for r in reports] == sorted(r.poisons for r in reports) and last.poisons > first.poisons
    assert last.max_loss_diff == pytest.approx(1.0 / last.step)
    gaps = [b.elapsed - a.elapsed for a, b in zip(reports, reports[1:], strict=False)]
    assert min(gaps) >= PROGRESS_SECONDS * 0.99  # throttled: never a report per iteration


def metric_rows(store: Store) -> list[dict]:
    rows = [{k: r[k] for k in ROW_COLUMNS} for r in store.read().to_pylist()]
    return sorted(rows, key=lambda r: (r["trial_id"], r["kind"], r["step"], r["checkpoint"]))


def test_trial_runner_reports_throttled_progress(tmp_path, host):
    (trial,) = load_campaign(campaign_file(tmp_path)).trials(host.registry)
    reports: list[TrialProgress] = []
    rows = run_trial(trial, host, on_progress=reports.append)
    assert rows and all(r["status"] == "ok" for r in rows)
    assert_advancing(reports)


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_local_executor_carries_progress_and_rows_do_not_change(tmp_path, host, isolation):
    path = campaign_file(tmp_path, top=f'isolation = "{isolation}"', seeds="[0, 1]")
    trials = load_campaign(path).trials(host.registry)
    recorder, quiet, shown = Recorder(), Store(tmp_path / "quiet"), Store(tmp_path / "shown")
    run_campaign("p", trials, LocalExecutor(host, PLUGINS), quiet, host)
    report = run_campaign("p", trials, LocalExecutor(host, PLUGINS), shown, host, progress=recorder)
    assert report.ok == 2
    assert sorted(recorder.reports) == sorted(t.trial_id for t in trials)
    for reports in recorder.reports.values():
        assert_advancing(reports)
    assert metric_rows(shown) == metric_rows(quiet)


def test_a_broken_display_is_one_warning_and_never_fails_a_trial(tmp_path, host):
    class Broken(Recorder):
        def trial_progress(self, trial: Trial, progress: TrialProgress) -> None:
            raise OSError("terminal gone")

    path = campaign_file(tmp_path, top='isolation = "none"')
    trials = load_campaign(path).trials(host.registry)
    with pytest.warns(RuntimeWarning, match="progress display raised OSError: terminal gone") as caught:
        report = run_campaign("p", trials, LocalExecutor(host, PLUGINS), Store(tmp_path / "s"), host, progress=Broken())
    assert report.ok == 1
    assert len([w for w in caught if "progress display" in str(w.message)]) == 1


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal (and has no file descriptor)."""

    def isatty(self) -> bool:
        return True


def cli(*args: str) -> int:
    """``poisonbench`` with the test plugins; its exit code."""
    try:
        main([*PLUGIN_ARGS, *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_terminal_shows_a_bar_per_running_trial(tmp_path, monkeypatch, capsys):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = cli("run", str(campaign_file(tmp_path)), "--store", str(tmp_path / "s"))
    assert code == 0
    err = terminal.getvalue()
    assert "toy-flip seed=0:" in err and "/12 [" in err and "poison/s" in err  # the trial's bar: poisons, ETA
    assert "it=" in err and "max_loss_diff=" in err
    assert "[p] 0/1 done, 0 failed, 1 remaining" in err  # the campaign line while the trial runs
    assert "[p] 1/1 done, 0 failed, 0 remaining" in err
    assert "campaign p: 1 trial(s): 1 ok" in capsys.readouterr().out


def test_no_progress_on_a_terminal_keeps_the_status_line_only(tmp_path, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = cli("run", str(campaign_file(tmp_path)), "--store", str(tmp_path / "s"), "--no-progress")
    assert code == 0
    err = terminal.getvalue()
    assert "poison/s" not in err and "it=" not in err
    assert "\r[p] 1/1 done, 0 failed, 0 remaining" in err


def test_not_a_terminal_prints_no_bar_unless_asked(tmp_path, capsys):
    path = campaign_file(tmp_path, seeds="[0, 1]")
    code = cli("run", str(path), "--store", str(tmp_path / "quiet"))
    err = capsys.readouterr().err
    assert code == 0
    lines = err.splitlines()
    assert lines[0] == "[p] 2 trial(s) to run" and len(lines) == 3  # one line per finished trial, nothing else
    assert lines[2].startswith("[p] 2/2 done, 0 failed, 0 remaining, elapsed ")
    assert "\r" not in err and "poison/s" not in err

    code = cli("run", str(path), "--store", str(tmp_path / "shown"), "--progress")
    err = capsys.readouterr().err
    assert code == 0 and "poison/s" in err and "max_loss_diff=" in err
    assert metric_rows(Store(tmp_path / "shown")) == metric_rows(Store(tmp_path / "quiet"))


def test_stderr_progress_slots_follow_the_running_trials(tmp_path, host):
    trials = load_campaign(campaign_file(tmp_path, seeds="[0, 1, 2]")).trials(host.registry)
    display = StderrProgress(FakeTerminal())
    display.start("p", 3, 0)
    display.trial_progress(trials[0], TrialProgress(1, 1, 12, 0.1, 0.5))
    display.trial_progress(trials[1], TrialProgress(1, 1, 12, 0.1, None))
    assert {tid: slot for tid, (slot, _) in display._running.items()} == {trials[0].trial_id: 0, trials[1].trial_id: 1}
    display.update(TrialOutcome(trials[0], [{"status": "ok"}]))
    display.trial_progress(trials[2], TrialProgress(0, 0, 12, 0.0, None))
    assert display._running[trials[2].trial_id][0] == 0  # the freed slot is reused
    display.finish()
    assert not display._running
    assert "max_loss_diff=0.5" in display.stream.getvalue()


def test_ray_start_is_quiet_and_trial_errors_still_show(tmp_path):
    pytest.importorskip("ray")
    attacks = '[[attacks]]\nname = "toy-flip"\n[[attacks]]\nname = "fault-raise"\n'
    path = campaign_file(tmp_path, attacks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # Ray's own default: token auth on
    env.update(PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), POISONBENCH_LOAD_PLUGINS="")
    cmd = [sys.executable, "-m", "poisonbench", *PLUGIN_ARGS, "run", str(path), "--store", str(tmp_path / "s")]
    done = subprocess.run(
        [*cmd, "--executor", "ray", "--num-cpus", "1"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr
    assert "Token authentication" not in done.stderr and "RAY_AUTH_MODE" not in done.stderr
    assert "Started a local Ray instance" not in done.stderr and "INFO" not in done.stderr
    assert done.stderr.splitlines()[0] == "[p] 2 trial(s) to run" and len(done.stderr.splitlines()) == 3
    assert "FAILED" in done.stdout and "attack 'fault-raise': RuntimeError: boom" in done.stdout
