"""Built-in defence ``svd``: remove the points far from the reference data's low-rank subspace.

With ``V_k`` the top ``rank`` right singular vectors of the reference matrix and ``P`` an
orthonormal basis of ``span(V_k, μ₊, μ₋)`` (the rank-(k+2) subspace of Koh et al. 2018's SVD
defence, ``project_to_low_rank``), the score is the residual of ``x − μ_y`` off that subspace,
``‖(I − PᵀP)(x − μ_y)‖₂``, which is ``‖(I − PᵀP)x‖₂`` because ``μ_y`` lies in the subspace. Per class the ``fraction`` of highest scores is removed
(:mod:`poisonbench.plugins.defences.sanitiser`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import orth, svd

from poisonbench import Param, hookimpl
from poisonbench.learner import Learner
from poisonbench.params import declare
from poisonbench.plugins.defences.sanitiser import PARAMETERS, Sanitiser, class_centroids


@declare({**PARAMETERS, "rank": Param(int, "top singular vectors kept", low=1)})
class SVDSanitiser(Sanitiser):
    """SVD sanitiser: drop each class's points farthest from the top-k subspace, then fit."""

    name = "svd"

    def __init__(
        self,
        fraction: float = 0.05,
        reference: str = "empirical",
        then: str = "none",
        then_params: dict[str, Any] | None = None,
        rank: int = 10,
    ) -> None:
        super().__init__(fraction, reference, then, then_params)
        self.rank = int(rank)

    def basis(self, X_ref: np.ndarray, y_ref: np.ndarray) -> np.ndarray:
        """Orthonormal rows spanning the top ``rank`` right singular vectors and both centroids."""
        if self.rank >= X_ref.shape[1]:
            raise ValueError(f"defence {self.name!r}: rank = {self.rank} must be below the {X_ref.shape[1]} features")
        _, _, Vt = svd(X_ref, full_matrices=False)
        centroids = class_centroids(X_ref, y_ref)
        return orth(np.vstack([Vt[: self.rank], *centroids.values()]).T).T

    def scores(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        P = self.basis(*self.reference_data(X, y))
        return np.linalg.norm(X - (X @ P.T) @ P, axis=1)


@hookimpl
def register_defences(register):
    register(SVDSanitiser)
