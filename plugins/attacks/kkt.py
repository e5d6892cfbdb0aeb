"""Built-in attack ``kkt``: the KKT attack of Koh, Steinhardt & Liang (2018).

For a target θ_p and a budget n, find two poison points (x₊, +1) and (x₋, −1) with counts
n₊ + n₋ = n such that θ_p is (as nearly as possible) a stationary point of training on
D_c ∪ D_p (MTP paper, section 5; SPEC §4). With N = |D_c| the learner's objective is

    J(θ) = 1/(N+n) · [Σ_{D_c} l + n₊ l(θ; x₊, +1) + n₋ l(θ; x₋, −1)] + C_R · R(θ),

so ∇J(θ_p) = 0  ⇔  Σ_{D_c} ∇l(θ_p) + n₊ ∇l₊ + n₋ ∇l₋ + (N+n) · C_R · ∇R(θ_p) = 0.
The regulariser is scaled by N+n, not by n as SPEC §4 writes: multiplying J by N+n leaves
C_R·R multiplied by N+n. (The reference code agrees: per clean point it adds
(1 + n/N) · C_R · θ to the mean clean gradient.) We minimise ‖∇J(θ_p)‖₂ — the averaged
form, so values are comparable across budgets — over the feasible set, for every split
n₊/n on a grid (step 0.005) plus the split that zeroes the bias component, and keep the
split with the lowest objective.

Hinge loss (``svm``): with both points on the active side of the margin (y·f(x) ≤ 1) each
contributes −y·(x, 1), so a split's problem is a convex second-order cone program in
(x₊, x₋). It is built once with cvxpy Parameters for the split (DPP: compiled once, then
re-solved for each grid point) and solved by Clarabel, falling back to SCS; the status is
checked after every solve. Not every grid point needs solving: with z_s = p_s·x_s
(p_s = n_s/(N+n)) the residual is affine in (z₊, z₋, p₊, α) and x_s ∈ K_s (box, one-hot
groups, active side) becomes z_s ∈ p_s·K_s, the perspective of a convex set, so a split's value
f(p₊) is a partial minimum of a jointly convex problem and is convex in p₊. One SOCP over the
continuous split finds a minimiser p*; the grid's minimum lies at the grid point just below or
just above it, and the two grid points on each side are solved (``_HingeSearch.bracketed``).
With integer features the rounded and polished points are scored instead, which is not convex
in the split, so every grid point is solved. Clean points lying exactly on the margin at θ_p have a
subgradient −α·y·(x, 1), α ∈ [0, 1]; α is a variable too, so the objective is the distance
from 0 to the subdifferential, and 0 means θ_p is *the* optimum (J is C_R-strongly convex,
hence ‖θ̂ − θ_p‖ ≤ objective / C_R when the bias is regularised).

Logistic loss (``logistic``): no margin and no convexity in (x₊, x₋); projected Adam on
‖∇J(θ_p)‖² for all splits and seeded random restarts at once (vectorised).

Integer features are relaxed to their box during the search (one-hot groups to the simplex)
and rounded afterwards (one-hot: arg max). The reported objective is always recomputed from
the final points, never taken from a solver.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog, lsq_linear

from poisonbench import Param, hookimpl
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.capabilities import LinearModelLearner, require
from poisonbench.dataset import FeasibleSet
from poisonbench.learner import Learner, Model, require_certified
from poisonbench.params import declare
from poisonbench.plugins.lower_bound import induced_bound
from poisonbench.plugins.max_loss_diff import MaxLossDiffSolver
from poisonbench.plugins.targets import parse_spec

#: cvxpy solvers tried in order for each split (all license-free).
SOLVER_CHAIN = ("CLARABEL", "SCS")
_HINGE, _LOGISTIC = "hinge", "logistic"
_RNG_STREAM = 0x4B4B54  # "KKT": random restarts of the logistic search
_POLISH_TOP = 3  # splits whose rounded points are improved by integer coordinate search
_POLISH_SWEEPS = 5


@dataclass(frozen=True)
class _Box:
    """The feasible set as the search uses it: a box, integer flags and one-hot groups, each
    group either *exact* (Σ = 1: every training row has one 1) or *capped* (Σ ≤ 1: a dropped
    reference level, all zeros allowed). Which one is read from the training data."""

    lo: np.ndarray
    hi: np.ndarray
    integer: np.ndarray
    groups: tuple[tuple[np.ndarray, bool], ...]

    @classmethod
    def of(cls, feasible: FeasibleSet, X_train: np.ndarray) -> _Box:
        groups = []
        for g in feasible.onehot_groups:
            cols = np.array(g, dtype=np.int64)
            groups.append((cols, bool(np.allclose(X_train[:, cols].sum(axis=1), 1.0))))
        return cls(feasible.lo, feasible.hi, feasible.integer, tuple(groups))

    @property
    def has_integers(self) -> bool:
        return bool(self.integer.any() or self.groups)

    def integer_moves(self, x: np.ndarray) -> Iterator[np.ndarray]:
        """Every point that differs from ``x`` in one one-hot group's level (the dropped level
        of a capped group included) or in one other integer feature's value."""
        in_group = np.zeros(x.shape[0], bool)
        for cols, exact in self.groups:
            in_group[cols] = True
            for j in [*cols, *([None] if not exact else [])]:
                moved = x.copy()
                moved[cols] = 0.0
                if j is not None:
                    moved[j] = 1.0
                if not np.array_equal(moved, x):
                    yield moved
        for j in np.flatnonzero(self.integer & ~in_group):
            for value in np.arange(np.ceil(self.lo[j]), np.floor(self.hi[j]) + 1):
                if value != x[j]:
                    moved = x.copy()
                    moved[j] = value
                    yield moved


