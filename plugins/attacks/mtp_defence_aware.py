"""Built-in attack ``mtp-defence-aware``: MTP (Suya et al., Algorithm 1) whose points pass an oracle
sphere / slab sanitiser — the "attack knows the defence" setting of Koh, Steinhardt & Liang
(2018, "Stronger data poisoning attacks break data sanitization defenses", §3: the attacker's
feasible set is the defender's).

The only change to Algorithm 1 is line 4's feasible set. Instead of the dataset's box X, the
maximum loss difference is taken over

    F = ∪_y F_y × {y},   F_y = {x ∈ X : ‖x − μ_y‖₂ ≤ r_y,  |⟨x − μ_y, μ₊ − μ₋⟩| ≤ s_y},

the oracle set of the sphere and / or slab sanitisers at quantile ``fraction`` (centroids and
radii from the clean training data, exactly as ``min-max`` builds it:
:class:`~poisonbench.plugins.attacks.minmax.OracleFeasibleSet`). For the hinge loss the loss
difference max(0, u) − max(0, v), u = 1 − y f_t(x), v = 1 − y f_p(x), splits by the sign of v
into the three pieces of :mod:`poisonbench.plugins.max_loss_diff` (max u on {v ≤ 0}; max −v and
max u − v on {v ≥ 0}); over F_y each is a linear objective over a box ∩ ball ∩ slab cut by one
half-space: a second-order cone program (cvxpy, Clarabel), certified by its dual
(:class:`~poisonbench.plugins.attacks.minmax.RegionProgram`). The best point over pieces and
labels is returned with its value; the run refuses (raises) unless the certified upper bound on
the maximum (the pieces' dual bounds) and the value the point attains agree to
``CERTIFICATE_TOL``, so the Theorem-2 lower bound stays certified — for attacks inside F.

Every poison is in F (to rounding), so a sanitiser whose radius is the clean data's quantile
keeps each one *unless the poisons move its quantile*: the built-in sanitisers remove a fraction
of the data they are given, poisons included, so a poison on the boundary of F can still be
among the points removed (docs/defences.md). The learner is the SVM (hinge loss); ``onehot``
groups and integer features are relaxed (Σ_g x ≤ 1, the integers' interval), so campaigns on
such data need ``feasibility = "box"``.

Implementation note: :func:`poisonbench.plugins.mtp_algorithm.run_mtp` takes no search
argument, and changing it would make every committed MTP row stale (their code hash covers that
module); the run here is the same Algorithm 1 object with its search replaced. The induced-model
bound (``bound_induced``) is not offered: its second run would need the same feasible set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from poisonbench import Param, PoisonBatch, Scenario, hookimpl
from poisonbench.capabilities import LinearModelLearner, require
from poisonbench.params import declare
from poisonbench.plugins.attacks.minmax import CERTIFICATE_TOL, DEFENCES, OracleFeasibleSet, RegionProgram
from poisonbench.plugins.attacks.mtp import ModelTargetedPoisoning
from poisonbench.plugins.max_loss_diff import LABELS, MaxLossDiff, _hinge_pieces, hinge_loss_diff
from poisonbench.plugins.mtp_algorithm import _OnlineRun


class SanitiserAwareHingeSearch:
    """Exact max over F of the hinge loss difference (module docstring): three certified conic
    programs per label, compiled once per label."""

    def __init__(self, feasible: OracleFeasibleSet) -> None:
        import cvxpy as cp

        self.F = feasible
        self.programs = {label: RegionProgram(cp, feasible, region) for label, region in feasible.regions.items()}
        self.relaxed = bool(feasible.groups)

    def __call__(self, theta_t: np.ndarray, theta_p: np.ndarray, **_: Any) -> MaxLossDiff:
        """argmax over (x, y) ∈ F of hinge(θ_t; x, y) − hinge(θ_p; x, y), certified."""
        best: MaxLossDiff | None = None
        upper = -np.inf
        for y in LABELS:
            for piece, (c, a, beta) in enumerate(_hinge_pieces(theta_t, theta_p, y)):
                solved = self.programs[y].solve(c, (a, beta))
                if solved is None:
                    continue
                x, _attained, dual = solved
                upper = max(upper, self._piece_upper(piece, dual, theta_t, theta_p, y))
                value = float(hinge_loss_diff(theta_t, theta_p, x, y)[0])
                if best is None or value > best.value:
                    best = MaxLossDiff(value, x, float(y), exact=True, relaxed=self.relaxed, solver="clarabel-socp")
        if best is None:
            raise RuntimeError("mtp-defence-aware: every piece reported infeasible; is the feasible set empty?")
        if upper - best.value > CERTIFICATE_TOL * max(1.0, abs(upper)):
            raise RuntimeError(
                f"mtp-defence-aware: max loss difference not certified: the point attains {best.value:.12g}, "
                f"the pieces' dual bounds allow {upper:.12g}"
            )
        return best

    @staticmethod
    def _piece_upper(piece: int, dual: float, theta_t: np.ndarray, theta_p: np.ndarray, y: float) -> float:
        """A certified upper bound on the loss difference over one piece's region from the bound
        ``dual`` on its linear objective c·x: piece A (v ≤ 0) is max(0, u) with u = 1 − y(w_t·x +
        b_t); B1 is −v = y(w_p·x + b_p) − 1; B2 is u − v = y(b_p − b_t) + c·x (max(−v, u − v) on
        B: each of B1, B2 bounds its own term)."""
        b_t, b_p = theta_t[-1], theta_p[-1]
        if piece == 0:
            return max(0.0, 1.0 - y * b_t + dual)
        if piece == 1:
            return y * b_p - 1.0 + dual
        return y * (b_p - b_t) + dual


#: MTP's parameters that apply here: not the induced-model bound (module docstring), nor the
#: search settings (the search is the conic program over F)
MTP_PARAMETERS = (
    "target",
    "epsilon",
    "copies",
    "max_poisons",
    "accuracy_goal",
    "target_quantiles",
    "target_repeats",
    "target_flip_source",
)


@declare(
    {
        **{k: ModelTargetedPoisoning.parameters[k] for k in MTP_PARAMETERS},  # type: ignore[attr-defined]
        "fraction": Param(float, "quantile of each class the sanitiser removes (as sphere / slab)", low=0, high=1),
        "defence": Param(str, "the constraints the poisons satisfy", choices=DEFENCES),
    }
)
class DefenceAwareMTP(ModelTargetedPoisoning):
    """MTP whose points lie inside the oracle sphere / slab sanitiser's feasible set (Koh et al. 2018).

    Parameters are MTP's stopping rules and target (not its search settings nor the induced-model
    bound) and the feasible set's ``fraction`` and ``defence``, as in ``min-max``."""

    name = "mtp-defence-aware"

    def __init__(
        self,
        target: str = "subpop",
        epsilon: float | None = None,
        copies: int = 1,
        max_poisons: int | None = None,
        accuracy_goal: float | None = None,
        target_quantiles: list[float] | None = None,
        target_repeats: list[int] | None = None,
        target_flip_source: str = "test",
        fraction: float = 0.05,
        defence: str = "sphere+slab",
    ) -> None:
        super().__init__(
            target=target,
            epsilon=epsilon,
            copies=copies,
            max_poisons=max_poisons,
            accuracy_goal=accuracy_goal,
            target_quantiles=target_quantiles,
            target_repeats=target_repeats,
            target_flip_source=target_flip_source,
        )
        self.fraction, self.defence = float(fraction), defence

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Algorithm 1 with line 4 over F; the first batch names F's radii."""
        learner = require(scenario.learner, LinearModelLearner, self.name, loss_kinds=("hinge",))
        data = scenario.dataset
        F = OracleFeasibleSet.from_clean(
            data.feasible, learner, np.asarray(data.X_train), np.asarray(data.y_train), self.fraction, self.defence
        )
        target = self.target_model(scenario)
        run = _OnlineRun(scenario, target, self.settings)
        run.search = SanitiserAwareHingeSearch(F)
        for i, batch in enumerate(run.batches()):
            if i == 0:
                batch.diagnostics.update(
                    target=self.target,
                    target_test_accuracy=target.accuracy(data.X_test, data.y_test),
                    defence=self.defence,
                    fraction=self.fraction,
                    **F.radii(),
                )
            yield batch


@hookimpl
def register_attacks(register: Any) -> None:
    register(DefenceAwareMTP)
