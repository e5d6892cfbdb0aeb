"""Sanitiser defences (sphere, slab, loss, knn, svd, trim): each removes the points it should on
constructed data and nothing else; oracle vs empirical references; composition with the L2
defences; the harness's removed-poison / removed-clean counts."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from poisonbench.campaign import load_campaign
from poisonbench.host import load_host
from poisonbench.plugins.defences.knn import KNNSanitiser
from poisonbench.plugins.defences.loss_filter import LossSanitiser
from poisonbench.plugins.defences.sanitiser import class_quantile_keep
from poisonbench.plugins.defences.slab import SlabSanitiser
from poisonbench.plugins.defences.sphere import SphereSanitiser
from poisonbench.plugins.defences.svd import SVDSanitiser
from poisonbench.plugins.defences.trim import TrimDefence
from poisonbench.plugins.learners.linear import LinearSVM
from poisonbench.testing import check_defence, toy_dataset
from poisonbench.trial import ComponentError, removed_counts, run_trial

SVM = LinearSVM()


def two_blobs(n: int = 100, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class +1 around +e₀, class −1 around −e₀, unit-variance noise of scale 0.3; alternating labels."""
    rng = np.random.default_rng(seed)
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    X = 0.3 * rng.normal(size=(n, d))
    X[:, 0] += y
    return X, y


