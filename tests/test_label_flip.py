"""Label-flipping baselines (plugins/attacks/label_flip.py): flipped copies of the right pool,
clean data untouched, budgets exact, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.host import load_host
from poisonbench.plugins.attacks.label_flip import RandomLabelFlip, SubpopulationLabelFlip
from poisonbench.plugins.learners.linear import LinearSVM
from poisonbench.testing import check_attack, toy_dataset


@pytest.fixture(scope="module")
def data():
    return toy_dataset(n=60, d=3, seed=2)


def _poisons(attack, data, budget, seed=0, subpopulation="corner"):
    batches = list(attack.poison(Scenario(data, LinearSVM(), budget=budget, seed=seed, subpopulation=subpopulation)))
    X = np.vstack([b.X for b in batches]) if batches else np.empty((0, data.n_features))
    y = np.concatenate([b.y for b in batches]) if batches else np.empty(0)
    return batches, X, y


def _source_rows(data, X, y):
    """Index of the training row each poison copies (features equal, label flipped)."""
    rows = []
    for x, label in zip(X, y):
        match = np.flatnonzero((data.X_train == x).all(axis=1) & (data.y_train == -label))
        assert match.size, "a poison is not a flipped copy of a training point"
        rows.append(match[0])
    return np.array(rows)


@pytest.mark.parametrize("budget", [0, 1, 25, 60, 61, 137])
def test_random_flip_budget_is_exact_and_poisons_are_flipped_copies(data, budget):
    batches, X, y = _poisons(RandomLabelFlip(batch_size=10), data, budget)
    assert len(y) == budget
    assert all(len(b) <= 10 for b in batches)
    src = _source_rows(data, X, y)
    # without replacement until the pool (60 points) is exhausted, then a fresh pass
    first = src[: data.n_train]
    assert np.unique(first).size == first.size
    if budget:
        assert batches[-1].diagnostics["flipped_total"] == budget
        assert batches[-1].diagnostics["pool_exhausted"] == (budget > data.n_train)


def test_subpopulation_flip_draws_only_from_the_subpopulation(data):
    pool = data.subpopulation("corner").train_idx
    budget = 2 * pool.size + 3  # forces reuse: two full passes and a bit
    batches, X, y = _poisons(SubpopulationLabelFlip(batch_size=7), data, budget)
    assert len(y) == budget
    src = _source_rows(data, X, y)
    assert np.isin(src, pool).all()
    counts = np.bincount(src, minlength=data.n_train)[pool]
    assert counts.min() >= 2 and counts.max() <= 3
    assert batches[-1].diagnostics["pool_size"] == pool.size


def test_clean_data_is_read_only_and_unchanged(data):
    before = (data.X_train.copy(), data.y_train.copy())
    batches, X, _ = _poisons(RandomLabelFlip(), data, 30)
    assert not data.X_train.flags.writeable and not data.y_train.flags.writeable
    X[:] = -1.0  # poisons are copies: writing them cannot reach the dataset
    for b in batches:
        b.X[:] = -1.0
    assert np.array_equal(data.X_train, before[0]) and np.array_equal(data.y_train, before[1])


@pytest.mark.parametrize(
    "attack", [RandomLabelFlip(batch_size=4), SubpopulationLabelFlip(batch_size=4)], ids=["random", "subpop"]
)
def test_contract_and_seed_determinism(data, attack):
    check_attack(attack, data, budget=11)
    _, X0, _ = _poisons(attack, data, 11, seed=0)
    _, X0b, _ = _poisons(attack, data, 11, seed=0)
    _, X1, _ = _poisons(attack, data, 11, seed=1)
    assert np.array_equal(X0, X0b)
    assert not np.array_equal(X0, X1)


def test_without_a_budget_one_pass_over_the_pool(data):
    _, _, y = _poisons(RandomLabelFlip(), data, None)
    assert len(y) == data.n_train


def test_bad_input_is_a_clear_error(data):
    with pytest.raises(ValueError, match="batch_size"):
        RandomLabelFlip(batch_size=0)
    with pytest.raises(ValueError, match="needs scenario.subpopulation"):
        SubpopulationLabelFlip().poison(Scenario(data, LinearSVM(), budget=5))


def test_registered_as_incremental():
    registry = load_host(load_external=False).registry
    for name in ("label-flip", "subpop-label-flip"):
        assert registry.get("attacks", name).factory.needs_budget is False


def test_koh_label_flip_yields_the_target_heuristics_flip_set(tmp_path, monkeypatch):
    """Its poisons induce exactly the target model (same objective as the heuristic's weighted
    fit), ``koh_poisons`` = n_flipped × repeat, and a smaller budget takes whole passes first."""
    from poisonbench.attack import Scenario
    from poisonbench.plugins.attacks.koh_label_flip import KohLabelFlip
    from poisonbench.plugins.learners.linear import LinearSVM
    from poisonbench.plugins.targets import make_target
    from poisonbench.testing import check_attack, toy_dataset

    monkeypatch.setenv("POISONBENCH_CACHE", str(tmp_path))
    data = toy_dataset(n=120, d=4, seed=1)
    grid = {"target_quantiles": [0.1, 0.3, 0.5], "target_repeats": [1, 3, 5]}
    for spec in ("error:0.2", "error:0.2:improved"):
        scenario = Scenario(data, LinearSVM())
        target = make_target(spec, scenario, quantiles=grid["target_quantiles"], repeats=grid["target_repeats"])
        attack = KohLabelFlip(target=spec, **grid)
        batches = list(attack.poison(scenario))
        info = batches[-1].diagnostics
        assert info["koh_poisons"] == info["n_flipped"] * info["repeat"] == sum(len(b) for b in batches)
        assert len(batches) == info["repeat"] and (info["quantile"], info["repeat"]) == (
            target.info["quantile"],
            target.info["repeat"],
        )
        X = np.vstack([data.X_train] + [b.X for b in batches])
        y = np.concatenate([data.y_train] + [b.y for b in batches])
        learner = LinearSVM()
        induced = learner.fit(X, y)
        assert learner.objective(induced, X, y) == pytest.approx(learner.objective(target, X, y), rel=1e-8)
        assert induced.accuracy(data.X_test, data.y_test) == pytest.approx(target.info["test_accuracy"])
        short = check_attack(KohLabelFlip(target=spec, **grid), data, budget=info["n_flipped"] + 1)
        assert [len(b) for b in short] == [info["n_flipped"], 1][: len(short)]
    with pytest.raises(ValueError, match="needs a heuristic target"):
        KohLabelFlip(target="file:x.npz")
