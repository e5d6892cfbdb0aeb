"""MTP that knows the sanitiser (plugins/attacks/mtp_defence_aware.py; Koh et al. 2018): the
max loss difference over box ∩ sphere ∩ slab against an independent search of the plane, every
poison inside the oracle set point by point (where plain MTP's are not), and the contract."""

from __future__ import annotations

import numpy as np
import pytest

from poisonbench.attack import Scenario
from poisonbench.dataset import Dataset
from poisonbench.host import load_host
from poisonbench.plugins.attacks.minmax import DEFENCES, OracleFeasibleSet
from poisonbench.plugins.attacks.mtp import ModelTargetedPoisoning
from poisonbench.plugins.attacks.mtp_defence_aware import DefenceAwareMTP, SanitiserAwareHingeSearch
from poisonbench.plugins.learners.linear import LinearSVM
from poisonbench.plugins.max_loss_diff import hinge_loss_diff
from poisonbench.testing import check_attack, toy_dataset

FRACTION = 0.1


@pytest.fixture(scope="module")
def plane() -> Dataset:
    """The RMD paper's 2-D Gaussians (box [−9.5, 9.5]²), 200 training points."""
    return load_host(load_external=False).create("datasets", "gaussians", n_train=200, n_test=100)


def boundary_samples(F: OracleFeasibleSet, label: float, theta_p: np.ndarray, m: int = 200_001) -> np.ndarray:
    """Points of F_y on every curve where a maximum of the (piecewise-linear) loss difference can
    lie in the plane: the box edges, the sphere, the slab's two lines and the target's margin line
    v = 0 (the concave kink of −max(0, v)); only those inside F_y are kept."""
    region, lo, hi = F.regions[label], F.lo, F.hi
    mu, v = region.centroid, F.direction
    t = np.linspace(0.0, 1.0, m)
    curves = [np.column_stack([np.full(m, x0), lo[1] + t * (hi[1] - lo[1])]) for x0 in (lo[0], hi[0])]
    curves += [np.column_stack([lo[0] + t * (hi[0] - lo[0]), np.full(m, x1)]) for x1 in (lo[1], hi[1])]
    if region.sphere_radius is not None:
        angle = 2 * np.pi * t
        curves.append(mu + region.sphere_radius * np.column_stack([np.cos(angle), np.sin(angle)]))
    span = np.linspace(-30.0, 30.0, m)
    along = np.array([-v[1], v[0]]) / np.linalg.norm(v)
    if region.slab_radius is not None:
        for side in (-1.0, 1.0):
            base = mu + side * region.slab_radius * v / (v @ v)
            curves.append(base + span[:, None] * along)
    w_p, b_p = theta_p[:-1], theta_p[-1]  # v = 0: label·(w_p·x + b_p) = 1
    normal = w_p / np.linalg.norm(w_p)
    base = normal * (label - b_p) / np.linalg.norm(w_p)
    curves.append(base + span[:, None] * np.array([-normal[1], normal[0]]))
    X = np.vstack(curves)
    return X[inside(F, label, X, tol=0.0)]


def inside(F: OracleFeasibleSet, label: float, X: np.ndarray, tol: float) -> np.ndarray:
    """Rows of X in F_y: box, sphere and slab of class ``label`` (within ``tol``)."""
    region = F.regions[label]
    Z = X - region.centroid
    ok = np.all((F.lo - tol <= X) & (F.hi + tol >= X), axis=1)
    if region.sphere_radius is not None:
        ok &= np.linalg.norm(Z, axis=1) <= region.sphere_radius + tol
    if region.slab_radius is not None:
        ok &= np.abs(Z @ F.direction) <= region.slab_radius + tol
    return ok


@pytest.mark.parametrize("defence", DEFENCES)
def test_the_search_is_the_maximum_over_the_sanitisers_set(plane, defence):
    F = OracleFeasibleSet.from_clean(plane.feasible, LinearSVM(), plane.X_train, plane.y_train, FRACTION, defence)
    search = SanitiserAwareHingeSearch(F)
    rng = np.random.default_rng(11)
    for _ in range(6):
        theta_t, theta_p = rng.normal(size=3), rng.normal(size=3)
        best = search(theta_t, theta_p)
        assert inside(F, best.y, best.x[None, :], tol=1e-9)[0]
        assert best.value == pytest.approx(float(hinge_loss_diff(theta_t, theta_p, best.x, best.y)[0]), abs=1e-12)
        sampled = max(
            float(hinge_loss_diff(theta_t, theta_p, boundary_samples(F, y, theta_p), y).max()) for y in (-1.0, 1.0)
        )
        assert sampled <= best.value + 1e-7  # nothing in F does better
        assert best.value <= sampled + 2e-3 * max(1.0, abs(sampled))  # and the samples come that close


def test_every_poison_is_inside_the_oracle_set_and_plain_mtps_are_not(plane):
    learner = LinearSVM()
    scenario = Scenario(plane, learner, budget=60, seed=0)
    F = OracleFeasibleSet.from_clean(plane.feasible, learner, plane.X_train, plane.y_train, FRACTION, "sphere+slab")
    aware = list(DefenceAwareMTP(target="error:0.2", fraction=FRACTION).poison(scenario))
    X = np.vstack([b.X for b in aware])
    y = np.concatenate([b.y for b in aware])
    assert len(y) == 60
    for label in (-1.0, 1.0):
        assert inside(F, label, X[y == label], tol=1e-9).all()
    assert aware[0].diagnostics["sphere_radius_pos"] == F.regions[1.0].sphere_radius
    assert all(b.diagnostics["max_loss_diff_exact"] for b in aware)
    plain = list(ModelTargetedPoisoning(target="error:0.2").poison(scenario))
    Xp = np.vstack([b.X for b in plain])
    yp = np.concatenate([b.y for b in plain])
    outside = sum(int((~inside(F, label, Xp[yp == label], tol=1e-9)).sum()) for label in (-1.0, 1.0))
    assert outside > 0  # the constraint binds: the unconstrained attack leaves F


def test_the_contract_and_its_refusals():
    check_attack(DefenceAwareMTP(target="error:0.2", fraction=FRACTION), toy_dataset(), budget=6, feasibility="box")
    with pytest.raises(TypeError):
        DefenceAwareMTP(target="error:0.2", bound_induced=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="defence"):
        DefenceAwareMTP(defence="moat")