@dataclass(frozen=True)
class _Candidate:
    """Two poison points with their counts and the search's own value for them."""

    n_pos: int
    x_pos: np.ndarray
    x_neg: np.ndarray
    search_value: float
    solver: str


@declare(
    {
        "target": Param(
            (str, Model),
            "target model spec (as mtp's) or a fitted Model",
            check=lambda t: parse_spec(t) if isinstance(t, str) else None,
        ),
        "split_step": Param(float, "grid step of n₊/n (Koh et al.: 0.005)", low=0, high=1, low_open=True),
        "margin_tol": Param(float, "hinge: clean points with |y·f(x) − 1| ≤ this are on the margin", low=0),
        "restarts": Param(int, "logistic: random restarts per split", low=1),
        "max_steps": Param(int, "logistic: Adam steps", low=1),
        "learning_rate": Param(
            float, "logistic: step size as a fraction of each feature's box width", low=0, low_open=True
        ),
        "bound_induced": Param(bool, "also certify the MTP paper's lower bound for the induced model (Table 3)"),
        "bound_epsilon": Param(float, "ε of the bound's MTP run toward the induced model", low=0, low_open=True),
    }
)
class KKTAttack:
    """KKT attack (Koh et al. 2018): n₊ copies of x₊ and n₋ of x₋ that make θ_p stationary."""

    name = "kkt"
    needs_budget = True

    def __init__(
        self,
        target: str | Model,
        split_step: float = 0.005,
        margin_tol: float = 1e-6,
        restarts: int = 4,
        max_steps: int = 2000,
        learning_rate: float = 0.05,
        bound_induced: bool = False,
        bound_epsilon: float = 0.01,
    ) -> None:
        self.bound_induced, self.bound_epsilon = bound_induced, bound_epsilon
        self.target = target
        self.split_step = float(split_step)
        self.margin_tol = float(margin_tol)
        self.restarts = int(restarts)
        self.max_steps = int(max_steps)
        self.learning_rate = float(learning_rate)

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield one batch: the n = scenario.budget poisons and the diagnostics of the search."""
        if scenario.budget is None:
            raise ValueError(f"{self.name} needs its budget up front: set scenario.budget to the number of poisons")
        loss = self._loss(scenario.learner)
        start = time.perf_counter()
        target = self._target_model(scenario)
        data, learner, n = scenario.dataset, scenario.learner, int(scenario.budget)
        if target.w.shape[0] != data.n_features:
            raise ValueError(f"{self.name}: target has {target.w.shape[0]} features, the dataset {data.n_features}")
        residual = _Residual(learner, target, data.X_train, data.y_train, n, loss == _HINGE, self.margin_tol)
        if n == 0:
            empty = np.empty((0, data.n_features))
            yield PoisonBatch(empty, np.empty(0), {"kkt_objective": residual.norm(empty, empty, 0, 0)})
            return
        splits = _split_grid(n, self.split_step, residual.exact_bias_n_pos())
        box = _Box.of(data.feasible, data.X_train)
        candidates, failed, solved, extra = self._search(scenario, loss, residual, box, splits)
        if not candidates:
            raise RuntimeError(
                f"{self.name}: every solver failed on all {len(splits)} splits ({', '.join(SOLVER_CHAIN)})"
            )
        best_value, best, best_points = self._pick(candidates, residual, box)
        x_pos, x_neg = best_points
        n_pos, n_neg = best.n_pos, n - best.n_pos
        X_p = np.vstack([np.repeat(x_pos[None], n_pos, 0), np.repeat(x_neg[None], n_neg, 0)])
        y_p = np.concatenate([np.ones(n_pos), -np.ones(n_neg)])
        diagnostics = self._diagnostics(
            scenario, target, best, best_value, best_points, len(splits), failed, time.perf_counter() - start
        )
        diagnostics.update(splits_solved=solved, **extra)
        if self.bound_induced:
            diagnostics.update(induced_bound(scenario, X_p, y_p, self.bound_epsilon))
        yield PoisonBatch(X_p, y_p, diagnostics)

    def _loss(self, learner: Learner) -> str:
        """The learner's margin loss (``hinge`` or ``logistic``); a learner without one is refused."""
        return _loss_kind(learner)

    def _search(
        self, scenario: Scenario, loss: str, residual: _Residual, box: _Box, splits: np.ndarray
    ) -> tuple[list[_Candidate], int, int, dict[str, Any]]:
        """The candidates of the split grid, the failed splits, the split problems solved and
        extra diagnostics. Hinge without integer features: the bracketed search; with them every
        grid point (the rounded, polished points it scores are not convex in the split)."""
        if loss == _HINGE and not box.has_integers:
            return (*_HingeSearch(residual, box).bracketed(splits), {})
        if loss == _HINGE:
            search = _HingeSearch(residual, box)
            return (*search.run(splits), len(search.allowed(splits)), {})
        rng = scenario.rng(_RNG_STREAM)
        return self._logistic_search(residual, box, splits, rng), 0, len(splits), {}

    def _pick(
        self, candidates: list[_Candidate], residual: _Residual, box: _Box
    ) -> tuple[float, _Candidate, tuple[np.ndarray, np.ndarray]]:
        """The best candidate with its exact objective and final points (rounded onto the
        feasible set, polished: :func:`_best_candidate`)."""
        return _best_candidate(candidates, residual, box)

    def _target_model(self, scenario: Scenario) -> Model:
        if isinstance(self.target, Model):
            return self.target
        from poisonbench.plugins.targets import make_target

        return make_target(self.target, scenario)

    def _logistic_search(
        self, residual: _Residual, box: _Box, splits: np.ndarray, rng: np.random.Generator
    ) -> list[_Candidate]:
        """Projected Adam on ‖∇J(θ_p)‖² over (x₊, x₋) for every split × restart at once."""
        theta = residual.target.theta
        w, b = theta[:-1], theta[-1]
        S, R, d = len(splits), self.restarts, box.lo.shape[0]
        p_pos = (splits / residual.total)[:, None, None]
        p_neg = ((residual.n - splits) / residual.total)[:, None, None]
        width = box.hi - box.lo
        X = _project(box.lo + width * rng.random((2, S, R, d)), box)
        m1, m2 = np.zeros_like(X), np.zeros_like(X)
        labels = np.array([1.0, -1.0])[:, None, None, None]
        best_val, best_X = np.full((S, R), np.inf), X.copy()
        checkpoint = best_val.copy()
        step = self.learning_rate * np.where(width > 0, width, 1.0)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for t in range(1, self.max_steps + 1):
            s = _sigmoid(-labels[..., 0] * (X @ w + b))[..., None]  # σ(−y·m), shape (2, S, R, 1)
            coef = -labels * s  # ∇_θ l = coef · (x, 1)
            r_w = residual.g[:-1] + p_pos * coef[0] * X[0] + p_neg * coef[1] * X[1]
            r_b = residual.g[-1] + p_pos * coef[0] + p_neg * coef[1]
            value = (r_w**2).sum(-1) + r_b[..., 0] ** 2
            improved = value < best_val
            best_val = np.where(improved, value, best_val)
            best_X = np.where(improved[None, ..., None], X, best_X)
            # d/dx of (x,1)·coef(x) projected on r: −y s r_w + s(1−s) θ_w (x·r_w + r_b)
            inner = (X * r_w[None]).sum(-1, keepdims=True) + r_b[None]
            jac_r = coef * r_w[None] + s * (1 - s) * w * inner
            grad = 2 * np.stack([p_pos, p_neg]) * jac_r
            m1 = beta1 * m1 + (1 - beta1) * grad
            m2 = beta2 * m2 + (1 - beta2) * grad**2
            X = _project(X - step * (m1 / (1 - beta1**t)) / (np.sqrt(m2 / (1 - beta2**t)) + eps), box)
            if t % 100 == 0:
                if t > 100 and np.all(checkpoint - best_val <= 1e-9 * checkpoint + 1e-16):
                    break
                checkpoint = best_val.copy()
        pick = best_val.argmin(axis=1)
        return [
            _Candidate(
                int(k), best_X[0, i, pick[i]], best_X[1, i, pick[i]], float(np.sqrt(best_val[i, pick[i]])), "adam"
            )
            for i, k in enumerate(splits)
        ]

    def _diagnostics(
        self,
        scenario: Scenario,
        target: Model,
        best: _Candidate,
        value: float,
        points: tuple[np.ndarray, np.ndarray],
        n_splits: int,
        failed: int,
        seconds: float,
    ) -> dict:
        data, learner, n = scenario.dataset, scenario.learner, int(scenario.budget or 0)
        x_pos, x_neg = points
        X = np.vstack([data.X_train, x_pos, x_neg])
        y = np.concatenate([data.y_train, [1.0, -1.0]])
        weights = np.concatenate([np.ones(data.n_train), [best.n_pos, n - best.n_pos]])
        keep = weights > 0
        model = learner.fit(X[keep], y[keep], sample_weight=weights[keep])
        require_certified(model, f"kkt: learner {learner.name!r} on the poisoned data")
        out = {
            "kkt_objective": value,
            "kkt_search_objective": best.search_value,
            "n_pos": best.n_pos,
            "n_neg": n - best.n_pos,
            "split": best.n_pos / n,
            "splits_tried": n_splits,
            "splits_failed": failed,
            "solver": best.solver,
            "param_distance": float(np.linalg.norm(model.theta - target.theta)),
            "test_accuracy": model.accuracy(data.X_test, data.y_test),
            "max_loss_diff": None,
            "target_test_accuracy": target.accuracy(data.X_test, data.y_test),
            "wall_seconds": seconds,
        }
        if _loss_kind(learner) == _HINGE:  # the exact loss-based distance (MTP Definition 1), for Fig. 1
            distance = MaxLossDiffSolver(_HINGE, data.feasible)(model.theta, target.theta)
            out.update(max_loss_diff=distance.value, max_loss_diff_exact=distance.exact)
        if learner.regularise_bias:
            out["param_distance_bound"] = value / learner.C_R
        if scenario.subpopulation is not None:
            idx = data.subpopulation(scenario.subpopulation).test_idx
            out["subpop_accuracy"] = model.accuracy(data.X_test[idx], data.y_test[idx])
        return out


