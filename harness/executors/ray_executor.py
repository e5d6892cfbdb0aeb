"""The ``ray`` executor: trials as Ray tasks, on a local Ray instance or a cluster.

- ``address=None`` starts a new local Ray (``ray.init(address="local")``: never a cluster that
  ``ray start`` left running on this machine) with a small object store
  (:data:`OBJECT_STORE_BYTES`; trials return only their rows and poison sets, spilled to disk
  by Ray past it), no dashboard and worker logs
  kept out of the driver's terminal; workers inherit this process's ``sys.path`` entries
  outside site-packages (so ``--plugin`` modules next to the campaign import) and
  ``POISONBENCH_LOAD_PLUGINS``. With an address, Ray connects to that cluster, whose nodes
  must have poisonbench and the plugins installed; a ``host:port`` address is first probed
  with one TCP connection (:data:`PROBE_SECONDS`), so an unreachable cluster is one error
  line within seconds instead of Ray's minutes of retries.
- Each trial asks for its ``num_cpus`` / ``num_gpus``. Before submitting anything the
  executor compares them with ``ray.cluster_resources()``: a trial that asks for more GPUs (or
  CPUs) than the whole cluster has is refused with a clear error instead of waiting forever.
- At most as many trials are in flight as the cluster's CPUs (and GPUs) can run at once.
  Each task is a streaming generator that first reports that it started (after its worker
  loaded the plugins), so a timeout counts from the trial's start, not from its queueing or
  the worker's start-up; outcomes are yielded in completion order (``ray.wait``). An overrun
  trial is cancelled with ``ray.cancel(force=True)`` (its worker is killed) and becomes a
  failed row.
- Retries: ``max_retries`` re-runs a trial whose worker process died (a system failure);
  ``retry_exceptions=False`` — a plugin exception is already a failed row and never retried.
- Progress: the task runs its trial in a thread of the worker and yields the trial's progress
  reports (:mod:`poisonbench.progress`) as ``("progress", report)`` items between ``started``
  and its result (rows and the poison set's Parquet bytes, :class:`~poisonbench.trial.TrialResult`);
  the driver hands them to ``on_progress``.
- Quiet start: a locally started Ray logs only warnings and errors to the driver (no "Started a
  local Ray instance" banner) and not the notice that token authentication is on by default
  (:data:`TOKEN_NOTICE`; authentication stays on). Ray's other warnings, worker crashes and
  every trial's error (in its rows) are unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from poisonbench.campaign import Trial
from poisonbench.executors.base import OnProgress, OnStart, TrialOutcome
from poisonbench.progress import TrialProgress
from poisonbench.results import utcnow
from poisonbench.trial import TrialResult, failure_rows, host_for, run_trial_with_poisons

#: Object store size of a locally started Ray (bytes): rows are small, poison sets compressed.
OBJECT_STORE_BYTES = 128 * 1024**2
#: Seconds between checks of the deadlines while waiting for results.
POLL_SECONDS = 0.5
ENV_PASSED = ("POISONBENCH_LOAD_PLUGINS",)
#: Seconds the TCP probe of a cluster address waits for a connection.
PROBE_SECONDS = 5.0
#: The logger and the start of the message with which Ray 2.60's ``ray.init`` announces that it
#: turned token authentication on for a new local cluster (silenced: it is the default).
TOKEN_NOTICE = (
    "ray._private.authentication.authentication_token_setup",
    "Token authentication is enabled for this Ray cluster",
)


def _ray_trial(trial: Trial, plugin_modules: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """Body of the Ray task (a streaming generator): ``("started", None)`` once the worker has
    loaded the plugins, so that the timeout counts from there, then ``("progress", report)``
    items while the trial runs (in a thread: a generator cannot yield from inside the trial's
    callback), then ``("rows", result)`` (a :class:`~poisonbench.trial.TrialResult`)."""
    host = host_for(plugin_modules)
    yield ("started", None)
    reports: queue.SimpleQueue[TrialProgress | None] = queue.SimpleQueue()  # None: the trial ended
    outcome: list[TrialResult | BaseException] = []

    def body() -> None:
        try:
            outcome.append(run_trial_with_poisons(trial, host, RayExecutor.name, reports.put))
        except BaseException as exc:  # a harness bug: raised from the task, as before
            outcome.append(exc)
        finally:
            reports.put(None)

    runner = threading.Thread(target=body, name=f"poisonbench-trial-{trial.trial_id}", daemon=True)
    runner.start()
    while (report := reports.get()) is not None:
        yield ("progress", report)
    runner.join()
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    yield ("rows", result)


class _QuietTokenNotice(logging.Filter):
    """Drops Ray's :data:`TOKEN_NOTICE` record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_NOTICE[1])


