"""Target models: label-flip heuristic (original and improved), subpopulation, file, cache."""

from __future__ import annotations

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.plugins.learners.linear import LinearSVM
from poisonbench.plugins.targets import _flip_grid, make_target, save_target
from poisonbench.testing import toy_dataset

Q, R = [0.05, 0.1, 0.3, 0.5], [1, 4]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def scenario():
    return Scenario(toy_dataset(n=120, d=4, seed=3), LinearSVM(), subpopulation="corner")


def test_error_target_is_the_lowest_loss_model_above_the_rate(scenario):
    data, learner = scenario.dataset, scenario.learner
    target = make_target("error:0.45", scenario, quantiles=Q, repeats=R)
    assert 1 - target.accuracy(data.X_test, data.y_test) > 0.45
    grid = _flip_grid(scenario, data.X_test, data.y_test, Q, R, adaptive=False)
    losses = [learner.objective(m, data.X_train, data.y_train) for m, *_ in grid]
    valid = [v for v, (m, *_) in zip(losses, grid) if 1 - m.accuracy(data.X_test, data.y_test) > 0.45]
    assert min(losses) < min(valid)  # the error constraint matters on this grid
    assert target.info["clean_objective"] == pytest.approx(min(valid))


def test_improved_generation_recomputes_margins_after_each_fit(scenario):
    data = scenario.dataset
    orig = _flip_grid(scenario, data.X_test, data.y_test, Q, R, adaptive=False)
    adaptive = _flip_grid(scenario, data.X_test, data.y_test, Q, R, adaptive=True)
    np.testing.assert_allclose(orig[0][0].theta, adaptive[0][0].theta)  # the first cell uses the clean model
    assert any(not np.allclose(a[0].theta, b[0].theta) for a, b in zip(orig[1:], adaptive[1:]))
    improved = make_target("error:0.15:improved", scenario, quantiles=Q, repeats=R)
    assert improved.info["spec"] == "error:0.15:improved"
    assert 1 - improved.accuracy(data.X_test, data.y_test) > 0.15


def test_subpop_target_has_zero_accuracy_on_the_subpopulation(scenario):
    data = scenario.dataset
    sub = data.subpopulation("corner")
    target = make_target("subpop", scenario, quantiles=[0.5, 1.0], repeats=[1, 5, 20])
    assert target.accuracy(data.X_test[sub.test_idx], data.y_test[sub.test_idx]) == 0.0
    train_side = make_target("subpop", scenario, quantiles=[1.0], repeats=[5, 20, 60], flip_source="train")
    assert train_side.accuracy(data.X_test[sub.test_idx], data.y_test[sub.test_idx]) == 0.0
    with pytest.raises(ValueError, match="names no subpopulation"):
        make_target("subpop", Scenario(data, scenario.learner))


def test_unreachable_goals_raise(scenario):
    with pytest.raises(ValueError, match="no model of the grid"):
        make_target("error:0.9", scenario, quantiles=[0.05], repeats=[1])
    with pytest.raises(ValueError, match="0 % accuracy"):
        make_target("subpop", scenario, quantiles=[0.3], repeats=[1])


def test_cache_hit_and_key(scenario, tmp_path):
    first = make_target("error:0.15", scenario, quantiles=Q, repeats=R)
    files = list((tmp_path / "cache" / "targets").glob("*.npz"))
    assert len(files) == 1 and not first.info.get("cached")
    again = make_target("error:0.15", scenario, quantiles=Q, repeats=R)
    assert again.info["cached"] is True
    np.testing.assert_array_equal(again.theta, first.theta)
    make_target("error:0.15", scenario, quantiles=Q, repeats=[1])  # another grid, another entry
    other = Scenario(scenario.dataset, LinearSVM(C_R=0.5), subpopulation="corner")
    make_target("error:0.15", other, quantiles=Q, repeats=R)  # another learner, another entry
    assert len(list((tmp_path / "cache" / "targets").glob("*.npz"))) == 3
    with np.load(files[0], allow_pickle=False) as npz:  # plain arrays, no pickle
        assert set(npz.files) == {"w", "b", "info"}


def test_file_target_round_trip_and_bad_files(scenario, tmp_path):
    d = scenario.dataset.n_features
    good = tmp_path / "t.npz"
    np.savez(good, w=np.arange(d, dtype=float), b=1.5)
    model = make_target(f"file:{good}", scenario)
    np.testing.assert_array_equal(model.w, np.arange(d))
    assert model.b == 1.5
    via_save = tmp_path / "s.npz"
    save_target(via_save, model)
    np.testing.assert_array_equal(make_target(f"file:{via_save}", scenario).theta, model.theta)
    np.savez(tmp_path / "short.npz", w=np.ones(d + 1), b=0.0)
    np.savez(tmp_path / "nob.npz", w=np.ones(d))
    np.savez(tmp_path / "obj.npz", w=np.array([object()] * d, dtype=object), b=0.0)
    for name, msg in (("short", "shape"), ("nob", "missing"), ("missing", "does not exist"), ("obj", "pickle")):
        with pytest.raises(ValueError, match=msg):
            make_target(f"file:{tmp_path / name}.npz", scenario)


@pytest.mark.parametrize("spec", ["error", "error:1.5", "error:abc", "error:0.1:better", "random", "subpop:3"])
def test_bad_specs_raise(scenario, spec):
    with pytest.raises(ValueError, match="target"):
        make_target(spec, scenario)
