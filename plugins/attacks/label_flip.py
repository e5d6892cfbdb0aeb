"""Built-in attacks ``label-flip`` and ``subpop-label-flip``: inject training points with
flipped labels (SPEC §5).

Random label flipping samples points of the whole training set; the subpopulation variant
(Jagielski et al. 2019; MTP paper appendix E, Table 7) samples only the target
subpopulation's training points. Both copy the sampled rows (the clean data is never
touched), flip y → −y and yield them in batches. Sampling is without replacement through a
seeded permutation of the pool; once the pool is exhausted a fresh permutation starts, so a
budget larger than the pool reuses points (with replacement across passes, each point at
most ⌈budget / pool⌉ times) and the diagnostics say so. Without a budget the attack stops
after one pass over the pool.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.params import declare

_RNG_STREAM = 0x4C46  # "LF"


def _flipped_stream(name: str, pool: np.ndarray, scenario: Scenario, batch_size: int) -> Iterator[PoisonBatch]:
    """Flipped copies of ``pool`` rows in a seeded order, ``batch_size`` at a time, up to the budget."""
    if pool.size == 0:
        raise ValueError(f"{name}: the pool of training points to flip is empty")
    data = scenario.dataset
    total = pool.size if scenario.budget is None else int(scenario.budget)
    rng = scenario.rng(_RNG_STREAM)
    passes = -(-total // pool.size)
    order = np.concatenate([rng.permutation(pool) for _ in range(passes)])[:total] if total else pool[:0]
    for start in range(0, total, batch_size):
        idx = order[start : start + batch_size]
        done = start + idx.size
        yield PoisonBatch(
            data.X_train[idx],  # fancy indexing: a copy
            -data.y_train[idx],
            {"flipped_total": done, "pool_size": int(pool.size), "pool_exhausted": done > pool.size},
        )


BATCH_SIZE = {"batch_size": Param(int, "flipped points per yielded batch", low=1)}


@declare(BATCH_SIZE)
class RandomLabelFlip:
    """Random label flipping: inject training points with their labels flipped."""

    name = "label-flip"
    needs_budget = False

    def __init__(self, batch_size: int = 100) -> None:
        self.batch_size = int(batch_size)

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield flipped copies of training points until the budget (or one pass) is spent."""
        return _flipped_stream(self.name, np.arange(scenario.dataset.n_train), scenario, self.batch_size)


@declare(BATCH_SIZE)
class SubpopulationLabelFlip:
    """Subpopulation label flipping (Jagielski et al. 2019): flip points of the target subpopulation."""

    name = "subpop-label-flip"
    needs_budget = False

    def __init__(self, batch_size: int = 100) -> None:
        self.batch_size = int(batch_size)

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield flipped copies of ``scenario.subpopulation``'s training points up to the budget."""
        if scenario.subpopulation is None:
            names = sorted(scenario.dataset.subpopulations)
            raise ValueError(f"{self.name}: needs scenario.subpopulation, one of {names}")
        pool = scenario.dataset.subpopulation(scenario.subpopulation).train_idx
        return _flipped_stream(self.name, pool, scenario, self.batch_size)


@hookimpl
def register_attacks(register):
    register(RandomLabelFlip)
    register(SubpopulationLabelFlip)
