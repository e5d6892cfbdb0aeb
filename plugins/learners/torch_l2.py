"""Built-in learners ``torch-logistic`` and ``torch-mlp``: the RMD paper's eq.-6 learners, in torch.

Both minimise ``L'(w; Λ) = Σ_i s_i l_i + Σ_k (e^{λ_k}/2)‖W_k‖²`` (eq. 6; ``L`` is the *summed*
logistic loss, see :mod:`poisonbench.plugins.bilevel.inner` for why) by ``steps`` = T steps of full-batch
gradient descent with rate ``lr`` = η on ``L'/N`` from a fixed ``w⁽⁰⁾`` — the inner problem of
the paper's eq. 3, not an exact ERM solve. They implement
:class:`~poisonbench.capabilities.UnrolledLearner` (what RMD and learned λ differentiate through)
and the base :class:`~poisonbench.learner.Learner`, never
:class:`~poisonbench.capabilities.LinearModelLearner`: they have no ``C_R`` in eq. 1's sense.

- ``fit`` returns ``w_T``; ``warm_start`` is ignored, because ``w_T`` depends on ``w⁽⁰⁾`` by
  definition (the inner problem is "T steps from w⁽⁰⁾", not "the minimiser").
- The L2 strength is λ (``lam``, one per layer for the MLP): ``e^λ`` is the coefficient of
  ``‖w‖²/2`` against the *summed* loss (a convex learner's ``C_R``, against the mean loss, is
  ``e^λ / N`` with ``N = Σ_i s_i``: :mod:`poisonbench.plugins.l2_strength`). Biases are never
  penalised.
- ``torch-logistic`` returns a linear :class:`~poisonbench.learner.Model` and has ``loss_grad`` and
  ``regulariser_grad``; ``torch-mlp`` returns a :class:`NetworkModel` (a numpy
  :class:`~poisonbench.learner.Predictor`) and has neither (its parameters are not ``(w, b)``).

torch is imported only when a model is fitted (``pip install poisonbench[torch]``). Device:
``"auto"`` = CUDA when available, else CPU; dtype ``"auto"`` = float64 on CPU, float32 on CUDA.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, log_expit

from poisonbench import Param, hookimpl
from poisonbench.learner import Classifier, Model
from poisonbench.params import declare
from poisonbench.validation import check_binary_labels, check_matrix, check_weights


@dataclass(frozen=True)
class NetworkModel(Classifier):
    """A fitted fully connected leaky-ReLU network ``f(x) = W_K φ(… φ(W_1 x + b_1) …) + b_K`` (numpy)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    negative_slope: float = 0.01
    info: dict[str, Any] = field(default_factory=dict)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        h = check_matrix(X, "X", self.weights[0].shape[1])
        for k, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ W.T + b
            if k < len(self.weights) - 1:
                h = np.where(h >= 0, h, self.negative_slope * h)
        return h[:, 0]


