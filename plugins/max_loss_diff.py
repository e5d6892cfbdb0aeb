"""Maximum loss difference: line 4 of MTP Algorithm 1 and the loss-based distance (Definition 1).

For the current model θ_t and the target θ_p, find

    (x*, y*) = argmax_{x ∈ X, y ∈ {-1, +1}}  l(θ_t; x, y) − l(θ_p; x, y).

Hinge loss (exact). With ``u = 1 − y(w_t·x + b_t)`` and ``v = 1 − y(w_p·x + b_p)`` the objective
``f = max(0, u) − max(0, v)`` is split by the sign of ``v`` (SPEC §3):

* piece A, ``{v ≤ 0}``: ``f = max(0, u)``, so maximise ``u``;
* piece B, ``{v ≥ 0}``: ``f = max(−v, u − v)``, so maximise ``−v`` and ``u − v`` separately.

Each sub-problem is a linear objective over the box with one linear constraint: a continuous
knapsack, solved exactly by the greedy ratio rule in O(d log d) (:func:`box_knapsack`). The two
pieces cover the box, so the best of the (non-empty) pieces is the global maximum, whatever
its sign. :class:`CvxpyHinge` solves the same pieces as LPs / MILPs with license-free solvers
(HiGHS, Clarabel) for feasible sets beyond a box: integer features and one-hot groups.

Logistic loss (approximate). The difference of two logistic losses is not concave; projected
Adam ascent with random restarts (reference code: 10 restarts, lr 0.1, ≤ 20,000 steps, stop
when the change < 1e-7) returns a lower estimate of the maximum (:func:`logistic_max_loss_diff`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonbench.dataset import FeasibleSet
from poisonbench.plugins.logistic_box_search import logistic_box_maximiser

LABELS = (-1.0, 1.0)
#: Relative tolerance of the deterministic tie-breaks (:func:`box_knapsack`, :func:`_better`).
TIE_TOL = 1e-12
SOLVERS = ("auto", "closed-form", "cvxpy", "milp")
LOGISTIC_SEARCHES = ("adam", "zonotope")
ONEHOT_MODES = ("ignore", "exact", "at-most-one")


@dataclass(frozen=True)
class MaxLossDiff:
    """The maximiser ``(x, y)`` and its value; ``exact`` is False for local (Adam) solutions,
    ``relaxed`` is True when integer / one-hot restrictions of the feasible set were dropped."""

    value: float
    x: np.ndarray
    y: float
    exact: bool
    relaxed: bool = False
    solver: str = ""


def hinge_loss_diff(theta_t: np.ndarray, theta_p: np.ndarray, X: np.ndarray, y: np.ndarray | float) -> np.ndarray:
    """``max(0, 1 − y f_t(x)) − max(0, 1 − y f_p(x))`` row by row (θ = (w, b))."""
    X = np.atleast_2d(X)
    u = 1.0 - y * (X @ theta_t[:-1] + theta_t[-1])
    v = 1.0 - y * (X @ theta_p[:-1] + theta_p[-1])
    return np.maximum(u, 0.0) - np.maximum(v, 0.0)


def logistic_loss_diff(theta_t: np.ndarray, theta_p: np.ndarray, X: np.ndarray, y: np.ndarray | float) -> np.ndarray:
    """``log(1 + e^{−y f_t(x)}) − log(1 + e^{−y f_p(x)})`` row by row (θ = (w, b))."""
    X = np.atleast_2d(X)
    return np.logaddexp(0.0, -y * (X @ theta_t[:-1] + theta_t[-1])) - np.logaddexp(
        0.0, -y * (X @ theta_p[:-1] + theta_p[-1])
    )


def box_knapsack(c: np.ndarray, a: np.ndarray, beta: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """Exact maximiser of ``c·x`` subject to ``a·x ≤ β`` and ``lo ≤ x ≤ hi`` (None if infeasible).

    Continuous knapsack: start at the box corner that maximises ``c·x`` (ties toward the end
    that lowers ``a·x``); if it violates the constraint, move coordinates toward their
    ``a``-minimising end in increasing order of objective lost per unit of constraint
    recovered, the last one fractionally. This is optimal by LP duality (one multiplier).

    Deterministic tie-break: a coefficient with ``|c_j| ≤ TIE_TOL · ‖c‖_∞`` counts as zero, so
    its coordinate takes the canonical end (the one that lowers ``a·x``) instead of whichever
    end the sign of rounding noise picks — the noise differs between BLAS builds and thread
    counts, and MTP's path is chaotic in such near-ties. The value given up is at most
    ``TIE_TOL · ‖c‖_∞ · Σ_j (hi_j − lo_j)``."""
    scale = float(np.abs(c).max()) if c.size else 0.0
    c = np.where(np.abs(c) <= TIE_TOL * scale, 0.0, c)
    x = np.where(c > 0, hi, np.where(c < 0, lo, np.where(a > 0, lo, hi)))
    excess = float(a @ x) - beta
    scale = abs(beta) + float(np.abs(a) @ np.maximum(np.abs(lo), np.abs(hi))) + 1.0
    if excess <= 0.0:
        return x
    alt = np.where(a > 0, lo, hi)
    gain = a * (x - alt)
    movable = np.flatnonzero(gain > 0)
    available = float(gain[movable].sum())
    if available < excess - 1e-12 * scale:
        return None
    if available <= excess:
        x[movable] = alt[movable]
        return x
    cost = c[movable] * (x[movable] - alt[movable])
    order = movable[np.argsort(cost / gain[movable], kind="stable")]
    cum = np.cumsum(gain[order])
    k = int(np.searchsorted(cum, excess))
    x[order[:k]] = alt[order[:k]]
    j = order[k]
    done = float(cum[k - 1]) if k else 0.0
    t = (excess - done) / gain[j]
    x[j] = x[j] + t * (alt[j] - x[j])
    return x


def _better(value: float, best: float) -> bool:
    """``value`` beats ``best`` by more than ``TIE_TOL`` (relative): near-ties between pieces or
    labels keep the first one found, in the fixed order (y = −1 then +1; pieces A, B1, B2)."""
    return value > best + TIE_TOL * max(1.0, abs(best))


def _hinge_pieces(theta_t: np.ndarray, theta_p: np.ndarray, y: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The three sub-problems ``max c·x s.t. a·x ≤ β`` for label ``y`` as (c, a, β); the
    objective's constant term is left out (values are computed from the maximiser)."""
    w_t, w_p, b_p = theta_t[:-1], theta_p[:-1], theta_p[-1]
    a_A, beta_A = -y * w_p, y * b_p - 1.0  # v <= 0
    a_B, beta_B = y * w_p, 1.0 - y * b_p  # v >= 0
    return [
        (-y * w_t, a_A, beta_A),  # A: max u
        (y * w_p, a_B, beta_B),  # B1: max -v
        (y * (w_p - w_t), a_B, beta_B),  # B2: max u - v
    ]


