"""Min-max attack and certified upper bound (plugins/attacks/minmax.py; Steinhardt, Koh & Liang
2017): the worst-point conic program against independent solves, every poison inside the oracle
sphere / slab set, the bound above what label flipping, KKT and the attack itself reach, and the
bound's formula recomputed from scratch."""

from __future__ import annotations

import itertools
import json
import textwrap
from typing import Any

import numpy as np
import pytest
from scipy.optimize import minimize

from poisonbench.attack import Scenario
from poisonbench.campaign import load_campaign
from poisonbench.capabilities import CapabilityError
from poisonbench.dataset import Dataset
from poisonbench.host import load_host
from poisonbench.learner import Model
from poisonbench.plugins.attacks.kkt import KKTAttack
from poisonbench.plugins.attacks.label_flip import RandomLabelFlip
from poisonbench.plugins.attacks.minmax import DEFENCES, MinMaxAttack, OracleFeasibleSet, WorstPointSolver
from poisonbench.plugins.defences.sanitiser import Sanitiser
from poisonbench.plugins.defences.slab import SlabSanitiser
from poisonbench.plugins.defences.sphere import SphereSanitiser
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression
from poisonbench.testing import check_attack, toy_dataset
from poisonbench.trial import run_trial

FRACTION = 0.1
BUDGET = 20


@pytest.fixture(scope="module")
def toy() -> Dataset:
    return toy_dataset(n=200, d=4, seed=1)


@pytest.fixture(scope="module")
def plane() -> Dataset:
    """The RMD paper's 2-D Gaussians (box [−9.5, 9.5]²), 200 training points."""
    return load_host(load_external=False).create("datasets", "gaussians", n_train=200, n_test=100)


@pytest.fixture(scope="module")
def svm() -> LinearSVM:
    return LinearSVM()


# --- independent references ---------------------------------------------------------------


def oracle_radii(sanitiser: type[Sanitiser], data: Dataset, learner) -> tuple[dict[float, float], Sanitiser]:
    """Per class, the largest score among the clean points the oracle sanitiser keeps."""
    defence = sanitiser(fraction=FRACTION, reference="oracle")
    defence.calibrate(learner, data.X_train, data.y_train)
    keep = defence.keep_mask(learner, data.X_train, data.y_train)
    scores = defence.scores(learner, data.X_train, data.y_train)
    return {label: float(scores[keep & (data.y_train == label)].max()) for label in (-1.0, 1.0)}, defence


def inside_oracle_set(X: np.ndarray, y: np.ndarray, data: Dataset, learner, defence: str, tol: float) -> np.ndarray:
    """Rows of (X, y) inside box ∩ sphere ∩ slab, from the sanitisers' own scores."""
    inside = data.feasible.contains(X, atol=tol)
    for name, sanitiser in (("sphere", SphereSanitiser), ("slab", SlabSanitiser)):
        if name in defence and len(y):
            radii, fitted = oracle_radii(sanitiser, data, learner)
            limit = np.array([radii[label] for label in y])
            inside &= fitted.scores(learner, X, y) <= limit + tol
    return inside


def enumerate_max_2d(c: np.ndarray, mu: np.ndarray, lo, hi, v, r: float | None, s: float | None) -> float:
    """max c·x over {lo ≤ x ≤ hi, ‖x − μ‖ ≤ r, |v·(x − μ)| ≤ s} in the plane, exactly: the
    maximum of a linear function over a compact convex set is at an extreme point, here a
    crossing of two boundary curves or the circle's point with outer normal c."""
    lines = [(np.array([1.0, 0.0]), lo[0]), (np.array([1.0, 0.0]), hi[0])]
    lines += [(np.array([0.0, 1.0]), lo[1]), (np.array([0.0, 1.0]), hi[1])]
    if s is not None:
        lines += [(v, v @ mu + s), (v, v @ mu - s)]
    points = []
    for (a1, b1), (a2, b2) in itertools.combinations(lines, 2):
        A = np.array([a1, a2])
        if abs(np.linalg.det(A)) > 1e-12:
            points.append(np.linalg.solve(A, [b1, b2]))
    if r is not None:
        points.append(mu + r * c / np.linalg.norm(c))
        for a, b in lines:  # a·x = b crossing the circle: x = p + t·u
            p = a * b / (a @ a)
            u = np.array([-a[1], a[0]]) / np.linalg.norm(a)
            # ‖p − μ + t u‖² = r²
            half = u @ (p - mu)
            disc = half**2 - ((p - mu) @ (p - mu) - r**2)
            if disc >= 0:
                points += [p + (-half + sign * np.sqrt(disc)) * u for sign in (-1, 1)]
    tol = 1e-9
    feasible = [
        x
        for x in points
        if (x >= lo - tol).all()
        and (x <= hi + tol).all()
        and (r is None or np.linalg.norm(x - mu) <= r + tol)
        and (s is None or abs(v @ (x - mu)) <= s + tol)
    ]
    return max(float(c @ x) for x in feasible)


