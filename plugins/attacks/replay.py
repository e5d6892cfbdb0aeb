"""Built-in attack ``replay``: re-play the poison set an earlier trial stored (docs/campaigns.md,
"Poison sets").

Every trial that produced poisons leaves them in its store as data
(``<store>/<campaign>/_poisons/poisons-<trial>.parquet``, :class:`poisonbench.results.PoisonSet`).
``replay`` yields that set again, in its original order and batches (empty batches included),
so the checkpoints of a campaign with the same budgets fall where the source trial's did: the
same learner and defence reproduce the source's rows, and another learner or defence evaluates
the poisons crafted against the first (a transfer matrix). The poisons must have been crafted on
this scenario's data: the dataset digest the set records must be the scenario dataset's (the
same dataset, parameters and seed), else ``ValueError``. The set's content is checked against
its recorded hash, and against ``sha256`` when given (pinning it also makes the hash part of the
trial id, so a re-run source with other poisons gives new replay trials). Past the scenario's
budget the set is cut off.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from poisonbench import Param, hookimpl
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.params import declare
from poisonbench.results import PoisonSet, poisons_path, read_poison_set


def _trial_id(value: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{16}", value):
        raise ValueError(f"expected a trial id of 16 hex digits, got {value!r}")


def _sha256(value: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"expected a SHA-256 of 64 hex digits, got {value!r}")


@declare(
    {
        "store": Param(str, "the store holding the source trial (relative: to the campaign file)", path=True),
        "campaign": Param(str, "the source trial's campaign"),
        "trial": Param(str, "the source trial's id (16 hex digits)", check=_trial_id),
        "sha256": Param(str, "the poison set's content hash (its rows' poisons_sha256)", optional=True, check=_sha256),
    }
)
class Replay:
    """Re-play the stored poison set of another trial, batch by batch."""

    name = "replay"
    needs_budget = False

    def __init__(self, store: str, campaign: str, trial: str, sha256: str | None = None) -> None:
        self.store, self.campaign, self.trial, self.sha256 = store, campaign, trial, sha256

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Check the stored set against the scenario, then yield its batches up to the budget."""
        poisons = read_poison_set(poisons_path(self.store, self.campaign, self.trial), self.sha256)
        data = scenario.dataset
        source = f"trial {self.trial} of campaign {self.campaign!r}"
        if poisons.n_features != data.n_features:
            raise ValueError(
                f"replay: the poisons of {source} have {poisons.n_features} features, this scenario's dataset "
                f"{data.n_features}: poisons crafted on other data cannot be replayed"
            )
        if poisons.dataset_digest != data.digest():
            crafted = poisons.identity.get("dataset", "?"), poisons.identity.get("seed", "?")
            raise ValueError(
                f"replay: the poisons of {source} were crafted on dataset {crafted[0]} with seed {crafted[1]}, "
                f"whose data differ from this scenario's: poisons crafted on other data cannot be replayed"
            )
        return self._batches(poisons, scenario.budget, source)

    def _batches(self, poisons: PoisonSet, budget: int | None, source: str) -> Iterator[PoisonBatch]:
        left = len(poisons.y) if budget is None else int(budget)
        done = 0
        for X, y in poisons.batches():
            if left <= 0 and len(y):
                return
            k = min(len(y), left)
            left -= k
            done += k
            yield PoisonBatch(X[:k].copy(), y[:k].copy(), {"replayed": done, "replay_source": source})


@hookimpl
def register_attacks(register):
    register(Replay)
