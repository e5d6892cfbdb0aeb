"""What every executor shares: the outcome of a trial and the executor protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from poisonbench.campaign import Trial
from poisonbench.progress import TrialProgress

OnStart = Callable[[Trial], None]
#: Called in the driver with a running trial's latest :class:`TrialProgress`.
OnProgress = Callable[[Trial, TrialProgress], None]


@dataclass
class TrialOutcome:
    """The rows one trial produced, and its poison set as Parquet bytes
    (:class:`poisonbench.trial.TrialResult`; None when there is none to store)."""

    trial: Trial
    rows: list[dict[str, Any]]
    poisons: bytes | None = None

    @property
    def status(self) -> str:
        return "ok" if self.rows and all(r.get("status") == "ok" for r in self.rows) else "failed"

    @property
    def error(self) -> str | None:
        return next((r.get("error") for r in self.rows if r.get("error")), None)


class Executor(Protocol):
    name: str

    def run(
        self, trials: Sequence[Trial], on_start: OnStart | None = None, on_progress: OnProgress | None = None
    ) -> Iterator[TrialOutcome]:
        """Run ``trials``; yield each outcome as it completes. ``on_start`` is called when a
        trial is dispatched, ``on_progress`` (in this process) with the progress reports of a
        running trial (see :mod:`poisonbench.progress`)."""
        ...

    def close(self) -> None:
        """Release workers / cluster connections."""
        ...
