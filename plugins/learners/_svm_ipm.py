"""The SVM's primal QP by an interior-point method (Clarabel): the fallback that converges regardless.

Dual coordinate descent converges linearly at a rate set by the conditioning of the data, so on
unscaled features (a column 1000× the others, raw UCI breast cancer) it can need millions of
passes. An interior-point method's iteration count barely depends on the scaling. In the
solver's units (the MTP paper's eq. 1 divided by C_R, ``C = 1 / (C_R Σ s_i)``)::

    min_{w, b, ξ}  ½‖w‖² (+ ½b² when the bias is regularised) + C Σ_i s_i ξ_i
    s.t.           ξ_i ≥ 1 − y_i (w·x_i + b),   ξ_i ≥ 0.

The multipliers of the first constraints are the SVM's dual variables α ∈ [0, C s_i]
(w = Σ α_i y_i x_i, and Σ α_i y_i = b or 0). They seed a warm dual coordinate descent, whose
certificate (the duality gap computed by our own code) is what the fit reports: Clarabel's own
stopping test is never taken as the certificate.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def svm_dual_by_ipm(
    X: np.ndarray, y: np.ndarray, s: np.ndarray, C: float, regularise_bias: bool
) -> tuple[np.ndarray, float]:
    """``(α, b)`` of the QP above (α clipped into ``[0, C s_i]``), from Clarabel at tight tolerances.

    Raises ``RuntimeError`` when Clarabel reports anything but (almost) solved."""
    import clarabel

    n, d = X.shape
    bias_weight = 1.0 if regularise_bias else 0.0
    # columns scaled to unit size (w = D v, so ½‖w‖² = ½ Σ D_j² v_j²): the same problem with the
    # same multipliers, in 3–4× fewer interior-point iterations on raw data
    top = np.abs(X).max(axis=0)
    D = np.where(top > 0, 1.0 / np.where(top > 0, top, 1.0), 1.0)
    P = sp.diags(np.r_[D**2, bias_weight, np.zeros(n)], format="csc")
    q = np.r_[np.zeros(d + 1), C * s]
    yX = sp.csr_matrix(-(y[:, None] * (X * D)))
    margin_rows = sp.hstack([yX, sp.csr_matrix(-y[:, None]), -sp.identity(n, format="csr")])
    slack_rows = sp.hstack([sp.csr_matrix((n, d + 1)), -sp.identity(n, format="csr")])
    A = sp.vstack([margin_rows, slack_rows]).tocsc()
    rhs = np.r_[-np.ones(n), np.zeros(n)]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-12
    settings.tol_feas = 1e-12
    settings.max_iter = 400
    solution = clarabel.DefaultSolver(P, q, A, rhs, [clarabel.NonnegativeConeT(2 * n)], settings).solve()
    status = str(solution.status)
    if "Solved" not in status:
        raise RuntimeError(f"svm: the interior-point fallback (Clarabel) ended with status {status}")
    w, b = D * np.asarray(solution.x[:d]), float(solution.x[d])
    return crossover(np.asarray(solution.z[:n], dtype=np.float64), y * (X @ w + b), C * s), b


def crossover(alpha: np.ndarray, margins: np.ndarray, ub: np.ndarray, band: float = 1e-6) -> np.ndarray:
    """Snap interior-point multipliers to the bound their margin implies (as a simplex crossover).

    An interior point keeps every α strictly inside ``(0, C s_i)``; at the optimum a point with
    margin ``y f(x) > 1`` has α = 0 and one with margin < 1 has α = C s_i (complementary
    slackness). Points within ``band`` of the margin stay free, for the exact free-set Newton
    step of the coordinate-descent polish."""
    out = np.clip(alpha, 0.0, ub)
    out[margins > 1.0 + band] = 0.0
    low = margins < 1.0 - band
    out[low] = ub[low]
    return out
