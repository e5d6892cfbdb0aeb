"""Built-in defence ``sphere``: remove the points farthest from their class centroid.

Score ``‖x − μ_y‖₂``, with ``μ_y`` the mean of class ``y`` in the reference set (Steinhardt, Koh &
Liang 2017, §3 "sphere defense"; Koh et al. 2018, the "L2" defence). Per class the
``fraction`` of highest scores is removed (:mod:`poisonbench.plugins.defences.sanitiser`).
"""

from __future__ import annotations

import numpy as np

from poisonbench import hookimpl
from poisonbench.learner import Learner
from poisonbench.params import declare
from poisonbench.plugins.defences.sanitiser import PARAMETERS, Sanitiser, centroids_for, class_centroids


@declare(PARAMETERS)
class SphereSanitiser(Sanitiser):
    """Sphere sanitiser: drop each class's points farthest (L2) from its centroid, then fit."""

    name = "sphere"

    def scores(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        mu = centroids_for(X, y, class_centroids(*self.reference_data(X, y)), self.name)
        return np.linalg.norm(X - mu, axis=1)


@hookimpl
def register_defences(register):
    register(SphereSanitiser)