def planted(offsets: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two blobs plus one planted point per row of ``offsets`` (added to its class centroid)."""
    X, y = two_blobs(seed=seed)
    centre = np.where(labels[:, None] > 0, 1.0, -1.0) * np.eye(X.shape[1])[0]
    Xp = centre + offsets
    return np.vstack([X, Xp]), np.concatenate([y, labels]), np.arange(len(y), len(y) + len(labels))


def removed(defence, X, y, learner=SVM) -> set[int]:
    return set(np.flatnonzero(~defence.keep_mask(learner, X, y)).tolist())


def fraction_for(y: np.ndarray, per_class: int) -> float:
    """The fraction that removes exactly ``per_class`` points of each class (balanced classes)."""
    return per_class / np.sum(y == 1.0)


# --- the shared quantile rule ---------------------------------------------------------------


def test_class_quantile_keep_keeps_round_share_of_each_class_lowest_first_earlier_on_ties():
    y = np.array([1, 1, 1, 1, -1, -1, -1, -1, -1, -1], dtype=float)
    scores = np.array([5, 1, 5, 0, 9, 8, 0, 0, 7, 1], dtype=float)
    keep = class_quantile_keep(scores, y, 0.5)
    # class +1: keep round(0.5 * 4) = 2 lowest (rows 3 and 1); class −1: keep 3 lowest (6, 7, 9)
    assert np.flatnonzero(keep).tolist() == [1, 3, 6, 7, 9]
    tie = class_quantile_keep(np.array([2.0, 2.0, 2.0]), np.ones(3), 1 / 3)
    assert tie.tolist() == [True, True, False]
    assert class_quantile_keep(scores, y, 0.0).all()


# --- each sanitiser removes exactly the planted points -----------------------------------------


def test_sphere_removes_the_points_far_from_their_centroid_in_any_direction():
    far = np.array([[0, 0, 3.0, 0], [0, -3.0, 0, 0]])
    X, y, idx = planted(far, np.array([1.0, -1.0]))
    assert removed(SphereSanitiser(fraction=fraction_for(y, 1)), X, y) == set(idx.tolist())


def test_slab_removes_far_points_along_the_centroid_line_but_not_across_it():
    along = np.array([[2.5, 0, 0, 0], [-2.5, 0, 0, 0]])
    X, y, idx = planted(along, np.array([1.0, -1.0]))
    assert removed(SlabSanitiser(fraction=fraction_for(y, 1)), X, y) == set(idx.tolist())
    across = np.array([[0, 0, 3.0, 0], [0, 3.0, 0, 0]])
    X, y, idx = planted(across, np.array([1.0, -1.0]))
    assert not removed(SlabSanitiser(fraction=fraction_for(y, 1)), X, y) & set(idx.tolist())
    assert removed(SphereSanitiser(fraction=fraction_for(y, 1)), X, y) == set(idx.tolist())


def test_loss_removes_points_labelled_against_their_side():
    X, y = two_blobs()
    X = np.vstack([X, [[1.2, 0, 0, 0], [-1.2, 0, 0, 0]]])
    y = np.concatenate([y, [-1.0, 1.0]])
    assert removed(LossSanitiser(fraction=fraction_for(y, 1)), X, y) == {100, 101}


def test_knn_removes_isolated_points_and_not_a_repeated_one():
    X, y = two_blobs()
    lone = np.array([[1.0, 2.5, 0, 0], [-1.0, -2.5, 0, 0]])
    X2, y2 = np.vstack([X, lone]), np.concatenate([y, [1.0, -1.0]])
    assert removed(KNNSanitiser(fraction=fraction_for(y2, 1), k=3), X2, y2) == {100, 101}
    repeated = np.repeat(lone, 4, axis=0)  # four copies of each: neighbours at distance 0
    X3, y3 = np.vstack([X, repeated]), np.concatenate([y, np.repeat([1.0, -1.0], 4)])
    assert not removed(KNNSanitiser(fraction=fraction_for(y3, 1), k=3), X3, y3) & set(range(100, 108))


def test_svd_removes_points_off_the_low_rank_subspace():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(6, 2)))[0].T  # a 2-D subspace of R^6
    y = np.where(np.arange(80) % 2 == 0, 1.0, -1.0)
    X = (rng.normal(size=(80, 2)) * 3) @ basis + np.outer(y, basis[0])
    off = np.zeros((2, 6))
    off[:, 5] = [1.0, -1.0]
    off -= (off @ basis.T) @ basis  # orthogonal to the subspace, norm ≈ 1, on-centroid otherwise
    Xp = np.outer([1.0, -1.0], basis[0]) + 2 * off / np.linalg.norm(off, axis=1, keepdims=True)
    X2, y2 = np.vstack([X, Xp]), np.concatenate([y, [1.0, -1.0]])
    assert removed(SVDSanitiser(fraction=fraction_for(y2, 1), rank=2), X2, y2) == {80, 81}
    # the same points are ordinary for a sphere of the data's own spread
    assert removed(SphereSanitiser(fraction=fraction_for(y2, 1)), X2, y2) != {80, 81}


def test_trim_converges_to_the_clean_points_and_its_oracle_count():
    X, y = two_blobs()
    flips = X[:6] * np.array([1.0, 1, 1, 1])
    Xp, yp = np.vstack([X, flips]), np.concatenate([y, -y[:6]])
    trim = TrimDefence(fraction=6 / len(yp))
    assert removed(trim, Xp, yp) == set(range(100, 106))
    oracle = TrimDefence(reference="oracle")
    oracle.calibrate(SVM, X, y)
    assert oracle.n_keep(Xp, yp) == 100 and removed(oracle, Xp, yp) == set(range(100, 106))


def test_trim_without_a_fixed_point_raises():
    X, y = two_blobs()
    Xp, yp = np.vstack([X, X[:40]]), np.concatenate([y, -y[:40]])
    with pytest.raises(ValueError, match="no fixed point after 1 refits"):
        TrimDefence(fraction=0.3, iterations=1).keep_mask(SVM, Xp, yp)


# --- oracle vs empirical --------------------------------------------------------------------


def test_oracle_centroids_come_from_the_clean_data_and_resist_a_planted_cluster():
    X, y = two_blobs()
    cluster = np.tile([1.0, 2.0, 0, 0], (30, 1))  # 30 poisons of class +1, all at one point
    Xp, yp = np.vstack([X, cluster]), np.concatenate([y, np.ones(30)])
    frac = 30 / np.sum(yp == 1.0)
    empirical = removed(SphereSanitiser(fraction=frac), Xp, yp)
    oracle_def = SphereSanitiser(fraction=frac, reference="oracle")
    oracle_def.calibrate(SVM, X, y)
    oracle = removed(oracle_def, Xp, yp)
    planted_rows, plus = set(range(100, 130)), set(np.flatnonzero(yp == 1.0).tolist())
    assert oracle & plus == planted_rows  # the clean centroid: the cluster is 2 away, farther than any clean +1
    assert not planted_rows <= empirical & plus  # the cluster drags the empirical centroid toward itself


def test_oracle_without_calibration_is_one_clear_error():
    X, y = two_blobs()
    with pytest.raises(ValueError, match="reference = 'oracle' needs the clean training data"):
        SphereSanitiser(reference="oracle").keep_mask(SVM, X, y)


def test_sanitisers_need_both_classes_in_the_reference_and_valid_parameters():
    X, y = two_blobs()
    slab = SlabSanitiser(reference="oracle")
    slab.calibrate(SVM, X[y > 0], y[y > 0])
    with pytest.raises(ValueError, match="both classes"):
        slab.keep_mask(SVM, X, y)
    with pytest.raises(ValueError, match="fraction"):
        SphereSanitiser(fraction=1.0)
    with pytest.raises(ValueError, match="then"):
        SphereSanitiser(then="trim")
    with pytest.raises(ValueError, match="rank = 4 must be below the 4 features"):
        SVDSanitiser(rank=4).keep_mask(SVM, X, y)


# --- composition and the harness --------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [SphereSanitiser, SlabSanitiser, LossSanitiser, KNNSanitiser, SVDSanitiser, TrimDefence]
)
def test_every_sanitiser_passes_the_defence_contract(cls):
    extra = {"rank": 2} if cls is SVDSanitiser else {}
    fit = check_defence(cls(fraction=0.1, **extra), toy_dataset(), SVM)
    assert fit.kept is not None and 0 < (~fit.kept).sum() < len(fit.kept)


def test_sanitise_then_fixed_l2_fits_the_kept_points_with_that_lambda():
    X, y = two_blobs()
    fit = SphereSanitiser(fraction=0.1, then="fixed-l2", then_params={"lam": 1.5}).fit(SVM, X, y)
    assert fit.hyperparameters["lambda"] == pytest.approx(1.5)
    from poisonbench.plugins.defences.l2 import FixedL2

    direct = FixedL2(lam=1.5).fit(SVM, X[fit.kept], y[fit.kept]).model
    np.testing.assert_allclose(fit.model.theta, direct.theta, atol=1e-10)


def test_removed_counts_splits_poisons_and_clean_and_refuses_impossible_masks():
    mask = np.array([True, False, True, True, False, False])
    assert removed_counts(mask, 4, 2, "defence 'x'") == (3, 2, 1)
    assert removed_counts(np.array([0, 2, 3]), 4, 2, "defence 'x'") == (3, 2, 1)
    assert removed_counts(None, 4, 2, "defence 'x'") == (None, None, None)
    for bad in (np.ones(5, dtype=bool), np.array([0, 0, 1]), np.array([0, 6]), np.array([0.5])):
        with pytest.raises(ComponentError, match="defence 'x'"):
            removed_counts(bad, 4, 2, "defence 'x'")


def test_a_campaign_row_reports_the_poisons_and_clean_points_the_sphere_removed(tmp_path):
    text = """
    name = "sanitise"
    seeds = [0]
    budgets = [0, 20]
    [[datasets]]
    name = "gaussians"
    params = { n_train = 200, n_test = 100 }
    [[learners]]
    name = "svm"
    [[defences]]
    name = "sphere"
    params = { fraction = 0.1, reference = "oracle" }
    [[attacks]]
    name = "label-flip"
    params = { batch_size = 20 }
    """
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(text))
    host = load_host((), load_external=False)
    (trial,) = load_campaign(path).trials(host.registry)
    rows = {r["budget"]: r for r in run_trial(trial, host) if r["kind"] == "checkpoint"}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    clean, poisoned = rows[0], rows[20]
    assert (clean["n_removed"], clean["n_removed_poisons"], clean["n_removed_clean"]) == (20, 0, 20)
    assert poisoned["n_removed"] == poisoned["n_removed_poisons"] + poisoned["n_removed_clean"] == 22
    assert 0 <= poisoned["n_removed_poisons"] <= 20


# --- the scores themselves, against independent computations ------------------------------


@pytest.mark.parametrize("make", [SphereSanitiser, SlabSanitiser, lambda **kw: KNNSanitiser(k=3, **kw)])
def test_centroid_and_distance_scores_do_not_depend_on_where_the_origin_is(make):
    far = np.array([[2.5, 0, 0, 0], [0, -3.0, 0, 0]])
    X, y, _ = planted(far, np.array([1.0, -1.0]))
    shift = np.array([0.0, 5.0, -4.0, 3.0])
    sanitiser = make(fraction=0.2)
    np.testing.assert_allclose(sanitiser.scores(SVM, X + shift, y), sanitiser.scores(SVM, X, y), atol=1e-9)


def test_knn_score_is_the_mean_distance_to_the_k_nearest_other_points():
    X = np.array([[0.0], [1.0], [3.0], [7.0]])
    y = np.ones(4)
    np.testing.assert_allclose(KNNSanitiser(k=1).scores(SVM, X, y), [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(KNNSanitiser(k=2).scores(SVM, X, y), [2.0, 1.5, 2.5, 5.0])
    oracle = KNNSanitiser(k=1, reference="oracle")
    oracle.calibrate(SVM, X[:2], y[:2])
    np.testing.assert_allclose(oracle.scores(SVM, X, y), [0.0, 0.0, 2.0, 6.0])


def test_svd_score_is_the_residual_of_x_minus_its_centroid_off_span_of_top_vectors_and_centroids():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 6)) @ np.diag([5, 3, 1, 0.5, 0.2, 0.1]) + 0.7
    y = np.where(rng.normal(size=40) > 0, 1.0, -1.0)
    sanitiser = SVDSanitiser(rank=2)
    _, _, Vt = np.linalg.svd(X, full_matrices=False)
    mu = {c: X[y == c].mean(axis=0) for c in (-1.0, 1.0)}
    B = np.vstack([Vt[:2], mu[1.0], mu[-1.0]]).T  # columns span the subspace
    centred = X - np.stack([mu[c] for c in y])
    coef, *_ = np.linalg.lstsq(B, centred.T, rcond=None)
    expected = np.linalg.norm(centred.T - B @ coef, axis=0)
    np.testing.assert_allclose(sanitiser.scores(SVM, X, y), expected, atol=1e-10)


def test_loss_scores_are_the_learners_losses_under_the_reference_fit():
    X, y = two_blobs()
    Xp, yp = np.vstack([X, X[:10]]), np.concatenate([y, -y[:10]])
    oracle = LossSanitiser(reference="oracle")
    oracle.calibrate(SVM, X, y)
    np.testing.assert_allclose(oracle.scores(SVM, Xp, yp), SVM.loss(SVM.fit(X, y), Xp, yp), atol=1e-12)
    np.testing.assert_allclose(LossSanitiser().scores(SVM, Xp, yp), SVM.loss(SVM.fit(Xp, yp), Xp, yp), atol=1e-12)
