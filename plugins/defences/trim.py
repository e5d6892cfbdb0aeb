"""Built-in defence ``trim``: TRIM, iteratively trimmed loss (Jagielski et al. 2018, Algorithm 2).

TRIM looks for the ``n`` points whose fitted model has the smallest loss on them:

    I₀ = all points;  θ_t = argmin L(θ; I_t)  (plain ERM);
    I_{t+1} = the n points of lowest loss l(θ_t; x_i, y_i)  (ties: the earlier row);

until ``I_{t+1} = I_t`` (a fixed point: the trimmed loss can no longer decrease). The paper starts
from a random subset; starting from all points makes the defence deterministic. ``n`` is
``round((1 − fraction) · N)``, or, with ``reference = "oracle"``, the number of clean training
points (the paper's assumption that the defender knows the poisoning rate). The kept points are
then fitted with the ``then`` L2 defence. A run that reaches ``iterations`` without a fixed point
raises (its model would not be TRIM's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.learner import Learner, require_certified
from poisonbench.params import declare
from poisonbench.plugins.defences.sanitiser import PARAMETERS, Sanitiser


@declare(
    {
        **PARAMETERS,
        "fraction": Param(float, "fraction of all points to trim", low=0.0, high=1.0, high_open=True),
        "reference": Param(
            str, "trim `fraction` (empirical) or down to the clean count (oracle)", choices=("empirical", "oracle")
        ),
        "iterations": Param(int, "most refits before giving up", low=1),
    }
)
class TrimDefence(Sanitiser):
    """TRIM (Jagielski et al. 2018): refit on the lowest-loss n points until they stop changing."""

    name = "trim"

    def __init__(
        self,
        fraction: float = 0.05,
        reference: str = "empirical",
        then: str = "none",
        then_params: dict[str, Any] | None = None,
        iterations: int = 50,
    ) -> None:
        super().__init__(fraction, reference, then, then_params)
        self.iterations = int(iterations)

    def n_keep(self, X: np.ndarray, y: np.ndarray) -> int:
        """Points kept: ``round((1 − fraction) · N)``, or the clean count for the oracle."""
        if self.reference == "oracle":
            return min(len(y), len(self.reference_data(X, y)[1]))
        return int(np.round((1.0 - self.fraction) * len(y)))

    def select(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        n_keep = self.n_keep(X, y)
        kept = np.ones(len(y), dtype=bool)
        for _ in range(self.iterations):
            model = require_certified(learner.fit(X[kept], y[kept]), f"defence {self.name!r}: a TRIM refit")
            losses = np.asarray(learner.loss(model, X, y), dtype=np.float64)
            new = np.zeros(len(y), dtype=bool)
            new[np.argsort(losses, kind="stable")[:n_keep]] = True
            if np.array_equal(new, kept):
                return kept
            kept = new
        raise ValueError(f"defence {self.name!r}: no fixed point after {self.iterations} refits; raise `iterations`")


@hookimpl
def register_defences(register):
    register(TrimDefence)
