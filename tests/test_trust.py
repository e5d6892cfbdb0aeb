"""Numbers you can trust: certified fits on any data, one row one model, data identity, determinism."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from poisonbench.attack import Scenario
from poisonbench.campaign import CampaignError, load_campaign, parse_campaign
from poisonbench.host import load_host
from poisonbench.learner import UncertifiedFitError, require_certified
from poisonbench.plugins.learners.linear import LinearSVM
from poisonbench.plugins.max_loss_diff import TIE_TOL, box_knapsack, hinge_max_loss_diff_box
from poisonbench.plugins.mtp_algorithm import MTPSettings, run_mtp
from poisonbench.plugins.targets import make_target
from poisonbench.trial import run_trial

GRID = {"target_quantiles": [0.2, 0.4], "target_repeats": [1, 3, 5]}
#: columns that legitimately differ between two runs of the same trial
VOLATILE = ("started_at", "finished_at", "wall_seconds", "traceback")


@pytest.fixture(scope="module")
def host():
    return load_host(load_external=False)


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return X, np.where(y == 1, 1.0, -1.0)


def _objective(X, y, C_R, w, b, regularise_bias):
    reg = w @ w + (b * b if regularise_bias else 0.0)
    return float(np.maximum(0.0, 1.0 - y * (X @ w + b)).mean() + 0.5 * C_R * reg)


@pytest.mark.parametrize(("C_R", "regularise_bias"), [(0.09, True), (0.01, True), (1.0, False), (0.01, False)])
def test_svm_certifies_on_raw_unscaled_breast_cancer(breast_cancer, C_R, regularise_bias):
    """Coordinate descent alone stopped at gap 0.36 here (C_R = 0.01); the interior-point fallback certifies."""
    X, y = breast_cancer
    model = LinearSVM(C_R=C_R, regularise_bias=regularise_bias).fit(X, y)
    assert model.info["converged"] and model.info["relative_gap"] <= 1e-10
    # independent check of optimality: no other solver's optimum is lower
    import cvxpy as cp

    w, b = cp.Variable(X.shape[1]), cp.Variable()
    reg = cp.sum_squares(w) + (cp.square(b) if regularise_bias else 0)
    problem = cp.Problem(cp.Minimize(cp.sum(cp.pos(1 - cp.multiply(y, X @ w + b))) / len(y) + C_R / 2 * reg))
    problem.solve(solver=cp.CLARABEL)
    ours = _objective(X, y, C_R, model.w, model.b, regularise_bias)
    assert ours <= _objective(X, y, C_R, w.value, float(b.value), regularise_bias) + 1e-9 * abs(ours)


def test_svm_certifies_with_one_feature_a_thousand_times_larger():
    rng = np.random.default_rng(0)
    for _ in range(8):
        X = rng.standard_normal((300, 10))
        X[:, 0] *= 1000
        y = np.sign(X[:, 1] + 0.3 * rng.standard_normal(300))
        assert LinearSVM(C_R=0.01).fit(X, y).info["converged"]


def test_an_uncertified_fit_is_refused_with_the_gap_and_what_to_do(breast_cancer):
    X, y = breast_cancer
    model = LinearSVM(C_R=0.01, max_iter=3, cd_passes=3).fit(X, y)
    assert model.info["converged"] is False
    with pytest.raises(
        UncertifiedFitError, match=r"did not reach its tolerance \(reached relative gap .*scale the features"
    ):
        require_certified(model, "learner 'svm'")


def _write_breast_cancer(folder, X, y):
    names = [f"f{j}" for j in range(X.shape[1])]
    lines = [",".join([*names, "label"])] + [
        ",".join([*(format(v, ".17g") for v in row), str(int(t))]) for row, t in zip(X, y)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bc.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


CAMPAIGN = """
name = "bc"
budgets = [0, 6]
[[datasets]]
name = "file"
params = { path = "data/bc.csv", label = "label" }
[[learners]]
name = "svm"
params = { C_R = 0.01 }
[[attacks]]
name = "label-flip"
params = { batch_size = 3 }
[[attacks]]
name = "mtp"
params = { target = "error:0.1", target_quantiles = [0.3, 0.6], target_repeats = [5, 20] }
"""


def test_raw_breast_cancer_campaign_through_the_file_plugin_from_another_folder(
    tmp_path, monkeypatch, host, breast_cancer
):
    """Relative file paths are read from the campaign's folder, whatever the working directory;
    every row is ok with a certified fit."""
    _write_breast_cancer(tmp_path / "project" / "data", *breast_cancer)
    campaign_file = tmp_path / "project" / "bc.toml"
    campaign_file.write_text(CAMPAIGN, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    trials = load_campaign(campaign_file).trials(host.registry)
    rows = [r for t in trials for r in run_trial(t, host) if r["kind"] == "checkpoint"]
    assert len(rows) == 4
    for row in rows:
        assert row["status"] == "ok", row.get("error")
        assert row["fit_converged"] is True and row["fit_gap"] <= 1e-10


def test_changed_data_gives_new_trial_ids_and_a_missing_file_fails_at_dry_run(tmp_path, host, breast_cancer):
    X, y = breast_cancer
    _write_breast_cancer(tmp_path / "data", X, y)
    campaign_file = tmp_path / "bc.toml"
    campaign_file.write_text(CAMPAIGN, encoding="utf-8")
    before = {t.trial_id for t in load_campaign(campaign_file).trials(host.registry)}
    _write_breast_cancer(tmp_path / "data", X[:-1], y[:-1])
    after = {t.trial_id for t in load_campaign(campaign_file).trials(host.registry)}
    assert before.isdisjoint(after)
    shutil.rmtree(tmp_path / "data")
    with pytest.raises(CampaignError, match=r"params.path: no such file .*bc.csv.*relative paths are read from"):
        load_campaign(campaign_file).trials(host.registry)


def _mtp_copies_trial(host, budgets, **extra):
    raw = {
        "name": "copies",
        "seeds": [0],
        "budgets": budgets,
        "datasets": [{"name": "gaussians"}],
        "learners": [{"name": "svm"}],
        "attacks": [{"name": "mtp", "params": {"target": "error:0.1", "copies": 2, **GRID}}],
        **extra,
    }
    (trial,) = parse_campaign(raw).trials(host.registry)
    return trial


def test_one_row_one_model_with_two_copies_and_an_odd_budget(host):
    """At budget 3 the attack's latest batch describes the model with 4 poisons: its diagnostics
    must not appear in the 3-poison row, whose measured accuracy is that of exactly 3 poisons."""
    trial = _mtp_copies_trial(host, [0, 3, 6])
    rows = {r["budget"]: r for r in run_trial(trial, host) if r["kind"] == "checkpoint"}
    assert all(r["status"] == "ok" for r in rows.values())
    odd, even = rows[3], rows[6]
    assert odd["n_poisons"] == 3 and odd["diagnostics_n_poisons"] == 4 and odd["max_loss_diff"] is None
    assert even["n_poisons"] == 6 and even["diagnostics_n_poisons"] == 6 and even["max_loss_diff"] is not None
    data = host.create("datasets", "gaussians", seed=0)
    learner = host.create("learners", "svm")
    scenario = Scenario(data, learner, budget=6, seed=0)
    target = make_target("error:0.1", scenario, quantiles=GRID["target_quantiles"], repeats=GRID["target_repeats"])
    batches = list(run_mtp(scenario, target, MTPSettings(copies=2)))
    Xp = np.vstack([b.X for b in batches])[:3]
    yp = np.concatenate([b.y for b in batches])[:3]
    model = learner.fit(np.vstack([data.X_train, Xp]), np.concatenate([data.y_train, yp]))
    assert odd["test_accuracy"] == model.accuracy(data.X_test, data.y_test)


def test_clean_loss_and_objective_are_the_defended_model_on_the_clean_points(host):
    """``clean_loss`` / ``clean_objective`` of a checkpoint row: the mean hinge loss and
    (1/n) Σ hinge + C_R R of the model fitted on clean + poisons, over the clean rows only,
    recomputed here by hand; trace rows leave them null; an L2 defence that picks its own λ
    leaves the objective null (the learner's C_R is not what it fitted with)."""
    rows = run_trial(_mtp_copies_trial(host, [0, 3, 6], record_every=1), host)
    check = {r["budget"]: r for r in rows if r["kind"] == "checkpoint"}
    traces = [r for r in rows if r["kind"] == "trace"]
    assert traces and all(r.get("clean_loss") is None and r.get("clean_objective") is None for r in traces)
    data = host.create("datasets", "gaussians", seed=0)
    learner = host.create("learners", "svm")
    scenario = Scenario(data, learner, budget=6, seed=0)
    target = make_target("error:0.1", scenario, quantiles=GRID["target_quantiles"], repeats=GRID["target_repeats"])
    batches = list(run_mtp(scenario, target, MTPSettings(copies=2)))
    for n in (0, 6):
        Xp = np.vstack([b.X for b in batches])[:n]
        yp = np.concatenate([b.y for b in batches])[:n]
        model = learner.fit(np.vstack([data.X_train, Xp]), np.concatenate([data.y_train, yp]))
        hinge = float(np.maximum(0.0, 1.0 - data.y_train * (data.X_train @ model.w + model.b)).mean())
        objective = _objective(data.X_train, data.y_train, learner.C_R, model.w, model.b, learner.regularise_bias)
        assert check[n]["clean_loss"] == pytest.approx(hinge, rel=1e-7)
        assert check[n]["clean_objective"] == pytest.approx(objective, rel=1e-7)
    assert check[6]["clean_loss"] > check[0]["clean_loss"]  # the poisons hurt the clean fit
    fixed = _mtp_copies_trial(host, [0, 3], defences=[{"name": "fixed-l2", "params": {"lam": -3.0}}])
    (row,) = [r for r in run_trial(fixed, host) if r["kind"] == "checkpoint" and r["budget"] == 3]
    assert row["status"] == "ok", row["error"]
    assert row["clean_loss"] is not None and row["clean_objective"] is None


def _results(row: dict) -> dict:
    """A row without its timings (wall clock, and the attack's own *_seconds diagnostics)."""
    out = {k: v for k, v in row.items() if k not in VOLATILE}
    diagnostics = json.loads(out.pop("diagnostics"))
    out["diagnostics"] = {k: v for k, v in diagnostics.items() if not k.endswith("_seconds")}
    return out


def test_the_same_trial_twice_gives_bit_identical_rows(host):
    trial = _mtp_copies_trial(host, [0, 3, 6])
    first, second = run_trial(trial, host), run_trial(dataclasses.replace(trial), host)
    assert [_results(r) for r in first] == [_results(r) for r in second]


def test_the_knapsack_breaks_near_ties_the_same_way_whatever_the_rounding_noise():
    rng = np.random.default_rng(3)
    c, a = rng.standard_normal(20), rng.standard_normal(20)
    lo, hi = np.zeros(20), np.ones(20)
    results = []
    for noise in (3e-17, -3e-17, 0.0):
        c_j = c.copy()
        c_j[[2, 7]] = noise
        results.append(box_knapsack(c_j, a, 0.5, lo, hi))
    assert all(np.array_equal(results[0], r) for r in results[1:])
    # a coefficient above the tolerance still decides its coordinate
    c_j = c.copy()
    c_j[2] = 1e3 * TIE_TOL * np.abs(c).max()
    up = box_knapsack(c_j, a, 1e9, lo, hi)
    c_j[2] *= -1
    down = box_knapsack(c_j, a, 1e9, lo, hi)
    assert up[2] == 1.0 and down[2] == 0.0


def test_the_argmax_over_pieces_keeps_the_first_of_a_near_tie():
    """Two labels with the same value: the result does not depend on noise below TIE_TOL."""
    theta = np.array([0.0, 0.0, 0.0])  # θ_t = θ_p: every piece and label has value 0
    results = {
        tuple(hinge_max_loss_diff_box(theta + eps, theta, np.zeros(2), np.ones(2)).x) for eps in (0.0, 1e-17, -1e-17)
    }
    assert len(results) == 1


def test_a_trial_whose_fit_is_not_certified_fails_naming_the_learner_and_the_gap(tmp_path, host, breast_cancer):
    _write_breast_cancer(tmp_path / "data", *breast_cancer)
    campaign_file = tmp_path / "bc.toml"
    campaign_file.write_text(
        CAMPAIGN.replace("params = { C_R = 0.01 }", "params = { C_R = 0.01, max_iter = 3, cd_passes = 3 }"),
        encoding="utf-8",
    )
    trial = next(t for t in load_campaign(campaign_file).trials(host.registry) if t.attack.name == "label-flip")
    rows = run_trial(trial, host)
    assert {r["status"] for r in rows} == {"failed"}
    assert "learner 'svm' (defence 'none', 0 poisons): the fit did not reach its tolerance" in rows[-1]["error"]
    assert "relative gap" in rows[-1]["error"]


@pytest.mark.parametrize("C_R", [1e-4, 1e-2, 1.0])
@pytest.mark.parametrize("regularise_bias", [True, False])
def test_logistic_certifies_on_raw_unscaled_breast_cancer(breast_cancer, C_R, regularise_bias):
    from poisonbench.plugins.learners.linear import LogisticRegression

    X, y = breast_cancer
    model = LogisticRegression(C_R=C_R, regularise_bias=regularise_bias).fit(X, y)
    assert model.info["converged"] and model.info["grad_norm"] <= 1e-10
