"""Certified lower bound on the number of poisons (MTP paper, Theorem 2 and Section 4.3).

Every model θ gives a bound z(θ) on the poisons needed to induce θ_p
(:func:`poisonbench.plugins.theorem2.theorem2_z`). The paper's procedure: run Algorithm 1
with the *induced* model as the target and keep the largest z(θ_t) over the iterates (:func:`certified_lower_bound`). The bound is certified only
when the supremum is exact (hinge loss with the closed form, LP or MILP); for logistic
regression the Adam search under-estimates the supremum and the bound may be invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonbench.attack import Scenario
from poisonbench.learner import Model
from poisonbench.plugins.mtp_algorithm import MTPSettings, run_mtp


@dataclass(frozen=True)
class LowerBound:
    """Largest z(θ_t) over the iterates (``value``), z per iteration (NaN where θ_t gave no
    bound), the poisons the run used, and whether the bound is certified."""

    value: float
    curve: list[float] = field(default_factory=list)
    n_poisons: int = 0
    certified: bool = False

    @property
    def poisons_at_least(self) -> int:
        """The bound as a count: ⌈value⌉ (a poison count is an integer), minus a 1e-9 slack."""
        return int(np.ceil(self.value - 1e-9)) if self.value > 0 else 0


def certified_lower_bound(
    scenario: Scenario,
    induced: Model,
    epsilon: float,
    copies: int = 1,
    max_poisons: int | None = None,
    solver: str = "auto",
    onehot: str = "ignore",
) -> LowerBound:
    """Theorem-2 lower bound on the poisons needed to induce ``induced`` from the clean data.

    Runs Algorithm 1 with ``induced`` as its target until the iterate is ``epsilon``-close (or
    ``max_poisons`` are used) and returns the running maximum of z(θ_t) (MTP Section 4.3)."""
    curve: list[float] = []
    last: dict[str, Any] = {}
    settings = MTPSettings(epsilon=epsilon, copies=copies, max_poisons=max_poisons, solver=solver, onehot=onehot)
    for batch in run_mtp(scenario, induced, settings):
        last = batch.diagnostics
        curve.append(np.nan if last["z"] is None else float(last["z"]))
    return LowerBound(float(last["lower_bound"]), curve, int(last["n_poisons"]), bool(last["lower_bound_certified"]))
