"""Exact linear SVM by dual coordinate descent (Hsieh et al. 2008, Algorithm 1 with shrinking).

With ``C = 1 / (C_R Σ s)`` and ``C_i = C s_i`` the learner objective J (MTP eq. 1) divided by
``C_R`` is liblinear's primal; with the bias as an extra constant feature ``x̃_i = (x_i, 1)``::

    P(θ) = ½‖θ‖² + Σ_i C_i max(0, 1 − y_i θ·x̃_i)
    D(α) = Σ_i α_i − ½‖Σ_i α_i y_i x̃_i‖²,      0 ≤ α_i ≤ C_i,      θ(α) = Σ_i α_i y_i x̃_i

and ``P(θ(α)) − D(α) = Σ_i C_i max(0, −G_i) + α_i G_i ≥ 0`` with ``G_i = y_i θ·x̃_i − 1``.

Each round works on candidate rows (all at first; later those not settled at a bound): a few
coordinate-descent passes, then Newton steps of an active-set method on the free coordinates
``0 < α_i < C_i`` (a small dense Cholesky solve: exact once the free set is right, where plain
coordinate descent crawls on correlated rows), repeated until the candidates' share of the gap
is negligible; then one certificate pass over all rows computes every margin ``x_i · w`` and, in
the same read of X, ``w(α) = Σ_i α_i y_i x_i`` afresh. The certificate is ``P(w) − D(α)`` with
``D`` evaluated at that fresh ``w(α)``: an upper minus a lower bound on the optimum, valid
whatever rounding or a stale warm start did to the running ``w``.

When the bias is not regularised the dual gains the equality ``Σ α_i y_i = 0``. We solve it by
the method of multipliers on that constraint, which is the proximal-point method on the bias:
subproblem k minimises ``P(w, b) + (b − b_k)² / (2ρ)``, an SVM with a regularised bias feature
of value ``√ρ`` centred at ``b_k``, solved by the same coordinate descent; ``b_{k+1}`` is its
bias. The active-set step there solves the bordered system that also restores the equality.
The certificate uses the exact best bias for ``w`` (a weighted median, O(n log n)) and the
dual value of ``α`` projected onto ``Σ α_i y_i = 0``.

Warm start: α is carried between fits as ``β_i = α_i / C ∈ [0, s_i]`` (independent of C_R and
of Σ s), with ``Σ β_i y_i x_i`` and the final margins. Rows appended get ``β = 0``; weights that
grew keep β feasible; β is clipped to the new ``[0, s_i]`` otherwise. A re-fit after one added
point or raised weight then costs one read of X (the certificate) plus work on the few hundred
rows near the margin. Any start is correct: the fit stops only on the certified gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs

from poisonbench.plugins.learners._jit import njit
from poisonbench.plugins.margin_screen import MarginScreen, RowSketch


@njit
def _dcd_epochs(X, y, qd, ub, alpha, w, bias, c2, eps, max_epochs, rows, seed, shrink):  # pragma: no cover
    """Liblinear's L1-loss dual CD with shrinking on ``rows``; updates α, w, bias[0] in place.

    The first pass already sets aside rows at a bound whose gradient is beyond ``±shrink``
    (liblinear: ``shrink = ∞``). Stops when every projected gradient of the rows still active
    has ``|PG| ≤ eps`` or after ``max_epochs`` passes; returns the number of passes. There is no
    final pass over the set-aside rows: the caller's duality-gap certificate checks every row."""
    d = X.shape[1]
    index = rows.copy()
    active = rows.shape[0]
    pg_max_old = shrink
    pg_min_old = -shrink
    b = bias[0]
    state = seed % 2147483648
    epochs = 0
    while epochs < max_epochs:
        pg_max_new = -np.inf
        pg_min_new = np.inf
        for j in range(active):  # Fisher-Yates shuffle with a local LCG (no global RNG state)
            state = (1103515245 * state + 12345) % 2147483648
            k = j + state % (active - j)
            tmp = index[j]
            index[j] = index[k]
            index[k] = tmp
        s = 0
        while s < active:
            i = index[s]
            yi = y[i]
            g = yi * (np.dot(X[i], w) + b) - 1.0
            c = ub[i]
            a = alpha[i]
            pg = 0.0
            if a == 0.0:
                if g > pg_max_old:
                    active -= 1
                    index[s] = index[active]
                    index[active] = i
                    continue
                if g < 0.0:
                    pg = g
            elif a == c:
                if g < pg_min_old:
                    active -= 1
                    index[s] = index[active]
                    index[active] = i
                    continue
                if g > 0.0:
                    pg = g
            else:
                pg = g
            if pg > pg_max_new:
                pg_max_new = pg
            if pg < pg_min_new:
                pg_min_new = pg
            if pg != 0.0:
                a_new = min(max(a - g / qd[i], 0.0), c)
                delta = (a_new - a) * yi
                if delta != 0.0:
                    alpha[i] = a_new
                    for j in range(d):
                        w[j] += delta * X[i, j]
                    b += delta * c2
            s += 1
        epochs += 1
        if max(pg_max_new, -pg_min_new) <= eps:
            break
        pg_max_old = pg_max_new if pg_max_new > 0.0 else np.inf
        pg_min_old = pg_min_new if pg_min_new < 0.0 else -np.inf
    bias[0] = b
    return epochs


