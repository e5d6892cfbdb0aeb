"""Built-in datasets: adult, mnist, gaussians, file (shapes, boxes, splits, checksums, errors)."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonbench.host import load_host
from poisonbench.plugins.datasets._io import package_data, read_columns
from poisonbench.plugins.datasets.adult import adult, subpopulation_accuracy, top_subpopulations
from poisonbench.plugins.datasets.file import load_file
from poisonbench.plugins.datasets.gaussians import gaussians
from poisonbench.plugins.datasets.mnist import mnist
from poisonbench.testing import check_dataset


@pytest.fixture(scope="module")
def adult_ds():
    return adult()


# ---------------------------------------------------------------- registry


def test_builtin_datasets_are_registered_with_descriptions():
    registry = load_host(load_external=False).registry
    for name in ("adult", "mnist", "gaussians", "file"):
        component = registry.get("datasets", name)
        assert component.description and "\n" not in component.description
        assert component.parameters["seed"] == 0
    data = registry.get("datasets", "gaussians").create(seed=3)
    assert data.n_train == 32


# ---------------------------------------------------------------- adult


def test_adult_shapes_and_class_counts(adult_ds):
    # The paper's sizes exactly: adult.data has 7,841 '>50K' rows and adult.test 3,846; the
    # reference's draw adds 7,841 (3,846) rows taken among the file's first 24,720 (12,435)
    # rows of either class, so about 24 % of them are '>50K' too: 9,724 and 4,778 with
    # RandomState(0) (counted by hand from the raw labels, see the module docstring).
    assert adult_ds.X_train.shape == (15_682, 57)
    assert adult_ds.X_test.shape == (7_692, 57)
    assert (adult_ds.y_train == 1).sum() == 9_724 and (adult_ds.y_test == 1).sum() == 4_778
    assert adult_ds.provenance["class_counts"]["train"] == {"+1": 9_724, "-1": 5_958}
    assert adult_ds.provenance["sampling"] == "reference"
    assert len(np.unique(adult_ds.X_train, axis=0)) < 15_682 - 1_883  # rows taken twice (and natural duplicates)
    assert adult_ds.X_val is None
    assert adult_ds.feature_names[:4] == ("age", "capital-gain", "capital-loss", "hours-per-week")
    assert adult_ds.provenance["split_sizes"] == {"train": 15_682, "validation": 0, "test": 7_692}


def test_adult_box_and_onehot_groups_match_the_data(adult_ds):
    fs = adult_ds.feasible
    assert np.array_equal(fs.lo, np.zeros(57)) and np.array_equal(fs.hi, np.ones(57))
    assert fs.contains(adult_ds.X_train).all() and fs.contains(adult_ds.X_test).all()
    assert [len(g) for g in fs.onehot_groups] == [8, 15, 6, 14, 5, 4, 1]
    covered = [j for g in fs.onehot_groups for j in g]
    assert covered == list(range(4, 57))
    assert not fs.integer[:4].any() and fs.integer[4:].all()
    X = np.vstack([adult_ds.X_train, adult_ds.X_test])
    assert set(np.unique(X[:, 4:])) == {0.0, 1.0}
    assert X[:, :4].max(axis=0).max() <= 1.0 and len(np.unique(X[:, 0])) > 50  # age stays continuous
    for group in fs.onehot_groups:
        sums = X[:, list(group)].sum(axis=1)
        assert set(np.unique(sums)) <= {0.0, 1.0}  # first level dropped: at most one 1 per group
        assert (sums == 0).any() and X[:, list(group)].max(axis=0).min() == 1.0


def test_adult_subpopulations_are_clusters_of_the_low_income_class(adult_ds):
    subpops = adult_ds.subpopulations
    assert set(subpops) == {f"cluster-{k}" for k in range(20)}
    seen = np.concatenate([sp.train_idx for sp in subpops.values()])
    assert len(seen) == len(np.unique(seen))  # clusters are disjoint
    assert np.array_equal(np.sort(seen), np.flatnonzero(adult_ds.y_train == -1))  # and cover the <=50K class
    for sp in subpops.values():
        assert sp.train_idx.size > 0 and sp.test_idx.size > 0
        assert (adult_ds.y_train[sp.train_idx] == -1).all() and (adult_ds.y_test[sp.test_idx] == -1).all()
    assert adult_ds.provenance["kmeans"]["n_clusters"] == 20


def test_adult_reads_a_user_folder_of_uncompressed_files(tmp_path, adult_ds):
    for name in ("adult.data", "adult.test"):
        (tmp_path / name).write_bytes(gzip.decompress(package_data(name + ".gz").read_bytes()))
    user = adult(data_dir=str(tmp_path), kmeans_n_init=1)
    assert np.array_equal(user.X_train, adult_ds.X_train) and np.array_equal(user.y_test, adult_ds.y_test)
    assert user.provenance["source"]["adult.data"]["path"] == str(tmp_path / "adult.data")
    assert adult(seed=7).provenance["seed_used"] is False
    assert np.array_equal(adult(seed=7).X_train, adult_ds.X_train)  # the trial seed leaves Adult fixed


def test_adult_checksum_mismatch_is_a_clear_error(tmp_path):
    raw = gzip.decompress(package_data("adult.data.gz").read_bytes())
    (tmp_path / "adult.data").write_bytes(raw.replace(b"State-gov", b"State-Gov", 1))
    (tmp_path / "adult.test.gz").write_bytes(package_data("adult.test.gz").read_bytes())
    with pytest.raises(ValueError, match=r"checksum mismatch .*adult\.data.*expected 5d7c39d7b8804f071cdd1f2a7c460872"):
        adult(data_dir=str(tmp_path))


def test_adult_balanced_sampling_and_validation_split_carved_from_train():
    data = adult(sampling="balanced", n_val=1000, kmeans_n_init=1)
    assert data.X_val.shape == (1000, 57) and data.n_train == 15_682 - 1000
    assert (data.y_val == 1).sum() == 500  # stratified from an exactly balanced training split
    assert (data.y_train == 1).sum() + 500 == 7_841 and (data.y_test == 1).sum() == (data.y_test == -1).sum() == 3_846
    assert data.provenance["sampling"] == "balanced"
    for sp in data.subpopulations.values():
        assert (data.y_train[sp.train_idx] == -1).all()
    with pytest.raises(ValueError, match="sampling: expected one of 'reference', 'balanced', got 'even'"):
        adult(sampling="even")


def test_adult_clean_accuracy_near_the_paper(adult_ds):
    # MTP paper §5: clean test accuracy 78.5 % (SVM) and 79.9 % (LR) at C_R = 0.09, i.e.
    # sklearn C = 1/(n·0.09), bias regularised as in liblinear. With an exactly balanced
    # sample (sampling="balanced", what the paper's text describes) this processing gives
    # SVM 76.6 %, LR 77.2 %, about 2 points lower; scaling, columns and C_R are not the cause
    # (our 57 features equal the reference processing's to float32 rounding). The gap is the
    # reference's row draw, which indexes the whole file with positions drawn among the
    # <=50K count, so its train and test splits are 62 % >50K with repeated rows; repeating
    # that draw with RandomState(0) (sampling="reference", the default) gives 78.51 % and
    # 79.86 %, as the paper (sklearn LinearSVC(loss="hinge") and liblinear LR give the same).
    from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression

    svm = LinearSVM(C_R=0.09).fit(adult_ds.X_train, adult_ds.y_train)
    lr = LogisticRegression(C_R=0.09).fit(adult_ds.X_train, adult_ds.y_train)
    acc_svm = svm.accuracy(adult_ds.X_test, adult_ds.y_test)
    acc_lr = lr.accuracy(adult_ds.X_test, adult_ds.y_test)
    assert abs(acc_svm - 0.785) < 0.015 and abs(acc_lr - 0.799) < 0.015
    assert acc_svm == pytest.approx(0.7851, abs=0.002) and acc_lr == pytest.approx(0.7986, abs=0.002)

    test_acc = subpopulation_accuracy(adult_ds, svm)
    train_acc = subpopulation_accuracy(adult_ds, svm, split="train")
    for name in test_acc:
        sp = adult_ds.subpopulations[name]
        assert test_acc[name] == pytest.approx(svm.accuracy(adult_ds.X_test[sp.test_idx], adult_ds.y_test[sp.test_idx]))
    top = top_subpopulations(adult_ds, svm, k=3)
    assert len(set(top)) == 3
    assert min(train_acc[n] for n in top) >= max(a for n, a in train_acc.items() if n not in top)
    assert all(train_acc[n] == 1.0 for n in top)  # as in the paper: 100 % clean accuracy


def test_top_subpopulations_rejects_bad_arguments(adult_ds):
    class Constant:
        def predict(self, X):
            return -np.ones(len(X))

    assert set(subpopulation_accuracy(adult_ds, Constant()).values()) == {1.0}
    with pytest.raises(ValueError, match="k: expected 1..20"):
        top_subpopulations(adult_ds, Constant(), k=21)
    with pytest.raises(ValueError, match="split"):
        subpopulation_accuracy(adult_ds, Constant(), split="validation")


# ---------------------------------------------------------------- mnist


def _raw_rows(digit: int) -> set[bytes]:
    cols = read_columns(package_data("mnist_5k.csv.gz"), header=False)
    X = np.column_stack([cols[str(j)] for j in range(784)]) / 255.0
    return {row.tobytes() for row in X[cols["784"] == digit]}


def test_mnist_1v7_default_split_and_label_convention():
    data = check_dataset(mnist)
    assert data.X_train.shape == (800, 784) and data.X_test.shape == (200, 784)
    assert (data.y_train == 1).sum() == 400 and (data.y_test == 1).sum() == 100
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0
    sevens, ones = _raw_rows(7), _raw_rows(1)
    for X, y in ((data.X_train, data.y_train), (data.X_test, data.y_test)):
        assert all(row.tobytes() in sevens for row in X[y == 1])
        assert all(row.tobytes() in ones for row in X[y == -1])


def test_mnist_rmd_setting_and_seeds():
    data = mnist(pair="0v8", n_train=256, n_val=256)
    assert (data.n_train, len(data.y_val), len(data.y_test)) == (256, 256, 488)
    assert (data.y_train == 1).sum() == 128 and (data.y_val == 1).sum() == 128
    all_rows = np.vstack([data.X_train, data.X_val, data.X_test])
    assert len({r.tobytes() for r in all_rows}) == len(np.unique(all_rows, axis=0))
    same = mnist(pair="0v8", n_train=256, n_val=256, seed=0)
    other = mnist(pair="0v8", n_train=256, n_val=256, seed=1)
    assert np.array_equal(same.X_train, data.X_train) and not np.array_equal(other.X_train, data.X_train)
    pinned = mnist(pair="0v8", n_train=256, n_val=256, seed=1, data_seed=0)
    assert np.array_equal(pinned.X_train, data.X_train) and pinned.provenance["split_seed"] == 0


def test_mnist_rejects_bad_pairs_and_sizes():
    with pytest.raises(ValueError, match="expected two digits"):
        mnist(pair="one-vs-seven")
    with pytest.raises(ValueError, match="different digits"):
        mnist(pair="3v3")
    with pytest.raises(ValueError, match="n_train"):
        mnist(n_train=900, n_val=200)


def _small_mnist(n_per_digit: int = 10, d: int = 16, digits=(2, 3, 5)):
    rng = np.random.default_rng(7)
    y = np.repeat(digits, n_per_digit)
    X = rng.integers(0, 256, size=(y.size, d))
    return X, y


def test_mnist_user_file_in_npz_csv_and_parquet(tmp_path):
    X, y = _small_mnist()
    np.savez(tmp_path / "m.npz", X=X, y=y)
    np.savetxt(tmp_path / "m.csv", np.column_stack([X, y]), fmt="%d", delimiter=",")
    table = {"label": y} | {f"p{j}": X[:, j] for j in range(X.shape[1])}
    pq.write_table(pa.table(table), tmp_path / "m.parquet")
    loaded = [
        mnist(pair="3v5", path=str(tmp_path / f"m.{ext}"), test_fraction=0.25) for ext in ("npz", "csv", "parquet")
    ]
    for data in loaded:
        assert data.X_train.shape == (15, 16) and data.X_test.shape == (5, 16)
        assert np.array_equal(data.X_train, loaded[0].X_train) and np.array_equal(data.y_test, loaded[0].y_test)
    pos_rows = {r.tobytes() for r in (X[y == 5] / 255.0)}
    assert all(r.tobytes() in pos_rows for r in loaded[0].X_train[loaded[0].y_train == 1])
    with pytest.raises(ValueError, match="digit 1 of pair '1v7' has no rows"):
        mnist(path=str(tmp_path / "m.npz"))
    with pytest.raises(ValueError, match=r"expected \[0, 1\]"):
        mnist(pair="3v5", path=str(tmp_path / "m.npz"), scale=100.0)


def test_mnist_user_npz_keeps_its_test_split(tmp_path):
    X, y = _small_mnist()
    X_te, y_te = _small_mnist(n_per_digit=4)
    np.savez(tmp_path / "split.npz", X_train=X, y_train=y, X_test=X_te, y_test=y_te)
    data = mnist(pair="2v3", path=str(tmp_path / "split.npz"), n_val=4)
    assert (data.n_train, len(data.y_val), len(data.y_test)) == (16, 4, 8)
    assert np.array_equal(np.sort(data.X_test, axis=0), np.sort(X_te[np.isin(y_te, (2, 3))] / 255.0, axis=0))


# ---------------------------------------------------------------- gaussians


def test_gaussians_rmd_setting_is_seeded():
    data = check_dataset(gaussians)
    assert data.X_train.shape == (32, 2) and data.X_val.shape == (64, 2)
    assert (data.y_train == 1).sum() == 16 and (data.y_val == 1).sum() == 32
    assert np.array_equal(data.feasible.lo, [-9.5, -9.5]) and np.array_equal(data.feasible.hi, [9.5, 9.5])
    assert not np.array_equal(gaussians(seed=1).X_train, data.X_train)
    assert np.array_equal(gaussians(n_test=10).X_train, data.X_train)  # streams are independent
    assert np.array_equal(gaussians(seed=5, data_seed=0).X_val, data.X_val)


def test_gaussians_variances_are_variances():
    data = gaussians(n_test=40_000)
    for label, mean in ((-1, [-3.0, 0.0]), (1, [3.0, 0.0])):
        pts = data.X_test[data.y_test == label]
        assert np.allclose(pts.mean(axis=0), mean, atol=0.05)
        assert np.allclose(pts.var(axis=0), [2.5, 1.5], rtol=0.05)


def test_gaussians_keep_every_point_in_their_box():
    """Untruncated, 41 of these 2,000 seeds put a point outside [-9.5, 9.5]^2 (seed 28 first)."""
    for seed in range(2000):
        data = gaussians(seed=seed)
        for X in (data.X_train, data.X_val, data.X_test):
            assert data.feasible.contains(X, atol=0.0).all(), seed
    tight = gaussians(bound=3.2, n_test=4000)  # the truncation is real: here it cuts 1 point in 6
    assert np.abs(tight.X_test).max() <= 3.2 and np.abs(tight.X_test[:, 0]).mean() < 2.7


def test_gaussians_any_dimension():
    data = gaussians(mean0=[-1.0] * 5, mean1=[1.0] * 5, variances=0.5, n_train=10, n_val=0, bound=4.0)
    assert data.X_train.shape == (10, 5) and data.X_val is None
    assert np.array_equal(data.feasible.hi, np.full(5, 4.0))
    with pytest.raises(ValueError, match="same length"):
        gaussians(mean0=[0.0], mean1=[1.0, 2.0])
    with pytest.raises(ValueError, match="variances"):
        gaussians(variances=[1.0, -1.0])


# ---------------------------------------------------------------- file


@pytest.fixture
def table_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    cols = {
        "a": rng.normal(size=n),
        "b": rng.integers(0, 5, size=n),
        "flag": rng.random(n) < 0.5,
        "income": np.where(np.arange(n) % 2 == 0, "high", "low"),
        "part": np.where(np.arange(n) < 30, "train", np.where(np.arange(n) < 35, "val", "test")),
    }
    return tmp_path, cols


def _write(path, cols, fmt):
    if fmt == "csv":
        names = list(cols)
        lines = [",".join(names)] + [",".join(str(cols[c][i]) for c in names) for i in range(len(cols[names[0]]))]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "parquet":
        pq.write_table(pa.table(cols), path)
    else:
        np.savez(path, **cols)
    return str(path)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_file_loader_formats_split_column_and_bounds(table_file, fmt):
    tmp_path, cols = table_file
    path = _write(tmp_path / f"t.{fmt}", cols, fmt)
    data = check_dataset(load_file, path=path, label="income", split="part", positive="high")
    assert (data.n_train, len(data.y_val), len(data.y_test)) == (30, 5, 5)
    assert data.feature_names == ("a", "b", "flag")
    assert np.array_equal(data.y_train, np.where(np.arange(30) % 2 == 0, 1.0, -1.0))
    X = np.column_stack([cols["a"], cols["b"], cols["flag"]]).astype(float)
    train = X[np.asarray(cols["part"]) == "train"]
    # the box is the training rows' range, never widened by the test rows
    assert np.allclose(data.feasible.lo, train.min(axis=0)) and np.allclose(data.feasible.hi, train.max(axis=0))
    assert not np.allclose(data.feasible.hi, X.max(axis=0))
    assert data.feasible.integer.tolist() == [False, True, True]
    assert data.provenance["source"]["md5"] == hashlib.md5((tmp_path / f"t.{fmt}").read_bytes()).hexdigest()


def test_file_loader_random_split_features_and_given_bounds(table_file):
    tmp_path, cols = table_file
    path = _write(tmp_path / "t.parquet", cols, "parquet")
    data = load_file(path, label="income", features=["a"], test_fraction=0.25, val_fraction=0.25, lo=-10, hi=[10])
    assert (data.n_train, len(data.y_val), len(data.y_test)) == (20, 10, 10)
    assert (data.y_test == 1).sum() == 5  # stratified
    assert data.provenance["label"]["positive (+1)"] == "low"  # default: the larger value
    assert np.array_equal(data.feasible.lo, [-10.0]) and np.array_equal(data.feasible.hi, [10.0])
    again, other = (load_file(path, label="income", features=["a", "b"], seed=s) for s in (0, 1))
    assert again.n_train == 32 and not np.array_equal(other.X_train, again.X_train)
    pinned = load_file(path, label="income", features=["a", "b"], seed=1, data_seed=0)
    assert np.array_equal(pinned.X_train, again.X_train)


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (None, {"label": "salary"}, r"column 'salary' not found; available: a, b, flag, income, part"),
        (None, {"label": "income", "features": ["a", "zz"]}, r"column 'zz' not found"),
        (
            {"a": "nan"},
            {"label": "income", "split": "part"},
            r"column 'a' has 1 row\(s\) with missing, NaN or inf values \(first at row 3\)",
        ),
        (
            {"income": "middle"},
            {"label": "income", "split": "part"},
            r"label column 'income' has 3 distinct value\(s\).*expected exactly 2",
        ),
        (None, {"label": "income"}, r"feature column 'part' has dtype text; expected numbers"),
        (
            {"part": "holdout"},
            {"label": "income", "split": "part"},
            r"split column 'part' has value\(s\) \['holdout'\]",
        ),
        (
            None,
            {"label": "income", "split": "part", "positive": "rich"},
            r"positive='rich' is not a value of label column 'income'",
        ),
    ],
)
def test_file_loader_errors_name_the_file_and_column(table_file, change, kwargs, message):
    tmp_path, cols = table_file
    cols = {k: v.astype(object) if change and k in change else v for k, v in cols.items()}
    for column, value in (change or {}).items():
        cols[column][3] = float(value) if value == "nan" else value
    cols = {k: (v.astype(float) if k == "a" else v) for k, v in cols.items()}
    path = _write(tmp_path / "bad.csv", cols, "csv")
    with pytest.raises(ValueError, match=message) as err:
        load_file(path, **kwargs)
    assert str(err.value).startswith(f"file {path}:") and "\n" not in str(err.value)


def test_file_loader_rejects_unknown_suffix_and_nan_labels(tmp_path):
    (tmp_path / "t.txt").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_file(str(tmp_path / "t.txt"), label="a")
    (tmp_path / "t.csv").write_text("x,y\n1,0\n2,\n3,1\n")
    with pytest.raises(ValueError, match=r"label column 'y' has 1 missing/NaN value\(s\) \(first at row 1\)"):
        load_file(str(tmp_path / "t.csv"), label="y")
