"""Progress inside a running trial: what the trial runner reports while the attack streams.

:func:`poisonbench.trial.run_trial` calls its ``on_progress`` callback with a
:class:`TrialProgress` when the attack starts and then at most every
:data:`PROGRESS_SECONDS` of wall time (one clock read per poison batch otherwise), so a
display costs nothing per iteration. The executors carry these reports from their workers
to the driver (the local child over its pipe, a Ray task as items of its streaming
generator); they never change a trial's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Least wall time (seconds) between two progress reports of one trial.
PROGRESS_SECONDS = 0.25


@dataclass(frozen=True)
class TrialProgress:
    """Where a running trial stands."""

    #: Poison batches accepted from the attack so far (the attack's iterations).
    step: int
    #: Poisons accepted so far.
    poisons: int
    #: The largest budget of the trial (the attack stops there at the latest).
    budget: int
    #: Seconds since the trial started.
    elapsed: float
    #: The attack's latest ``max_loss_diff`` diagnostic (None when it reports none).
    max_loss_diff: float | None = None


#: A progress sink of the trial runner.
OnTrialProgress = Callable[[TrialProgress], None]