@njit
def _combine_rows(X, coef, rows):  # pragma: no cover - compiled
    """``Σ_{i ∈ rows} coef_i x_i`` (``Xᵀ coef`` touching only the rows with nonzero coef)."""
    d = X.shape[1]
    out = np.zeros(d)
    for i in rows:
        c = coef[i]
        if c != 0.0:
            for j in range(d):
                out[j] += c * X[i, j]
    return out


@njit(reassociate=True)
def _certificate_pass(X, w, coef, margins):  # pragma: no cover - compiled
    """``margins_i = x_i · w`` for every row, and returns ``Σ_i coef_i x_i``: one read of X.

    Rows go in blocks of four, so that four independent sums share each load of ``w`` (a single
    running sum would wait on its own additions; this keeps the pass as fast as BLAS ``X @ w``)."""
    n, d = X.shape
    out = np.zeros(d)
    top = n - n % 4
    for i in range(0, top, 4):
        s0 = s1 = s2 = s3 = 0.0
        for j in range(d):
            wj = w[j]
            s0 += X[i, j] * wj
            s1 += X[i + 1, j] * wj
            s2 += X[i + 2, j] * wj
            s3 += X[i + 3, j] * wj
        margins[i] = s0
        margins[i + 1] = s1
        margins[i + 2] = s2
        margins[i + 3] = s3
        c0, c1, c2, c3 = coef[i], coef[i + 1], coef[i + 2], coef[i + 3]
        if c0 != 0.0 or c1 != 0.0 or c2 != 0.0 or c3 != 0.0:
            for j in range(d):
                out[j] += c0 * X[i, j] + c1 * X[i + 1, j] + c2 * X[i + 2, j] + c3 * X[i + 3, j]
    for i in range(top, n):
        s = 0.0
        for j in range(d):
            s += X[i, j] * w[j]
        margins[i] = s
        c = coef[i]
        if c != 0.0:
            for j in range(d):
                out[j] += c * X[i, j]
    return out


@njit(reassociate=True)
def _row_margins(X, w, rows, margins):  # pragma: no cover - compiled
    """``margins_i = x_i · w`` for ``i ∈ rows`` (the other entries are left as they are)."""
    d = X.shape[1]
    for i in rows:
        s = 0.0
        for j in range(d):
            s += X[i, j] * w[j]
        margins[i] = s


@njit(reassociate=True)
def _fill_sqnorms(X, sqn, rows):  # pragma: no cover - compiled
    """``sqn_i = ‖x_i‖²`` for the ``i ∈ rows`` where ``sqn_i`` is NaN (not yet known)."""
    d = X.shape[1]
    for i in rows:
        if sqn[i] != sqn[i]:
            s = 0.0
            for j in range(d):
                s += X[i, j] * X[i, j]
            sqn[i] = s