def slsqp_max(c: np.ndarray, mu: np.ndarray, lo, hi, v, r: float | None, s: float | None) -> float:
    """The same maximum by SLSQP from the centroid (a convex problem: local = global)."""
    cons: list[dict[str, Any]] = []
    if r is not None:
        cons.append({"type": "ineq", "fun": lambda x: r**2 - (x - mu) @ (x - mu), "jac": lambda x: -2 * (x - mu)})
    if s is not None:
        cons.append({"type": "ineq", "fun": lambda x: s - v @ (x - mu), "jac": lambda x: -v})
        cons.append({"type": "ineq", "fun": lambda x: s + v @ (x - mu), "jac": lambda x: v})
    res = minimize(
        lambda x: -c @ x,
        mu,
        jac=lambda x: -c,
        bounds=list(zip(lo, hi)),
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    # status 8 ("positive directional derivative") is SLSQP stalling at the optimum under so tight
    # an ftol, up to ~2e-9 outside; its point must be feasible to 1e-8, and the caller compares
    # its value to 1e-6
    assert res.status in (0, 8), res.message
    x = res.x
    assert (x >= lo - 1e-8).all() and (x <= hi + 1e-8).all()
    assert all(con["fun"](x) >= -1e-8 for con in cons)
    return float(c @ x)


def reference_worst_loss(model: Model, F: OracleFeasibleSet, reference) -> float:
    """max over F of the hinge loss at ``model``, by ``reference`` (enumeration or SLSQP)."""
    best = 0.0
    for label, region in F.regions.items():
        top = reference(
            -label * model.w, region.centroid, F.lo, F.hi, F.direction, region.sphere_radius, region.slab_radius
        )
        best = max(best, 1.0 - label * model.b + top)
    return best


def random_models(d: int, k: int, seed: int, scale: float) -> list[Model]:
    rng = np.random.default_rng(seed)
    return [Model(scale * rng.standard_normal(d), float(rng.standard_normal())) for _ in range(k)]


def run_attack(data: Dataset, learner, defence: str = "sphere+slab", budget: int = BUDGET):
    batches = list(MinMaxAttack(fraction=FRACTION, defence=defence).poison(Scenario(data, learner, budget=budget)))
    X = np.concatenate([b.X for b in batches])
    y = np.concatenate([b.y for b in batches])
    return batches, X, y


def defended_values(data: Dataset, learner, X_p: np.ndarray, y_p: np.ndarray, defence: str):
    """Fit on D_c ∪ (D_p ∩ F); the regularised clean loss and the minimax value (1/n) Σ ℓ over
    the training set + (1 + m/n) C_R R, both of which the certified bound must exceed."""
    keep = inside_oracle_set(X_p, y_p, data, learner, defence, tol=1e-7)
    X = np.vstack([data.X_train, X_p[keep]])
    y = np.concatenate([data.y_train, y_p[keep]])
    model = learner.fit(X, y)
    n, m = data.n_train, int(keep.sum())
    reg = learner.C_R * learner.regulariser(model)
    clean = float(learner.loss(model, data.X_train, data.y_train).mean())
    minimax = float(learner.loss(model, X, y).sum()) / n + (1 + m / n) * reg
    return {"clean_loss": clean, "clean_objective": clean + reg, "minimax": minimax, "kept": m}


# --- (a) the worst point ---------------------------------------------------------------------


@pytest.mark.parametrize("defence", DEFENCES)
def test_worst_point_matches_an_exact_enumeration_in_the_plane(plane, svm, defence):
    F = OracleFeasibleSet.from_clean(plane.feasible, svm, plane.X_train, plane.y_train, FRACTION, defence)
    solver = WorstPointSolver(F)
    for model in random_models(2, 12, seed=3, scale=1.0):
        worst = solver(model)
        exact = reference_worst_loss(model, F, enumerate_max_2d)
        assert abs(worst.bound - exact) <= 1e-6 * max(1.0, exact)
        assert abs(worst.loss - exact) <= 1e-6 * max(1.0, exact)
        assert worst.bound >= exact - 1e-9  # the dual value is an upper bound
        assert worst.loss == pytest.approx(max(0.0, 1 - worst.y * (model.w @ worst.x + model.b)), abs=1e-12)


@pytest.mark.parametrize("defence", DEFENCES)
def test_worst_point_matches_slsqp_in_four_dimensions(toy, svm, defence):
    F = OracleFeasibleSet.from_clean(toy.feasible, svm, toy.X_train, toy.y_train, FRACTION, defence)
    solver = WorstPointSolver(F)
    for model in random_models(4, 6, seed=5, scale=3.0):
        worst = solver(model)
        assert worst.bound == pytest.approx(reference_worst_loss(model, F, slsqp_max), abs=1e-6)


def test_box_worst_point_is_the_closed_form_vertex(toy, svm):
    """Without sphere and slab (``defence = "box"``, Table 6's undefended min-max) the worst
    point of label y is the box vertex x_j = hi_j where −y w_j > 0 else lo_j."""
    F = OracleFeasibleSet.from_clean(toy.feasible, svm, toy.X_train, toy.y_train, FRACTION, "box")
    solver = WorstPointSolver(F)
    lo, hi = toy.feasible.lo, toy.feasible.hi
    for model in random_models(4, 6, seed=7, scale=3.0):
        best = max(
            max(0.0, 1.0 - y * model.b + float(np.maximum(-y * model.w * lo, -y * model.w * hi).sum()))
            for y in (1.0, -1.0)
        )
        worst = solver(model)
        assert worst.bound == pytest.approx(best, abs=1e-7) and worst.loss == pytest.approx(best, abs=1e-7)


@pytest.mark.parametrize("defence", ["sphere+slab", "sphere"])
def test_worst_point_where_the_box_and_the_sphere_both_bind(toy, svm, defence):
    """fraction = 0: the spheres reach past the box, so optima lie on both (the certificate then
    needs the box multipliers and the sphere's together)."""
    F = OracleFeasibleSet.from_clean(toy.feasible, svm, toy.X_train, toy.y_train, 0.0, defence)
    solver = WorstPointSolver(F)
    both = 0
    for model in random_models(4, 10, seed=5, scale=3.0):
        worst = solver(model)
        region = F.regions[worst.y]
        on_box = np.minimum(worst.x - F.lo, F.hi - worst.x).min() < 1e-9
        on_sphere = abs(np.linalg.norm(worst.x - region.centroid) - region.sphere_radius) < 1e-7
        both += bool(on_box and on_sphere)
        assert worst.bound == pytest.approx(reference_worst_loss(model, F, slsqp_max), abs=1e-6)
    assert both >= 1


def test_radii_follow_the_sanitisers_rule(plane, svm):
    F = OracleFeasibleSet.from_clean(plane.feasible, svm, plane.X_train, plane.y_train, FRACTION, "sphere+slab")
    for sanitiser, attr in ((SphereSanitiser, "sphere_radius"), (SlabSanitiser, "slab_radius")):
        radii, fitted = oracle_radii(sanitiser, plane, svm)
        scores = fitted.scores(svm, plane.X_train, plane.y_train)
        keep = fitted.keep_mask(svm, plane.X_train, plane.y_train)
        for label in (-1.0, 1.0):
            assert getattr(F.regions[label], attr) == radii[label]
            rows = plane.y_train == label
            assert np.array_equal(keep[rows], scores[rows] <= radii[label])  # F_y ∩ D_c = what it keeps
    for defence, (sphere, slab) in {"sphere": (True, False), "slab": (False, True)}.items():
        region = OracleFeasibleSet.from_clean(plane.feasible, svm, plane.X_train, plane.y_train, 0.1, defence).regions[
            1.0
        ]
        assert (region.sphere_radius is not None, region.slab_radius is not None) == (sphere, slab)


# --- (b) poisons inside F --------------------------------------------------------------------


@pytest.mark.parametrize("defence", DEFENCES)
def test_every_poison_lies_inside_the_oracle_set(toy, plane, svm, defence):
    for data in (toy, plane):
        batches, X, y = run_attack(data, svm, defence)
        assert len(batches) == BUDGET and all(len(b) == 1 for b in batches)
        assert data.feasible.violation(X, atol=0.0) is None
        # inside to 1e-7 as asked, and in fact to rounding: the solver's own point may be 1e-10
        # outside, the repair (clip, shrink toward μ_y) puts it inside
        assert inside_oracle_set(X, y, data, svm, defence, tol=1e-12).all()
        for name, sanitiser in (("sphere", SphereSanitiser), ("slab", SlabSanitiser)):
            if name in defence:  # the constraint binds: the test has teeth
                radii, fitted = oracle_radii(sanitiser, data, svm)
                slack = np.array([radii[label] for label in y]) - fitted.scores(svm, X, y)
                assert slack.min() <= 1e-6


# --- (c) the bound against attacks ----------------------------------------------------------


def test_upper_bound_exceeds_label_flip_kkt_and_the_attack_itself(toy, svm):
    batches, X_mm, y_mm = run_attack(toy, svm)
    final = batches[-1].diagnostics
    bound = final["upper_bound"]
    scenario = Scenario(toy, svm, budget=BUDGET, seed=0)
    flips = list(RandomLabelFlip(batch_size=BUDGET).poison(scenario))
    X_lf, y_lf = flips[0].X, flips[0].y
    target = svm.fit(np.vstack([toy.X_train, X_lf]), np.concatenate([toy.y_train, y_lf]), sample_weight=None)
    (kkt,) = KKTAttack(target, split_step=0.1).poison(scenario)
    values = {
        "label-flip": defended_values(toy, svm, X_lf, y_lf, "sphere+slab"),
        "kkt": defended_values(toy, svm, kkt.X, kkt.y, "sphere+slab"),
        "min-max": defended_values(toy, svm, X_mm, y_mm, "sphere+slab"),
    }
    for name, v in values.items():
        assert bound >= v["minimax"] - 1e-9 >= v["clean_objective"] - 1e-9 >= v["clean_loss"] - 1e-9, name
    mm = values["min-max"]
    assert mm["kept"] == BUDGET  # every min-max poison survives the oracle filter
    # the attack's own report is the defender's model on D_c ∪ D_p, measured independently here
    assert final["attack_minimax_value"] == pytest.approx(mm["minimax"], abs=1e-6)
    assert final["attack_clean_objective"] == pytest.approx(mm["clean_objective"], abs=1e-6)
    assert final["minimax_gap"] == pytest.approx(bound - mm["minimax"], abs=1e-6)
    # nearly tight (as the paper finds): the optimal attack's M is within 1 % of this one
    assert 0 <= final["minimax_gap"] <= 0.01 * bound
    # and well above what the attacks that ignore the defence reach through it
    assert mm["minimax"] > values["label-flip"]["minimax"] and mm["minimax"] > values["kkt"]["minimax"]


def test_bound_formula_recomputed_from_scratch(plane, svm):
    """step_bound of batch 1 is U(θ_1), θ_1 the fit on D_c + εn copies of x_1; U recomputed with
    the exact planar maximum; poison_loss is max_F ℓ(θ_0) at the clean fit."""
    batches, X, y = run_attack(plane, svm)
    n, eps = plane.n_train, BUDGET / plane.n_train
    F = OracleFeasibleSet.from_clean(plane.feasible, svm, plane.X_train, plane.y_train, FRACTION, "sphere+slab")
    theta0 = svm.fit(plane.X_train, plane.y_train)
    assert batches[0].diagnostics["poison_loss"] == pytest.approx(
        reference_worst_loss(theta0, F, enumerate_max_2d), abs=1e-6
    )
    theta1 = svm.fit(
        np.vstack([plane.X_train, X[:1]]), np.append(plane.y_train, y[0]), sample_weight=np.append(np.ones(n), eps * n)
    )
    U1 = (
        svm.loss(theta1, plane.X_train, plane.y_train).mean()
        + (1 + eps) * svm.C_R * svm.regulariser(theta1)
        + eps * reference_worst_loss(theta1, F, enumerate_max_2d)
    )
    assert batches[0].diagnostics["step_bound"] == pytest.approx(U1, abs=1e-6)
    bounds = [b.diagnostics["upper_bound"] for b in batches]
    steps = [b.diagnostics["step_bound"] for b in batches]
    assert all(a >= b for a, b in itertools.pairwise(bounds))  # a running minimum
    assert all(bound <= min(steps[: i + 1]) for i, bound in enumerate(bounds))
    assert all(b.diagnostics["certificate_gap"] <= 1e-7 for b in batches)


def test_zero_budget_bound_is_the_clean_optimum(toy, svm):
    (batch,) = MinMaxAttack().poison(Scenario(toy, svm, budget=0))
    assert len(batch) == 0
    clean = svm.fit(toy.X_train, toy.y_train)
    assert batch.diagnostics["upper_bound"] == pytest.approx(svm.objective(clean, toy.X_train, toy.y_train), abs=1e-9)


# --- (e) contract, refusals, campaign -------------------------------------------------------


def test_contract():
    # one-hot data: the worst point is over the groups' convex hull, so the poisons are
    # fractional there (module docstring); the box is what they satisfy exactly
    check_attack(MinMaxAttack(), toy_dataset(), budget=10, feasibility="box")


def test_refusals(toy):
    with pytest.raises(ValueError, match="budget up front"):
        next(iter(MinMaxAttack().poison(Scenario(toy, LinearSVM()))))
    with pytest.raises(CapabilityError, match="min-max"):
        next(iter(MinMaxAttack().poison(Scenario(toy, LogisticRegression(), budget=2))))
    with pytest.raises(ValueError, match="defence"):
        MinMaxAttack(defence="sphere+knn")
    with pytest.raises(ValueError, match="keeps no clean point"):
        next(iter(MinMaxAttack(fraction=0.999).poison(Scenario(toy, LinearSVM(), budget=2))))


def _checkpoint_rows(tmp_path, text: str) -> list[dict]:
    """The checkpoint row of each trial of the campaign ``text`` (one budget), each asserted ok."""
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(text))
    host = load_host((), load_external=False)
    rows = []
    for trial in load_campaign(path).trials(host.registry):
        (row,) = [r for r in run_trial(trial, host) if r["kind"] == "checkpoint"]
        assert row["status"] == "ok", row.get("error")
        rows.append(row)
    return rows