class _TorchL2Learner:
    """Shared parameters and training loop of the torch learners."""

    name = ""

    def __init__(self, lam: Any, steps: int, lr: float, device: str, dtype: str, seed: int):
        self.steps, self.lr = int(steps), float(lr)
        self.device, self.dtype, self.seed = device, dtype, int(seed)
        self.lam = self._check_lam(lam)

    def _check_lam(self, lam: Any) -> np.ndarray:
        arr = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        if arr.ndim != 1 or arr.size not in (1, self.n_lambda) or not np.isfinite(arr).all():
            raise ValueError(
                f"lam: expected a finite number or {self.n_lambda} finite numbers (one per layer), got {lam!r}"
            )
        return np.broadcast_to(arr, (self.n_lambda,)).copy()

    @property
    def n_lambda(self) -> int:
        """Number of L2 strengths (weight matrices)."""
        raise NotImplementedError

    def architecture(self, d: int) -> Any:
        """The :class:`poisonbench.plugins.bilevel.inner.Architecture` of this learner on ``d`` features."""
        raise NotImplementedError

    def with_lambda(self, lam: Any) -> _TorchL2Learner:
        """A copy with L2 strength(s) λ (scalar = the same for every layer)."""
        out = copy.copy(self)
        out.lam = self._check_lam(lam)
        return out

    def torch_setup(self) -> tuple[Any, Any]:
        """``(torch.device, torch.dtype)`` resolved from ``device``/``dtype`` (imports torch)."""
        from poisonbench.plugins.bilevel import resolve_device, resolve_dtype

        dev = resolve_device(self.device)
        return dev, resolve_dtype(self.dtype, dev)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        warm_start: Any = None,
    ) -> Any:
        """``w_T``: ``steps`` GD steps on ``L'/N`` from this learner's ``w⁽⁰⁾`` (``warm_start`` is ignored)."""
        from poisonbench.plugins.bilevel import require_torch
        from poisonbench.plugins.bilevel.inner import InnerProblem, weight_norms

        torch = require_torch()

        X = check_matrix(X, "X")
        if X.shape[0] == 0:
            raise ValueError("X: expected at least one training point, got 0 rows")
        y = check_binary_labels(y, "y", X.shape[0])
        s = check_weights(sample_weight, X.shape[0])
        arch = self.architecture(X.shape[1])
        device, dtype = self.torch_setup()
        problem = InnerProblem.from_numpy(
            arch, X, y, X[:1], y[:1], s_tr=s, lr=self.lr, steps=self.steps, device=device, dtype=dtype
        )
        lam = problem.tensor(self.lam)
        X_p = problem.tensor(np.zeros((0, X.shape[1])))
        params = problem.train(arch.init(dtype, device, self.seed), X_p, lam)
        leaves = [p.requires_grad_(True) for p in params]
        J = problem.objective(leaves, X_p, lam)
        grad_norm = float(sum((g**2).sum() for g in torch.autograd.grad(J, leaves)) ** 0.5)
        info = {
            "objective": float(J.detach()),
            "grad_norm": grad_norm,
            "steps": self.steps,
            "lr": self.lr,
            "lambda": self.lam.tolist(),
            "weight_sq_norms": weight_norms(arch, params),
            "device": str(device),
        }
        arrays = [p.detach().cpu().numpy().astype(np.float64) for p in params]
        return self._wrap(arrays, info)

    def _wrap(self, arrays: list[np.ndarray], info: dict[str, Any]) -> Any:
        raise NotImplementedError

    def loss(self, model: Any, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-point logistic loss ``log(1 + exp(−y f(x)))``."""
        y = check_binary_labels(y, "y", np.asarray(X).shape[0])
        return -log_expit(y * model.decision_function(X))

    def objective(self, model: Any, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """``L'(w; Λ)/N`` — the function gradient descent minimises (module docstring)."""
        s = check_weights(sample_weight, np.asarray(X).shape[0])
        weights = model.weights if isinstance(model, NetworkModel) else (model.w,)
        penalty = sum(0.5 * np.exp(lk) * float(np.sum(W**2)) for lk, W in zip(self.lam, weights))
        return float((s @ self.loss(model, X, y) + penalty) / s.sum())


GD_PARAMETERS = {
    "lam": Param((float, list), "L2 strength λ of eq. 6 (one, or one per layer)"),
    "steps": Param(int, "T, gradient-descent steps", low=1),
    "lr": Param(float, "η, step size", low=0, low_open=True),
    "device": Param(str, "torch device: auto, cpu, cuda, cuda:<k>"),
    "dtype": Param(str, "torch dtype", choices=("auto", "float32", "float64")),
    "seed": Param(int, "seed of the initialisation w⁽⁰⁾", low=0),
}


def _check_hidden(hidden: Any) -> None:
    widths = list(np.atleast_1d(hidden))
    if not widths or any(isinstance(h, bool) or int(h) != h or h < 1 for h in widths):
        raise ValueError(f"expected a non-empty list of positive layer widths, got {hidden!r}")


@declare(GD_PARAMETERS)
class TorchLogisticRegression(_TorchL2Learner):
    """Logistic regression trained by T steps of gradient descent on L + (e^λ/2)‖w‖² (RMD paper eq. 6), in torch."""

    name = "torch-logistic"

    def __init__(
        self,
        lam: float = 0.0,
        steps: int = 150,
        lr: float = 0.1,
        device: str = "auto",
        dtype: str = "auto",
        seed: int = 0,
    ):
        super().__init__(lam, steps, lr, device, dtype, seed)

    def __repr__(self) -> str:
        return f"TorchLogisticRegression(lam={float(self.lam[0])!r}, steps={self.steps}, lr={self.lr!r}, device={self.device!r})"

    @property
    def n_lambda(self) -> int:
        return 1

    def architecture(self, d: int) -> Any:
        from poisonbench.plugins.bilevel.inner import Architecture

        return Architecture.logistic(d)

    def _wrap(self, arrays: list[np.ndarray], info: dict[str, Any]) -> Model:
        return Model(arrays[0][0], float(arrays[1][0]), info)

    def loss_grad(self, model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-point gradient of the logistic loss with respect to ``(w, b)``, shape (n, d + 1)."""
        X = check_matrix(X, "X", model.w.shape[0])
        y = check_binary_labels(y, "y", X.shape[0])
        coef = -y * expit(-y * (X @ model.w + model.b))
        return np.hstack([coef[:, None] * X, coef[:, None]])

    def regulariser(self, model: Model) -> float:
        """``‖w‖²/2`` (the bias is not penalised)."""
        return 0.5 * float(model.w @ model.w)

    def regulariser_grad(self, model: Model) -> np.ndarray:
        return np.append(model.w, 0.0)


@declare(
    {
        **GD_PARAMETERS,
        "hidden": Param((list, tuple), "widths of the hidden layers", check=_check_hidden),
        "negative_slope": Param(float, "leaky-ReLU slope", low=0),
    }
)
class TorchMLP(_TorchL2Learner):
    """MLP d × 128 × 32 × 1 (leaky ReLU, one λ per layer) trained by T steps of gradient descent (RMD paper §5.2)."""

    name = "torch-mlp"

    def __init__(
        self,
        lam: Any = 0.0,
        hidden: list = (128, 32),
        negative_slope: float = 0.01,
        steps: int = 600,
        lr: float = 0.01,
        device: str = "auto",
        dtype: str = "auto",
        seed: int = 0,
    ):
        self.hidden = tuple(int(h) for h in np.atleast_1d(hidden))
        self.negative_slope = float(negative_slope)
        super().__init__(lam, steps, lr, device, dtype, seed)

    def __repr__(self) -> str:
        return (
            f"TorchMLP(lam={self.lam.tolist()!r}, hidden={list(self.hidden)!r}, steps={self.steps}, "
            f"lr={self.lr!r}, device={self.device!r}, seed={self.seed})"
        )

    @property
    def n_lambda(self) -> int:
        return len(self.hidden) + 1

    def architecture(self, d: int) -> Any:
        from poisonbench.plugins.bilevel.inner import Architecture

        return Architecture.mlp(d, self.hidden, self.negative_slope)

    def _wrap(self, arrays: list[np.ndarray], info: dict[str, Any]) -> NetworkModel:
        return NetworkModel(tuple(arrays[0::2]), tuple(arrays[1::2]), self.negative_slope, info)


@hookimpl
def register_learners(register):
    register(TorchLogisticRegression)
    register(TorchMLP)
