"""Capabilities: what an attack or a defence needs of a learner, as protocols, not names.

An attack asks for a capability with :func:`require`, never for a learner by name, so any
plugin learner that implements the protocol can be attacked (and a learner that does not is
refused with one line naming the missing members).

- :class:`LinearModelLearner`: convex ERM of a linear model ``f(x) = w·x + b`` in the sense of
  the MTP paper's eq. (1), ``J(θ) = (1/N) Σ_i l(θ; x_i, y_i) + C_R R(θ)`` with a margin loss
  ``l = φ(y f(x))`` named by ``loss_kind``. MTP (Algorithm 1), its Theorem-2 lower bound and
  KKT need exactly this: the loss kind decides the max-loss-difference problem, ``C_R`` and
  ``R`` enter z(θ) and the KKT stationarity condition.
- :class:`UnrolledLearner`: a model trained by ``steps`` steps of gradient descent on
  ``L + Σ_k (e^{λ_k}/2)‖W_k‖²`` (the RMD paper's eq. 6), in torch: what the RMD attack and
  the learned-λ defence differentiate through.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from poisonbench.learner import Model

#: Margin losses φ(m) a :class:`LinearModelLearner` may declare: hinge max(0, 1 − m),
#: logistic log(1 + e^{−m}).
LOSS_KINDS = ("hinge", "logistic")


class CapabilityError(ValueError):
    """A component lacks a capability that another one requires."""


@runtime_checkable
class LinearModelLearner(Protocol):
    """Exact convex ERM of a linear model (MTP eq. 1); fits return :class:`~poisonbench.learner.Model`.

    ``C_R`` weighs ``R`` against the *mean* loss; ``R(θ) = (‖w‖² + b²)/2`` when
    ``regularise_bias`` else ``‖w‖²/2``. A fit must reach its stated tolerance or set
    ``info["converged"] = False`` (attacks refuse such a model)."""

    name: str
    loss_kind: str
    C_R: float
    regularise_bias: bool

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None, warm_start: Model | None = None
    ) -> Model:
        """Minimise J(θ); ``warm_start`` is a model fitted earlier on a prefix of these rows."""
        ...

    def loss(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-point loss ``l(θ; x_i, y_i)``, shape (n,)."""
        ...

    def loss_grad(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-point (sub)gradient of ``l`` with respect to θ = (w, b), shape (n, d + 1)."""
        ...

    def regulariser(self, model: Model) -> float:
        """R(θ)."""
        ...

    def regulariser_grad(self, model: Model) -> np.ndarray:
        """∇R(θ), shape (d + 1,)."""
        ...

    def objective(self, model: Model, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """J(θ) of eq. (1)."""
        ...

    def with_regularisation(self, C_R: float) -> LinearModelLearner:
        """A copy with another ``C_R`` (what the L2 defences tune)."""
        ...


@runtime_checkable
class UnrolledLearner(Protocol):
    """T-step gradient descent on ``L + Σ_k (e^{λ_k}/2)‖W_k‖²`` (RMD eq. 6) from a seeded start.

    ``lam`` holds one λ per weight matrix; ``architecture(d)`` is the
    :class:`poisonbench.plugins.bilevel.inner.Architecture`-like description the hypergradient
    code unrolls."""

    name: str
    lam: np.ndarray
    steps: int
    lr: float
    seed: int

    def architecture(self, d: int) -> Any:
        """The network on ``d`` input features."""
        ...

    def with_lambda(self, lam: Any) -> UnrolledLearner:
        """A copy with L2 strength(s) λ."""
        ...

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None, warm_start: Any = None) -> Any:
        """Train for ``steps`` steps; returns a predictor."""
        ...


def members(protocol: type) -> tuple[str, ...]:
    """The attributes and methods a protocol class declares (annotations and public functions)."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_")}
    return tuple(sorted(names))


def missing(component: Any, protocol: type) -> tuple[str, ...]:
    """Members of ``protocol`` that ``component`` lacks (empty when it has them all)."""
    return tuple(m for m in members(protocol) if not hasattr(component, m))


def has(component: Any, protocol: type) -> bool:
    """Whether ``component`` implements ``protocol`` (every member present, a valid loss kind)."""
    try:
        require(component, protocol, "")
    except CapabilityError:
        return False
    return True


def require(component: Any, protocol: type, who: str, loss_kinds: tuple[str, ...] = LOSS_KINDS) -> Any:
    """Return ``component`` if it implements ``protocol``; else raise :class:`CapabilityError`
    naming ``who`` needs it, the capability and the missing members. For a
    :class:`LinearModelLearner`, ``loss_kinds`` restricts the accepted ``loss_kind``."""
    name = getattr(component, "name", type(component).__name__)
    lacking = missing(component, protocol)
    if lacking:
        raise CapabilityError(
            f"{who}: learner {name!r} is not a {protocol.__name__} (missing: {', '.join(lacking)}); "
            f"see poisonbench.capabilities"
        )
    if protocol is LinearModelLearner and component.loss_kind not in loss_kinds:
        raise CapabilityError(
            f"{who}: learner {name!r} has loss_kind {component.loss_kind!r}; expected one of {', '.join(loss_kinds)}"
        )
    return component