@contextlib.contextmanager
def _quiet_token_notice() -> Iterator[None]:
    """Within: Ray's logger of :data:`TOKEN_NOTICE` drops that notice (its other records pass)."""
    logger, quiet = logging.getLogger(TOKEN_NOTICE[0]), _QuietTokenNotice()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


@dataclass
class _Flight:
    trial: Trial
    started_at: Any
    started: float | None = None


class RayExecutor:
    """Trials as Ray tasks; see the module docstring."""

    name = "ray"

    def __init__(self, plugin_modules: Sequence[str] = (), address: str | None = None, num_cpus: int | None = None):
        self.plugin_modules = tuple(plugin_modules)
        self.address = address
        self.num_cpus = num_cpus
        self._started_ray = False

    def _init(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ValueError("the ray executor needs Ray: pip install 'poisonbench[ray]'") from None
        if ray.is_initialized():
            return ray
        env = {k: os.environ[k] for k in ENV_PASSED if k in os.environ}
        kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "logging_level": logging.WARNING}
        if self.address is None:
            paths = [
                p
                for p in sys.path
                if p and os.path.isdir(p) and "-packages" not in p and not p.startswith(sys.base_prefix)
            ]
            if paths:
                env["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            kwargs.update(address="local", num_cpus=self.num_cpus, object_store_memory=OBJECT_STORE_BYTES)
        else:
            probe_address(self.address)
            kwargs["address"] = self.address
        try:
            with _quiet_token_notice():
                ray.init(runtime_env={"env_vars": env} if env else None, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise ValueError(f"--executor ray: cannot start or reach {where}: {exc}") from None
        self._started_ray = True
        return ray

    def run(
        self, trials: Sequence[Trial], on_start: OnStart | None = None, on_progress: OnProgress | None = None
    ) -> Iterator[TrialOutcome]:
        if not trials:
            return
        ray = self._init()
        capacity = ray.cluster_resources()
        check_resources(trials, capacity, self.address)
        task = ray.remote(_ray_trial)
        scheduler = _Scheduler(ray, task, trials, capacity, self.plugin_modules, on_start, on_progress)
        while scheduler.busy:
            scheduler.submit()
            ready, _ = ray.wait(list(scheduler.in_flight), num_returns=1, timeout=scheduler.wait_seconds())
            finished = scheduler.collect(ready) + scheduler.expired()
            yield from scheduler.release(finished)

    def close(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False


class _Scheduler:
    """The state of one Ray run: trials queued and in flight, and the resources they hold.

    One round: :meth:`submit` what fits, wait for a report, :meth:`collect` the reports
    (``started`` starts a trial's clock, ``progress`` goes to ``on_progress``; rows finish it),
    cancel the trials past their timeout (:meth:`expired`), and :meth:`release` the finished
    ones as outcomes."""

    def __init__(
        self,
        ray: Any,
        task: Any,
        trials: Sequence[Trial],
        capacity: dict[str, float],
        plugin_modules: tuple[str, ...],
        on_start: OnStart | None,
        on_progress: OnProgress | None = None,
    ) -> None:
        self.ray, self.task, self.capacity = ray, task, capacity
        self.plugin_modules, self.on_start, self.on_progress = plugin_modules, on_start, on_progress
        self.queue = list(trials)
        self.in_flight: dict[Any, _Flight] = {}  # streaming generator -> its trial
        self.used = {"CPU": 0.0, "GPU": 0.0}

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.in_flight)

    def submit(self) -> None:
        """Start queued trials while they fit in the cluster (at least one when none runs)."""
        while self.queue and (not self.in_flight or _fits(self.queue[0], self.used, self.capacity)):
            trial = self.queue.pop(0)
            if self.on_start is not None:
                self.on_start(trial)
            gen = self.task.options(
                num_returns="streaming",
                num_cpus=trial.num_cpus,
                num_gpus=trial.num_gpus,
                max_retries=trial.max_retries,
                retry_exceptions=False,
            ).remote(trial, self.plugin_modules)
            self.in_flight[gen] = _Flight(trial, utcnow())
            self.used["CPU"] += trial.num_cpus
            self.used["GPU"] += trial.num_gpus

    def wait_seconds(self) -> float:
        return _wait_seconds(self.in_flight.values())

    def collect(self, ready: list[Any]) -> list[tuple[Any, TrialResult]]:
        """Read one report of each ready task; return the finished ``(task, result)``."""
        done = []
        for gen in ready:
            flight = self.in_flight[gen]
            try:
                kind, value = self.ray.get(next(gen))
            except Exception as exc:  # the worker died after its retries, or a harness bug
                elapsed = None if flight.started is None else time.monotonic() - flight.started
                kind = "rows"
                value = TrialResult(
                    failure_rows(
                        flight.trial,
                        f"ray: {type(exc).__name__}: {_first_line(exc)}",
                        RayExecutor.name,
                        flight.started_at,
                        elapsed,
                    )
                )
            if kind == "started":
                flight.started = time.monotonic()
            elif kind == "progress":
                if self.on_progress is not None:
                    self.on_progress(flight.trial, value)
            else:
                done.append((gen, value))
        return done

    def expired(self) -> list[tuple[Any, TrialResult]]:
        """Cancel (force: the worker is killed) every started trial past its timeout."""
        now = time.monotonic()
        done = []
        for gen, flight in self.in_flight.items():
            timeout = flight.trial.timeout
            if timeout is not None and flight.started is not None and now - flight.started > timeout:
                self.ray.cancel(gen, force=True)
                error = f"timeout: trial did not finish within {timeout:g} s and was cancelled (ray.cancel force=True)"
                rows = failure_rows(flight.trial, error, RayExecutor.name, flight.started_at, now - flight.started)
                done.append((gen, TrialResult(rows)))
        return done

    def release(self, finished: list[tuple[Any, TrialResult]]) -> Iterator[TrialOutcome]:
        """Free the resources of the finished trials and yield their outcomes."""
        for gen, result in finished:
            if gen not in self.in_flight:  # finished and expired in the same round: report once
                continue
            trial = self.in_flight.pop(gen).trial
            self.used["CPU"] -= trial.num_cpus
            self.used["GPU"] -= trial.num_gpus
            yield TrialOutcome(trial, result.rows, result.poisons)


def probe_address(address: str, seconds: float = PROBE_SECONDS) -> None:
    """``ValueError`` when ``host:port`` (or ``ray://host:port``) accepts no TCP connection
    within ``seconds``; other address forms (``auto``) are left to Ray."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ValueError(
            f"--address {address}: cannot reach a Ray cluster there ({reason} within {seconds:g} s); "
            f"start one with `ray start --head` or check the address"
        ) from None


def check_resources(trials: Sequence[Trial], capacity: dict[str, float], address: str | None = None) -> None:
    """Refuse trials that no node set of this cluster could ever run (``ValueError``)."""
    where = f"the Ray cluster at {address}" if address else "the local Ray instance"
    for resource, attr in (("GPU", "num_gpus"), ("CPU", "num_cpus")):
        need = max(getattr(t, attr) for t in trials)
        have = float(capacity.get(resource, 0.0))
        if need > have:
            raise ValueError(
                f"trials ask for {attr}={need:g} but {where} has {have:g} {resource}(s) in total "
                f"(ray.cluster_resources()); lower resources.{attr} in the campaign or use a cluster with "
                f"{resource}s (--address)"
            )


def _fits(trial: Trial, used: dict[str, float], capacity: dict[str, float]) -> bool:
    return (
        used["CPU"] + trial.num_cpus <= capacity.get("CPU", 0.0) + 1e-9
        and used["GPU"] + trial.num_gpus <= capacity.get("GPU", 0.0) + 1e-9
    )


def _wait_seconds(flights: Iterable[_Flight]) -> float:
    """Wait until the next deadline of a started trial (at most :data:`POLL_SECONDS`)."""
    now = time.monotonic()
    left = [
        f.trial.timeout - (now - f.started) for f in flights if f.trial.timeout is not None and f.started is not None
    ]
    return max(0.0, min([POLL_SECONDS, *left]))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""