def hinge_max_loss_diff_box(
    theta_t: np.ndarray, theta_p: np.ndarray, lo: np.ndarray, hi: np.ndarray, labels: Sequence[float] = LABELS
) -> MaxLossDiff:
    """Exact ``max_{lo ≤ x ≤ hi, y} hinge(θ_t) − hinge(θ_p)`` by the closed form (module doc)."""
    best: MaxLossDiff | None = None
    for y in labels:
        for c, a, beta in _hinge_pieces(theta_t, theta_p, y):
            x = box_knapsack(c, a, beta, lo, hi)
            if x is None:
                continue
            value = float(hinge_loss_diff(theta_t, theta_p, x, y)[0])
            if best is None or _better(value, best.value):
                best = MaxLossDiff(value, x, float(y), exact=True, solver="closed-form")
    assert best is not None, "pieces A and B cover the box, so one of them is non-empty"
    return best


class CvxpyHinge:
    """The hinge pieces as cvxpy problems (LP, or MILP for integer features), compiled once.

    Parameters
    ----------
    feasible : FeasibleSet
        Box, integer mask and one-hot groups of the poison features.
    integer : bool
        Keep the integer restriction (MILP, HiGHS); otherwise solve the LP relaxation.
    onehot : {"ignore", "exact", "at-most-one"}
        How to treat ``feasible.onehot_groups``: dropped (as the reference code does for Adult,
        whose data violate the equalities), ``Σ_g x = 1``, or ``Σ_g x ≤ 1``.
    """

    def __init__(self, feasible: FeasibleSet, integer: bool = True, onehot: str = "ignore") -> None:
        import cvxpy as cp
        import scipy.sparse as sp

        if onehot not in ONEHOT_MODES:
            raise ValueError(f"onehot: expected one of {ONEHOT_MODES}, got {onehot!r}")
        d = feasible.n_features
        int_mask = feasible.integer if integer else np.zeros(d, bool)
        self.milp = bool(int_mask.any())
        self.relaxed = (not integer and bool(feasible.integer.any())) or (
            onehot == "ignore" and bool(feasible.onehot_groups)
        )
        cont, ints = np.flatnonzero(~int_mask), np.flatnonzero(int_mask)
        parts = []
        cons = []
        if cont.size:
            xc = cp.Variable(cont.size)
            parts.append(sp.csr_matrix((np.ones(cont.size), (cont, np.arange(cont.size))), shape=(d, cont.size)) @ xc)
            cons += [xc >= feasible.lo[cont], xc <= feasible.hi[cont]]
        if ints.size:
            xi = cp.Variable(ints.size, integer=True)
            parts.append(sp.csr_matrix((np.ones(ints.size), (ints, np.arange(ints.size))), shape=(d, ints.size)) @ xi)
            cons += [xi >= feasible.lo[ints], xi <= feasible.hi[ints]]
        x = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        for g in feasible.onehot_groups if onehot != "ignore" else ():
            s = cp.sum(cp.hstack([x[j] for j in g]))
            cons.append(s == 1 if onehot == "exact" else s <= 1)
        self._int_mask = int_mask
        self._lo, self._hi = feasible.lo, feasible.hi
        self._box_only = onehot == "ignore" or not feasible.onehot_groups
        self.milp_solves = 0
        self._c = cp.Parameter(d)
        self._a = cp.Parameter(d)
        self._beta = cp.Parameter()
        self._x = x
        self._problem = cp.Problem(cp.Maximize(self._c @ x), cons + [self._a @ x <= self._beta])
        self._cp = cp

    def solve_piece(self, c: np.ndarray, a: np.ndarray, beta: float) -> np.ndarray | None:
        """argmax ``c·x`` s.t. ``a·x ≤ β`` over the feasible set (None if infeasible)."""
        cp = self._cp
        self._c.value, self._a.value, self._beta.value = c, a, float(beta)
        chain = ["HIGHS", "SCIPY"] if self.milp else ["HIGHS", "CLARABEL"]
        last: Exception | None = None
        for solver in chain:
            if solver not in cp.installed_solvers():
                continue
            opts: dict[str, Any] = {"mip_rel_gap": 0.0} if (self.milp and solver == "HIGHS") else {}
            try:
                self._problem.solve(solver=solver, **opts)
            except cp.error.SolverError as exc:
                last = exc
                continue
            status = self._problem.status
            if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
                return None
            if status == cp.OPTIMAL:
                return np.asarray(self._x.value, dtype=np.float64).reshape(-1)
            last = RuntimeError(f"solver {solver} returned status {status!r}")
        raise RuntimeError(f"max loss difference: no solver reached an optimal status ({last})")

    def _piece(self, c: np.ndarray, a: np.ndarray, beta: float) -> np.ndarray | None:
        """One piece; for a MILP over a plain box (no one-hot rows) the closed form first: its
        LP optimum has at most one fractional coordinate, and when every integer feature is
        integral it is also optimal for the MILP (the MILP's set lies inside the LP's)."""
        if self.milp and self._box_only:
            x = box_knapsack(c, a, beta, self._lo, self._hi)
            if x is None:
                return None
            xi = x[self._int_mask]
            if np.array_equal(xi, np.round(xi)):
                return x
        if self.milp:
            self.milp_solves += 1
        return self.solve_piece(c, a, beta)

    def max_loss_diff(self, theta_t: np.ndarray, theta_p: np.ndarray, labels: Sequence[float] = LABELS) -> MaxLossDiff:
        """Exact maximum of the hinge loss difference over this feasible set."""
        best: MaxLossDiff | None = None
        name = "milp" if self.milp else "cvxpy"
        for y in labels:
            for c, a, beta in _hinge_pieces(theta_t, theta_p, y):
                x = self._piece(c, a, beta)
                if x is None:
                    continue
                value = float(hinge_loss_diff(theta_t, theta_p, x, y)[0])
                if best is None or value > best.value:
                    best = MaxLossDiff(value, x, float(y), exact=True, relaxed=self.relaxed, solver=name)
        if best is None:
            raise RuntimeError("max loss difference: every piece reported infeasible; is the feasible set empty?")
        return best


