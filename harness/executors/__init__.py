"""Executors run trials and hand back their rows; :func:`run_campaign` drives one campaign.

An executor's ``run(trials, on_start)`` yields a :class:`TrialOutcome` per trial **in
completion order** and never raises for a trial's own failure (a plugin that raises, hangs
past the timeout or returns bad data becomes a failed row). Built-ins: ``local``
(:mod:`poisonbench.executors.local`, serial, in-process or in a killable child process when a
timeout is set) and ``ray`` (:mod:`poisonbench.executors.ray_executor`).

:func:`run_campaign` skips trials whose results are already in the store, writes every
outcome to the store as it arrives (so an interrupted campaign loses no finished trial) and
calls the ``trial_started`` / ``trial_finished`` hooks (a trial's poison set, when it has one
to store, is written with its rows). A :class:`Progress` sink hears of the
campaign's start, of each running trial's progress reports (:mod:`poisonbench.progress`) and of
each finished trial.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from poisonbench.campaign import Trial
from poisonbench.executors.base import Executor, OnProgress, OnStart, TrialOutcome
from poisonbench.host import PluginHost
from poisonbench.progress import TrialProgress

__all__ = [
    "EXECUTORS",
    "CampaignReport",
    "Executor",
    "OnProgress",
    "OnStart",
    "Progress",
    "TrialOutcome",
    "make_executor",
    "run_campaign",
]

EXECUTORS = ("local", "ray")


def make_executor(
    name: str,
    host: PluginHost,
    plugin_modules: Sequence[str] = (),
    address: str | None = None,
    num_cpus: int | None = None,
) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``)."""
    if name == "local":
        if address is not None:
            raise ValueError("--address: only the ray executor connects to a cluster; use --executor ray")
        from poisonbench.executors.local import LocalExecutor

        return LocalExecutor(host, plugin_modules)
    if name == "ray":
        from poisonbench.executors.ray_executor import RayExecutor

        return RayExecutor(plugin_modules, address=address, num_cpus=num_cpus)
    raise ValueError(f"executor {name!r}: expected one of {', '.join(EXECUTORS)}")


@dataclass
class CampaignReport:
    """What one ``run_campaign`` call did."""

    campaign: str
    total: int
    skipped_ok: int = 0
    skipped_failed: int = 0
    outcomes: list[TrialOutcome] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[TrialOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> int:
        return len(self.outcomes) - len(self.failed)


class Progress(Protocol):
    """What :func:`run_campaign` tells a display, all in the driver process."""

    def start(self, campaign: str, total: int, skipped: int) -> None:
        """The campaign starts with ``total`` trials to run (``skipped`` already in the store)."""
        ...

    def trial_progress(self, trial: Trial, progress: TrialProgress) -> None:
        """A running trial's latest progress report (a few per second at most)."""
        ...

    def update(self, outcome: TrialOutcome) -> None:
        """A trial finished (ok or failed)."""
        ...

    def finish(self) -> None:
        """The campaign ended (also after an error or an interrupt)."""
        ...


def select_trials(
    trials: Iterable[Trial], finished: dict[str, str], retry_failed: bool
) -> tuple[list[Trial], int, int]:
    """Trials still to run: those not in the store, plus failed ones when ``retry_failed``
    (``trials`` is consumed once: a campaign's grid is never held whole, only what is to run).
    Returns ``(todo, n_skipped_ok, n_skipped_failed)``."""
    todo, skip_ok, skip_failed = [], 0, 0
    for t in trials:
        status = finished.get(t.trial_id)
        if status == "ok":
            skip_ok += 1
        elif status == "failed" and not retry_failed:
            skip_failed += 1
        else:
            todo.append(t)
    return todo, skip_ok, skip_failed


def run_campaign(
    campaign: str,
    trials: Iterable[Trial],
    executor: Executor,
    store: Any,
    host: PluginHost,
    retry_failed: bool = False,
    progress: Progress | None = None,
    skipped: tuple[int, int] = (0, 0),
) -> CampaignReport:
    """Run the trials of ``campaign`` not yet in ``store`` (a :class:`poisonbench.leaderboards.store.Store`).

    ``skipped`` = ``(ok, failed)`` trials a caller already found in the store and left out of
    ``trials`` (counted in the report; ``trials`` is checked against the store again here)."""
    t0 = time.perf_counter()
    todo, skip_ok, skip_failed = select_trials(trials, store.finished(campaign), retry_failed)
    skip_ok, skip_failed = skip_ok + skipped[0], skip_failed + skipped[1]
    report = CampaignReport(campaign, len(todo) + skip_ok + skip_failed, skip_ok, skip_failed)
    if progress is not None:
        progress.start(campaign, len(todo), skip_ok + skip_failed)

    def on_start(trial: Trial) -> None:
        _call_hook(host, "trial_started", trial=trial.as_dict())

    try:
        for outcome in executor.run(todo, on_start, None if progress is None else _progress_sink(progress)):
            store.write_trial(campaign, outcome.trial.trial_id, outcome.rows, outcome.poisons)
            report.outcomes.append(outcome)
            _call_hook(host, "trial_finished", trial=outcome.trial.as_dict(), rows=outcome.rows)
            if progress is not None:
                progress.update(outcome)
    finally:
        executor.close()
        if progress is not None:
            progress.finish()
    report.wall_seconds = time.perf_counter() - t0
    return report


def _progress_sink(progress: Progress) -> OnProgress:
    """``progress.trial_progress``, where an exception is one warning and the end of the
    reports to that display (a broken display never fails a trial, even one in this process)."""
    broken = False

    def on_progress(trial: Trial, report: TrialProgress) -> None:
        nonlocal broken
        if broken:
            return
        try:
            progress.trial_progress(trial, report)
        except Exception as exc:
            broken = True
            warnings.warn(
                f"progress display raised {type(exc).__name__}: {exc}; no more trial progress is shown",
                RuntimeWarning,
                stacklevel=2,
            )

    return on_progress


def _call_hook(host: PluginHost, hook: str, **kwargs: Any) -> None:
    """Call a lifecycle hook; an observer that raises is a warning, never the end of a campaign."""
    try:
        getattr(host.pm.hook, hook)(**kwargs)
    except Exception as exc:
        warnings.warn(f"{hook} hook raised {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
