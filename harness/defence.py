"""Core type: a ``Defence`` is what the model builder does with possibly poisoned data.

It fits a learner on the training data (clean + poisons), optionally using a trusted
validation set, and reports its own hyperparameters (e.g. the learned L2 strength λ) and
which training rows it kept (for sanitising defences). Built-ins: ``plugins/defences/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from poisonbench.learner import Learner, Predictor


@dataclass(frozen=True)
class DefendedFit:
    """The defended model, the defence's chosen hyperparameters and the kept-row mask."""

    model: Predictor
    hyperparameters: dict[str, float] = field(default_factory=dict)
    kept: np.ndarray | None = None


@runtime_checkable
class Defence(Protocol):
    name: str

    def fit(
        self,
        learner: Learner,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DefendedFit:
        """Fit ``learner`` on (X, y) under this defence."""
        ...


class NoDefence:
    """The undefended model builder: plain ERM with the learner's own hyperparameters."""

    name = "none"

    def fit(
        self,
        learner: Learner,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DefendedFit:
        C_R = getattr(learner, "C_R", None)
        return DefendedFit(learner.fit(X, y, sample_weight), {} if C_R is None else {"C_R": float(C_R)})