class _Residual:
    """∇J(θ_p) on D_c ∪ {n₊ × (x₊, +1), n₋ × (x₋, −1)}, split into fixed and poison parts.

    ``g`` is the clean part (Σ_{D_c} ∇l + (N+n) C_R ∇R)/(N+n), without clean margin points
    for the hinge loss; those enter as columns ``A`` (−y·(x, 1)/(N+n)) with α ∈ [0, 1].
    """

    def __init__(
        self, learner: Learner, target: Model, X: np.ndarray, y: np.ndarray, n: int, hinge: bool, margin_tol: float
    ) -> None:
        self.learner, self.target, self.hinge, self.margin_tol = learner, target, hinge, margin_tol
        self.n, self.total = n, X.shape[0] + n
        grads = learner.loss_grad(target, X, y)
        on_margin = self._on_margin(X, y)
        reg = self.total * learner.C_R * learner.regulariser_grad(target)
        self.bias_sum = float(grads[:, -1].sum() + reg[-1])  # learner's own subgradient convention
        self.g = (grads[~on_margin].sum(axis=0) + reg) / self.total
        self.A = self._margin_columns(X[on_margin], y[on_margin], np.ones(int(on_margin.sum())))

    def _on_margin(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        if not self.hinge:
            return np.zeros(len(y), bool)
        return np.abs(y * self.target.decision_function(X) - 1.0) <= self.margin_tol

    def _margin_columns(self, X: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return (-(y * counts)[:, None] * np.hstack([X, np.ones((len(y), 1))])).T / self.total

    def exact_bias_n_pos(self) -> float:
        """n₊ that zeroes the bias component for two active hinge points: −n₊ + n₋ = −G_b."""
        return (self.n + self.bias_sum) / 2.0

    def norm(self, x_pos: np.ndarray, x_neg: np.ndarray, n_pos: int, n_neg: int) -> float:
        """min over margin subgradients of ‖∇J(θ_p)‖₂ with these poisons (exact, from the points)."""
        X = np.array([x_pos, x_neg]).reshape(-1, self.target.w.shape[0])
        if X.shape[0] == 0:
            return float(np.linalg.norm(self.g) if self.A.shape[1] == 0 else self._min_over_alpha(self.g, self.A))
        y, counts = np.array([1.0, -1.0]), np.array([n_pos, n_neg], float)
        keep = counts > 0
        X, y, counts = X[keep], y[keep], counts[keep]
        on_margin = self._on_margin(X, y)
        grads = self.learner.loss_grad(self.target, X[~on_margin], y[~on_margin])
        fixed = self.g + (counts[~on_margin, None] * grads).sum(axis=0) / self.total
        A = np.hstack([self.A, self._margin_columns(X[on_margin], y[on_margin], counts[on_margin])])
        return float(np.linalg.norm(fixed)) if A.shape[1] == 0 else self._min_over_alpha(fixed, A)

    @staticmethod
    def _min_over_alpha(fixed: np.ndarray, A: np.ndarray) -> float:
        sol = lsq_linear(A, -fixed, bounds=(0.0, 1.0), method="bvls")
        return float(np.linalg.norm(fixed + A @ sol.x))


class _HingeSearch:
    """KKT's hinge search: one parameterised SOCP over the split (Clarabel → SCS per grid point,
    status checked), and the convex problem over the split itself that finds which grid points
    can be best (:meth:`bracketed`)."""

    def __init__(self, residual: _Residual, box: _Box) -> None:
        import cvxpy as cp

        self.cp, self.residual, self.box = cp, residual, box
        theta = residual.target.theta
        self.w, self.b = theta[:-1], theta[-1]
        self.sides = {+1: self._side_feasible(+1), -1: self._side_feasible(-1)}
        if not any(self.sides.values()):
            raise ValueError("kkt: no feasible point lies on the active side of the target's margin for either class")
        d = box.lo.shape[0]
        self.p_pos, self.p_neg = cp.Parameter(nonneg=True), cp.Parameter(nonneg=True)
        self.x = {s: cp.Variable(d) for s in (+1, -1) if self.sides[s]}
        counts = {+1: self.p_pos, -1: self.p_neg}
        constraints = [c for s, x in self.x.items() for c in self._region(s, x, 1.0)]
        self.problem = self._residual_problem({s: counts[s] * x for s, x in self.x.items()}, counts, constraints)

    def _region(self, s: int, z: Any, t: Any) -> list[Any]:
        """Constraints saying z = t·x with x in side ``s``'s set K_s: the box, the one-hot groups and
        the active side of θ_p's margin, s(w_p·x + b_p) ≤ 1. With t = 1 they constrain x itself;
        with t ≥ 0 a variable they are K_s's perspective (the cone over K_s, {0} at t = 0)."""
        cp, box = self.cp, self.box
        constraints = [s * (self.w @ z + self.b * t) <= t, z >= t * box.lo, z <= t * box.hi]
        constraints += [cp.sum(z[cols]) == t if exact else cp.sum(z[cols]) <= t for cols, exact in box.groups]
        return constraints

    def _residual_problem(self, weighted: dict[int, Any], counts: dict[int, Any], constraints: list[Any]) -> Any:
        """min ‖∇J(θ_p)‖₂ with the poisons' part written through ``weighted[s]`` = p_s·x_s and
        ``counts[s]`` = p_s = n_s/(N + n) (each active hinge point adds −s·p_s·(x_s, 1)), and the
        clean margin points' subgradients α ∈ [0, 1]."""
        cp, residual = self.cp, self.residual
        r_w, r_b = residual.g[:-1], residual.g[-1] - counts[+1] + counts[-1]
        for s, z in weighted.items():
            r_w = r_w - s * z
        k = residual.A.shape[1]
        if k:
            alpha = cp.Variable(k)
            r_w, r_b = r_w + residual.A[:-1] @ alpha, r_b + residual.A[-1] @ alpha
            constraints = [*constraints, alpha >= 0, alpha <= 1]
        return cp.Problem(cp.Minimize(cp.norm(cp.hstack([r_w, cp.reshape(r_b, (1,), order="C")]), 2)), constraints)

    def _side_feasible(self, s: int) -> bool:
        """Is {x in the box, one-hot groups respected: s·(w·x + b) ≤ 1} non-empty? (an LP)"""
        d = self.box.lo.shape[0]
        rows = [(np.isin(np.arange(d), cols).astype(float), exact) for cols, exact in self.box.groups]
        eq = [r for r, exact in rows if exact]
        ub = [r for r, exact in rows if not exact]
        res = linprog(
            s * self.w,
            A_ub=np.array(ub) if ub else None,
            b_ub=np.ones(len(ub)) if ub else None,
            A_eq=np.array(eq) if eq else None,
            b_eq=np.ones(len(eq)) if eq else None,
            bounds=list(zip(self.box.lo, self.box.hi)),
            method="highs",
        )
        return bool(res.status == 0 and res.fun + s * self.b <= 1.0)

    def allowed(self, splits: np.ndarray) -> np.ndarray:
        """The grid points whose sides all have a feasible point (a side with none needs count 0)."""
        n = self.residual.n
        return np.array([int(k) for k in splits if (k == 0 or self.sides[+1]) and (k == n or self.sides[-1])], int)

    def run(self, splits: np.ndarray) -> tuple[list[_Candidate], int]:
        """Solve the split problem at each allowed grid point: the candidates and the failures."""
        candidates, failed = [], 0
        for n_pos in self.allowed(splits):
            self.p_pos.value = n_pos / self.residual.total
            self.p_neg.value = (self.residual.n - n_pos) / self.residual.total
            solver = self._solve()
            if solver is None:
                failed += 1
                continue
            x_pos = self._point(+1)
            x_neg = self._point(-1)
            candidates.append(_Candidate(int(n_pos), x_pos, x_neg, float(self.problem.value), solver))
        return candidates, failed

    def continuous_problem(self, extra: Callable[[Any], list[Any]] = lambda q: []) -> tuple[Any, Any]:
        """The split problem over the *continuous* split p₊ = q ∈ [0, n/(N + n)] (p₋ = n/(N + n) − q),
        and q: with z_s = p_s·x_s the residual is affine in (z₊, z₋, q, α) and x_s ∈ K_s becomes
        z_s in K_s's perspective, a convex cone, so it is one SOCP. ``extra(q)``: constraints to add."""
        cp, residual = self.cp, self.residual
        total_share = residual.n / residual.total
        q = cp.Variable()
        counts = {+1: q, -1: total_share - q}
        z = {s: cp.Variable(self.box.lo.shape[0]) for s in self.x}
        constraints = [q >= 0, q <= total_share, *(c for s, v in z.items() for c in self._region(s, v, counts[s]))]
        constraints += [counts[s] == 0 for s in (+1, -1) if s not in z]
        return self._residual_problem(z, counts, [*constraints, *extra(q)]), q

    def split_minimiser(self) -> float | None:
        """A minimiser n₊* ∈ [0, n] of the split problem's value over the continuous split
        (:meth:`continuous_problem`), or None when its solve fails."""
        problem, q = self.continuous_problem()
        if _solve_with_chain(self.cp, problem) is None:
            return None
        return float(np.clip(q.value * self.residual.total, 0.0, self.residual.n))

    def bracketed(self, splits: np.ndarray) -> tuple[list[_Candidate], int, int]:
        """The grid search restricted to the grid points that can hold its minimum, the failures
        and the number of split problems solved. The split problem's value f(p₊) is a partial
        minimum of a jointly convex function (:meth:`split_minimiser`), so f is convex in p₊:
        non-increasing up to a minimiser p* and non-decreasing after it, and its minimum over any
        grid lies at the grid point just below p* or just above it. Two grid points each side of
        the solved n₊* are solved (against the solver's tolerance in n₊*); if the convex problem
        fails, every grid point is."""
        n_star = self.split_minimiser()
        allowed = self.allowed(splits)
        if n_star is None:
            candidates, failed = self.run(allowed)
            return candidates, failed, len(allowed)
        i = int(np.searchsorted(allowed, n_star))
        chosen = allowed[max(0, i - 2) : i + 2]
        candidates, failed = self.run(chosen)
        return candidates, failed, len(chosen)

    def _solve(self) -> str | None:
        return _solve_with_chain(self.cp, self.problem)

    def _point(self, s: int) -> np.ndarray:
        """The solved point of side ``s``, clipped to the box; the box centre for a side that has
        no feasible point (its count is then 0)."""
        x = self.x.get(s)
        if x is None:
            return (self.box.lo + self.box.hi) / 2
        return np.clip(np.asarray(x.value, dtype=np.float64), self.box.lo, self.box.hi)


def _solve_with_chain(cp: Any, problem: Any) -> str | None:
    """Solve ``problem`` with the first solver of :data:`SOLVER_CHAIN` that reaches OPTIMAL;
    returns its name, or None when none does."""
    for solver in SOLVER_CHAIN:
        try:
            with warnings.catch_warnings():  # "may be inaccurate": the status check below decides
                warnings.simplefilter("ignore", UserWarning)
                problem.solve(solver=solver, warm_start=True)
        except cp.error.SolverError:
            continue
        if problem.status == cp.OPTIMAL:
            return solver
    return None


def _best_candidate(
    candidates: list[_Candidate], residual: _Residual, box: _Box
) -> tuple[float, _Candidate, tuple[np.ndarray, np.ndarray]]:
    """Round every candidate onto the feasible set and score it exactly; with integer features,
    polish the ``_POLISH_TOP`` best; the lowest objective wins (ties: the smaller n₊)."""
    n = residual.n
    scored = []
    for cand in candidates:
        points = (_round(cand.x_pos, box), _round(cand.x_neg, box))
        scored.append((residual.norm(*points, cand.n_pos, n - cand.n_pos), cand.n_pos, cand, points))
    scored.sort(key=lambda item: item[:2])
    if box.has_integers:
        polished = []
        for value, _, cand, points in scored[:_POLISH_TOP]:
            points, value = _polish(residual, box, points, cand.n_pos, value)
            polished.append((value, cand.n_pos, cand, points))
        scored = sorted(polished, key=lambda item: item[:2])
    value, _, cand, points = scored[0]
    return value, cand, points


def _loss_kind(learner: Learner) -> str:
    """The learner's margin loss, once it is checked to be a :class:`LinearModelLearner`."""
    return str(require(learner, LinearModelLearner, "kkt").loss_kind)


def _split_grid(n: int, step: float, exact_n_pos: float) -> np.ndarray:
    """Integer n₊ for n₊/n ∈ {0, step, 2·step, …, 1} and the bias-exact n₊ (clipped to [0, n])."""
    fractions = np.append(np.arange(0.0, 1.0, step), 1.0)
    n_pos = np.round(fractions * n)
    n_pos = np.append(n_pos, np.clip(np.round(exact_n_pos), 0, n))
    return np.unique(n_pos.astype(np.int64))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _project(X: np.ndarray, box: _Box) -> np.ndarray:
    """Euclidean projection on the box with its one-hot groups (last axis): exact groups on the
    simplex {v ≥ 0, Σv = 1}, capped groups on {v ≥ 0, Σv ≤ 1}."""
    X = np.clip(X, box.lo, box.hi)
    for cols, exact in box.groups:
        V = X[..., cols]
        outside = np.ones(V.shape[:-1], bool) if exact else V.sum(axis=-1) > 1.0
        V[outside] = _simplex(V[outside])
        X[..., cols] = V
    return X


def _simplex(V: np.ndarray) -> np.ndarray:
    """Projection of each row (last axis) on {v ≥ 0, Σ v = 1} (sort-based, Held et al. 1974)."""
    U = -np.sort(-V, axis=-1)
    css = np.cumsum(U, axis=-1) - 1.0
    idx = np.arange(1, V.shape[-1] + 1)
    rho = (U - css / idx > 0).sum(axis=-1, keepdims=True)
    tau = np.take_along_axis(css, rho - 1, axis=-1) / rho
    return np.maximum(V - tau, 0.0)


def _polish(
    residual: _Residual, box: _Box, points: tuple[np.ndarray, np.ndarray], n_pos: int, value: float
) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """Greedy coordinate search over the integer features of rounded points (first improvement,
    up to ``_POLISH_SWEEPS`` sweeps), on the exact objective: a cheap stand-in for the mixed-
    integer program of the reference code (Gurobi), which no license-free solver here handles."""
    counts = (n_pos, residual.n - n_pos)
    current = [points[0], points[1]]
    for _ in range(_POLISH_SWEEPS):
        improved = False
        for side in (0, 1):
            if counts[side] == 0:
                continue
            for moved in box.integer_moves(current[side]):
                trial = list(current)
                trial[side] = moved
                trial_value = residual.norm(trial[0], trial[1], *counts)
                if trial_value < value * (1 - 1e-12):
                    current, value, improved = trial, trial_value, True
        if not improved:
            break
    return (current[0], current[1]), value


def _round(x: np.ndarray, box: _Box) -> np.ndarray:
    """Integer features rounded; a one-hot group set to its arg max (a copy). For a capped group
    the dropped level, 1 − Σ group, competes too (all zeros when it wins)."""
    x = x.copy()
    for cols, exact in box.groups:
        values = x[cols]
        top = int(np.argmax(values))
        x[cols] = 0.0
        if exact or values[top] >= 1.0 - values.sum():
            x[cols[top]] = 1.0
    in_group = np.zeros(x.shape[0], bool)
    for cols, _ in box.groups:
        in_group[cols] = True
    ints = box.integer & ~in_group
    x[ints] = np.round(x[ints])
    return np.clip(x, box.lo, box.hi)


@hookimpl
def register_attacks(register):
    register(KKTAttack)
