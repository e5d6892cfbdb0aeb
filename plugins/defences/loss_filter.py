"""Built-in defence ``loss``: remove the points of highest loss under a model fit on the reference set.

Score ``l(θ_ref; x, y)``, the learner's own per-point loss (hinge for the SVM, logistic for LR)
under ``θ_ref`` fitted (plain ERM) on the reference set: all the data given (empirical, Koh et
al. 2018's "loss" defence) or the clean data (oracle). Per class the ``fraction`` of highest
losses is removed (:mod:`poisonbench.plugins.defences.sanitiser`).
"""

from __future__ import annotations

import numpy as np

from poisonbench import hookimpl
from poisonbench.learner import Learner, require_certified
from poisonbench.params import declare
from poisonbench.plugins.defences.sanitiser import PARAMETERS, Sanitiser


@declare(PARAMETERS)
class LossSanitiser(Sanitiser):
    """Loss sanitiser: drop each class's points of highest loss under a reference fit, then fit."""

    name = "loss"

    def scores(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        X_ref, y_ref = self.reference_data(X, y)
        model = require_certified(learner.fit(X_ref, y_ref), f"defence {self.name!r}: the reference fit")
        return np.asarray(learner.loss(model, X, y), dtype=np.float64)


@hookimpl
def register_defences(register):
    register(LossSanitiser)