@dataclass(frozen=True)
class DualState:
    """Warm-start state kept in ``Model.state`` by the SVM.

    ``beta`` holds ``α_i / C`` (in ``[0, s_i]``), ``margins`` the final ``y_i f(x_i)``, ``w`` the
    weights ``Σ_i β_i y_i x_i`` of β (so ``w(α) = C w``) and ``C`` the C of that fit: with the same
    rows and α scaled by ``C_new / C``, a re-fit starts at weights ``C_new w`` and margins
    ``(C_new / C) · margins``, which tells it which old rows are settled at a bound."""

    beta: np.ndarray
    margins: np.ndarray
    w: np.ndarray
    C: float
    screen: MarginScreen | None = None

    def __getstate__(self) -> dict:
        """Pickled without the screen (it holds a view of X, and a copy of X elsewhere is
        not the memory it may trust)."""
        return {**self.__dict__, "screen": None}

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


@dataclass(frozen=True)
class SVMSolution:
    w: np.ndarray
    b: float
    state: DualState
    info: dict


def best_bias(margins: np.ndarray, y: np.ndarray, ub: np.ndarray) -> float:
    """Exact ``argmin_b Σ_i ub_i max(0, 1 − y_i (m_i + b))``, a weighted median of the kinks.

    The slope at ``b`` is ``−Σ_{y=+1, t_i>b} ub_i + Σ_{y=−1, t_i<b} ub_i`` with kinks
    ``t_i = y_i − m_i``; it rises by ``ub_i`` at each kink, so the minimiser is the first kink
    where the cumulative weight reaches the total positive weight."""
    keep = ub > 0
    t = (y - margins)[keep]
    u = ub[keep]
    order = np.argsort(t, kind="stable")
    cum = np.cumsum(u[order])
    w_pos = float(u[y[keep] > 0].sum())
    k = min(int(np.searchsorted(cum, w_pos * (1 - 1e-15))), len(t) - 1)
    return float(t[order[k]])


def solve_svm(
    X: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    sqn: np.ndarray | None,
    C_R: float,
    regularise_bias: bool,
    tol: float,
    max_iter: int,
    warm: DualState | None = None,
    b0: float = 0.0,
    seed: int = 0,
) -> SVMSolution:
    """Minimise ``J = (1/Σs) Σ s_i hinge_i + C_R R(θ)`` until ``(P − D) / P ≤ tol``.

    ``X`` must be C-contiguous float64, ``y`` in {−1, +1}, ``s ≥ 0`` with a positive sum (the
    caller validates them). ``sqn`` holds the squared row norms of a finite X, or is None when X
    has not been checked for finiteness: then the norms of the rows the solver visits are computed
    when first needed, and every row is checked by the certificate pass (a non-finite entry makes
    its margin non-finite; :func:`poisonbench.validation.check_matrix` then raises ValueError).
    ``max_iter`` bounds the total number of coordinate-descent passes. ``b0`` centres the first
    proximal step when the bias is not regularised.

    Each round solves the problem restricted to its candidate rows (the others held at their
    bound) and ends with one certificate pass over all rows; the next round visits only rows
    that are not settled at a bound by more than ``_SHRINK_WARM``. A warm fit's first round
    visits the rows within ``_BAND_WARM`` of the margin by the margins predicted from the
    previous fit, and starts from its stored weights (both exact when its rows are a prefix of
    these; otherwise the certificate catches what the prediction missed, at the cost of a
    round)."""
    n = X.shape[0]
    C = 1.0 / (C_R * float(s.sum()))
    ub = C * s
    rows = np.flatnonzero(s > 0).astype(np.int64)
    alpha = np.zeros(n)
    w = np.zeros(X.shape[1])
    shrink = np.inf
    active = rows
    if sqn is None:
        sqn = np.full(n, np.nan)
    screen = None
    if warm is not None and regularise_bias and warm.screen is not None and warm.screen.covers(X, y):
        screen = warm.screen
        sqn[: screen.n] = screen.sqnorms
    if warm is not None:
        m = min(warm.beta.shape[0], n)
        alpha[:m] = C * np.clip(warm.beta[:m], 0.0, s[:m])
        shrink = _SHRINK_WARM
        if regularise_bias:
            predicted = np.full(n, -1.0)
            predicted[:m] = (C / warm.C) * warm.margins[:m] - 1.0
            active = _candidates(predicted, alpha, ub, rows, _BAND_WARM)
            consistent = m == warm.beta.shape[0] and not np.any(warm.beta > s[:m]) and warm.w.shape == w.shape
            if consistent:
                w = C * warm.w
            else:
                _checked_sqnorms(X, sqn, rows[alpha[rows] > 0])
                w = _combine_rows(X, alpha * y, rows)
    problem = _Dual(X, y, ub, sqn, rows, tol, max_iter, seed, s, C)
    if regularise_bias:
        res = _solve_regularised(problem, alpha, w, active, shrink, screen)
    else:
        _checked_sqnorms(X, sqn, np.arange(n))
        res = _solve_free_bias(problem, alpha, shrink, b0)
    w, b, alpha, g, w_alpha = res.w, res.b, res.alpha, res.g, res.w_alpha
    primal, gap = res.primal, res.gap
    if regularise_bias and res.full_pass is not None and not X.flags.writeable and X.base is not None:
        screen = _screen_after_pass(problem, alpha, res.full_pass, w_alpha, screen)
    info = {
        "solver": "dual-cd",
        "objective": C_R * primal,
        "duality_gap": C_R * gap,
        "relative_gap": gap / primal if primal > 0 else 0.0,
        "iterations": res.epochs,
        "rounds": res.rounds,
        "converged": bool(gap <= tol * primal),
        "tol": tol,
        "screened_certificate": res.full_pass is None,
    }
    beta = np.where(alpha >= ub, s, alpha / C)  # exactly s at the bound, so C' β = C' s there next time
    return SVMSolution(w, b, DualState(beta, g + 1.0, w_alpha / C, C, screen), info)