def test_campaign_row_carries_the_bound(tmp_path):
    text = """
    name = "certified"
    seeds = [0]
    budgets = [10]
    [[datasets]]
    name = "gaussians"
    params = { n_train = 100, n_test = 100 }
    [[learners]]
    name = "svm"
    [[defences]]
    name = "sphere"
    params = { fraction = 0.1, reference = "oracle" }
    [[attacks]]
    name = "min-max"
    params = { fraction = 0.1, defence = "sphere" }
    """
    (row,) = _checkpoint_rows(tmp_path, text)
    diagnostics = json.loads(row["diagnostics"])
    assert row["n_poisons"] == 10 and diagnostics["upper_bound"] >= diagnostics["attack_minimax_value"] > 0


def test_harness_clean_objective_sits_under_the_certified_bound(tmp_path):
    """The leaderboard's three-way comparison: for attacks that keep their poisons inside F
    (mtp-defence-aware, kkt-defence-aware, min-max itself) the harness-measured
    ``clean_objective`` of the undefended victim (the oracle defender keeps every point of F) is
    at most min-max's certified ``upper_bound`` for the same F and budget; for min-max it equals
    the attack's own ``attack_clean_objective``."""
    text = """
    name = "three-way"
    seeds = [0]
    budgets = [12]
    [[datasets]]
    name = "gaussians"
    params = { n_train = 100, n_test = 100 }
    [[learners]]
    name = "svm"
    [[defences]]
    name = "none"
    [[attacks]]
    name = "min-max"
    params = { fraction = 0.1, defence = "sphere+slab" }
    [[attacks]]
    name = "mtp-defence-aware"
    params = { target = "error:0.1", fraction = 0.1, defence = "sphere+slab" }
    [[attacks]]
    name = "kkt-defence-aware"
    params = { target = "error:0.1", fraction = 0.1, defence = "sphere+slab", split_step = 0.1 }
    """
    rows = {row["attack"]: row for row in _checkpoint_rows(tmp_path, text)}
    minmax = json.loads(rows["min-max"]["diagnostics"])
    assert rows["min-max"]["clean_objective"] == pytest.approx(minmax["attack_clean_objective"], rel=1e-9)
    for attack in ("mtp-defence-aware", "kkt-defence-aware"):
        assert rows[attack]["n_poisons"] == 12
        assert 0 < rows[attack]["clean_objective"] <= minmax["upper_bound"]
