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

from poisonbench.validation import check_matrix, check_vector


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
    def from_theta(cls, theta: np.ndarray, **kwargs: Any) -> Model:
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


class UncertifiedFitError(ValueError):
    """A fit stopped short of its certified tolerance; its model is not the optimum."""


def fit_certificate(model: Any) -> tuple[float | None, bool | None]:
    """``(gap, converged)`` as a model's fit reports them: the SVM's relative duality gap, else
    a gradient norm; None for what a learner does not report."""
    info = model.info if isinstance(getattr(model, "info", None), dict) else {}
    gap = info.get("relative_gap", info.get("grad_norm"))
    converged = info.get("converged")
    return (None if gap is None else float(gap)), (None if converged is None else bool(converged))


def require_certified(model: Model, who: str) -> Model:
    """Return ``model`` unless its fit reports ``converged = False``; then raise
    :class:`UncertifiedFitError` naming ``who``, the gap reached and what to do. Never pass an
    uncertified model on as an optimum."""
    gap, converged = fit_certificate(model)
    if converged is not False:
        return model
    info = model.info
    reached = (
        f" (reached {'relative gap' if 'relative_gap' in info else 'gradient norm'} {gap:.3g})"
        if gap is not None
        else ""
    )
    raise UncertifiedFitError(
        f"{who}: the fit did not reach its tolerance{reached} after {info.get('iterations', '?')} iterations; "
        f"scale the features or raise the learner's max_iter"
    )


@runtime_checkable
class Learner(Protocol):
    """What the harness and every defence need of a learner: fit, per-point loss, objective.

    Attacks that need more ask for a capability (:mod:`poisonbench.capabilities`):
    :class:`~poisonbench.capabilities.LinearModelLearner` (MTP, KKT, the Theorem-2 bound) or
    :class:`~poisonbench.capabilities.UnrolledLearner` (RMD). Implementations:
    ``plugins/learners/``."""

    name: str

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        warm_start: Any = None,
    ) -> Predictor:
        """Fit on (X, y) with per-point weights (multiplicities); report the fit's tolerance and
        ``converged`` in the model's ``info``. ``warm_start``: a model fitted earlier on a prefix
        of these rows; the result must not depend on it beyond tolerance."""
        ...

    def loss(self, model: Any, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-point loss ``l(θ; x_i, y_i)``, shape (n,)."""
        ...

    def objective(self, model: Any, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """The training objective the fit minimises."""
        ...
