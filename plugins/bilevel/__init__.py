"""Bilevel optimisation for the RMD paper (Carnerero-Cano et al.): inner training and hypergradients.

The learner of eq. 6 minimises ``L(D_tr, w) + (e^λ/2)‖w‖²`` by ``T`` steps of gradient descent
(the inner problem of eq. 3); :mod:`poisonbench.plugins.bilevel.inner` runs that training in torch and
:mod:`poisonbench.plugins.bilevel.hypergrad` differentiates the validation loss ``A(w_T)`` with respect to the
poison features ``X_p`` and λ: reverse mode (Algorithm 2), forward mode (Algorithm 3) and the
exact implicit-function hypergradient (eq. 4).

torch is an optional extra: this package module imports nothing heavy; the submodules import
torch through :func:`require_torch`, which names the extra to install when torch is missing.
"""

from __future__ import annotations

from typing import Any

TORCH_HINT = "pip install poisonbench[torch]"


def require_torch() -> Any:
    """Return the ``torch`` module, or raise ``ImportError`` naming the extra that provides it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"the torch learners, the RMD attack and the learned-L2 defence on torch learners need "
            f"torch, which is not installed: {TORCH_HINT}"
        ) from exc
    return torch


def resolve_device(device: str) -> Any:
    """``"auto"`` → CUDA when available, else CPU; any other string is passed to ``torch.device``."""
    torch = require_torch()
    if not isinstance(device, str):
        raise ValueError(f"device: expected a string such as 'auto', 'cpu' or 'cuda:0', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: {exc}; expected 'auto', 'cpu' or 'cuda[:k]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine; use 'auto' or 'cpu'")
    return dev


def resolve_dtype(dtype: str, device: Any) -> Any:
    """``"auto"`` → float64 on CPU (exact gradient checks), float32 on CUDA; else ``"float32"``/``"float64"``."""
    torch = require_torch()
    table = {"float32": torch.float32, "float64": torch.float64}
    if dtype == "auto":
        return torch.float64 if device.type == "cpu" else torch.float32
    if dtype not in table:
        raise ValueError(f"dtype: expected 'auto', 'float32' or 'float64', got {dtype!r}")
    return table[dtype]
