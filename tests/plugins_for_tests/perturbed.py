"""A dataset wrapper that multiplies every feature by ``1 + rel·N(0, 1)``: the sensitivity probe
of the regeneration tests (docs/reproduction.md, "Sensitivity"). Values stay in the inner
dataset's feasible box; labels, splits and subpopulations are unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from poisonbench import Dataset, Param, hookimpl
from poisonbench.params import declare


@declare(
    {
        "inner": Param(str, "the dataset to perturb"),
        "inner_params": Param(dict, "its parameters"),
        "rel": Param(float, "relative size of the noise", low=0),
        "noise_seed": Param(int, "seed of the noise", low=0),
    }
)
def perturbed(
    seed: int = 0, inner: str = "mnist", inner_params: dict | None = None, rel: float = 1e-12, noise_seed: int = 0
) -> Dataset:
    from poisonbench.host import load_host

    data = load_host(load_external=False).create("datasets", inner, seed=seed, **(inner_params or {}))
    rng = np.random.default_rng([noise_seed, 1729])
    lo, hi = data.feasible.lo, data.feasible.hi

    def shake(X: Any) -> Any:
        return None if X is None else np.clip(X * (1.0 + rel * rng.standard_normal(X.shape)), lo, hi)

    return dataclasses.replace(
        data,
        X_train=shake(data.X_train),
        X_test=shake(data.X_test),
        X_val=shake(data.X_val),
        provenance={**data.provenance, "perturbed": {"rel": rel, "noise_seed": noise_seed}},
    )


@hookimpl
def register_datasets(register: Any) -> None:
    register(perturbed)
