"""L2 defences (fixed, cross-validated, learned λ) and the torch learners of the RMD paper (eq. 6)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from poisonbench.learner import Model, Predictor
from poisonbench.plugins.defences.l2 import CrossValidatedL2, FixedL2, LearnedL2, with_lambda
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.plugins.learners.torch_l2 import NetworkModel, TorchLogisticRegression, TorchMLP


def blobs(n: int, seed: int, noise: float = 0.8, d: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.where(X[:, 0] + noise * rng.normal(size=n) >= 0, 1.0, -1.0)
    return X, y


X, Y = blobs(40, 0)
XV, YV = blobs(30, 1)


# --- torch learners -------------------------------------------------------------------------


def test_torch_logistic_converges_to_convex_logistic_with_mapped_C_R():
    """T-step GD on Σ l_i + (e^λ/2)‖w‖² → the convex minimiser with C_R = e^λ/N (bias unpenalised)."""
    lam = 1.0
    s = np.linspace(0.5, 2.0, len(Y))
    gd = TorchLogisticRegression(lam=lam, steps=3000, lr=1.0).fit(X, Y, s)
    exact = LogisticRegression(C_R=np.exp(lam) / s.sum(), regularise_bias=False).fit(X, Y, s)
    assert isinstance(gd, Model)
    assert gd.info["grad_norm"] < 1e-8
    np.testing.assert_allclose(gd.theta, exact.theta, atol=1e-7)


def test_torch_mlp_returns_numpy_predictor_matching_torch_forward():
    from poisonbench.plugins.bilevel.inner import Architecture

    learner = TorchMLP(lam=[-2.0, -1.0, 0.0], hidden=[5, 4], steps=20, lr=0.1, seed=3)
    model = learner.fit(X, Y)
    assert isinstance(model, NetworkModel) and isinstance(model, Predictor)
    params = [torch.as_tensor(a) for W, b in zip(model.weights, model.biases) for a in (W, b)]
    ref = Architecture.mlp(3, (5, 4)).forward(params, torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(model.decision_function(X), ref, rtol=1e-12)
    assert model.info["lambda"] == [-2.0, -1.0, 0.0]
    assert 0.5 < model.accuracy(X, Y) <= 1.0
    assert learner.objective(model, X, Y) == pytest.approx(model.info["objective"], rel=1e-10)


def test_torch_learner_parameters_are_checked():
    with pytest.raises(ValueError, match="lam: expected"):
        TorchMLP(lam=[0.0, 1.0], hidden=[4, 3])
    with pytest.raises(ValueError, match="steps"):
        TorchLogisticRegression(steps=0)
    with pytest.raises(ValueError, match="hidden"):
        TorchMLP(hidden=[])
    with pytest.raises(ValueError, match="CUDA is not available|device"):
        TorchLogisticRegression(device="cuda:7" if not torch.cuda.is_available() else "nonsense").fit(X, Y)


# --- fixed-l2 -------------------------------------------------------------------------------


def test_fixed_l2_maps_lambda_to_C_R_by_total_weight():
    lam = 0.5
    fit = FixedL2(lam).fit(LogisticRegression(), X, Y)
    assert fit.hyperparameters["lambda"] == lam
    assert fit.hyperparameters["C_R"] == pytest.approx(np.exp(lam) / len(Y))
    np.testing.assert_allclose(fit.model.theta, LogisticRegression(C_R=np.exp(lam) / len(Y)).fit(X, Y).theta)
    # weights are multiplicities: doubling every point is N → 2N at the same λ (same summed-loss penalty)
    doubled = FixedL2(lam).fit(LogisticRegression(), X, Y, np.full(len(Y), 2.0))
    assert doubled.hyperparameters["C_R"] == pytest.approx(np.exp(lam) / (2 * len(Y)))
    stacked = FixedL2(lam).fit(LogisticRegression(), np.vstack([X, X]), np.r_[Y, Y])
    np.testing.assert_allclose(doubled.model.theta, stacked.model.theta, atol=1e-8)


def test_fixed_l2_per_layer_lambda_on_mlp():
    fit = FixedL2([-3.0, -2.0, -1.0]).fit(TorchMLP(hidden=[4, 3], steps=5, lr=0.1), X, Y)
    assert fit.hyperparameters == {"lambda": -2.0, "lambda_0": -3.0, "lambda_1": -2.0, "lambda_2": -1.0}
    with pytest.raises(ValueError, match="one L2 strength"):
        FixedL2([0.0, 1.0, 2.0]).fit(LogisticRegression(), X, Y)


# --- cv-l2 ----------------------------------------------------------------------------------


def test_cv_l2_prefers_strong_regularisation_on_label_noise():
    cv = CrossValidatedL2(folds=3, n_grid=5, lam_min=-4.0, lam_max=6.0)
    noise = np.random.default_rng(0).permutation(np.r_[np.ones(20), -np.ones(20)])  # labels independent of X
    clean_fit = cv.fit(LogisticRegression(), X, np.where(X[:, 0] >= 0, 1.0, -1.0))
    noisy_fit = cv.fit(LogisticRegression(), X, noise)
    assert noisy_fit.hyperparameters["lambda"] == 6.0
    assert clean_fit.hyperparameters["lambda"] == -4.0
    scores = cv.scores(LogisticRegression(), X, noise, np.ones(len(Y)))
    assert noisy_fit.hyperparameters["cv_loss"] == pytest.approx(scores.min())


def test_cv_l2_runs_on_torch_learner_and_checks_folds():
    fit = CrossValidatedL2(folds=3, n_grid=3).fit(TorchLogisticRegression(steps=20, lr=0.5), X, Y)
    assert set(fit.hyperparameters) == {"lambda", "cv_loss"}
    with pytest.raises(ValueError, match="at least folds"):
        CrossValidatedL2(folds=5).fit(LogisticRegression(), X[:6], np.r_[Y[:6]])
    with pytest.raises(ValueError, match="criterion"):
        CrossValidatedL2(criterion="auc")


# --- learned-l2 -----------------------------------------------------------------------------


def validation_loss(learner, lam: float) -> float:
    model = with_lambda(learner, lam, len(Y)).fit(X, Y)
    return float(np.mean(learner.loss(model, XV, YV)))


def test_implicit_hypergradient_of_convex_logistic_matches_finite_differences():
    oracle = LearnedL2()._implicit_oracle(LogisticRegression(), X, Y, np.ones(len(Y)), XV, YV)
    for lam in (-2.0, 1.0):
        A, g = oracle(np.array([lam]))
        fd = (
            validation_loss(LogisticRegression(), lam + 1e-5) - validation_loss(LogisticRegression(), lam - 1e-5)
        ) / 2e-5
        assert pytest.approx(validation_loss(LogisticRegression(), lam), rel=1e-8) == A
        assert g[0] == pytest.approx(fd, rel=1e-4)


def test_rmd_hypergradient_of_torch_learner_matches_finite_differences():
    learner = TorchLogisticRegression(steps=40, lr=0.5)
    oracle = LearnedL2()._rmd_oracle(learner, X, Y, np.ones(len(Y)), XV, YV)
    A, g = oracle(np.array([0.3]))
    fd = (validation_loss(learner, 0.3 + 1e-6) - validation_loss(learner, 0.3 - 1e-6)) / 2e-6
    assert pytest.approx(validation_loss(learner, 0.3), rel=1e-10) == A
    assert g[0] == pytest.approx(fd, rel=1e-4)


@pytest.mark.parametrize(
    "learner", [LogisticRegression(), TorchLogisticRegression(steps=40, lr=0.5)], ids=["logistic", "torch-logistic"]
)
def test_learned_l2_reaches_the_grid_minimum_of_validation_loss(learner):
    fit = LearnedL2(lam_min=-6.0, lam_max=6.0, iterations=60).fit(learner, X, Y, None, XV, YV)
    grid = np.linspace(-6.0, 6.0, 25)
    best = min(validation_loss(learner, lam) for lam in grid)
    assert fit.hyperparameters["validation_loss"] <= best + 1e-6
    assert fit.hyperparameters["validation_loss"] == pytest.approx(
        validation_loss(learner, fit.hyperparameters["lambda"])
    )


def test_learned_l2_on_svm_uses_bounded_search():
    fit = LearnedL2(lam_min=-4.0, lam_max=4.0, iterations=30).fit(LinearSVM(), X, Y, None, XV, YV)
    grid = [validation_loss(LinearSVM(), lam) for lam in np.linspace(-4.0, 4.0, 9)]
    assert fit.hyperparameters["validation_loss"] <= min(grid) + 1e-6
    assert fit.hyperparameters["C_R"] == pytest.approx(np.exp(fit.hyperparameters["lambda"]) / len(Y))


def test_learned_l2_per_layer_on_mlp_lowers_validation_loss():
    learner = TorchMLP(hidden=[4, 3], steps=30, lr=0.2, seed=1)
    fit = LearnedL2(lam0=2.0, iterations=5).fit(learner, X, Y, None, XV, YV)
    start = LearnedL2()._rmd_oracle(learner, X, Y, np.ones(len(Y)), XV, YV)(np.full(3, 2.0))[0]
    assert {"lambda_0", "lambda_1", "lambda_2"} <= set(fit.hyperparameters)
    assert fit.hyperparameters["validation_loss"] < start


def test_learned_l2_needs_validation_and_valid_parameters():
    with pytest.raises(ValueError, match="validation"):
        LearnedL2().fit(LogisticRegression(), X, Y)
    with pytest.raises(ValueError, match="bounds"):
        LearnedL2(lam_min=1.0, lam_max=0.0)
    with pytest.raises(ValueError, match="method"):
        LearnedL2(method="newton")
    with pytest.raises(ValueError, match="1-D"):
        LearnedL2(method="search").fit(TorchMLP(hidden=[3, 2], steps=2), X, Y, None, XV, YV)


def test_defences_are_registered():
    from poisonbench.host import load_host

    names = load_host(load_external=False).registry.names("defences")
    assert {"fixed-l2", "cv-l2", "learned-l2"} <= set(names)
    learners = load_host(load_external=False).registry.names("learners")
    assert {"torch-logistic", "torch-mlp"} <= set(learners)


def test_missing_torch_error_names_the_extra(monkeypatch):
    import sys

    from poisonbench.plugins.bilevel import require_torch

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r"pip install poisonbench\[torch\]"):
        require_torch()


class _UncertifiedBelow(LinearSVM):
    """The SVM, except that a fit with C_R below ``threshold`` reports ``converged = False`` (as
    the dual solver does when it stops short); ``with_regularisation``'s copies keep the threshold."""

    def __init__(self, C_R: float = 0.09, threshold: float = 0.0, **kwargs):
        super().__init__(C_R=C_R, **kwargs)
        self.threshold = threshold

    def fit(self, X, y, sample_weight=None, warm_start=None):
        model = super().fit(X, y, sample_weight, warm_start)
        if self.threshold > self.C_R:
            model.info["converged"] = False
        return model


@pytest.mark.parametrize(
    "defence",
    [LearnedL2(lam_min=-4.0, lam_max=4.0, method="search"), CrossValidatedL2(folds=2, lam_min=-4.0, lam_max=4.0)],
    ids=["learned-l2-search", "cv-l2"],
)
def test_a_search_refuses_an_uncertified_fit(defence):
    """Every λ the search evaluates must come from a certified fit: an uncertified one at the low
    end of the range (λ = −4: C_R = e^−4 / n, n = 40 points or a 20-point fold) raises instead of
    entering the argmin."""
    from poisonbench.learner import UncertifiedFitError

    learner = _UncertifiedBelow(threshold=np.exp(-3.5) / 20)
    with pytest.raises(UncertifiedFitError, match="λ = -4"):
        defence.fit(learner, X, Y, None, XV, YV)
    certified = _UncertifiedBelow(threshold=0.0)
    defence.fit(certified, X, Y, None, XV, YV)