def _screen_after_pass(
    p: _Dual,
    alpha: np.ndarray,
    full_pass: tuple[np.ndarray, np.ndarray],
    w_alpha: np.ndarray,
    previous: MarginScreen | None,
) -> MarginScreen:
    """The screen of the last full certificate pass (margins ``x_i·w`` at that pass's ``w``), in
    β units (``w_β = w / C``, so that it serves later fits whatever their C): A = the rows at
    their upper bound ``α_i = C s_i``, coefficients ``s_i`` and ``v_A = Σ_A s_i y_i x_i``, which
    is the final ``w(α)`` less its free rows, divided by C (a read of the free rows only).

    After a cold fit the screen uses plain Cauchy–Schwarz radii; a warm fit that still needed a
    full pass (the caller re-fits repeatedly, as MTP does) builds the randomised row sketch once
    (about twenty reads of X), and later screens of the same rows keep it."""
    X, y, ub, sqn, s, C = p.X, p.y, p.ub, p.sqn, p.s, p.C
    margins, w_pass = full_pass
    _checked_sqnorms(X, sqn, np.arange(X.shape[0]))
    at_upper = (alpha >= ub) & (ub > 0)
    free = np.flatnonzero((alpha > 0) & ~at_upper)
    v_A = (w_alpha - _combine_rows(X, alpha * y, free)) / C
    if previous is None:
        sketch = RowSketch.plain(X, sqn)
    elif previous.sketch.k == 0:
        sketch = RowSketch.randomised(X, seed=p.seed)
    else:
        sketch = previous.sketch
    return MarginScreen(X, y, w_pass / C, margins / C, at_upper, s, v_A, sketch)


_MAX_FREE = 500
_EPOCHS_PER_ROUND = 30
_MAX_ACTIVE_SET_STEPS = 10
_EPS_START = 1e-3
_EPS_FLOOR = 1e-13
_SHRINK_WARM = 0.1
_INNER_SHARE = 0.25
_BAND_WARM = 0.01


def _next_eps(eps: float, gap: float, target: float) -> float:
    factor = float(np.clip(0.5 * target / gap, 1e-3, 0.1)) if gap > 0 else 0.1
    return max(eps * factor, _EPS_FLOOR)