def logistic_max_loss_diff(
    theta_t: np.ndarray,
    theta_p: np.ndarray,
    feasible: FeasibleSet,
    rng: np.random.Generator,
    restarts: int = 10,
    lr: float = 0.1,
    max_steps: int = 20_000,
    tol: float = 1e-7,
    init: np.ndarray | None = None,
    labels: Sequence[float] = LABELS,
) -> MaxLossDiff:
    """Approximate ``max_{x, y} logistic(θ_t) − logistic(θ_p)`` by projected Adam ascent.

    ``restarts`` uniform random starts in the box per label (plus the rows of ``init``, e.g.
    the previous maximiser) run as one batch; a start stops when its objective changes by
    less than ``tol`` between steps; the best iterate seen is returned (``exact=False``).
    Integer features (``feasible.integer``) are rounded before every evaluation, as the
    reference code does for Adult, so the returned point lies in the feasible set."""
    if restarts < 1 and init is None:
        raise ValueError(f"restarts: expected at least 1 random start, got {restarts}")
    lo, hi = feasible.lo, feasible.hi
    starts = [rng.uniform(lo, hi, size=(restarts, lo.shape[0]))]
    if init is not None:
        starts.append(feasible.project(np.atleast_2d(np.asarray(init, dtype=np.float64))))
    X0 = np.vstack(starts)
    X = np.vstack([X0] * len(labels))
    Y = np.repeat(np.asarray(labels, dtype=np.float64), X0.shape[0])
    w_t, b_t, w_p, b_p = theta_t[:-1], theta_t[-1], theta_p[:-1], theta_p[-1]
    m1 = np.zeros_like(X)
    m2 = np.zeros_like(X)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    ints = feasible.integer

    def rounded(Z: np.ndarray) -> np.ndarray:
        if not ints.any():
            return Z
        Z = Z.copy()
        Z[:, ints] = np.clip(np.rint(Z[:, ints]), lo[ints], hi[ints])
        return Z

    X = rounded(X) if ints.any() else X
    value = logistic_loss_diff(theta_t, theta_p, X, Y)
    best_val, best_x = value.copy(), X.copy()
    active = np.ones(X.shape[0], bool)
    for step in range(1, max_steps + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Xa, Ya = X[idx], Y[idx]
        s_t = 1.0 / (1.0 + np.exp(Ya * (Xa @ w_t + b_t)))  # σ(−y f_t)
        s_p = 1.0 / (1.0 + np.exp(Ya * (Xa @ w_p + b_p)))
        g = (-Ya * s_t)[:, None] * w_t + (Ya * s_p)[:, None] * w_p
        m1[idx] = beta1 * m1[idx] + (1 - beta1) * g
        m2[idx] = beta2 * m2[idx] + (1 - beta2) * g * g
        step_dir = (m1[idx] / (1 - beta1**step)) / (np.sqrt(m2[idx] / (1 - beta2**step)) + eps)
        X[idx] = np.clip(Xa + lr * step_dir, lo, hi)
        Xe = rounded(X[idx])
        new = logistic_loss_diff(theta_t, theta_p, Xe, Ya)
        improved = new > best_val[idx]
        best_val[idx[improved]] = new[improved]
        best_x[idx[improved]] = Xe[improved]
        active[idx[np.abs(new - value[idx]) < tol]] = False
        value[idx] = new
    i = int(np.argmax(best_val))
    return MaxLossDiff(float(best_val[i]), best_x[i].copy(), float(Y[i]), exact=False, solver="adam")


def logistic_max_loss_diff_box(
    theta_t: np.ndarray,
    theta_p: np.ndarray,
    feasible: FeasibleSet,
    tol: float = 1e-12,
    labels: Sequence[float] = LABELS,
) -> MaxLossDiff:
    """The global ``max_{x, y} logistic(θ_t) − logistic(θ_p)`` over the box, within ``tol``
    (:func:`poisonbench.plugins.logistic_box_search.logistic_box_maximiser`); ``exact`` when the
    box has no integer features. Integer features are handled as the reference does for Adult:
    the continuous maximiser is rounded, and the value is that of the rounded point (then not
    certified)."""
    lo, hi = feasible.lo, feasible.hi
    x, y = logistic_box_maximiser(theta_t, theta_p, lo, hi, labels, tol)
    ints = np.asarray(feasible.integer, bool)
    if ints.any():
        x = x.copy()
        x[ints] = np.clip(np.rint(x[ints]), lo[ints], hi[ints])
    value = float(logistic_loss_diff(theta_t, theta_p, x, y)[0])
    return MaxLossDiff(value, x, y, exact=not ints.any(), relaxed=False, solver="zonotope-bb")


class MaxLossDiffSolver:
    """Chooses and runs the max-loss-difference method for a loss and a feasible set.

    Parameters
    ----------
    loss : {"hinge", "logistic"}
    feasible : FeasibleSet
    solver : {"auto", "closed-form", "cvxpy", "milp"}
        Hinge only. ``auto``: the MILP when the feasible set has integer features, an LP
        (cvxpy) when one-hot constraints are requested, the closed form otherwise.
        ``closed-form`` and ``cvxpy`` relax integer features (``relaxed=True``).
    onehot : {"ignore", "exact", "at-most-one"}
        One-hot groups for the cvxpy / MILP paths (see :class:`CvxpyHinge`).
    restarts, lr, max_steps, tol
        Logistic only: the projected Adam settings.
    logistic_search : {"adam", "zonotope"}
        Logistic only: ``adam``, the reference code's local search (the default, as in the
        paper); ``zonotope``, the global maximum over the box by branch and bound
        (:func:`poisonbench.plugins.max_loss_diff.logistic_max_loss_diff_box`).
    """

    def __init__(
        self,
        loss: str,
        feasible: FeasibleSet,
        solver: str = "auto",
        onehot: str = "ignore",
        restarts: int = 10,
        lr: float = 0.1,
        max_steps: int = 20_000,
        tol: float = 1e-7,
        logistic_search: str = "adam",
    ) -> None:
        if loss not in ("hinge", "logistic"):
            raise ValueError(f"loss: expected 'hinge' or 'logistic', got {loss!r}")
        if solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
        if onehot not in ONEHOT_MODES:
            raise ValueError(f"onehot: expected one of {ONEHOT_MODES}, got {onehot!r}")
        if logistic_search not in LOGISTIC_SEARCHES:
            raise ValueError(f"logistic_search: expected one of {LOGISTIC_SEARCHES}, got {logistic_search!r}")
        self.loss, self.feasible, self.onehot, self.logistic_search = loss, feasible, onehot, logistic_search
        self.adam = dict(restarts=restarts, lr=lr, max_steps=max_steps, tol=tol)
        has_int = bool(feasible.integer.any())
        if solver == "auto":
            solver = (
                "milp" if has_int else ("cvxpy" if onehot != "ignore" and feasible.onehot_groups else "closed-form")
            )
        self.solver = solver
        self._cvx: CvxpyHinge | None = None
        if loss == "hinge" and solver in ("cvxpy", "milp"):
            self._cvx = CvxpyHinge(feasible, integer=(solver == "milp"), onehot=onehot)
        self._relaxed_box = has_int or (bool(feasible.onehot_groups) and onehot != "ignore")

    def __call__(
        self,
        theta_t: np.ndarray,
        theta_p: np.ndarray,
        rng: np.random.Generator | None = None,
        init: np.ndarray | None = None,
    ) -> MaxLossDiff:
        """The maximiser for θ_t against θ_p (``rng`` and ``init`` are used by the logistic path)."""
        if self.loss == "logistic" and self.logistic_search == "zonotope":
            return logistic_max_loss_diff_box(theta_t, theta_p, self.feasible)
        if self.loss == "logistic":
            return logistic_max_loss_diff(
                theta_t, theta_p, self.feasible, rng or np.random.default_rng(0), init=init, **self.adam
            )
        if self._cvx is not None:
            return self._cvx.max_loss_diff(theta_t, theta_p)
        res = hinge_max_loss_diff_box(theta_t, theta_p, self.feasible.lo, self.feasible.hi)
        if self._relaxed_box:
            return MaxLossDiff(res.value, res.x, res.y, exact=True, relaxed=True, solver=res.solver)
        return res
