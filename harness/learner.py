"""Core types: a fitted linear ``Model`` and the ``Learner`` protocol (convex ERM).

Objective (MTP paper eq. 1), with per-sample weights as exact multiplicities::

    J(θ) = (1/Σ_i s_i) Σ_i s_i · l(θ; x_i, y_i) + C_R · R(θ),   θ = (w, b)

``R(θ) = (‖w‖² + b²)/2`` when the bias is regularised (liblinear, the reference code), else
``‖w‖²/2``. Weight ``k`` on a point is the same problem as ``k`` copies of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harness.validation import check_matrix, check_vector


class Classifier:
    """Mixin: ``predict`` and ``accuracy`` from a subclass's ``decision_function``."""

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Labels in {-1, +1} (ties go to +1)."""
        return np.where(self.decision_function(X) >= 0, 1.0, -1.0)

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        """Fraction of ``y`` predicted correctly (NaN for an empty set)."""
        if len(y) == 0:
            return float("nan")
        return float(np.mean(self.predict(X) == np.asarray(y)))


@dataclass(frozen=True)
class Model(Classifier):
    """Linear model ``f(x) = w·x + b``; ``info`` holds fit diagnostics (duality gap, iterations),
    ``state`` opaque solver state a learner may reuse for a warm start (e.g. dual variables)."""

    w: np.ndarray
    b: float
    info: dict[str, Any] = field(default_factory=dict)
    state: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "w", check_vector(self.w, "model.w"))
        b = float(self.b)
        if not np.isfinite(b):
            raise ValueError(f"model.b: expected a finite bias, got {b}")
        object.__setattr__(self, "b", b)

    @property
    def theta(self) -> np.ndarray:
        """Parameters as one vector ``(w, b)``."""
        return np.append(self.w, self.b)

    @classmethod
    def from_theta(cls, theta: np.ndarray, **kwargs: Any) -> "Model":
        theta = np.asarray(theta, dtype=np.float64)
        return cls(theta[:-1].copy(), float(theta[-1]), **kwargs)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = check_matrix(X, "X", self.w.shape[0])
        return X @ self.w + self.b



@runtime_checkable
class Predictor(Protocol):
    """Anything that classifies: a linear :class:`Model` or a torch network's wrapper."""

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float: ...


@runtime_checkable
class Learner(Protocol):
    """A convex ERM learner. Implementations: ``plugins/learners/``."""

    name: str
    C_R: float
    regularise_bias: bool

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        warm_start: Model | None = None,
    ) -> Model:
        """Minimise J(θ) to the learner's stated tolerance (reported in ``Model.info``).

        ``warm_start`` is a model fitted earlier on a prefix of these rows (rows may be
        appended and weights may grow); the result must not depend on it beyond tolerance."""
        ...

    def loss(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-point loss ``l(θ; x_i, y_i)``, shape (n,)."""
        ...

    def loss_grad(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-point gradient of ``l`` with respect to θ = (w, b), shape (n, d + 1)."""
        ...

    def regulariser(self, model: Model) -> float:
        """R(θ)."""
        ...

    def regulariser_grad(self, model: Model) -> np.ndarray:
        """∇R(θ), shape (d + 1,)."""
        ...

    def objective(self, model: Model, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """J(θ) as above."""
        ...

    def with_regularisation(self, C_R: float) -> "Learner":
        """A copy of this learner with another L2 strength (what L2 defences tune)."""
        ...
