"""The ``local`` executor: trials one after another on this machine.

Each trial runs in a worker process started with the ``spawn`` context (``isolation =
"process"``, the default; ``"none"`` runs it in-process, for debugging), kept alive and reused
from trial to trial, with the campaign's ``timeout`` (default 2 h) and ``memory_limit_mb``; when a trial overruns, the child is killed (a hang in C code
cannot be interrupted any other way), the trial becomes a failed row and a fresh child serves
the next trial. A child that dies on its own (segfault, out of memory) is a system failure:
the trial is retried up to ``trial.max_retries`` times. Plugin exceptions are never retried.
The child sends the trial's progress reports (:mod:`poisonbench.progress`) over the same pipe
before its result (rows and the poison set's Parquet bytes, :class:`~poisonbench.trial.TrialResult`);
they are handed to ``on_progress`` and count against no limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

from poisonbench.campaign import Trial
from poisonbench.executors.base import OnProgress, OnStart, TrialOutcome
from poisonbench.host import PluginHost
from poisonbench.progress import OnTrialProgress, TrialProgress
from poisonbench.results import utcnow
from poisonbench.trial import TrialResult, failure_rows, host_for, run_trial_with_poisons

#: Seconds a fresh child may take to import the plugins before it counts as broken.
STARTUP_TIMEOUT = 120.0


class LocalExecutor:
    """Serial execution; a killable child process for trials with a timeout."""

    name = "local"

    def __init__(self, host: PluginHost, plugin_modules: Sequence[str] = ()):
        self.host = host
        self.plugin_modules = tuple(plugin_modules)
        self._child: _Child | None = None

    def run(
        self, trials: Sequence[Trial], on_start: OnStart | None = None, on_progress: OnProgress | None = None
    ) -> Iterator[TrialOutcome]:
        for trial in trials:
            if on_start is not None:
                on_start(trial)
            report = None if on_progress is None else _for_trial(on_progress, trial)
            if trial.isolation == "none":
                result = run_trial_with_poisons(trial, self.host, self.name, report)
            else:
                result = self._run_in_child(trial, report)
            yield TrialOutcome(trial, result.rows, result.poisons)

    def close(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None

    def _run_in_child(self, trial: Trial, on_progress: OnTrialProgress | None) -> TrialResult:
        started, t0 = utcnow(), time.perf_counter()
        attempts, attempt = trial.max_retries + 1, 0
        while True:
            attempt += 1
            if self._child is None:
                try:
                    self._child = _Child(self.plugin_modules)
                except _ChildDied as exc:
                    return TrialResult(
                        failure_rows(
                            trial, f"local executor: worker process failed to start: {exc}", self.name, started
                        )
                    )
            try:
                return self._child.run(trial, None if trial.timeout is None else float(trial.timeout), on_progress)
            except _Overrun:
                self._child.kill()
                self._child = None
                return TrialResult(
                    failure_rows(
                        trial,
                        f"timeout: trial did not finish within {trial.timeout:g} s and was killed",
                        self.name,
                        started,
                        time.perf_counter() - t0,
                    )
                )
            except _ChildDied as exc:
                self._child = None
                if attempt == attempts:
                    return TrialResult(
                        failure_rows(
                            trial,
                            f"worker process died ({exc}) in {attempts} attempt(s): the trial's code exited "
                            f"or crashed (os._exit, a segfault, the memory limit)",
                            self.name,
                            started,
                            time.perf_counter() - t0,
                        )
                    )


def _for_trial(on_progress: OnProgress, trial: Trial) -> OnTrialProgress:
    """``on_progress`` bound to ``trial``."""
    return lambda progress: on_progress(trial, progress)


class _ChildDied(RuntimeError):
    pass


class _Overrun(Exception):
    """The child did not answer in time (not ``TimeoutError``: that is an ``OSError``)."""


class _Child:
    """A spawned worker process that runs trials sent over a pipe."""

    def __init__(self, plugin_modules: tuple[str, ...]):
        ctx = mp.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, args=(child_conn, plugin_modules), daemon=True)
        self.proc.start()
        child_conn.close()
        try:
            ready = self._receive(STARTUP_TIMEOUT)
        except _Overrun:
            ready = f"no answer within {STARTUP_TIMEOUT:g} s"
        if ready != "ready":
            self.kill()
            raise _ChildDied(str(ready))

    def run(self, trial: Trial, timeout: float | None, on_progress: OnTrialProgress | None = None) -> TrialResult:
        """Send ``trial``, pass its progress reports to ``on_progress``, return its result (the
        ``timeout`` counts from the send, whatever the child reports meanwhile)."""
        try:
            self.conn.send(trial)
        except (BrokenPipeError, OSError) as exc:
            raise _ChildDied(f"cannot send the trial: {exc}") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            message = self._receive(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not isinstance(message, TrialProgress):
                return message
            if on_progress is not None:
                on_progress(message)

    def _receive(self, timeout: float | None) -> Any:
        try:
            ready = self.conn.poll(timeout)
            if ready:
                return self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            raise _ChildDied(_exit_description(self.proc.exitcode)) from None
        raise _Overrun

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _exit_description(code: int | None) -> str:
    """``exit code 3`` or ``killed by SIGSEGV`` for a worker's exit code."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this worker when the runner dies, even by kill -9, so
    no worker outlives it (elsewhere the closed pipe ends an idle worker)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the runner died before prctl took effect
            os._exit(1)


def _limit_memory(megabytes: float | None) -> None:
    """Cap this worker's address space at ``megabytes`` (soft limit; None lifts the cap)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = hard if megabytes is None else int(megabytes * 1024 * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _child_main(conn: Connection, plugin_modules: tuple[str, ...]) -> None:
    _die_with_parent()
    try:
        host = host_for(plugin_modules)
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send("ready")
    while True:
        trial = conn.recv()
        if trial is None:
            return
        _limit_memory(trial.memory_limit_mb)
        result = run_trial_with_poisons(trial, host, LocalExecutor.name, conn.send)
        _limit_memory(None)
        conn.send(result)
