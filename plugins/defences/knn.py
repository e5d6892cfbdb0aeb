"""Built-in defence ``knn``: remove the points far from their nearest neighbours.

Score: the mean Euclidean distance from ``x`` to its ``k`` nearest points of the reference set
(all classes, as Koh et al. 2018's k-NN defence). With the empirical reference the point itself
is left out (its distance 0 would count for every point alike); with the oracle reference (the
clean data) the clean points are among the reference, as in the reference code. Per class the
``fraction`` of highest scores is removed (:mod:`poisonbench.plugins.defences.sanitiser`).
Repeated poisons are each other's neighbours at distance 0, which is this defence's known blind spot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from poisonbench import Param, hookimpl
from poisonbench.learner import Learner
from poisonbench.params import declare
from poisonbench.plugins.defences.sanitiser import PARAMETERS, Sanitiser


@declare({**PARAMETERS, "k": Param(int, "neighbours averaged", low=1)})
class KNNSanitiser(Sanitiser):
    """k-NN sanitiser: drop each class's points of largest mean distance to k neighbours, then fit."""

    name = "knn"

    def __init__(
        self,
        fraction: float = 0.05,
        reference: str = "empirical",
        then: str = "none",
        then_params: dict[str, Any] | None = None,
        k: int = 5,
    ) -> None:
        super().__init__(fraction, reference, then, then_params)
        self.k = int(k)

    def scores(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        X_ref, _ = self.reference_data(X, y)
        skip_self = self.reference == "empirical"
        wanted = self.k + int(skip_self)
        if X_ref.shape[0] < wanted:
            raise ValueError(
                f"defence {self.name!r}: k = {self.k} needs {wanted} reference points, got {X_ref.shape[0]}"
            )
        dist, _ = NearestNeighbors(n_neighbors=wanted).fit(X_ref).kneighbors(X)
        return dist[:, int(skip_self) :].mean(axis=1)


@hookimpl
def register_defences(register):
    register(KNNSanitiser)
