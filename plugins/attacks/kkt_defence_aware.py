"""Built-in attack ``kkt-defence-aware``: the KKT attack whose two points pass an oracle sphere /
slab sanitiser — the constrained KKT attack of Koh, Steinhardt & Liang (2018, "Stronger data
poisoning attacks break data sanitization defenses", §4: the attacker's feasible set is the
defender's).

The KKT attack (``kkt``, :mod:`.kkt`) looks for n₊ copies of (x₊, +1) and n₋ of (x₋, −1) that
make the target θ_p stationary, minimising ‖∇J(θ_p)‖₂ over the two points, one second-order cone
program per split n₊/n. Here each point is also constrained to its class's region of the oracle
feasible set (:class:`~poisonbench.plugins.attacks.minmax.OracleFeasibleSet`, centroids and radii
from the clean data at quantile ``fraction``, as ``min-max`` and ``mtp-defence-aware`` build it):

    min ‖∇J(θ_p; x₊, x₋)‖₂   s.t.  x_s ∈ box,  s(w_p·x_s + b_p) ≤ 1,
                                   ‖x_s − μ_s‖₂ ≤ r_s (sphere),  |⟨x_s − μ_s, μ₊ − μ₋⟩| ≤ s_s (slab),

still an SOCP (cvxpy, Clarabel → SCS, status checked), and still convex in the split once
written in z_s = p_s·x_s (F_s's perspective: ‖z − p μ‖ ≤ p r, |⟨z − p μ, v⟩| ≤ p s), so only the
grid points around the continuous minimiser are solved (``kkt``'s bracketed search; no rounding
here, so it applies whatever the features). A split whose problem has no solution
(a side with no point of F on the active side of θ_p's margin) counts as failed. The solved
points are clipped to the box and shrunk toward μ_s into F_s
(:func:`~poisonbench.plugins.attacks.minmax.shrink_into_region`), so every poison lies in F to
rounding, and the reported objective is recomputed from those points. The learner is the SVM
(hinge loss); integer features and one-hot groups are relaxed (no rounding: rounding would leave
F), so campaigns on such data need ``feasibility = "box"``. Diagnostics are ``kkt``'s plus the
radii of F.

``KKTAttack.poison`` does the rest; this attack replaces its search (``_search``: the oracle
set, the constrained SOCP), its choice of candidate (``_pick``: no rounding) and its loss check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.attack import Scenario
from poisonbench.capabilities import LinearModelLearner, require
from poisonbench.learner import Learner, Model
from poisonbench.params import declare
from poisonbench.plugins.attacks.kkt import KKTAttack, _Box, _Candidate, _HingeSearch, _Residual
from poisonbench.plugins.attacks.minmax import DEFENCES, OracleFeasibleSet, shrink_into_region


class SanitiserAwareKKTSearch(_HingeSearch):
    """``kkt``'s parameterised SOCP over the split with each point also inside its class's F_s."""

    def __init__(self, residual: _Residual, box: _Box, feasible: OracleFeasibleSet) -> None:
        self.F = feasible
        super().__init__(residual, box)

    def _region(self, s: int, z: Any, t: Any) -> list[Any]:
        """``kkt``'s constraints on z = t·x plus x ∈ F_s: ‖x − μ_s‖₂ ≤ r_s and
        |⟨x − μ_s, μ₊ − μ₋⟩| ≤ s_s, multiplied through by t (second-order cones in (z, t))."""
        region, F = self.F.regions[float(s)], self.F
        u = z - t * region.centroid
        constraints = super()._region(s, z, t)
        if region.sphere_radius is not None:
            constraints.append(self.cp.norm(u, 2) <= t * region.sphere_radius)
        if region.slab_radius is not None:
            constraints += [F.direction @ u <= t * region.slab_radius, F.direction @ u >= -t * region.slab_radius]
        return constraints

    def _point(self, s: int) -> np.ndarray:
        """The solved point of side ``s`` moved into F_s (the box centre for a side with no point)."""
        x = super()._point(s)
        return shrink_into_region(x, self.F, self.F.regions[float(s)]) if s in self.x else x


@declare(
    {
        **{
            k: KKTAttack.parameters[k]  # type: ignore[attr-defined]
            for k in ("target", "split_step", "margin_tol", "bound_induced", "bound_epsilon")
        },
        "fraction": Param(float, "quantile of each class the sanitiser removes (as sphere / slab)", low=0, high=1),
        "defence": Param(str, "the constraints the poisons satisfy", choices=DEFENCES),
    }
)
class DefenceAwareKKT(KKTAttack):
    """KKT attack whose two points lie inside the oracle sphere / slab set (Koh et al. 2018, §4)."""

    name = "kkt-defence-aware"

    def __init__(
        self,
        target: str | Model,
        split_step: float = 0.005,
        margin_tol: float = 1e-6,
        bound_induced: bool = False,
        bound_epsilon: float = 0.01,
        fraction: float = 0.05,
        defence: str = "sphere+slab",
    ) -> None:
        super().__init__(
            target=target,
            split_step=split_step,
            margin_tol=margin_tol,
            bound_induced=bound_induced,
            bound_epsilon=bound_epsilon,
        )
        self.fraction, self.defence = float(fraction), defence

    def _loss(self, learner: Learner) -> str:
        require(learner, LinearModelLearner, self.name, loss_kinds=("hinge",))
        return "hinge"

    def _search(
        self, scenario: Scenario, loss: str, residual: _Residual, box: _Box, splits: np.ndarray
    ) -> tuple[list[_Candidate], int, int, dict[str, Any]]:
        """The bracketed search with both points inside the oracle set F; F's radii as diagnostics."""
        data = scenario.dataset
        F = OracleFeasibleSet.from_clean(
            data.feasible,
            scenario.learner,
            np.asarray(data.X_train),
            np.asarray(data.y_train),
            self.fraction,
            self.defence,
        )
        candidates, failed, solved = SanitiserAwareKKTSearch(residual, box, F).bracketed(splits)
        return candidates, failed, solved, {"defence": self.defence, "fraction": self.fraction, **F.radii()}

    def _pick(
        self, candidates: list[_Candidate], residual: _Residual, box: _Box
    ) -> tuple[float, _Candidate, tuple[np.ndarray, np.ndarray]]:
        """The candidate of lowest exact objective at its own points (no rounding: it would leave F)."""
        scored = sorted(
            ((residual.norm(c.x_pos, c.x_neg, c.n_pos, residual.n - c.n_pos), c.n_pos, c) for c in candidates),
            key=lambda item: item[:2],
        )
        value, _, best = scored[0]
        return value, best, (best.x_pos, best.x_neg)


@hookimpl
def register_attacks(register: Any) -> None:
    register(DefenceAwareKKT)
