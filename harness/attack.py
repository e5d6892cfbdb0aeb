"""Core types: the attack ``Scenario`` and the ``Attack`` protocol (a stream of poisons).

An attack yields :class:`PoisonBatch` es incrementally: each batch holds the *new* poison
points of one step and that step's diagnostics, so one run can be evaluated at every budget
up to the largest. Attacks that must know the budget before they start (KKT) set
``needs_budget = True`` and are run once per budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from poisonbench.dataset import Dataset, FeasibleSet
from poisonbench.defence import Defence, NoDefence
from poisonbench.learner import Learner
from poisonbench.validation import check_binary_labels, check_matrix

#: Diagnostic keys with a fixed meaning across attacks (all optional).
STANDARD_DIAGNOSTICS = (
    "max_loss_diff",  # loss-based distance D_l(θ_t, θ_p), MTP Definition 1
    "param_distance",  # ‖θ_t − θ_p‖₂
    "lower_bound",  # running max of z(θ_t), MTP Theorem 2 (certified for SVM only)
    "test_accuracy",  # accuracy of θ_t on the test split
    "subpop_accuracy",  # accuracy of θ_t on the target subpopulation's test points
    "lambda",  # the defender's L2 strength (log scale, RMD paper eq. 6)
)


@dataclass(frozen=True)
class Scenario:
    """Everything an attack may know (white box): data, learner, defence, budget, target.

    ``budget``: the most poisons the attack may yield; ``None`` (direct use from Python) means
    unbounded, and an attack with ``needs_budget = True`` may refuse it with a ``ValueError``.
    ``subpopulation``: the name of the dataset's target subpopulation, if the campaign names one.
    ``target``: the target-model spec the campaign names for this trial (its attack's ``target``
    parameter, the row's ``target`` column: ``"error:0.1"``, ``"subpop"``, ``"file:theta.npz"``),
    else ``None``. ``poisonbench.plugins.targets.make_target(scenario.target, scenario)`` resolves
    a spec into the fitted target :class:`~poisonbench.learner.Model` (cached on disk).
    """

    dataset: Dataset
    learner: Learner
    defence: Defence = field(default_factory=NoDefence)
    budget: int | None = None
    seed: int = 0
    subpopulation: str | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if self.budget is not None and (int(self.budget) != self.budget or self.budget < 0):
            raise ValueError(f"scenario.budget: expected a non-negative integer, got {self.budget!r}")
        if self.target is not None and not isinstance(self.target, str):
            raise ValueError(f"scenario.target: expected a target-model spec string or None, got {self.target!r}")
        if self.subpopulation is not None:
            self.dataset.subpopulation(self.subpopulation)

    @property
    def feasible(self) -> FeasibleSet:
        return self.dataset.feasible

    def rng(self, stream: int = 0) -> np.random.Generator:
        """A generator seeded by (seed, stream): independent, reproducible random streams."""
        return np.random.default_rng([self.seed, stream])


@dataclass(frozen=True)
class PoisonBatch:
    """New poison points ``(X, y)`` of one attack step, with that step's diagnostics."""

    X: np.ndarray
    y: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        X = check_matrix(self.X, "poison X")
        y = check_binary_labels(self.y, "poison y", X.shape[0])
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return int(self.X.shape[0])


@runtime_checkable
class Attack(Protocol):
    """A poisoning attack. Implementations: ``plugins/attacks/``."""

    name: str
    needs_budget: ClassVar[bool]

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield batches of new poisons until the attack stops or ``scenario.budget`` is spent."""
        ...
