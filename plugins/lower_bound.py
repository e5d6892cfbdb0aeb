"""Certified lower bound on the number of poisons (MTP paper, Theorem 2 and Section 4.3).

Every model θ gives a bound z(θ) on the poisons needed to induce θ_p
(:func:`poisonbench.plugins.theorem2.theorem2_z`). The paper's procedure: run Algorithm 1
with the *induced* model as the target and keep the largest z(θ_t) over the iterates
(:func:`certified_lower_bound`); :func:`induced_bound` does it for the model an attack's
poisons induce (the ``lower_bound_induced`` metric of ``mtp`` and ``kkt`` with
``bound_induced = true``). The bound is certified only when the supremum is exact (hinge loss
with the closed form, LP or MILP); for logistic regression the Adam search under-estimates the
supremum and the bound may be invalid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonbench.attack import Scenario
from poisonbench.learner import Model, require_certified
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


def induced_bound(
    scenario: Scenario,
    X_p: np.ndarray,
    y_p: np.ndarray,
    epsilon: float,
    solver: str = "auto",
    onehot: str = "ignore",
) -> dict[str, Any]:
    """The paper's certified bound for the model the poisons ``(X_p, y_p)`` induce.

    θ_atk = argmin L(θ; D_c ∪ D_p) (the scenario's learner, no defence, certified); then
    :func:`certified_lower_bound` toward θ_atk, capped at ``scenario.budget`` poisons (every
    iterate's z is a valid bound, so the cap can only loosen it). Returns the diagnostics
    ``lower_bound_induced`` (the bound as a count: it can never exceed ``len(y_p)`` when
    certified), ``lower_bound_induced_value`` (the real z), ``lower_bound_induced_certified``,
    ``lower_bound_induced_run_poisons`` and ``lower_bound_induced_seconds``."""
    start = time.perf_counter()
    data = scenario.dataset
    X = np.vstack([data.X_train, X_p])
    y = np.concatenate([data.y_train, y_p])
    induced = require_certified(scenario.learner.fit(X, y), f"induced model of {len(y_p)} poisons")
    bound = certified_lower_bound(scenario, induced, epsilon, max_poisons=scenario.budget, solver=solver, onehot=onehot)
    return {
        "lower_bound_induced": bound.poisons_at_least,
        "lower_bound_induced_value": bound.value,
        "lower_bound_induced_certified": bound.certified,
        "lower_bound_induced_run_poisons": bound.n_poisons,
        "lower_bound_induced_seconds": time.perf_counter() - start,
    }
