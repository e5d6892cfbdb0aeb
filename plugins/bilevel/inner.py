"""Inner problem of eq. 3: ``T`` steps of gradient descent on the eq.-6 objective, in torch.

Eq. 6 with ``L`` the **summed** (weighted) logistic loss, and one strength per layer
(``Λ = (λ_1 … λ_K)``, ``K = 1`` for logistic regression)::

    L'(w; Λ) = Σ_i s_i log(1 + exp(−y_i f(x_i; w))) + Σ_k (e^{λ_k}/2) ‖W_k‖²

Only weight matrices are penalised, never biases (eq. 6 writes ``‖w‖²``). Gradient descent runs
on ``J = L'/N`` with ``N = Σ_i s_i`` (same minimiser, step size independent of ``N``)::

    w_{t+1} = w_t − η ∇_w J(w_t; Λ),   t = 0 … T−1          (forward loop of Algorithm 2)

Why a sum: the paper's MNIST settings (η = 0.1, λ up to log 200, 512 training points) give a
stable step only if the penalty is weighed against the summed loss (``η e^λ/N ≈ 0.04``); against
a mean loss, ``|1 − η e^λ| = 19`` and gradient descent diverges. The outer objective is the same
``L`` on the validation set, ``A = Σ_j l_j`` (summed too): with the paper's α = β = 0.99 a mean
would move MNIST poisons by at most ~1e-3 per pixel and hyperiteration (measured), i.e. hardly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonbench.plugins.bilevel import require_torch

torch = require_torch()
F = torch.nn.functional

Tensor = Any  # torch.Tensor, kept loose so that type hints do not need torch at import time


@dataclass(frozen=True)
class Architecture:
    """A fully connected network ``sizes[0] × … × 1`` with leaky ReLU; ``(d, 1)`` is logistic regression.

    Parameters are a flat list ``[W_1, b_1, …, W_K, b_K]`` with ``W_k`` of shape (out, in)."""

    sizes: tuple[int, ...]
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.sizes)
        if len(sizes) < 2 or sizes[-1] != 1 or min(sizes) < 1:
            raise ValueError(f"architecture sizes: expected (d, h_1, …, 1) with positive widths, got {self.sizes}")
        object.__setattr__(self, "sizes", sizes)

    @classmethod
    def logistic(cls, d: int) -> Architecture:
        return cls((d, 1))

    @classmethod
    def mlp(cls, d: int, hidden: Sequence[int] = (128, 32), negative_slope: float = 0.01) -> Architecture:
        return cls((d, *hidden, 1), negative_slope)

    @property
    def n_layers(self) -> int:
        """Number of weight matrices = number of λ's."""
        return len(self.sizes) - 1

    @property
    def n_features(self) -> int:
        return self.sizes[0]

    def init(self, dtype: Any, device: Any, seed: int | None = 0) -> list[Tensor]:
        """``w⁽⁰⁾``: zeros for logistic regression; ``U(±1/√fan_in)`` per layer (torch's default) otherwise."""
        params = []
        gen = torch.Generator().manual_seed(int(seed or 0))
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            if self.n_layers == 1:
                W, b = torch.zeros(fan_out, fan_in, dtype=dtype), torch.zeros(fan_out, dtype=dtype)
            else:
                bound = 1.0 / np.sqrt(fan_in)
                W = (torch.rand(fan_out, fan_in, generator=gen, dtype=dtype) * 2 - 1) * bound
                b = (torch.rand(fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound
            params += [W.to(device), b.to(device)]
        return params

    def forward(self, params: Sequence[Tensor], X: Tensor) -> Tensor:
        """Decision values ``f(x; w)``, shape (n,)."""
        h = X
        for k in range(self.n_layers):
            h = h @ params[2 * k].T + params[2 * k + 1]
            if k < self.n_layers - 1:
                h = F.leaky_relu(h, self.negative_slope)
        return h[:, 0]

    def penalty(self, params: Sequence[Tensor], lam: Tensor) -> Tensor:
        """``Σ_k (e^{λ_k}/2) ‖W_k‖²`` (eq. 6, one λ per layer)."""
        return sum(0.5 * torch.exp(lam[k]) * (params[2 * k] ** 2).sum() for k in range(self.n_layers))


def logistic_loss(scores: Tensor, y: Tensor) -> Tensor:
    """Per-point ``log(1 + exp(−y f))``, computed stably."""
    return F.softplus(-y * scores)


@dataclass
class InnerProblem:
    """Clean training data, poison labels, validation data and the GD settings (η, T) of eq. 3.

    The poisoned training set is ``(X_tr, y_tr, s_tr) ∪ (X_p, y_p, 1)``; ``X_p`` is an argument of
    every method so that it can carry gradients."""

    arch: Architecture
    X_tr: Tensor
    y_tr: Tensor
    s_tr: Tensor
    X_val: Tensor
    y_val: Tensor
    y_p: Tensor
    lr: float
    steps: int

    @classmethod
    def from_numpy(
        cls,
        arch: Architecture,
        X_tr: np.ndarray,
        y_tr: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        y_p: np.ndarray | None = None,
        s_tr: np.ndarray | None = None,
        lr: float,
        steps: int,
        device: Any,
        dtype: Any,
    ) -> InnerProblem:
        """Move the arrays to ``device``/``dtype``; validate shapes, η > 0 and T ≥ 1."""
        if not (lr > 0 and np.isfinite(lr)):
            raise ValueError(f"inner learning rate η: expected a positive number, got {lr!r}")
        if int(steps) != steps or steps < 1:
            raise ValueError(f"inner steps T: expected a positive integer, got {steps!r}")
        d = arch.n_features
        for name, X in (("X_tr", X_tr), ("X_val", X_val)):
            if X.ndim != 2 or X.shape[1] != d:
                raise ValueError(f"{name}: expected shape (n, {d}), got {X.shape}")
        if len(y_val) == 0:
            raise ValueError("validation set: expected at least one point, got none")
        y_p = np.zeros(0) if y_p is None else np.asarray(y_p, dtype=np.float64)
        s_tr = np.ones(len(y_tr)) if s_tr is None else np.asarray(s_tr, dtype=np.float64)

        def t(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.array(a, dtype=np.float64), dtype=dtype, device=device)

        return cls(arch, t(X_tr), t(y_tr), t(s_tr), t(X_val), t(y_val), t(y_p), float(lr), int(steps))

    @property
    def device(self) -> Any:
        return self.X_tr.device

    @property
    def dtype(self) -> Any:
        return self.X_tr.dtype

    def tensor(self, a: Any) -> Tensor:
        """``a`` as a tensor on this problem's device and dtype."""
        return torch.as_tensor(np.array(a, dtype=np.float64), dtype=self.dtype, device=self.device)

    def training_set(self, X_p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(X, y, s)`` of ``D_tr ∪ D_p``; poisons have weight 1."""
        if X_p.shape != (len(self.y_p), self.arch.n_features):
            raise ValueError(f"X_p: expected shape {(len(self.y_p), self.arch.n_features)}, got {tuple(X_p.shape)}")
        X = torch.cat([self.X_tr, X_p])
        y = torch.cat([self.y_tr, self.y_p])
        s = torch.cat([self.s_tr, torch.ones_like(self.y_p)])
        return X, y, s

    def objective(self, params: Sequence[Tensor], X_p: Tensor, lam: Tensor) -> Tensor:
        """``J(w; Λ) = L'(w; Λ)/N`` on the poisoned training set (module docstring)."""
        X, y, s = self.training_set(X_p)
        return objective_on(self.arch, params, X, y, s, lam)

    def train(self, params0: Sequence[Tensor], X_p: Tensor, lam: Tensor, create_graph: bool = False) -> list[Tensor]:
        """``w_T`` after ``T`` GD steps from ``w⁽⁰⁾`` (eq. 3's inner problem).

        With ``create_graph`` the whole trajectory stays in the autograd graph, so ``w_T`` can be
        differentiated with respect to ``X_p`` and ``Λ`` (reverse mode through the stored
        trajectory, Algorithm 2); without it each step is detached (plain training)."""
        params = [p.detach().requires_grad_(True) for p in params0]
        with torch.enable_grad():
            for _ in range(self.steps):
                grads = torch.autograd.grad(self.objective(params, X_p, lam), params, create_graph=create_graph)
                if create_graph:
                    params = [p - self.lr * g for p, g in zip(params, grads)]
                else:
                    params = [(p - self.lr * g).detach().requires_grad_(True) for p, g in zip(params, grads)]
        return params if create_graph else [p.detach() for p in params]

    def outer(self, params: Sequence[Tensor]) -> Tensor:
        """``A(w) = L(D_val, w) = Σ_j log(1 + exp(−y_j f(x_j; w)))``: the *summed* validation loss
        (eq. 3 takes ``A = L``, summed as in eq. 6; module docstring)."""
        return logistic_loss(self.arch.forward(params, self.X_val), self.y_val).sum()


def objective_on(arch: Architecture, params: Sequence[Tensor], X: Tensor, y: Tensor, s: Tensor, lam: Tensor) -> Tensor:
    """``(1/Σs) [Σ_i s_i l_i + Σ_k (e^{λ_k}/2) ‖W_k‖²]`` (module docstring)."""
    loss = (s * logistic_loss(arch.forward(params, X), y)).sum()
    return (loss + arch.penalty(params, lam)) / s.sum()


def weight_norms(arch: Architecture, params: Sequence[Tensor]) -> list[float]:
    """``‖W_k‖²`` per layer (the paper's Fig. 2 d–f and Fig. 3 c)."""
    return [float((params[2 * k].detach() ** 2).sum()) for k in range(arch.n_layers)]
