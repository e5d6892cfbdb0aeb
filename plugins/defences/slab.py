"""Built-in defence ``slab``: remove the points farthest from their centroid along the centroid line.

Score ``|⟨x − μ_y, μ₊ − μ₋⟩|``: the distance from the class centroid projected on the line
between the two class centroids of the reference set, unnormalised as in Steinhardt, Koh & Liang
(2017, §3 "slab defense") and Koh et al. (2018). Per class the ``fraction`` of highest scores is
removed (:mod:`poisonbench.plugins.defences.sanitiser`).
"""

from __future__ import annotations

import numpy as np

from poisonbench import hookimpl
from poisonbench.learner import Learner
from poisonbench.params import declare
from poisonbench.plugins.defences.sanitiser import PARAMETERS, Sanitiser, centroids_for, class_centroids


@declare(PARAMETERS)
class SlabSanitiser(Sanitiser):
    """Slab sanitiser: drop each class's points farthest from its centroid along μ₊ − μ₋, then fit."""

    name = "slab"

    def scores(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        centroids = class_centroids(*self.reference_data(X, y))
        if set(centroids) != {-1.0, 1.0}:
            raise ValueError(f"defence {self.name!r}: the reference data need points of both classes")
        direction = centroids[1.0] - centroids[-1.0]
        return np.abs((X - centroids_for(X, y, centroids, self.name)) @ direction)


@hookimpl
def register_defences(register):
    register(SlabSanitiser)
