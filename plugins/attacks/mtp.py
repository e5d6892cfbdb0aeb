"""Built-in attack ``mtp``: online model-targeted poisoning (Suya et al., Algorithm 1).

The algorithm itself is :mod:`poisonbench.plugins.mtp_algorithm`; this module makes it an attack
plugin: it builds the target model θ_p (:mod:`poisonbench.plugins.targets`) and streams the
iterations as poison batches. The attack targets the plain learner: ``scenario.defence`` is not
consulted (MTP assumes none). The learner must be a
:class:`poisonbench.capabilities.LinearModelLearner`, whatever its name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from poisonbench import Param, PoisonBatch, Scenario, hookimpl
from poisonbench.learner import Model
from poisonbench.params import declare
from poisonbench.plugins.lower_bound import induced_bound
from poisonbench.plugins.max_loss_diff import LOGISTIC_SEARCHES, ONEHOT_MODES, SOLVERS
from poisonbench.plugins.mtp_algorithm import MTPSettings, run_mtp
from poisonbench.plugins.targets import check_grid, make_target, parse_spec


@declare(
    {
        "target": Param(
            str, "target model spec: subpop, error:<rate>, error:<rate>:improved, file:<path.npz>", check=parse_spec
        ),
        "epsilon": Param(float, "stop when ε-close (max loss difference ≤ ε)", low=0, low_open=True, optional=True),
        "copies": Param(int, "copies of each chosen point per iteration", low=1),
        "max_poisons": Param(int, "own cap on the poisons", low=0, optional=True),
        "accuracy_goal": Param(
            float, "stop when the (subpopulation) test accuracy is ≤ this", low=0, high=1, optional=True
        ),
        "solver": Param(str, "hinge max-loss-difference method", choices=SOLVERS),
        "onehot": Param(str, "one-hot groups in the LP / MILP", choices=ONEHOT_MODES),
        "restarts": Param(int, "logistic: Adam restarts", low=1),
        "lr": Param(float, "logistic: Adam step size", low=0, low_open=True),
        "max_steps": Param(int, "logistic: Adam steps per restart", low=1),
        "adam_tol": Param(float, "logistic: Adam stopping tolerance", low=0, low_open=True),
        "logistic_search": Param(
            str,
            "logistic: adam (the reference's local search) or zonotope (global, branch and bound)",
            choices=LOGISTIC_SEARCHES,
        ),
        "target_quantiles": Param(list, "loss quantiles of the target heuristic", optional=True, check=check_grid),
        "target_repeats": Param(
            list, "repeat counts of the target heuristic", optional=True, check=lambda v: check_grid(v, integer=True)
        ),
        "target_flip_source": Param(str, "split the target heuristic flips", choices=("test", "train")),
        "bound_induced": Param(
            bool, "after the attack stops, certify the paper's lower bound for the induced model (Section 4.3)"
        ),
        "bound_epsilon": Param(
            float,
            "ε of the bound's run toward the induced model (default: epsilon, else 0.01)",
            low=0,
            low_open=True,
            optional=True,
        ),
    }
)
class ModelTargetedPoisoning:
    """Model-targeted poisoning (MTP, Suya et al.): online max-loss-difference points toward a target model.

    Parameters are declared with ``@declare`` above (``poisonbench list attacks`` prints them).
    Paper settings: ε = 0.01 (SVM) / 0.05 (LR) on Adult, 0.1 on MNIST 1–7; Adam search 10
    restarts, lr 0.1, 20,000 steps, tolerance 1e-7 (the reference code's).
    """

    name = "mtp"
    needs_budget = False

    def __init__(
        self,
        target: str = "subpop",
        epsilon: float | None = None,
        copies: int = 1,
        max_poisons: int | None = None,
        accuracy_goal: float | None = None,
        solver: str = "auto",
        onehot: str = "ignore",
        restarts: int = 10,
        lr: float = 0.1,
        max_steps: int = 20_000,
        adam_tol: float = 1e-7,
        logistic_search: str = "adam",
        target_quantiles: list[float] | None = None,
        target_repeats: list[int] | None = None,
        target_flip_source: str = "test",
        bound_induced: bool = False,
        bound_epsilon: float | None = None,
    ) -> None:
        self.target = target
        self.bound_induced = bound_induced
        self.bound_epsilon = bound_epsilon if bound_epsilon is not None else (epsilon or 0.01)
        self.settings = MTPSettings(
            epsilon=epsilon,
            copies=copies,
            max_poisons=max_poisons,
            accuracy_goal=accuracy_goal,
            solver=solver,
            onehot=onehot,
            restarts=restarts,
            lr=lr,
            max_steps=max_steps,
            adam_tol=adam_tol,
            logistic_search=logistic_search,
        )
        self.target_params: dict[str, Any] = dict(
            quantiles=target_quantiles, repeats=target_repeats, flip_source=target_flip_source
        )

    def target_model(self, scenario: Scenario) -> Model:
        """θ_p for this scenario (cached on disk by :func:`poisonbench.plugins.targets.make_target`)."""
        return make_target(self.target, scenario, **self.target_params)

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield one batch per iteration of Algorithm 1 (the first one empty: the clean model);
        with ``bound_induced`` the last batch also carries the bound for the model it induces."""
        target = self.target_model(scenario)
        poisons: list[PoisonBatch] = []
        for i, batch in enumerate(run_mtp(scenario, target, self.settings)):
            if i == 0:
                batch.diagnostics.update(
                    target=self.target,
                    target_test_accuracy=target.accuracy(scenario.dataset.X_test, scenario.dataset.y_test),
                )
            poisons.append(batch)
            if self.bound_induced and batch.diagnostics.get("final"):
                X_p = np.concatenate([b.X for b in poisons])
                y_p = np.concatenate([b.y for b in poisons])
                s = self.settings
                batch.diagnostics.update(induced_bound(scenario, X_p, y_p, self.bound_epsilon, s.solver, s.onehot))
            yield batch


@hookimpl
def register_attacks(register: Any) -> None:
    register(ModelTargetedPoisoning)
