"""The L2 strength λ of the RMD paper's eq. 6, for any learner that has one.

The paper's parametrisation is ``Σ_i s_i l_i + (e^λ/2)‖w‖²`` (the loss *summed*). An
:class:`~poisonbench.capabilities.UnrolledLearner` takes λ as is (one per layer); a
:class:`~poisonbench.capabilities.LinearModelLearner` (``J = (1/N)Σ s_i l_i + C_R R(θ)``,
``N = Σ s_i``) gets ``C_R = e^λ / N``, which makes ``N·J`` equal eq. 6 (with the bias penalised
too when ``regularise_bias``). Shared by the L2 defences and the RMD attack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonbench.capabilities import LinearModelLearner, UnrolledLearner, has, require

#: The upper λ bound of the RMD paper's experiments: log 200.
LOG_200 = float(np.log(200.0))


def is_lambda_native(learner: Any) -> bool:
    """True for learners parametrised by λ directly (:class:`~poisonbench.capabilities.UnrolledLearner`)."""
    return has(learner, UnrolledLearner)


def with_lambda(learner: Any, lam: Any, n_weight: float) -> Any:
    """``learner`` with L2 strength λ: ``with_lambda`` or ``C_R = e^λ / n_weight`` (module docstring)."""
    if is_lambda_native(learner):
        return learner.with_lambda(lam)
    require(learner, LinearModelLearner, "L2 strength λ")
    arr = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    if arr.size != 1:
        raise ValueError(f"lam: learner {learner.name!r} has one L2 strength, got {arr.size} values")
    return learner.with_regularisation(float(np.exp(arr[0])) / n_weight)


def lambda_of(learner: Any, n_weight: float) -> np.ndarray:
    """The learner's current λ (vector): its ``lam``, or ``log(C_R · n_weight)`` for a convex learner."""
    if is_lambda_native(learner):
        return np.asarray(learner.lam, dtype=np.float64)
    return np.array([np.log(learner.C_R * n_weight)])


def hyperparameters(learner: Any, lam: Any, n_weight: float) -> dict[str, float]:
    """``{"lambda": mean λ, "lambda_<k>": λ_k (if several), "C_R": … (convex learners)}``."""
    arr = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    out = {"lambda": float(arr.mean())}
    if arr.size > 1:
        out.update({f"lambda_{k}": float(v) for k, v in enumerate(arr)})
    if not is_lambda_native(learner):
        out["C_R"] = float(np.exp(arr[0]) / n_weight)
    return out
