"""Built-in attack ``koh-label-flip``: the objective-driven label-flipping attack of Koh,
Steinhardt & Liang (2018), the baseline of the MTP paper's Table 5.

The attack is the target heuristic of :mod:`poisonbench.plugins.targets` used as an attack:
for each loss quantile q and repeat count r of a grid, flip the labels of the points whose
margin under the clean model is at most the q-quantile and add them r times; among the cells
that reach the objective (test error above ``rate``, or 0 % accuracy on the subpopulation) keep
the one whose model has the lowest clean loss. That model is exactly the target θ_p that MTP
is then asked to reach, so its poisons, n_flipped × r, are the count MTP's n_p is compared with
(Table 5: 6,510 / 8,648 / 10,825 against MTP's 1,737 / 5,458 / 6,192 on MNIST 1–7).

The attack yields the chosen cell's poisons pass by pass (the n_flipped flipped points, r
times), so a budget below n_flipped × r takes a prefix of whole passes and a partial one. Its
diagnostics say which cell was chosen (``quantile``, ``repeat``, ``n_flipped``) and
``koh_poisons`` = n_flipped × r. With ``improved`` targets (MTP D.3) the margins of a cell are
those of the previous cell's model, as the heuristic computes them; the grid is replayed to
find them (the same fits the target generation made).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.learner import require_certified
from poisonbench.params import declare
from poisonbench.plugins.targets import (
    ERROR_QUANTILES,
    ERROR_REPEATS,
    SUBPOP_QUANTILES,
    SUBPOP_REPEATS,
    _flip_grid,
    check_grid,
    make_target,
    parse_spec,
)


def _heuristic_spec(spec: str) -> None:
    kind, _, _ = parse_spec(spec)
    if kind == "file":
        raise ValueError(
            f"target {spec!r}: koh-label-flip needs a heuristic target (error:<rate>[:improved] or subpop)"
        )


@declare(
    {
        "target": Param(str, "objective: error:<rate>, error:<rate>:improved or subpop", check=_heuristic_spec),
        "target_quantiles": Param(list, "loss quantiles of the grid", optional=True, check=check_grid),
        "target_repeats": Param(
            list, "repeat counts of the grid", optional=True, check=lambda v: check_grid(v, integer=True)
        ),
        "target_flip_source": Param(str, "split whose points are flipped", choices=("test", "train")),
    }
)
class KohLabelFlip:
    """Koh et al. (2018) objective-driven label flipping: the flip set of the target heuristic."""

    name = "koh-label-flip"
    needs_budget = False

    def __init__(
        self,
        target: str = "error:0.1",
        target_quantiles: list[float] | None = None,
        target_repeats: list[int] | None = None,
        target_flip_source: str = "test",
    ) -> None:
        _heuristic_spec(target)
        self.target = target
        self.quantiles, self.repeats, self.flip_source = target_quantiles, target_repeats, target_flip_source

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield the chosen cell's flipped points, one pass (of ``repeat``) per batch."""
        kind, _, improved = parse_spec(self.target)
        subpop = kind == "subpop"
        quantiles = tuple(self.quantiles or (SUBPOP_QUANTILES if subpop else ERROR_QUANTILES))
        repeats = tuple(self.repeats or (SUBPOP_REPEATS if subpop else ERROR_REPEATS))
        target = make_target(self.target, scenario, quantiles=quantiles, repeats=repeats, flip_source=self.flip_source)
        X_s, y_s = self._flip_source(scenario, subpop)
        flipped = self._flipped(scenario, X_s, y_s, quantiles, repeats, improved, target.info)
        q, r = float(target.info["quantile"]), int(target.info["repeat"])
        X, y = X_s[flipped], -y_s[flipped]
        info: dict[str, Any] = {
            "target": self.target,
            "quantile": q,
            "repeat": r,
            "n_flipped": int(flipped.sum()),
            "koh_poisons": int(flipped.sum()) * r,
            "target_test_accuracy": target.info.get("test_accuracy"),
        }
        budget = info["koh_poisons"] if scenario.budget is None else min(int(scenario.budget), info["koh_poisons"])
        done = 0
        for p in range(r):
            k = min(len(y), budget - done)
            if k <= 0:
                return
            done += k
            yield PoisonBatch(X[:k].copy(), y[:k].copy(), {**info, "passes": p + 1, "flipped_total": done})

    def _flip_source(self, scenario: Scenario, subpop: bool) -> tuple[np.ndarray, np.ndarray]:
        data = scenario.dataset
        X_all, y_all = (data.X_test, data.y_test) if self.flip_source == "test" else (data.X_train, data.y_train)
        if not subpop:
            return X_all, y_all
        if scenario.subpopulation is None:
            raise ValueError("koh-label-flip: a subpop target needs the scenario's subpopulation")
        sub = data.subpopulation(scenario.subpopulation)
        idx = sub.test_idx if self.flip_source == "test" else sub.train_idx
        return X_all[idx], y_all[idx]

    @staticmethod
    def _flipped(
        scenario: Scenario,
        X_s: np.ndarray,
        y_s: np.ndarray,
        quantiles: tuple[float, ...],
        repeats: tuple[int, ...],
        improved: bool,
        info: dict[str, Any],
    ) -> np.ndarray:
        """The flip mask of the target's grid cell: margins under the clean model, or (improved)
        under the previous cell's model, at most their ``quantile``-quantile."""
        q, r, n = float(info["quantile"]), int(info["repeat"]), int(info["n_flipped"])
        learner = scenario.learner
        model = require_certified(learner.fit(scenario.dataset.X_train, scenario.dataset.y_train), "clean model")
        if improved:
            cells = _flip_grid(scenario, X_s, y_s, quantiles, repeats, adaptive=True)
            position = [(cq, cr) for _, cq, cr, _ in cells].index((q, r))
            if position > 0:
                model = cells[position - 1][0]
        margins = y_s * model.decision_function(X_s)
        flipped = margins <= np.quantile(margins, q)
        if int(flipped.sum()) != n:
            raise RuntimeError(f"koh-label-flip: replaying the grid flips {int(flipped.sum())} points, the target {n}")
        return np.asarray(flipped)


@hookimpl
def register_attacks(register: Any) -> None:
    register(KohLabelFlip)
