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

still an SOCP (cvxpy, Clarabel → SCS, status checked). A split whose problem has no solution
(a side with no point of F on the active side of θ_p's margin) counts as failed. The solved
points are clipped to the box and shrunk toward μ_s into F_s
(:func:`~poisonbench.plugins.attacks.minmax.shrink_into_region`), so every poison lies in F to
rounding, and the reported objective is recomputed from those points. The learner is the SVM
(hinge loss); integer features and one-hot groups are relaxed (no rounding: rounding would leave
F), so campaigns on such data need ``feasibility = "box"``. Diagnostics are ``kkt``'s plus the
radii of F.

Implementation note: ``KKTAttack.poison`` takes no search argument and changing :mod:`.kkt` would
make every committed KKT row stale (their code hash covers it); this attack re-states its hinge
branch with the search replaced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.capabilities import LinearModelLearner, require
from poisonbench.learner import Model
from poisonbench.params import declare
from poisonbench.plugins.attacks.kkt import (
    SOLVER_CHAIN,
    KKTAttack,
    _Box,
    _HingeSearch,
    _Residual,
    _split_grid,
)
from poisonbench.plugins.attacks.minmax import DEFENCES, OracleFeasibleSet, shrink_into_region
from poisonbench.plugins.lower_bound import induced_bound


class SanitiserAwareKKTSearch(_HingeSearch):
    """``kkt``'s parameterised SOCP over the split with each point also inside its class's F_s."""

    def __init__(self, residual: _Residual, box: _Box, feasible: OracleFeasibleSet) -> None:
        super().__init__(residual, box)
        cp, F = self.cp, feasible
        self.F = F
        extra = []
        for s, x in self.x.items():
            region = F.regions[float(s)]
            z = x - region.centroid
            if region.sphere_radius is not None:
                extra.append(cp.norm(z, 2) <= region.sphere_radius)
            if region.slab_radius is not None:
                extra += [F.direction @ z <= region.slab_radius, F.direction @ z >= -region.slab_radius]
        self.problem = cp.Problem(self.problem.objective, [*self.problem.constraints, *extra])

    def _point(self, s: int) -> np.ndarray:
        """The solved point of side ``s`` moved into F_s (the box centre for a side with no point)."""
        x = super()._point(s)
        return shrink_into_region(x, self.F, self.F.regions[float(s)]) if s in self.x else x


def _exact_value(residual: _Residual, x_pos: np.ndarray, x_neg: np.ndarray, n_pos: int) -> float:
    return residual.norm(x_pos, x_neg, n_pos, residual.n - n_pos)


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

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield one batch: the n = scenario.budget poisons, all inside F, and the diagnostics."""
        if scenario.budget is None:
            raise ValueError(f"{self.name} needs its budget up front: set scenario.budget to the number of poisons")
        learner = require(scenario.learner, LinearModelLearner, self.name, loss_kinds=("hinge",))
        start = time.perf_counter()
        data, n = scenario.dataset, int(scenario.budget)
        F = OracleFeasibleSet.from_clean(
            data.feasible, learner, np.asarray(data.X_train), np.asarray(data.y_train), self.fraction, self.defence
        )
        target = self._target_model(scenario)
        if target.w.shape[0] != data.n_features:
            raise ValueError(f"{self.name}: target has {target.w.shape[0]} features, the dataset {data.n_features}")
        residual = _Residual(learner, target, data.X_train, data.y_train, n, True, self.margin_tol)
        if n == 0:
            empty = np.empty((0, data.n_features))
            yield PoisonBatch(empty, np.empty(0), {"kkt_objective": residual.norm(empty, empty, 0, 0)})
            return
        splits = _split_grid(n, self.split_step, residual.exact_bias_n_pos())
        box = _Box.of(data.feasible, data.X_train)
        candidates, failed = SanitiserAwareKKTSearch(residual, box, F).run(splits)
        if not candidates:
            raise RuntimeError(
                f"{self.name}: no split has a solution inside the sanitiser's set ({', '.join(SOLVER_CHAIN)}, "
                f"{len(splits)} splits)"
            )
        scored = sorted(
            ((_exact_value(residual, c.x_pos, c.x_neg, c.n_pos), c.n_pos, c) for c in candidates),
            key=lambda item: item[:2],
        )
        value, _, best = scored[0]
        n_pos, n_neg = best.n_pos, n - best.n_pos
        X_p = np.vstack([np.repeat(best.x_pos[None], n_pos, 0), np.repeat(best.x_neg[None], n_neg, 0)])
        y_p = np.concatenate([np.ones(n_pos), -np.ones(n_neg)])
        points = (best.x_pos, best.x_neg)
        diagnostics = self._diagnostics(
            scenario, target, best, value, points, len(splits), failed, time.perf_counter() - start
        )
        diagnostics.update(
            defence=self.defence,
            fraction=self.fraction,
            **{
                f"{kind}_radius_{'pos' if label > 0 else 'neg'}": radius
                for label, region in F.regions.items()
                for kind, radius in (("sphere", region.sphere_radius), ("slab", region.slab_radius))
                if radius is not None
            },
        )
        if self.bound_induced:
            diagnostics.update(induced_bound(scenario, X_p, y_p, self.bound_epsilon))
        yield PoisonBatch(X_p, y_p, diagnostics)


@hookimpl
def register_attacks(register: Any) -> None:
    register(DefenceAwareKKT)
