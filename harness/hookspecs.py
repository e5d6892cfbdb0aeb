"""Hook specifications of the ``poisonbench`` pluggy project.

A plugin implements any of these with ``@poisonbench.hookimpl`` (re-exported as
``poisonbench.hookimpl``). Register hooks receive a ``register`` callback; lifecycle hooks let
observers (loggers, trackers) follow a campaign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("poisonbench")
hookimpl = pluggy.HookimplMarker("poisonbench")

Register = Callable[..., None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset factories: ``register(factory)``; calling ``factory(**params)`` returns a
    :class:`poisonbench.dataset.Dataset`."""


@hookspec
def register_learners(register: Register) -> None:
    """Register learner factories; calling one returns a :class:`poisonbench.learner.Learner`."""


@hookspec
def register_attacks(register: Register) -> None:
    """Register attack factories; calling one returns a :class:`poisonbench.attack.Attack`."""


@hookspec
def register_defences(register: Register) -> None:
    """Register defence factories; calling one returns a :class:`poisonbench.defence.Defence`."""


@hookspec
def trial_started(trial: dict[str, Any]) -> None:
    """Called before a trial runs, with its resolved configuration (``trial["trial_id"]``…)."""


@hookspec
def trial_finished(trial: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Called after a trial ends (successfully or not) with the result rows it produced."""
