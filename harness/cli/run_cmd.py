"""``poisonbench run``: run the trials of a campaign file not yet in the store.

Exits with 0 when every trial succeeded (or was already done), 1 when some trial failed, 2 on a
user error (bad campaign file, unknown name, unreachable cluster).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from poisonbench.campaign import Campaign, CampaignError, Trial, load_campaign
from poisonbench.cli.common import STORE_OPTION, UserError, get_host, lock_waiting, warnings_to_stderr
from poisonbench.executors import EXECUTORS, CampaignReport, TrialOutcome, make_executor, run_campaign, select_trials
from poisonbench.leaderboards.export import text_table
from poisonbench.leaderboards.store import COMPACT_AT, Store, campaign_lock
from poisonbench.progress import TrialProgress
from poisonbench.registry import UnknownNameError


class StderrProgress:
    """Progress on stderr (a :class:`poisonbench.executors.Progress`).

    Not a terminal: one status line per finished trial (done / failed / remaining, elapsed and
    ETA) and nothing while trials run. On a terminal, with ``bars`` (the default there): that
    status line kept up to date at the top, and below it a tqdm bar per running trial (poisons
    of its largest budget, the attack's iterations, its latest ``max_loss_diff``, rate and ETA),
    removed when the trial ends. ``bars=False`` on a terminal rewrites the status line in place
    only; ``bars=True`` draws the bars on any stream."""

    def __init__(self, stream: Any = None, bars: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bars = self.tty if bars is None else bars
        self.done = 0
        self._width = _bar_width(self.stream)
        self._status: tqdm | None = None
        self._running: dict[str, tuple[int, tqdm]] = {}  # trial id -> (slot, its bar)

    def start(self, campaign: str, total: int, skipped: int) -> None:
        self.campaign, self.total, self.done, self.failed = campaign, total, 0, 0
        self.t0 = time.perf_counter()
        note = f" ({skipped} already in the store)" if skipped else ""
        click.echo(f"[{campaign}] {total} trial(s) to run{note}", file=self.stream)
        if self.bars and total:
            self._status = tqdm(
                total=total, bar_format="{desc}", position=0, file=self.stream, leave=True, **self._width
            )
            self._status.set_description_str(self._line())

    def trial_progress(self, trial: Trial, progress: TrialProgress) -> None:
        if self._status is None:
            return
        if trial.trial_id not in self._running:
            slot = min(set(range(len(self._running) + 1)) - {s for s, _ in self._running.values()})
            bar = tqdm(
                total=progress.budget,
                desc=f"{trial.attack.label} seed={trial.seed}",
                unit="poison",
                position=slot + 1,
                leave=False,
                file=self.stream,
                mininterval=0,  # the trial already reports at most every PROGRESS_SECONDS
                **self._width,
            )
            self._running[trial.trial_id] = (slot, bar)
        bar = self._running[trial.trial_id][1]
        mld = "" if progress.max_loss_diff is None else f", max_loss_diff={progress.max_loss_diff:.4g}"
        bar.set_postfix_str(f"it={progress.step}{mld}", refresh=False)
        if progress.poisons > bar.n:
            bar.update(progress.poisons - bar.n)
        else:
            bar.refresh()
        self._status.set_description_str(self._line())

    def update(self, outcome: TrialOutcome) -> None:
        self.done += 1
        self.failed += outcome.status == "failed"
        if self._status is not None:
            running = self._running.pop(outcome.trial.trial_id, None)
            if running is not None:
                running[1].close()
            self._status.update(1)
            self._status.set_description_str(self._line())
        elif self.tty:
            self.stream.write("\r" + self._line().ljust(100))
            self.stream.flush()
        else:
            click.echo(self._line(), file=self.stream)

    def finish(self) -> None:
        if self._status is not None:
            for _, bar in self._running.values():
                bar.close()
            self._running.clear()
            self._status.close()
            self._status = None
        elif self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()

    def _line(self) -> str:
        """``[campaign] 3/4 done, 0 failed, 1 remaining, elapsed 0:00:29, ETA 0:00:10``."""
        elapsed = time.perf_counter() - self.t0
        remaining = self.total - self.done
        eta = f", ETA {_hms(elapsed / self.done * remaining)}" if self.done else ""
        return (
            f"[{self.campaign}] {self.done}/{self.total} done, {self.failed} failed, {remaining} remaining, "
            f"elapsed {_hms(elapsed)}{eta}"
        )


def _bar_width(stream: Any) -> dict[str, Any]:
    """tqdm's size arguments for ``stream``: follow the terminal's size, or 100 columns and 40
    rows where it reports none (a pty that ``script`` opened says 0 × 0, and tqdm then draws
    nothing)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # not a file descriptor, or not a terminal
        columns = 0
    return {"dynamic_ncols": True} if columns else {"ncols": 100, "nrows": 40}


@click.command("run")
@click.argument("campaign_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True, help="Where trials run.")
@click.option("--address", default=None, help="Ray cluster address (ray executor); default: start a local Ray.")
@click.option(
    "--num-cpus", type=click.IntRange(min=1), default=None, help="CPUs of a locally started Ray (default: all)."
)
@STORE_OPTION
@click.option("--dry-run", is_flag=True, help="Print the trials (and whether they are done) without running them.")
@click.option(
    "--retry-failed", is_flag=True, help="Run again the trials that failed in earlier runs (skipped by default)."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="A progress bar per running trial on stderr (default: when stderr is a terminal).",
)
@click.pass_context
def run(
    ctx: click.Context,
    campaign_file: Path,
    executor: str,
    address: str | None,
    num_cpus: int | None,
    store_dir: str,
    dry_run: bool,
    retry_failed: bool,
    progress: bool | None,
) -> None:
    """Run the trials of CAMPAIGN_FILE not yet in the store; print a summary table."""
    host = get_host(ctx)
    campaign, trials = _load(campaign_file, host)
    store = Store(store_dir)
    with warnings_to_stderr():
        finished = store.finished(campaign.name)
    if dry_run:
        total = todo = 0
        for t in trials:
            state = finished.get(t.trial_id, "todo")
            click.echo(f"{state:6}  {t.describe()}")
            total += 1
            todo += state == "todo" or (state == "failed" and retry_failed)
        click.echo(f"{total} trial(s), {todo} to run (dry run: nothing executed)")
        return
    pending, skip_ok, skip_failed = select_trials(trials, finished, retry_failed)
    plugin_modules = tuple(ctx.ensure_object(dict).get("plugin_modules", ()))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        runner = make_executor(executor, host, plugin_modules, address=address, num_cpus=num_cpus)
        if not pending:  # nothing to run: no lock and no write (a read-only store of a finished campaign works)
            report = CampaignReport(campaign.name, skip_ok + skip_failed, skip_ok, skip_failed)
            StderrProgress().start(campaign.name, 0, skip_ok + skip_failed)
        else:
            with warnings_to_stderr(), campaign_lock(store, campaign.name, lock_waiting(campaign.name)):
                store.write_campaign(campaign.name, _campaign_payload(campaign))
                report = run_campaign(
                    campaign.name,
                    pending,  # re-checked inside the lock: another run may have finished some
                    runner,
                    store,
                    host,
                    retry_failed,
                    StderrProgress(bars=progress),
                    skipped=(skip_ok, skip_failed),
                )
                files = store.files(campaign.name)
                if files.parts or len(files.trials) >= COMPACT_AT:  # keep the folder one row per trial
                    store.compact(campaign.name)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(format_summary(report))
    if report.failed or report.skipped_failed:
        sys.exit(1)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C: executors close (killing trial workers) before exit 143."""
    raise SystemExit(128 + signum)


def _load(path: Path, host: Any) -> tuple[Campaign, Iterator[Trial]]:
    """The campaign file, validated and its data files hashed once, with its grid as an
    iterator (expanded one trial at a time, consumed once)."""
    try:
        campaign = load_campaign(path)
        return campaign, campaign.iter_trials(host.registry)
    except (CampaignError, UnknownNameError) as exc:
        raise UserError(str(exc)) from None


def _campaign_payload(campaign: Campaign) -> dict[str, Any]:
    return {
        "campaign": campaign.name,
        "description": campaign.description,
        "source_file": campaign.path,
        "source": campaign.source,
    }


def format_summary(report: CampaignReport) -> str:
    """A table per (dataset, learner, defence, attack): trials ok / failed and the mean test
    accuracy at the largest budget; then the failed trials with their errors."""
    groups: dict[tuple[str, ...], dict[str, Any]] = defaultdict(lambda: {"ok": 0, "failed": 0, "acc": []})
    for o in report.outcomes:
        t = o.trial
        g = groups[(t.dataset.label, t.learner.label, t.defence.label, t.attack.label)]
        g[o.status] += 1
        g["acc"] += [
            (r["budget"], r["n_poisons"], r["test_accuracy"])
            for r in o.rows
            if r.get("kind") == "checkpoint" and r.get("status") == "ok" and r.get("test_accuracy") is not None
        ]
    lines = [
        f"campaign {report.campaign}: {report.total} trial(s): {report.ok} ok, {len(report.failed)} failed, "
        f"{report.skipped_ok + report.skipped_failed} skipped (already in the store"
        + (f"; {report.skipped_failed} of them failed, rerun with --retry-failed" if report.skipped_failed else "")
        + f"), {report.wall_seconds:.1f} s"
    ]
    if groups:
        header = ("dataset", "learner", "defence", "attack", "ok", "failed", "acc@max budget")
        body = [(*key, str(g["ok"]), str(g["failed"]), _mean_at_max(g["acc"])) for key, g in groups.items()]
        lines.append(text_table(header, body))
    for o in report.failed:
        lines.append(
            f"FAILED {o.trial.trial_id} {o.trial.attack.label} seed={o.trial.seed}: {_clip(o.error or '', 160)}"
        )
    return "\n".join(lines)


def _mean_at_max(rows: list[tuple[int, int, float]]) -> str:
    """Mean accuracy over the rows at the largest budget of a group, with that budget and the
    mean number of poisons actually used (fewer when an attack stopped early)."""
    if not rows:
        return "-"
    top = max(b for b, _, _ in rows)
    at_top = [(n, a) for b, n, a in rows if b == top]
    used = sum(n for n, _ in at_top) / len(at_top)
    return f"{sum(a for _, a in at_top) / len(at_top):.4f} (budget={top}, poisons={used:g})"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
