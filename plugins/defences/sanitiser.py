"""The shared base of the data-sanitisation defences: score each training point, drop the highest.

A sanitiser gives every training point an anomaly score (its distance to the class centroid, its
loss, …; one module per score: ``sphere``, ``slab``, ``loss``, ``knn``, ``svd``) and, **per
class**, removes the ``round(fraction · n_y)`` points of highest score, keeping the
``round((1 − fraction) · n_y)`` lowest (ties: the earlier row is kept), as ``remove_quantile``
of Koh, Steinhardt & Liang (2018, "Stronger data poisoning attacks break data sanitization
defenses", reference code ``defenses.py``). It then fits the learner on the kept points with an
L2 defence (``then``: ``none``, ``fixed-l2``, ``cv-l2`` or ``learned-l2``, parameters
``then_params``), so sanitising composes with every choice of λ.

The statistics a score needs (centroids, a model, a subspace, neighbours) come from a
**reference** set:

- ``reference = "empirical"``: the data given to ``fit``, poisons included (what a defender sees);
- ``reference = "oracle"``: the clean training data, which the harness hands to
  :meth:`Sanitiser.calibrate` once, before the attack starts (the oracle defender of Steinhardt,
  Koh & Liang 2017, "Certified defenses for data poisoning attacks"; an attack that knows the
  defence sees the calibrated statistics).

The kept-row mask is returned as ``DefendedFit.kept``; the harness records how many points, how
many poisons and how many clean points were removed (``n_removed``, ``n_removed_poisons``,
``n_removed_clean``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonbench import Param
from poisonbench.defence import DefendedFit, NoDefence
from poisonbench.learner import Learner
from poisonbench.plugins.defences.l2 import CrossValidatedL2, FixedL2, LearnedL2
from poisonbench.validation import check_binary_labels, check_matrix, check_weights

#: the L2 defences a sanitiser can fit with after removing points
THEN = {"none": NoDefence, "fixed-l2": FixedL2, "cv-l2": CrossValidatedL2, "learned-l2": LearnedL2}

PARAMETERS = {
    "fraction": Param(float, "fraction of each class to remove", low=0.0, high=1.0, high_open=True),
    "reference": Param(
        str, "statistics from the data given (empirical) or the clean data (oracle)", choices=("empirical", "oracle")
    ),
    "then": Param(str, "the L2 defence fitted on the kept points", choices=tuple(THEN)),
    "then_params": Param(dict, "parameters of that defence", optional=True),
}


def class_quantile_keep(scores: np.ndarray, y: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask keeping, in each class, the ``round((1 − fraction) · n_y)`` lowest scores
    (a stable sort: among equal scores the earlier row is kept)."""
    keep = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        n_keep = int(np.round((1.0 - fraction) * rows.size))
        keep[rows[np.argsort(scores[rows], kind="stable")[:n_keep]]] = True
    return keep


class Sanitiser:
    """Remove the highest-scoring ``fraction`` of each class, then fit with the ``then`` defence.

    Subclasses define :meth:`scores`; ``name`` is the registered name."""

    name = "sanitiser"

    def __init__(
        self,
        fraction: float = 0.05,
        reference: str = "empirical",
        then: str = "none",
        then_params: dict[str, Any] | None = None,
    ) -> None:
        self.fraction, self.reference = float(fraction), reference
        self.then = THEN[then](**(then_params or {}))
        self.clean: tuple[np.ndarray, np.ndarray] | None = None

    def calibrate(self, learner: Learner, X_clean: np.ndarray, y_clean: np.ndarray) -> None:
        """Remember the clean training data (the oracle reference); the harness calls this once,
        before the attack. Empirical sanitisers ignore it."""
        self.clean = (np.asarray(X_clean, dtype=np.float64), np.asarray(y_clean, dtype=np.float64))

    def reference_data(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reference set: the clean data (oracle) or ``(X, y)`` itself (empirical)."""
        if self.reference == "empirical":
            return X, y
        if self.clean is None:
            raise ValueError(
                f"defence {self.name!r}: reference = 'oracle' needs the clean training data; "
                "call calibrate(learner, X_clean, y_clean) first (the harness does, before the attack)"
            )
        return self.clean

    def scores(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Anomaly score of every row of ``(X, y)``, higher = more suspicious."""
        raise NotImplementedError

    def keep_mask(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The rows this sanitiser keeps."""
        X = check_matrix(X, "X")
        y = check_binary_labels(y, "y", X.shape[0])
        return self.select(learner, X, y)

    def select(self, learner: Learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The rows kept, of already validated ``(X, y)``: per class the ``1 − fraction``
        quantile of :meth:`scores` (a sanitiser that does not rank by one score overrides this)."""
        return class_quantile_keep(self.scores(learner, X, y), y, self.fraction)

    def fit(
        self,
        learner: Learner,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DefendedFit:
        X = check_matrix(X, "X")
        y = check_binary_labels(y, "y", X.shape[0])
        s = check_weights(sample_weight, X.shape[0])
        kept = self.select(learner, X, y)
        inner = self.then.fit(learner, X[kept], y[kept], s[kept], X_val=X_val, y_val=y_val)
        return DefendedFit(inner.model, dict(inner.hyperparameters), kept)


def class_centroids(X: np.ndarray, y: np.ndarray) -> dict[float, np.ndarray]:
    """Mean of each class's rows: ``{label: μ_label}``."""
    return {float(label): X[y == label].mean(axis=0) for label in np.unique(y)}


def centroids_for(X: np.ndarray, y: np.ndarray, centroids: dict[float, np.ndarray], who: str) -> np.ndarray:
    """Row ``i`` is the centroid of ``y_i``'s class (a ``ValueError`` if the reference lacks it)."""
    missing = sorted(set(np.unique(y).tolist()) - set(centroids))
    if missing:
        raise ValueError(f"defence {who!r}: the reference data have no point of class {missing[0]:g}")
    return np.stack([centroids[float(label)] for label in y]) if len(y) else np.zeros((0, X.shape[1]))
