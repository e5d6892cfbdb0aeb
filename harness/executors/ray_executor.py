"""The ``ray`` executor: trials as Ray tasks, on a local Ray instance or a cluster.

- ``address=None`` starts a local Ray (``ray.init``) with a small object store
  (:data:`OBJECT_STORE_BYTES`; trials return only their rows), no dashboard and worker logs
  kept out of the driver's terminal; workers inherit this process's ``sys.path`` entries
  outside site-packages (so ``--plugin`` modules next to the campaign import) and
  ``POISONBENCH_LOAD_PLUGINS``. With an address, Ray connects to that cluster, whose nodes
  must have poisonbench and the plugins installed.
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
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from poisonbench.campaign import Trial
from poisonbench.executors.base import OnStart, TrialOutcome
from poisonbench.results import utcnow
from poisonbench.trial import failure_rows, host_for, run_trial

#: Object store size of a locally started Ray (bytes): rows are small.
OBJECT_STORE_BYTES = 128 * 1024**2
#: Seconds between checks of the deadlines while waiting for results.
POLL_SECONDS = 0.5
ENV_PASSED = ("POISONBENCH_LOAD_PLUGINS",)


def _ray_trial(trial: Trial, plugin_modules: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """Body of the Ray task (a streaming generator): ``("started", None)`` once the worker has
    loaded the plugins, so that the timeout counts from there, then ``("rows", rows)``."""
    host = host_for(plugin_modules)
    yield ("started", None)
    yield ("rows", run_trial(trial, host, RayExecutor.name))


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
        kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
        if self.address is None:
            paths = [
                p
                for p in sys.path
                if p and os.path.isdir(p) and "-packages" not in p and not p.startswith(sys.base_prefix)
            ]
            if paths:
                env["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            kwargs.update(num_cpus=self.num_cpus, object_store_memory=OBJECT_STORE_BYTES)
        else:
            kwargs["address"] = self.address
        try:
            ray.init(runtime_env={"env_vars": env} if env else None, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise ValueError(f"--executor ray: cannot start or reach {where}: {exc}") from None
        self._started_ray = True
        return ray

    def run(self, trials: Sequence[Trial], on_start: OnStart | None = None) -> Iterator[TrialOutcome]:
        if not trials:
            return
        ray = self._init()
        capacity = ray.cluster_resources()
        check_resources(trials, capacity, self.address)
        task = ray.remote(_ray_trial)
        queue = list(trials)
        in_flight: dict[Any, _Flight] = {}  # streaming generator -> its trial
        used = {"CPU": 0.0, "GPU": 0.0}
        while queue or in_flight:
            while queue and (not in_flight or _fits(queue[0], used, capacity)):
                trial = queue.pop(0)
                if on_start is not None:
                    on_start(trial)
                gen = task.options(
                    num_returns="streaming",
                    num_cpus=trial.num_cpus,
                    num_gpus=trial.num_gpus,
                    max_retries=trial.max_retries,
                    retry_exceptions=False,
                ).remote(trial, self.plugin_modules)
                in_flight[gen] = _Flight(trial, utcnow())
                used["CPU"] += trial.num_cpus
                used["GPU"] += trial.num_gpus
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_wait_seconds(in_flight.values()))
            done: list[tuple[Any, list[dict[str, Any]]]] = []
            for gen in ready:
                flight = in_flight[gen]
                try:
                    kind, value = ray.get(next(gen))
                except Exception as exc:  # the worker died after its retries, or a harness bug
                    kind, value = (
                        "rows",
                        failure_rows(
                            flight.trial,
                            f"ray: {type(exc).__name__}: {_first_line(exc)}",
                            self.name,
                            flight.started_at,
                            None if flight.started is None else time.monotonic() - flight.started,
                        ),
                    )
                if kind == "started":
                    flight.started = time.monotonic()
                else:
                    done.append((gen, value))
            now = time.monotonic()
            for gen, flight in in_flight.items():
                timeout = flight.trial.timeout
                if timeout is not None and flight.started is not None and now - flight.started > timeout:
                    ray.cancel(gen, force=True)
                    error = (
                        f"timeout: trial did not finish within {timeout:g} s and was cancelled (ray.cancel force=True)"
                    )
                    done.append(
                        (gen, failure_rows(flight.trial, error, self.name, flight.started_at, now - flight.started))
                    )
            for gen, rows in done:
                trial = in_flight.pop(gen).trial
                used["CPU"] -= trial.num_cpus
                used["GPU"] -= trial.num_gpus
                yield TrialOutcome(trial, rows)

    def close(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False


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
