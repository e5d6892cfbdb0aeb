"""Contract checks for plugin authors: run these in your own plugin's test suite.

Each ``check_*`` function exercises a component the way the harness will and raises
``AssertionError`` with a message naming the broken promise: right types and shapes, poisons
inside the feasible set, determinism under a seed, no mutation of the clean data, budgets
respected. Example (pytest)::

    from poisonbench.testing import check_attack, toy_dataset
    def test_my_attack_contract():
        check_attack(MyAttack(), toy_dataset(), budget=10)
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from poisonbench.attack import Attack, PoisonBatch, Scenario
from poisonbench.capabilities import LinearModelLearner, has
from poisonbench.dataset import Dataset, FeasibleSet, Subpopulation
from poisonbench.defence import Defence, DefendedFit, NoDefence
from poisonbench.learner import Learner, Model, Predictor

__all__ = ["check_attack", "check_dataset", "check_defence", "check_learner", "default_learner", "toy_dataset"]

#: Batches :func:`check_attack` takes from an attack run with ``budget=None`` (an unbounded stream).
UNBOUNDED_BATCHES = 5


def toy_dataset(n: int = 60, d: int = 4, seed: int = 0, onehot: bool = False) -> Dataset:
    """Two Gaussian blobs in ``[0, 1]^d`` with train / validation / test splits and one
    subpopulation (``"corner"``: negatives with the largest first feature).

    ``onehot``: the same task on {0, 1}-valued integer features, as one-hot encoded data looks
    (Adult): the first ``min(d, 3)`` columns are a one-hot group (at most one 1, declared in
    ``feasible.onehot_groups``), the others independent binary features; the ``"corner"``
    subpopulation is then the negatives with first feature 1."""
    rng = np.random.default_rng(seed)
    group = tuple(range(min(d, 3))) if onehot and d >= 2 else ()

    def sample(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
        X = np.clip(0.5 + 0.15 * y[:, None] + 0.12 * rng.standard_normal((m, d)), 0.0, 1.0)
        if onehot:
            X = (X > 0.5).astype(np.float64)
            if group:  # a categorical feature: its level is the argmax of the group's scores
                level = np.argmax(X[:, group] + rng.random((m, len(group))), axis=1)
                X[:, group] = np.eye(len(group))[level]
        return X, y

    X_tr, y_tr = sample(n)
    X_te, y_te = sample(n)
    X_va, y_va = sample(n // 2)

    def corner(X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.flatnonzero((y < 0) & ((X[:, 0] == 1) if onehot else (X[:, 0] > np.median(X[:, 0]))))

    feasible = FeasibleSet.box(d, 0.0, 1.0)
    provenance: dict[str, Any] = {"generator": "poisonbench.testing.toy_dataset", "seed": seed}
    if onehot:
        feasible = FeasibleSet(feasible.lo, feasible.hi, np.ones(d, bool), (group,) if group else ())
        provenance["onehot"] = True
    return Dataset(
        name="toy-onehot" if onehot else "toy",
        X_train=X_tr,
        y_train=y_tr,
        X_test=X_te,
        y_test=y_te,
        X_val=X_va,
        y_val=y_va,
        feasible=feasible,
        subpopulations={"corner": Subpopulation("corner", corner(X_tr, y_tr), corner(X_te, y_te))},
        provenance=provenance,
    )


def default_learner() -> Learner:
    """The built-in exact linear SVM (``svm``, C_R = 0.09), the reference victim for contract
    checks, created through the plugin host (the host never imports a plugin module itself)."""
    from poisonbench.host import load_host

    learner: Learner = load_host(load_external=False).create("learners", "svm")
    return learner


def check_dataset(factory: Callable[..., Dataset], **params: Any) -> Dataset:
    """A dataset factory returns a valid :class:`Dataset`, the same one for the same seed."""
    first = factory(seed=0, **params)
    assert isinstance(first, Dataset), f"dataset factory returned {type(first).__name__}, expected Dataset"
    second = factory(seed=0, **params)
    assert first.digest() == second.digest(), "dataset is not deterministic under seed=0"
    # the training points must be feasible (attacks copy them); a box taken from the training
    # rows may leave test points outside, which is allowed
    assert first.feasible.contains(first.X_train).all(), "training points lie outside the dataset's own feasible set"
    return first


def check_learner(learner: Learner, dataset: Dataset | None = None) -> Model:
    """Fit, loss, gradient and objective are consistent; k copies ≡ weight k; inputs untouched."""
    data = dataset or toy_dataset()
    X, y = np.array(data.X_train), np.array(data.y_train)
    before = _digest(X, y)
    model = learner.fit(X, y)
    assert _digest(X, y) == before, "learner.fit mutated its input arrays"
    assert isinstance(model, Predictor), "fit must return a model with decision_function / predict / accuracy"
    pred = model.predict(X)
    assert pred.shape == y.shape and np.isin(pred, (-1.0, 1.0)).all(), "predict must return labels in {-1, +1}"
    if isinstance(model, Model) and has(learner, LinearModelLearner):
        d = X.shape[1]
        assert model.w.shape == (d,), f"model.w has shape {model.w.shape}, expected ({d},)"
        losses = learner.loss(model, X, y)
        assert losses.shape == (len(y),), f"loss returned shape {losses.shape}, expected ({len(y)},)"
        grads = learner.loss_grad(model, X, y)
        assert grads.shape == (len(y), d + 1), f"loss_grad returned shape {grads.shape}, expected ({len(y)}, {d + 1})"
        expected = losses.mean() + learner.C_R * learner.regulariser(model)
        assert np.isclose(learner.objective(model, X, y), expected, rtol=1e-9), "objective != mean loss + C_R·R(θ)"
        weights = np.ones(len(y))
        weights[0] = 3.0
        copied = learner.fit(np.vstack([X, X[:1], X[:1]]), np.append(y, [y[0], y[0]]))
        weighted = learner.fit(X, y, sample_weight=weights)
        assert np.allclose(copied.theta, weighted.theta, atol=1e-5), "k copies of a point must equal weight k"
    return model


def check_attack(
    attack: Attack,
    dataset: Dataset | None = None,
    budget: int = 10,
    learner: Learner | None = None,
    subpopulation: str | None = None,
    seed: int = 0,
    target: str | None = None,
    feasibility: str = "exact",
) -> list[PoisonBatch]:
    """The attack yields valid batches inside the feasible set, respects the budget, is
    deterministic under a seed, leaves the clean data untouched and reports JSON-serialisable
    diagnostics (finite numbers, strings, booleans, None, lists and dicts of them).

    Besides the run on ``dataset`` at ``budget`` (whose batches it returns), it runs the attack

    - with ``budget=None`` (an unbounded scenario, ``Scenario``'s default): the first
      :data:`UNBOUNDED_BATCHES` batches must be valid; an attack that cannot run unbounded
      (``needs_budget = True``, or no other stopping rule) refuses it with a ``ValueError``
      saying what it needs — any other exception fails the check;
    - on {0, 1}-valued one-hot data (``toy_dataset(onehot=True)`` with ``dataset``'s number of
      features, subpopulation ``"corner"``): its poisons must satisfy the whole feasible set,
      integer features and the one-hot group included — or only its box with
      ``feasibility="box"``, the campaign key of that name — within ``budget``.

    ``target``: the scenario's target-model spec (:attr:`Scenario.target`)."""
    if feasibility not in ("exact", "box"):
        raise ValueError(f"feasibility: expected 'exact' or 'box', got {feasibility!r}")
    data = dataset or toy_dataset()
    if subpopulation is None and "corner" in data.subpopulations:
        subpopulation = "corner"
    victim = learner or default_learner()
    scenario = Scenario(data, victim, NoDefence(), budget, seed, subpopulation, target)
    before = data.digest()
    batches = list(attack.poison(scenario))
    assert data.digest() == before, "the attack mutated the clean dataset"
    _check_batches(batches, data, "", exact=feasibility == "exact")
    total = sum(len(b) for b in batches)
    assert total <= budget, f"the attack produced {total} poisons, over the budget of {budget}"
    again = list(attack.poison(scenario))
    assert [_digest(b.X, b.y) for b in again] == [_digest(b.X, b.y) for b in batches], (
        "the attack is not deterministic for a fixed scenario seed"
    )
    unbounded = Scenario(data, victim, NoDefence(), None, seed, subpopulation, target)
    try:
        stream = attack.poison(unbounded)
        first = list(itertools.islice(stream, UNBOUNDED_BATCHES))
        getattr(stream, "close", lambda: None)()
    except ValueError:
        pass  # a clear refusal: the attack needs a budget (needs_budget) or another stopping rule
    except Exception as exc:
        raise AssertionError(
            f"with budget=None: the attack raised {type(exc).__name__}: {exc} (an unbounded scenario is valid: "
            "stream poisons, or refuse it with a ValueError saying what the attack needs)"
        ) from exc
    else:
        _check_batches(first, data, "with budget=None: ", exact=feasibility == "exact")
    onehot = toy_dataset(d=data.n_features, seed=seed, onehot=True)
    where = "on one-hot data (toy_dataset(onehot=True)): "
    try:
        coded = list(attack.poison(Scenario(onehot, victim, NoDefence(), budget, seed, "corner", target)))
    except Exception as exc:
        raise AssertionError(f"{where}the attack raised {type(exc).__name__}: {exc}") from exc
    _check_batches(coded, onehot, where, exact=feasibility == "exact")
    total = sum(len(b) for b in coded)
    assert total <= budget, f"{where}the attack produced {total} poisons, over the budget of {budget}"
    return batches


def _check_batches(batches: list[Any], data: Dataset, where: str, exact: bool) -> None:
    """Every batch is a :class:`PoisonBatch` of ``data``'s features, inside its feasible set
    (``exact``: integer features and one-hot groups too), with JSON-serialisable diagnostics."""
    for i, batch in enumerate(batches):
        assert isinstance(batch, PoisonBatch), f"{where}batch {i} is {type(batch).__name__}, expected PoisonBatch"
        assert batch.X.shape[1] == data.n_features, (
            f"{where}batch {i} has {batch.X.shape[1]} features, expected {data.n_features}"
        )
        problem = data.feasible.violation(batch.X, exact=exact)
        assert problem is None, f"{where}batch {i} has poisons outside the feasible set: {problem}"
        assert isinstance(batch.diagnostics, dict), f"{where}batch {i}: diagnostics must be a dict"
        _check_json(batch.diagnostics, f"{where}batch {i}: diagnostics")


def _check_json(value: Any, where: str) -> None:
    """``value`` survives the store's JSON (:func:`poisonbench.results.jsonable`, then ``json.dumps``)
    unchanged: no NaN or inf (they would become null), no object that only its ``repr`` could
    stand for, string keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where}: key {key!r} is {type(key).__name__}, expected a string"
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        _check_json(value.tolist(), where)
    elif isinstance(value, (np.bool_, np.integer, np.floating)):
        _check_json(value.item(), where)
    elif isinstance(value, float):
        assert math.isfinite(value), f"{where} is {value}; diagnostics must be finite (use None for unknown)"
    else:
        assert value is None or isinstance(value, (bool, int, str)), (
            f"{where} is a {type(value).__name__}, not JSON-serialisable; store numbers, strings, booleans, "
            "None, lists or dicts"
        )


def check_defence(defence: Defence, dataset: Dataset | None = None, learner: Learner | None = None) -> DefendedFit:
    """The defence returns a :class:`DefendedFit` with a working model and numeric hyperparameters."""
    data = dataset or toy_dataset()
    X, y = np.array(data.X_train), np.array(data.y_train)
    before = _digest(X, y)
    fit = defence.fit(learner or default_learner(), X, y, None, data.X_val, data.y_val)
    assert _digest(X, y) == before, "the defence mutated its input arrays"
    assert isinstance(fit, DefendedFit), f"defence returned {type(fit).__name__}, expected DefendedFit"
    assert isinstance(fit.model, Predictor), "DefendedFit.model must have decision_function / predict / accuracy"
    for key, value in fit.hyperparameters.items():
        assert np.isfinite(float(value)), f"hyperparameter {key!r} is not a finite number: {value!r}"
    if fit.kept is not None:
        assert fit.kept.shape == y.shape and fit.kept.dtype == bool, (
            "DefendedFit.kept must be a boolean mask over the rows"
        )
    acc = fit.model.accuracy(data.X_test, data.y_test)
    assert 0.0 <= acc <= 1.0, f"accuracy {acc} outside [0, 1]"
    return fit


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
