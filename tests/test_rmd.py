"""The bilevel RMD attack (RMD paper Algorithm 1) as a poisonbench attack, on tiny problems."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from poisonbench.attack import Scenario
from poisonbench.dataset import Dataset, FeasibleSet
from poisonbench.plugins.attacks.rmd import RMDAttack
from poisonbench.plugins.defences.l2 import FixedL2
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.plugins.learners.torch_l2 import TorchLogisticRegression, TorchMLP


def gaussians(seed: int = 0, with_val: bool = True) -> Dataset:
    """Two Gaussian classes as in the paper's appendix D.1 (smaller)."""
    rng = np.random.default_rng(seed)

    def draw(n: int):
        X = np.r_[rng.normal([-3, 0], [1.6, 1.2], (n, 2)), rng.normal([3, 0], [1.6, 1.2], (n, 2))]
        return X, np.r_[-np.ones(n), np.ones(n)]

    (Xtr, ytr), (Xv, yv), (Xte, yte) = draw(8), draw(10), draw(50)
    val = (Xv, yv) if with_val else (None, None)
    return Dataset("toy", Xtr, ytr, Xte, yte, FeasibleSet.box(2, -9.5, 9.5), *val)


LEARNER = TorchLogisticRegression(lam=-2.0, steps=30, lr=0.3)
FAST = dict(hyperiterations=4, clean_iterations=3, alpha=0.5, beta=0.5)


def test_stream_respects_budget_box_and_flipped_validation_labels():
    ds = gaussians()
    batches = list(RMDAttack(batch_size=3, **FAST).poison(Scenario(ds, LEARNER, budget=7)))
    assert [len(b) for b in batches] == [0, 3, 3, 1]
    X = np.vstack([b.X for b in batches])
    assert ds.feasible.contains(X).all()
    for b in batches[1:]:
        assert {"lambda", "lambda_layers", "validation_loss", "test_accuracy"} <= set(b.diagnostics)
        assert -8.0 <= b.diagnostics["lambda"] <= np.log(200)
    # each poison's label is the flip of the validation point it started from (labels kept fixed)
    init = RMDAttack(batch_size=3, hyperiterations=1, alpha=1e-12, clean_iterations=0)
    first = list(init.poison(Scenario(ds, LEARNER, budget=3)))[1]
    idx = [int(np.argmin(np.linalg.norm(ds.X_val - x, axis=1))) for x in first.X]
    np.testing.assert_array_equal(first.y, -ds.y_val[idx])
    np.testing.assert_allclose(first.X, ds.X_val[idx], atol=1e-9)


def test_ascent_raises_validation_loss_over_initial_poisons():
    ds = gaussians()
    scenario = Scenario(ds, TorchLogisticRegression(lam=-8.0, steps=30, lr=0.3), budget=2)
    start = RMDAttack(batch_size=2, learn_lambda=False, hyperiterations=1, alpha=1e-12)
    attacked = RMDAttack(batch_size=2, learn_lambda=False, hyperiterations=15, alpha=2.0)
    A0 = list(start.poison(scenario))[1].diagnostics["validation_loss"]
    A1 = list(attacked.poison(scenario))[1].diagnostics["validation_loss"]
    assert A1 > A0 + 1e-3


def test_fixed_mode_keeps_the_defence_lambda_and_learned_mode_moves_it():
    ds = gaussians()
    fixed = list(
        RMDAttack(batch_size=2, learn_lambda=False, **FAST).poison(Scenario(ds, LEARNER, FixedL2(1.5), budget=4))
    )
    assert [b.diagnostics["lambda"] for b in fixed] == [1.5, 1.5, 1.5]
    learned = list(RMDAttack(batch_size=2, lam0=1.5, **FAST).poison(Scenario(ds, LEARNER, budget=4)))
    assert learned[-1].diagnostics["lambda"] != 1.5


def test_beta_scales_the_gradient_of_the_mean_or_the_summed_validation_loss():
    """One clean λ step from the same λ0: the summed scale moves λ n_val (20) times as far as
    the mean scale (the default, on which the paper's β = 0.99 gives a steady trajectory)."""
    ds = gaussians()
    step = dict(hyperiterations=1, clean_iterations=1, alpha=0.5, beta=0.05, lam0=0.0)
    moves = {
        scale: list(RMDAttack(beta_scale=scale, **step).poison(Scenario(ds, LEARNER, budget=2)))[0].diagnostics[
            "lambda"
        ]
        for scale in ("mean", "sum")
    }
    assert moves["mean"] != 0.0
    assert moves["sum"] == pytest.approx(len(ds.y_val) * moves["mean"], rel=1e-9)
    assert RMDAttack().beta_scale == "mean"


def test_per_layer_lambda_for_mlp_and_convex_logistic_surrogate():
    ds = gaussians()
    mlp = TorchMLP(hidden=[4, 3], steps=10, lr=0.1)
    out = list(RMDAttack(batch_size=2, hyperiterations=2, clean_iterations=1).poison(Scenario(ds, mlp, budget=2)))
    assert len(out[-1].diagnostics["lambda_layers"]) == 3
    assert out[-1].diagnostics["lambda"] == pytest.approx(np.mean(out[-1].diagnostics["lambda_layers"]))
    convex = LogisticRegression(C_R=0.05)
    first = list(RMDAttack(batch_size=1, learn_lambda=False, **FAST).poison(Scenario(ds, convex, budget=1)))[0]
    assert first.diagnostics["lambda"] == pytest.approx(np.log(0.05 * ds.n_train))


def test_bad_scenarios_raise_value_error():
    with pytest.raises(ValueError, match="validation split"):
        next(RMDAttack().poison(Scenario(gaussians(with_val=False), LEARNER, budget=1)))
    with pytest.raises(ValueError, match="neither an UnrolledLearner nor a LinearModelLearner"):
        next(RMDAttack().poison(Scenario(gaussians(), LinearSVM(), budget=1)))
    with pytest.raises(ValueError, match="never stops"):
        next(RMDAttack().poison(Scenario(gaussians(), LEARNER)))
    with pytest.raises(ValueError, match="batch_size"):
        RMDAttack(batch_size=0)


def test_registered_without_importing_torch_at_list_time():
    import subprocess
    import sys

    code = (
        "import sys; from poisonbench.host import load_host; h = load_host(load_external=False); "
        "assert 'rmd' in h.registry.names('attacks'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
