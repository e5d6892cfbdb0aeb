"""Built-in attack ``min-max``: the min-max attack and its certified upper bound (Steinhardt, Koh &
Liang 2017, "Certified defenses for data poisoning attacks", §3 and Algorithm 1), for the linear
SVM against an oracle sphere / slab defender.

**Setting** (paper §2). n clean points D_c, an attacker adding at most εn poisons D_p, a defender
that removes the points outside a feasible set F and then trains. F is the *oracle* set, fixed
by the clean data before the attack (the defence's ``reference = "oracle"``): per class y, with
μ_y the clean centroid of class y (:func:`~poisonbench.plugins.defences.sanitiser.class_centroids`)
and v = μ₊ − μ₋ (as ``slab.py``),

    F_y = {x in the dataset's box : ‖x − μ_y‖₂ ≤ r_y (sphere),  |⟨x − μ_y, v⟩| ≤ s_y (slab)},

``defence`` chooses the constraints (``"sphere+slab"``, ``"sphere"``, ``"slab"``; ``"box"``: none
besides the box, the attack without a defence as the MTP paper's appendix E compares it, Table 6). The radii
follow the sanitisers' own rule on the clean data: the sanitiser (``sphere.py``, ``slab.py``,
oracle reference, quantile ``fraction``) keeps, per class, the ``round((1 − fraction)·n_y)``
clean points of lowest score (:func:`~poisonbench.plugins.defences.sanitiser.class_quantile_keep`),
and r_y (s_y) is the largest score it keeps, so a clean point is in F_y exactly when that
sanitiser keeps it (ties aside). Like the paper (its second assumption: outliers in the clean
data have little effect), the defender is modelled as keeping every clean point and removing
the poisons outside F: it fits the learner on D_c ∪ (D_p ∩ F). The attack builds F from its own
parameters; ``scenario.defence`` is not consulted.

**The bound.** The learner (``svm``) minimises J(θ; D) = (1/|D|) Σ_D ℓ + C_R R(θ) with the hinge
loss ℓ(θ; x, y) = max(0, 1 − y(w·x + b)) (MTP eq. 1, ``plugins/learners/linear.py``). For
m ≤ εn poisons in F and θ̂ the learner's fit on D_c ∪ D_p, multiplying J by (n + m)/n gives,
for every θ,

    (1/n) Σ_{D_c} ℓ(θ̂) + C_R R(θ̂)  ≤  (1/n) Σ_{D_c ∪ D_p} ℓ(θ̂) + (1 + m/n) C_R R(θ̂)
                                     ≤  (1/n) Σ_{D_c ∪ D_p} ℓ(θ)  + (1 + m/n) C_R R(θ)
                                     ≤  U(θ) := (1/n) Σ_{D_c} ℓ(θ) + (1 + ε) C_R R(θ) + ε max_{(x,y)∈F} ℓ(θ; x, y)

(the first step drops non-negative terms, the second is optimality of θ̂, the third bounds each
poison's loss by the worst point of F and uses m ≤ εn). U is the paper's U(θ) = (1/n)L(θ; D_c)
+ ε max_F ℓ(θ) (§3) with this learner's regulariser added: the paper minimises over a norm ball
Θ = {‖θ‖ ≤ ρ} instead; the (1 + ε) is what the learner's *mean* over n(1 + ε) points makes of
C_R once the objective is scaled to the paper's 1/n. Hence, certified for **every** attack of at
most εn points inside F (not only this one),

    upper_bound = min_t U(θ_t)  ≥  M := max_{D_p ⊆ F, |D_p| ≤ εn} min_θ [(1/n) Σ_{D_c ∪ D_p} ℓ(θ) + (1 + ε) C_R R(θ)]
                                ≥  (1/n) Σ_{D_c} ℓ(θ̂) + C_R R(θ̂)  ≥  (1/n) Σ_{D_c} ℓ(θ̂),

a bound on the regularised clean loss (and so on the clean hinge loss, the paper's proxy for
the test loss) of the defender's model. It is only as good as the max over F in U: every such
max is solved as a conic program (below) and enters U through its *dual* value, an upper bound
by weak duality, after the primal–dual gap is checked; anything short of a certified optimum
raises.

**The attack** (Algorithm 1, "online learning" form: the attacker best-responds, the defender
learns online). With θ_0 the learner's fit on D_c, for t = 1 … T = εn (the budget):

    (x_t, y_t) = argmax_{(x, y) ∈ F} ℓ(θ_{t−1}; x, y)
    θ_t = argmin_θ (1/t) Σ_{s ≤ t} U_s(θ),   U_s(θ) = (1/n) Σ_{D_c} ℓ(θ) + (1 + ε) C_R R(θ) + ε ℓ(θ; x_s, y_s)

and U(θ_t) is recorded for t = 0 … T. The paper takes θ_t by a dual-averaging (gradient) step on
U_t over the ball Θ; here θ_t is an exact re-fit ("follow the leader" on the U_s, each
(1 + ε) C_R-strongly convex when the bias is regularised, so its regret is O(log T)): it is the
learner's own certified fit on D_c plus the t points so far with weight εn/t each (weights are
multiplicities, J's mean then carries the (1 + ε)). At t = T every weight is 1, so θ_T *is* the
defender's model on D_c ∪ D_p, and ``minimax_gap`` = upper_bound − the value of this attack
certifies how far any attack inside F could go beyond it.

**Budget.** ε = budget / n enters every θ_t (the weights εn/t) and U itself, and a prefix of the
run for one ε is not the run for a smaller one, so the attack needs its budget up front
(``needs_budget = True``: one trial per budget). It still yields one batch per point, so trace
rows show the bound converge; the bound of each batch is for the final ε.

**Worst point.** For a label y, with z = x − μ_y and c = −y·w, ℓ's linear part over F_y is
1 − y(b + w·μ_y) + max c·z over {z : lo − μ ≤ z ≤ hi − μ, ‖z‖ ≤ r_y, |v·z| ≤ s_y}: a second-order
cone program (linear without the sphere), solved by Clarabel through cvxpy; the better label
wins. Weak duality gives its certificate: for any split c = a + ηv + q + Σ_g κ_g 1_g with κ ≥ 0,

    c·z ≤ r‖a‖ + |η| s + Σ_j max(q_j (lo_j − μ_j), q_j (hi_j − μ_j)) + Σ_g κ_g (1 − 1_g·μ)

(a = 0 without the sphere, η = 0 without the slab); η, q, κ are the solver's multipliers. The
solver's point (up to ~1e-10 outside) is clipped to the box and shrunk toward μ_y onto the
sphere, the slab and the one-hot caps (clipping is a projection and shrinking stays on the segment
to μ_y, F_y being convex and containing μ_y), so each poison lies in F to rounding; the value it
attains and the dual bound must agree to ``CERTIFICATE_TOL``.

Integer features are relaxed to the integers' interval and each one-hot group to its convex hull
{x ≥ 0, Σ_g x ≤ 1}: the bound stays certified (a max over a superset of F), but the poisons are
fractional, so a campaign on one-hot data (Adult) needs ``feasibility = "box"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.capabilities import LinearModelLearner, require
from poisonbench.dataset import FeasibleSet
from poisonbench.learner import Learner, Model, require_certified
from poisonbench.params import declare
from poisonbench.plugins.defences.sanitiser import Sanitiser, class_centroids, class_quantile_keep
from poisonbench.plugins.defences.slab import SlabSanitiser
from poisonbench.plugins.defences.sphere import SphereSanitiser

#: the defender's constraints besides the box
DEFENCES = ("sphere+slab", "sphere", "slab", "box")
#: largest accepted gap between a worst point's value and its dual bound (absolute, and relative
#: above 1); the bound, not the point, enters U, so the gap only limits how loose U may be
CERTIFICATE_TOL = 1e-7


@dataclass(frozen=True)
class ClassRegion:
    """F_y for one label: the centroid μ_y and the radii (None when the constraint is off)."""

    label: float
    centroid: np.ndarray
    sphere_radius: float | None
    slab_radius: float | None


@dataclass(frozen=True)
class OracleFeasibleSet:
    """F = ∪_y F_y × {y}: the (relaxed) box ``lo ≤ x ≤ hi``, one-hot groups Σ_g x ≤ 1, and per
    class the sphere ‖x − μ_y‖ ≤ r_y and the slab |⟨x − μ_y, direction⟩| ≤ s_y."""

    lo: np.ndarray
    hi: np.ndarray
    groups: tuple[np.ndarray, ...]
    direction: np.ndarray
    regions: dict[float, ClassRegion]

    @classmethod
    def from_clean(
        cls, feasible: FeasibleSet, learner: Learner, X: np.ndarray, y: np.ndarray, fraction: float, defence: str
    ) -> OracleFeasibleSet:
        """The oracle set of the clean data ``(X, y)`` at quantile ``fraction`` (module docstring)."""
        if defence not in DEFENCES:
            raise ValueError(f"min-max: defence: expected one of {DEFENCES}, got {defence!r}")
        centroids = class_centroids(X, y)
        if set(centroids) != {-1.0, 1.0}:
            raise ValueError("min-max: the clean training data need points of both classes")
        sphere = _oracle_radii(SphereSanitiser, fraction, learner, X, y) if "sphere" in defence else None
        slab = _oracle_radii(SlabSanitiser, fraction, learner, X, y) if "slab" in defence else None
        integer = np.asarray(feasible.integer, bool)
        lo = np.where(integer, np.ceil(feasible.lo), feasible.lo)
        hi = np.where(integer, np.floor(feasible.hi), feasible.hi)
        if (lo > hi).any():
            j = int(np.flatnonzero(lo > hi)[0])
            raise ValueError(
                f"min-max: integer feature {j} has no integer value in [{feasible.lo[j]:g}, {feasible.hi[j]:g}]"
            )
        regions = {
            label: ClassRegion(
                label, mu, None if sphere is None else sphere[label], None if slab is None else slab[label]
            )
            for label, mu in centroids.items()
        }
        groups = tuple(np.array(g, dtype=np.int64) for g in feasible.onehot_groups)
        return cls(lo, hi, groups, centroids[1.0] - centroids[-1.0], regions)

    def radii(self) -> dict[str, float]:
        """The radii as diagnostics: ``sphere_radius_pos``, ``slab_radius_neg``, … (those F has)."""
        return {
            f"{kind}_radius_{'pos' if label > 0 else 'neg'}": radius
            for label, region in self.regions.items()
            for kind, radius in (("sphere", region.sphere_radius), ("slab", region.slab_radius))
            if radius is not None
        }


def _oracle_radii(
    sanitiser: type[Sanitiser], fraction: float, learner: Learner, X: np.ndarray, y: np.ndarray
) -> dict[float, float]:
    """Per class, the largest score among the clean points that ``sanitiser`` (oracle reference,
    calibrated on the clean data) keeps at ``fraction``: the radius of its constraint in F."""
    defence = sanitiser(fraction=fraction, reference="oracle")
    defence.calibrate(learner, X, y)
    scores = defence.scores(learner, X, y)
    keep = class_quantile_keep(scores, y, fraction)
    radii = {}
    for label in (-1.0, 1.0):
        kept = keep & (y == label)
        if not kept.any():
            raise ValueError(
                f"min-max: fraction = {fraction:g} keeps no clean point of class {label:+g}; "
                f"the {defence.name} radius is undefined"
            )
        radii[label] = float(scores[kept].max())
    return radii


def shrink_into_region(x: np.ndarray, F: OracleFeasibleSet, region: ClassRegion) -> np.ndarray:
    """A solver's point (a little outside F_y at most) clipped to the box, then shrunk toward μ_y
    onto the sphere, the slab and the one-hot caps: μ + κ(x' − μ) with the largest κ ≤ 1 that
    meets them (the box holds along the segment from μ, F_y being convex and containing μ_y; a
    cap that μ meets with equality, an exact one-hot group, is left to the solver's tolerance)."""
    mu = region.centroid
    z = np.clip(x, F.lo, F.hi) - mu
    kappa = 1.0
    r, s = region.sphere_radius, region.slab_radius
    norm = float(np.linalg.norm(z))
    if r is not None and norm > r:
        kappa = min(kappa, r / norm)
    along = abs(float(F.direction @ z))
    if s is not None and along > s:
        kappa = min(kappa, s / along)
    for g in F.groups:
        cap, used = 1.0 - float(mu[g].sum()), float(z[g].sum())
        if cap > 0 and used > cap:
            kappa = min(kappa, cap / used)
    return np.asarray(np.clip(mu + kappa * z, F.lo, F.hi))


@dataclass(frozen=True)
class WorstPoint:
    """argmax over F of the hinge loss at one model: the point, its label, the loss it attains
    and the certified bound (dual value) on the maximum."""

    x: np.ndarray
    y: float
    loss: float
    bound: float

    @property
    def gap(self) -> float:
        return self.bound - self.loss


class WorstPointSolver:
    """max_{(x, y) ∈ F} max(0, 1 − y(w·x + b)): one parameterised conic program per label
    (compiled once, re-solved with the new c = −y·w), each certified by its dual (module
    docstring)."""

    def __init__(self, feasible: OracleFeasibleSet) -> None:
        import cvxpy as cp

        self.F = feasible
        self.problems = {label: RegionProgram(cp, feasible, region) for label, region in feasible.regions.items()}

    def __call__(self, model: Model) -> WorstPoint:
        """The worst point at ``model`` (ties between the labels go to +1); its ``bound`` is a
        certified upper bound on max_F ℓ(model), over both labels."""
        points = []
        for label in (1.0, -1.0):
            solved = self.problems[label].solve(-label * model.w)
            assert solved is not None, "without a cut F_y holds μ_y, so it is never empty"
            x, attained, dual = solved
            offset = 1.0 - label * model.b
            points.append(WorstPoint(x, label, max(0.0, offset + attained), max(0.0, offset + dual)))
        best = max(points, key=lambda p: p.loss)
        return WorstPoint(best.x, best.y, best.loss, max(p.bound for p in points))


class RegionProgram:
    """max c·x over F_y, optionally cut by one half-space a·x ≤ β (the pieces of MTP's hinge
    max-loss difference, ``mtp_defence_aware``), in z = x − μ_y: the cvxpy problem (compiled
    once, re-solved with new c, a, β), its certificate and its repair."""

    def __init__(self, cp: Any, F: OracleFeasibleSet, region: ClassRegion) -> None:
        mu = region.centroid
        self.mu, self.F, self.region = mu, F, region
        d = mu.shape[0]
        self.c = cp.Parameter(d)
        self.a = cp.Parameter(d, value=np.zeros(d))
        self.beta = cp.Parameter(value=1.0)  # β − a·μ: the cut in z; 0·z ≤ 1 is no cut
        self.z = cp.Variable(d)
        self.upper = self.z <= F.hi - mu
        self.lower = self.z >= F.lo - mu
        self.group_rows = [np.isin(np.arange(d), g).astype(np.float64) for g in F.groups]
        self.group_caps = np.array([1.0 - row @ mu for row in self.group_rows])
        self.groups = [row @ self.z <= cap for row, cap in zip(self.group_rows, self.group_caps)]
        self.cut = self.a @ self.z <= self.beta
        constraints = [self.upper, self.lower, *self.groups, self.cut]
        if region.sphere_radius is not None:
            constraints.append(cp.norm(self.z, 2) <= region.sphere_radius)
        self.slab: tuple[Any, Any] | None = None
        if region.slab_radius is not None:
            self.slab = (F.direction @ self.z <= region.slab_radius, F.direction @ self.z >= -region.slab_radius)
            constraints += list(self.slab)
        self.problem = cp.Problem(cp.Maximize(self.c @ self.z), constraints)
        self.cp = cp

    def solve(
        self, c: np.ndarray, cut: tuple[np.ndarray, float] | None = None
    ) -> tuple[np.ndarray, float, float] | None:
        """``(x, c·(x − μ) + c·μ, dual bound + c·μ)``: a point of F_y (∩ {a·x ≤ β} for
        ``cut = (a, β)``), its value of c·x and a certified upper bound on the maximum of c·x
        there; None when a cut leaves no point (certified by the solver's infeasibility status);
        raises unless the solve is optimal and the two agree to :data:`CERTIFICATE_TOL`."""
        self.c.value = c
        if cut is None:
            self.a.value, self.beta.value = np.zeros_like(c), 1.0
        else:
            a, beta = cut
            self.a.value, self.beta.value = a, float(beta - a @ self.mu)
        who = f"the worst point of class {self.region.label:+g} in the sphere / slab set"
        try:
            with warnings.catch_warnings():  # "solution may be inaccurate": the status decides
                warnings.simplefilter("ignore", UserWarning)
                self.problem.solve(solver="CLARABEL")
        except self.cp.error.SolverError as exc:
            raise RuntimeError(f"{who}: Clarabel failed ({exc})") from None
        if cut is not None and self.problem.status == self.cp.INFEASIBLE:
            return None
        if self.problem.status != self.cp.OPTIMAL:
            raise RuntimeError(f"{who}: Clarabel returned status {self.problem.status!r}, not optimal")
        x = self._repair(np.asarray(self.z.value, dtype=np.float64))
        attained = float(c @ (x - self.mu))
        bound = self._dual_bound(c)
        tol = CERTIFICATE_TOL * max(1.0, abs(bound))
        if not -tol <= bound - attained <= tol:
            raise RuntimeError(
                f"{who}: not certified: the point attains {attained:.12g}, the dual bound is {bound:.12g} "
                f"(gap {bound - attained:.3g} > {tol:.3g})"
            )
        offset = float(c @ self.mu)
        return x, attained + offset, bound + offset

    def _repair(self, z: np.ndarray) -> np.ndarray:
        """The solver's point moved into F_y (:func:`shrink_into_region`)."""
        return shrink_into_region(self.mu + z, self.F, self.region)

    def _dual_bound(self, c: np.ndarray) -> float:
        """Weak duality: an upper bound on max c·z over F_y from the solver's multipliers (valid
        for any multipliers; tight at the optimal ones)."""
        F, mu = self.F, self.mu
        kappa = np.array([max(0.0, float(g.dual_value)) for g in self.groups])
        remainder = c - sum((k * row for k, row in zip(kappa, self.group_rows)), np.zeros_like(c))
        bound = float(kappa @ self.group_caps) if kappa.size else 0.0
        lam = max(0.0, float(self.cut.dual_value))
        remainder = remainder - lam * np.asarray(self.a.value, dtype=np.float64)
        bound += lam * float(self.beta.value)
        if self.slab is not None and self.region.slab_radius is not None:
            eta = float(self.slab[0].dual_value) - float(self.slab[1].dual_value)
            remainder = remainder - eta * F.direction
            bound += abs(eta) * self.region.slab_radius
        if self.region.sphere_radius is not None:
            q = np.asarray(self.upper.dual_value, dtype=np.float64) - np.asarray(
                self.lower.dual_value, dtype=np.float64
            )
            bound += self.region.sphere_radius * float(np.linalg.norm(remainder - q))
        else:
            q = remainder
        return bound + float(np.maximum(q * (F.lo - mu), q * (F.hi - mu)).sum())


class _Certificate:
    """U(θ) = (1/n) Σ_{D_c} ℓ(θ) + (1 + ε) C_R R(θ) + ε max_F ℓ(θ) and its running minimum."""

    def __init__(self, learner: Any, X: np.ndarray, y: np.ndarray, epsilon: float) -> None:
        self.learner, self.X, self.y, self.epsilon = learner, X, y, epsilon
        self.best: dict[str, Any] = {"upper_bound": float("inf")}

    def record(self, t: int, model: Model, worst: WorstPoint) -> float:
        """U(θ_t) from the certified worst-loss bound; updates the running minimum."""
        clean_loss = float(self.learner.loss(model, self.X, self.y).mean())
        reg = (1.0 + self.epsilon) * self.learner.C_R * self.learner.regulariser(model)
        value = clean_loss + reg + self.epsilon * worst.bound
        if value < self.best["upper_bound"]:
            self.best = {"upper_bound": value, "upper_bound_loss": clean_loss, "upper_bound_iterate": t}
        return value


@declare(
    {
        "fraction": Param(
            float,
            "quantile of each class's clean scores outside F (as the sanitisers')",
            low=0.0,
            high=1.0,
            high_open=True,
        ),
        "defence": Param(str, "the oracle defender's constraints besides the box", choices=DEFENCES),
    }
)
class MinMaxAttack:
    """Min-max attack (Steinhardt et al. 2017, Algorithm 1) with the certified upper bound on the
    clean loss any εn poisons inside the oracle sphere / slab set can cause (linear SVM)."""

    name = "min-max"
    needs_budget = True

    def __init__(self, fraction: float = 0.05, defence: str = "sphere+slab") -> None:
        self.fraction = float(fraction)
        self.defence = defence

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield the T = budget poisons one per batch, each with the running certified bound."""
        if scenario.budget is None:
            raise ValueError("min-max needs its budget up front (ε = budget / n): set scenario.budget")
        learner = require(scenario.learner, LinearModelLearner, "min-max", loss_kinds=("hinge",))
        data = scenario.dataset
        X_c, y_c = np.asarray(data.X_train), np.asarray(data.y_train)
        n, T, d = data.n_train, int(scenario.budget), data.n_features
        epsilon = T / n
        F = OracleFeasibleSet.from_clean(data.feasible, learner, X_c, y_c, self.fraction, self.defence)
        solver = WorstPointSolver(F)
        certificate = _Certificate(learner, X_c, y_c, epsilon)
        model = require_certified(learner.fit(X_c, y_c), "min-max: the learner on the clean data")
        worst = solver(model)
        step_bound = certificate.record(0, model, worst)
        common = {"epsilon": epsilon, "defence": self.defence, "fraction": self.fraction}
        if T == 0:
            yield PoisonBatch(np.empty((0, d)), np.empty(0), {**common, **certificate.best, "step_bound": step_bound})
            return
        X_all = np.vstack([X_c, np.zeros((T, d))])
        y_all = np.concatenate([y_c, np.zeros(T)])
        for t in range(1, T + 1):
            poison = worst  # the best response to θ_{t−1}
            X_all[n + t - 1], y_all[n + t - 1] = poison.x, poison.y
            weights = np.concatenate([np.ones(n), np.full(t, T / t)])  # εn/t each: Σ_{s≤t} U_s / t
            model = require_certified(
                learner.fit(X_all[: n + t], y_all[: n + t], sample_weight=weights, warm_start=model),
                f"min-max: the learner at iteration {t}",
            )
            worst = solver(model)
            step_bound = certificate.record(t, model, worst)
            diagnostics = {
                **common,
                **certificate.best,
                "iteration": t,
                "step_bound": step_bound,
                "poison_loss": poison.loss,
                "certificate_gap": max(poison.gap, worst.gap),
            }
            if t == T:  # θ_T is the defender's model on D_c ∪ D_p (every weight is 1)
                diagnostics.update(self._final(learner, model, X_all, y_all, n, epsilon, certificate))
            yield PoisonBatch(poison.x[None, :], np.array([poison.y]), diagnostics)

    @staticmethod
    def _final(
        learner: Any, model: Model, X: np.ndarray, y: np.ndarray, n: int, epsilon: float, certificate: _Certificate
    ) -> dict[str, float]:
        """The attack's own value: θ_T's clean loss, regularised clean loss and minimax value
        (1/n) Σ_{D_c ∪ D_p} ℓ + (1 + ε) C_R R, which the optimal attack's M lies above."""
        clean_loss = float(learner.loss(model, X[:n], y[:n]).mean())
        reg = learner.C_R * learner.regulariser(model)
        value = float(learner.loss(model, X, y).sum()) / n + (1.0 + epsilon) * reg
        return {
            "attack_clean_loss": clean_loss,
            "attack_clean_objective": clean_loss + reg,
            "attack_minimax_value": value,
            "minimax_gap": certificate.best["upper_bound"] - value,
        }


@hookimpl
def register_attacks(register: Any) -> None:
    register(MinMaxAttack)