def _pinv_solve(M: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Minimum-norm least-squares solution of ``M x = r`` for symmetric ``M`` (eigenvalues below
    ``1e-12 · max|λ|`` dropped)."""
    vals, vecs = np.linalg.eigh(M)
    keep = np.abs(vals) > np.abs(vals).max() * 1e-12
    return vecs[:, keep] @ ((vecs[:, keep].T @ r) / vals[keep])


def _psd_solve(Q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``(Q + δI)⁻¹ r`` for a positive semi-definite ``Q`` by Cholesky, ``δ = 1e-12 · max Q_ii``.

    The tiny shift keeps singular ``Q`` (duplicated rows) factorisable and leaves the step a
    descent direction along which the dual falls up to the full step; should the factorisation
    still fail, the pseudo-inverse solve is used."""
    shifted = Q + (1e-12 * float(np.abs(np.diag(Q)).max())) * np.eye(Q.shape[0])
    factor, info = dpotrf(shifted, lower=1)
    if info != 0:
        return _pinv_solve(Q, r)
    return dpotrs(factor, r, lower=1)[0]


def _free_set_step(X, y, alpha, ub, w, b, c2, balance):
    """Minimise the dual over its free coordinates ``0 < α_i < C_i`` (the others fixed) by
    Newton steps of an active-set method; returns the updated ``(w, b)``.

    On the free set F the optimum solves ``Q_FF Δ = 1 − y_F ⊙ f(x_F)`` with
    ``Q_FF = (y yᵀ) ⊙ (X_F X_Fᵀ + c²)`` (Cholesky with a tiny shift; see :func:`_psd_solve`).
    The step clipped to the box is taken when it lowers the dual (``½ dᵀQd − rᵀd < 0``); else the
    step cut back at the first coordinate to reach its bound (along Δ the quadratic decreases up
    to the full step). With ``balance`` (free bias, c = 0) the bordered system also restores
    ``Σ α_i y_i = 0`` and gives the bias change as its multiplier (pseudo-inverse solve); then
    only cut-back steps. Coordinates only leave F, so ``Q`` and the residuals ``r`` are formed
    once (``r ← r − Q Δ``) and ``w`` is updated once at the end."""
    free = np.flatnonzero((alpha > 0.0) & (alpha < ub))
    if free.size == 0 or free.size > _MAX_FREE:
        return w, b
    XF = X[free]
    yF = y[free]
    Q_all = (XF @ XF.T + c2) * np.outer(yF, yF)
    r_all = 1.0 - yF * (XF @ w + b)
    start = alpha[free]
    keep = np.arange(free.size)
    for _ in range(_MAX_ACTIVE_SET_STEPS):
        Q = Q_all[np.ix_(keep, keep)]
        r = r_all[keep]
        idx = free[keep]
        if balance:
            yk = yF[keep]
            bordered = np.block([[Q, yk[:, None]], [yk[None, :], np.zeros((1, 1))]])
            delta = _pinv_solve(bordered, np.append(r, -float(alpha @ y)))
            db = float(delta[-1])
            delta = delta[: keep.size]
        else:
            delta = _psd_solve(Q, r)
            db = 0.0
        aF = alpha[idx]
        ubF = ub[idx]
        new = np.clip(aF + delta, 0.0, ubF)
        step = new - aF
        full = balance is False and (0.5 * step @ (Q @ step) - r @ step < 0)
        if not full:
            room = np.where(delta > 0, ubF - aF, np.where(delta < 0, -aF, np.inf))
            with np.errstate(divide="ignore", invalid="ignore"):
                limits = np.where(delta != 0, room / delta, np.inf)
            hit = int(np.argmin(limits))
            t = min(1.0, float(limits[hit]))
            new = np.clip(aF + t * delta, 0.0, ubF)
            if t < 1.0:
                new[hit] = 0.0 if delta[hit] < 0 else ubF[hit]
            full = t >= 1.0
            db *= t
        change = new - aF
        alpha[idx] = new
        r_all -= Q_all[:, keep] @ change + yF * db
        b = b + c2 * float(change @ yF[keep]) + db
        if full and np.array_equal(new, aF + delta):
            break
        keep = keep[(new > 0.0) & (new < ubF)]
        if keep.size == 0:
            break
    return w + XF.T @ ((alpha[free] - start) * yF), b


def _max_violation(g: np.ndarray, alpha: np.ndarray, ub: np.ndarray, rows: np.ndarray) -> float:
    """``max_i |PG_i|``, the largest projected-gradient violation of the box KKT conditions."""
    g, a, u = g[rows], alpha[rows], ub[rows]
    pg = np.where(a <= 0.0, np.minimum(g, 0.0), np.where(a >= u, np.maximum(g, 0.0), g))
    return float(np.abs(pg).max())


def _candidates(g: np.ndarray, alpha: np.ndarray, ub: np.ndarray, rows: np.ndarray, margin: float) -> np.ndarray:
    """Rows whose status may change soon: all but those at a bound with a gradient beyond
    ``±margin`` on the side the bound holds (α = 0 with G > margin, α = C with G < −margin)."""
    g, a = g[rows], alpha[rows]
    settled = ((a <= 0.0) & (g > margin)) | ((a >= ub[rows]) & (g < -margin))
    return rows[~settled]


def _checked_sqnorms(X: np.ndarray, sqn: np.ndarray, rows: np.ndarray) -> None:
    """Fill the unknown ``sqn_i = ‖x_i‖²`` of ``rows``; ValueError when one of them is not finite."""
    _fill_sqnorms(X, sqn, rows)
    if not np.isfinite(sqn[rows]).all():
        _check_finite(X)


def _check_finite(X: np.ndarray) -> None:
    """ValueError (naming NaN or inf) unless X is finite; a finite X whose norms or margins
    overflowed passes."""
    from poisonbench.validation import check_matrix

    check_matrix(X, "X")


@dataclass(frozen=True)
class _Dual:
    """One SVM dual in the solver's units: rows ``X``, labels ``y``, box ``0 ≤ α ≤ ub``, the
    squared row norms ``sqn`` (NaN where not yet computed), the rows with positive weight, the
    relative-gap target ``tol``, the pass limit, the seed of the coordinate order, and the
    weights ``s`` and ``C`` with ``ub = C s``."""

    X: np.ndarray
    y: np.ndarray
    ub: np.ndarray
    sqn: np.ndarray
    rows: np.ndarray
    tol: float
    max_iter: int
    seed: int
    s: np.ndarray
    C: float


@dataclass(frozen=True)
class _DualSolution:
    """The end of a solve: weights ``w`` and bias ``b`` of the primal iterate, the dual ``alpha``,
    the dual gradient ``g = y f(x) − 1``, the weights ``w(α)`` of α, and the certificate."""

    w: np.ndarray
    b: float
    alpha: np.ndarray
    g: np.ndarray
    w_alpha: np.ndarray
    primal: float
    gap: float
    epochs: int
    rounds: int
    full_pass: tuple[np.ndarray, np.ndarray] | None = None


def _solve_regularised(
    p: _Dual, alpha: np.ndarray, w: np.ndarray, active: np.ndarray, shrink: float, screen: MarginScreen | None
) -> _DualSolution:
    """Bias regularised (folded into w as a constant feature): rounds of coordinate descent on
    ``active`` with a free-set Newton step, each ending with a certificate: the screened one
    (:func:`_screened_certificate`) when a screen covers X and answers within ``n / 8`` rows read,
    else a pass over all rows."""
    X, y, ub, sqn, rows, tol, max_iter, seed = p.X, p.y, p.ub, p.sqn, p.rows, p.tol, p.max_iter, p.seed
    n = X.shape[0]
    bias = np.array([float(alpha @ y)])
    margins = np.empty(n)
    g = np.empty(n)
    epochs = rounds = 0
    eps = _EPS_START
    best = np.inf
    full_pass = None
    while True:
        _checked_sqnorms(X, sqn, active)
        qd = sqn + 1.0
        restricted = active.size < rows.size
        best_inner = np.inf
        while True:  # rows outside `active` stay at their bound; their share of the gap is 0
            budget = min(_EPOCHS_PER_ROUND, max_iter - epochs)
            ran = _dcd_epochs(X, y, qd, ub, alpha, w, bias, 1.0, eps, budget, active, seed + epochs, shrink)
            epochs += ran
            shrink = np.inf
            w, b = _free_set_step(X, y, alpha, ub, w, float(bias[0]), 1.0, False)
            bias[0] = b
            if not restricted or epochs >= max_iter:
                break
            _row_margins(X, w, active, margins)
            g[active] = y[active] * (margins[active] + b) - 1.0
            part = _gap_terms(g, alpha, ub, active)
            dual = float(alpha.sum()) - 0.5 * (w @ w + b * b)
            if part <= _INNER_SHARE * tol * dual or (eps == _EPS_FLOOR and part >= best_inner):
                break
            if ran < budget and _max_violation(g, alpha, ub, active) <= eps:
                best_inner = min(best_inner, part)
                eps = _next_eps(eps, part, _INNER_SHARE * tol * dual)
        coef = alpha * y
        b_alpha = float(coef.sum())
        rounds += 1
        cert = None if screen is None else _screened_certificate(p, screen, alpha, w, b, max_rows=n // 8)
        if cert is None:
            screen = None
            w_alpha = _certificate_pass(X, w, coef, margins)
            if not np.isfinite(margins).all():
                _check_finite(X)
            full_pass = (margins.copy(), w.copy())
            g = y * (margins + b) - 1.0
            primal = 0.5 * (w @ w + b * b) + float(ub @ np.maximum(0.0, -g))
        else:
            g, w_alpha, primal = cert
        dual = float(alpha.sum()) - 0.5 * (w_alpha @ w_alpha + b_alpha * b_alpha)
        gap = max(primal - dual, 0.0)
        if gap <= tol * primal or epochs >= max_iter or (eps == _EPS_FLOOR and gap >= best):
            return _DualSolution(w, b, alpha, g, w_alpha, primal, gap, epochs, rounds, full_pass)
        if _max_violation(g, alpha, ub, rows) <= eps:
            best = min(best, gap)
            eps = _next_eps(eps, gap, tol * primal)
        active = _candidates(g, alpha, ub, rows, _SHRINK_WARM)
        w = w_alpha
        bias[0] = b_alpha


def _screened_certificate(
    p: _Dual, screen: MarginScreen, alpha: np.ndarray, w: np.ndarray, b: float, max_rows: int
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(G, w(α), P(w, b))`` reading only the rows the screen cannot place (issue #17), or None
    when that would be more than ``max_rows`` rows.

    In β units the margin level of row i is ``y_i x_i·w_β = ℓ_i = (1 − y_i b) / C``. A row the
    screen places surely below it with ``α_i = C_i``, or surely above with ``α_i = 0``, adds
    exactly 0 to the gap ``Σ C_i max(0, −G_i) + α_i G_i``; with S the first kind::

        P(w, b) = ½(‖w‖² + b²) + Σ_{N} C_i max(0, −G_i) + C Σ_S s_i (1 − y_i b) − C w·Σ_S s_i y_i x_i
        w(α)    = C Σ_S s_i y_i x_i + Σ_{N} α_i y_i x_i

    where N, the rows read afresh, are the near rows, the rows appended after the screen's pass
    and the rows placed on a side their α contradicts. ``Σ_S s_i y_i x_i`` is the screen's
    below-sum less those of its rows in N. G of the rows not read is their cached value, which
    has the sign of the exact one."""
    X, y, ub = p.X, p.y, p.ub
    n, m = X.shape[0], screen.n
    C, s = p.C, p.s
    levels = (1.0 - y[:m] * b) / C
    answer = screen.query(w / C, levels, s[:m], max_rows - (n - m))
    if answer is None:
        return None
    near = np.zeros(m, dtype=bool)
    near[answer.near] = True
    below = answer.below
    above = ~below & ~near
    wrong = (below & (alpha[:m] < ub[:m])) | (above & (alpha[:m] > 0))
    wrong_below = np.flatnonzero(below & wrong)
    extra = np.concatenate([np.flatnonzero(wrong), np.arange(m, n)])
    if answer.rows_read + extra.size > max_rows:
        return None
    read = np.concatenate([answer.near, extra])
    S = below & ~wrong
    sum_S = answer.below_sum - _combine_rows(X, s * y, wrong_below)
    margins = np.append(C * answer.margins, np.empty(n - m))  # x_i·w: exact for the rows read
    _row_margins(X, w, extra, margins)
    if not np.isfinite(margins[read]).all():
        _check_finite(X)
    g = y * (margins + b) - 1.0
    s_S = s[:m][S]
    linear = C * (float(s_S.sum()) - b * float(s_S @ y[:m][S]) - float(w @ sum_S))
    primal = 0.5 * (w @ w + b * b) + float(ub[read] @ np.maximum(0.0, -g[read])) + linear
    w_alpha = C * sum_S + _combine_rows(X, alpha * y, read)
    return g, w_alpha, primal


def _gap_terms(g: np.ndarray, alpha: np.ndarray, ub: np.ndarray, rows: np.ndarray) -> float:
    """``Σ_{i ∈ rows} C_i max(0, −G_i) + α_i G_i``, the share of ``rows`` in the duality gap
    (each term ≥ 0; zero for a row at a bound on the right side of the margin)."""
    gr, a = g[rows], alpha[rows]
    return float(ub[rows] @ np.maximum(0.0, -gr) + a @ gr)


def _solve_free_bias(p: _Dual, alpha: np.ndarray, shrink: float, b0: float) -> _DualSolution:
    """Free bias (the dual has ``Σ α_i y_i = 0``): proximal coordinate descent on the bias,
    centred at ``b0``; the certificate projects α onto the balanced set
    (:func:`_project_balanced`) and takes the exact best bias (:func:`best_bias`)."""
    X, y, ub, sqn, rows, tol, max_iter, seed = p.X, p.y, p.ub, p.sqn, p.rows, p.tol, p.max_iter, p.seed
    rho = max(float(sqn[rows].mean()), 1e-12)
    qd = sqn + rho
    centre = b0
    epochs = rounds = 0
    eps = _EPS_START
    best = np.inf
    pos = y > 0
    ay = alpha * y
    w = _combine_rows(X, ay, rows)
    bias = np.array([centre + rho * ay.sum()])
    active = rows
    while True:
        budget = min(_EPOCHS_PER_ROUND, max_iter - epochs)
        ran = _dcd_epochs(X, y, qd, ub, alpha, w, bias, rho, eps, budget, active, seed + rounds, shrink)
        epochs += ran
        rounds += 1
        w, centre = _free_set_step(X, y, alpha, ub, w, float(bias[0]), 0.0, True)
        ay = alpha * y
        w = _combine_rows(X, ay, rows)
        bias[0] = centre + rho * ay.sum()
        if ran == budget and epochs < max_iter:
            continue
        margins = X @ w
        b = best_bias(margins, y, ub)
        primal = 0.5 * (w @ w) + float(ub @ np.maximum(0.0, 1.0 - y * (margins + b)))
        feasible = _project_balanced(alpha, pos)
        w_f = _combine_rows(X, feasible * y, rows)
        dual = float(feasible.sum()) - 0.5 * (w_f @ w_f)
        gap = max(primal - dual, 0.0)
        g = y * (margins + b) - 1.0
        if gap <= tol * primal or epochs >= max_iter or (eps == _EPS_FLOOR and gap >= best):
            return _DualSolution(w, b, alpha, g, w, primal, gap, epochs, rounds)
        g = y * (margins + bias[0]) - 1.0
        if _max_violation(g, alpha, ub, rows) <= eps:
            best = min(best, gap)
            eps = _next_eps(eps, gap, tol * primal)
        active = _candidates(g, alpha, ub, rows, _SHRINK_WARM)
        shrink = np.inf


def _project_balanced(alpha: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """A dual-feasible point with ``Σ α_i y_i = 0``: shrink the heavier class's α proportionally."""
    a_pos = float(alpha[pos].sum())
    a_neg = float(alpha[~pos].sum())
    out = alpha.copy()
    if a_pos > a_neg:
        out[pos] *= a_neg / a_pos
    elif a_neg > a_pos:
        out[~pos] *= a_pos / a_neg
    return out
