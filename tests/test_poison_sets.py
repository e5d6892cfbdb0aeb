"""Poison sets are data: each trial's poisons are a content-hashed, pickle-free Parquet artefact
next to its rows, exported as a poisoned training set and re-played by the ``replay`` attack."""

from __future__ import annotations

import warnings

import numpy as np
import pandas
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonbench.campaign import load_campaign
from poisonbench.cli.main import main
from poisonbench.executors import make_executor, run_campaign
from poisonbench.leaderboards.store import Store
from poisonbench.results import POISONS_DIR, read_poison_set
from poisonbench.trial import create_component, host_for

TOY = ("plugins_for_tests.toy",)
TOY_CAMPAIGN = """
name = "{name}"
seeds = [0]
budgets = [0, 2, 3, 0.1]
isolation = "{isolation}"
{extra}
[[datasets]]
name = "tiny"
params = {{ n = 40 }}
subpopulations = ["corner"]

[[learners]]
name = "toy-ridge"

[[defences]]
name = "toy-l2"

[[attacks]]
{attack}
"""
GAUSSIANS_CAMPAIGN = """
name = "{name}"
seeds = [0]
budgets = [0, 4, 8]
isolation = "none"

[[datasets]]
name = "gaussians"
params = {{ n_train = 40, n_val = 20, n_test = 200 }}

[[learners]]
name = "{learner}"

[[defences]]
name = "none"

[[attacks]]
{attack}
"""
#: The columns of a checkpoint row that a replay must reproduce exactly.
REPRODUCED = (
    "kind",
    "checkpoint",
    "step",
    "status",
    "budget",
    "budget_spec",
    "n_poisons",
    "stopped_early",
    "test_accuracy",
    "subpop_accuracy",
    "lambda",
    "n_removed",
    "n_removed_poisons",
    "n_removed_clean",
    "fit_gap",
    "fit_converged",
    "poisons_sha256",
)


def run(tmp_path, template, name, store="store", modules=TOY, executor="local", **fields):
    """Run a campaign file made from ``template`` into ``tmp_path / store``; its rows by trial id."""
    path = tmp_path / f"{name}.toml"
    path.write_text(template.format(name=name, **{"extra": "", "isolation": "none", **fields}))
    host = host_for(modules)
    campaign = load_campaign(path)
    trials = campaign.trials(host.registry)
    st = Store(tmp_path / store)
    report = run_campaign(campaign.name, trials, make_executor(executor, host, modules, num_cpus=1), st, host)
    assert report.outcomes, report
    rows: dict[str, list[dict]] = {}
    for row in st.read([name]).to_pylist():
        rows.setdefault(row["trial_id"], []).append(row)
    return st, rows


def checkpoints(rows):
    return sorted((r for r in rows if r["kind"] == "checkpoint"), key=lambda r: r["checkpoint"])


def replay_attack(store, campaign, trial):
    return f'name = "replay"\nparams = {{ store = "{store}", campaign = "{campaign}", trial = "{trial}" }}'


def cli(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def toy_store(tmp_path):
    return run(tmp_path, TOY_CAMPAIGN, "src", attack='name = "toy-flip"\nparams = { copies = 2 }')


def test_each_trial_stores_its_poisons_as_hashed_pickle_free_data(toy_store, tmp_path):
    store, rows = toy_store
    ((trial_id, trial_rows),) = rows.items()
    (sha,) = {r["poisons_sha256"] for r in trial_rows}
    path = store.poisons_path("src", trial_id)
    assert path.parent == tmp_path / "store" / "src" / POISONS_DIR and path.is_file()
    poisons = read_poison_set(path, sha)
    assert poisons.sha256() == sha and len(poisons.y) == 4 and poisons.steps == 2
    assert poisons.step.tolist() == [1, 1, 2, 2]
    assert poisons.checkpoint.tolist() == [1, 1, 2, 3]  # first checkpoint whose budget (0, 2, 3, 4) holds it
    table = pq.read_table(path)
    assert [(f.name, str(f.type)) for f in table.schema][:4] == [
        ("order", "int64"),
        ("step", "int64"),
        ("checkpoint", "int32"),
        ("y", "double"),
    ]
    x = table.schema.field("x").type
    assert table.column_names[4] == "x" and pa.types.is_fixed_size_list(x) and x.list_size == 3
    assert x.value_type == pa.float64()
    meta = pq.read_schema(path).metadata
    assert {k for k in meta if not k.startswith(b"poisonbench.")} <= {b"ARROW:schema"}  # no pandas metadata
    assert not any(b"pickle" in v or v.startswith(b"\x80") for v in meta.values())
    assert pq.ParquetFile(path).metadata.num_rows == 4


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_the_poison_set_comes_back_from_a_worker(tmp_path, executor):
    """Run in a worker process (local executor) or a Ray task, the trial's poison set reaches the store."""
    if executor == "ray":
        pytest.importorskip("ray")
    store, rows = run(
        tmp_path,
        TOY_CAMPAIGN,
        "worker",
        executor="ray" if executor == "ray" else "local",
        isolation="process",
        attack='name = "toy-flip"\nparams = { copies = 2 }',
    )
    ((trial_id, trial_rows),) = rows.items()
    assert {r["status"] for r in trial_rows} == {"ok"}
    assert store.read_poisons("worker", trial_id).sha256() == trial_rows[0]["poisons_sha256"]


def test_a_tampered_poison_set_is_detected(toy_store, capsys):
    store, rows = toy_store
    (trial_id,) = rows
    path = store.poisons_path("src", trial_id)
    table = pq.read_table(path)
    y = table["y"].to_numpy().copy()
    y[0] = -y[0]
    pq.write_table(table.set_column(3, "y", pa.array(y)).replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(ValueError, match="differs from the recorded"):
        store.read_poisons("src", trial_id)
    code, _, err = cli(capsys, "--plugin", TOY[0], "poisons", "export", "src", trial_id, "--format", "npz", "-o",
                       str(path.parent / "out.npz"), "--store", str(store.root))  # fmt: skip
    assert code == 2 and err.startswith("Error: ") and err.count("\n") == 1 and "differs" in err, err


def test_a_trial_without_poisons_has_none_and_store_poisons_false_keeps_only_the_hash(tmp_path):
    store, rows = run(tmp_path, TOY_CAMPAIGN.replace("[0, 2, 3, 0.1]", "[0]"), "empty", attack='name = "toy-flip"')
    assert {r["poisons_sha256"] for rs in rows.values() for r in rs} == {None}
    assert not (tmp_path / "store" / "empty" / POISONS_DIR).exists()
    store, rows = run(tmp_path, TOY_CAMPAIGN, "off", extra="store_poisons = false", attack='name = "toy-flip"')
    (trial_rows,) = rows.values()
    assert trial_rows[0]["poisons_sha256"] is not None
    assert not (tmp_path / "store" / "off" / POISONS_DIR).exists()
    with pytest.raises(ValueError, match="store_poisons = false"):
        store.read_poisons("off", trial_rows[0]["trial_id"])


def test_compaction_keeps_the_poison_sets_and_never_counts_them_as_rows(tmp_path):
    store, rows = run(tmp_path, TOY_CAMPAIGN, "many", attack='name = "toy-flip"\ngrid = { copies = [1, 2, 3] }')
    before = store.read(["many"]).num_rows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no foreign-file warning for the _poisons folder
        report = store.compact("many")
        assert report.files_merged == 3 and store.read(["many"]).num_rows == before
        for trial_id, trial_rows in rows.items():
            assert store.read_poisons("many", trial_id).sha256() == trial_rows[0]["poisons_sha256"]
    assert len(list((tmp_path / "store" / "many" / POISONS_DIR).iterdir())) == 3
    assert pandas.read_parquet(tmp_path / "store" / "many").shape[0] == before  # dataset readers skip _poisons


@pytest.mark.parametrize("checkpoint", [None, 2])
def test_export_round_trips_in_every_format(toy_store, tmp_path, capsys, checkpoint):
    store, rows = toy_store
    (trial_id,) = rows
    poisons = store.read_poisons("src", trial_id)
    data = create_component(host_for(TOY), "dataset", "tiny", {"n": 40}, 0, None)
    keep = np.ones(4, bool) if checkpoint is None else poisons.checkpoint <= checkpoint
    X = np.vstack([data.X_train, poisons.X[keep]])
    y = np.concatenate([data.y_train, poisons.y[keep]])
    frames = {}
    for fmt in ("npz", "parquet", "csv"):
        out = tmp_path / f"set.{fmt}"
        extra = () if checkpoint is None else ("--checkpoint", str(checkpoint))
        code, _, err = cli(capsys, "--plugin", TOY[0], "poisons", "export", "src", trial_id, *extra, "--format", fmt,
                           "-o", str(out), "--store", str(store.root))  # fmt: skip
        assert code == 0, err
        if fmt == "npz":
            with np.load(out, allow_pickle=False) as z:
                assert np.array_equal(z["X"], X) and np.array_equal(z["y"], y)
                assert z["poison"].tolist() == [False] * data.n_train + [True] * int(keep.sum())
                assert z["order"][data.n_train :].tolist() == np.flatnonzero(keep).tolist()
        else:
            frames[fmt] = pq.read_table(out).to_pandas() if fmt == "parquet" else pandas.read_csv(out)
    pandas.testing.assert_frame_equal(frames["parquet"], frames["csv"], check_dtype=False)
    frame = frames["csv"]
    assert np.array_equal(frame[["x0", "x1", "x2"]].to_numpy(), X) and np.array_equal(frame["y"].to_numpy(), y)
    assert frame["poison"].sum() == keep.sum()
    budget_out = tmp_path / "budget.npz"
    code, _, err = cli(capsys, "--plugin", TOY[0], "poisons", "export", "src", trial_id, "--budget", "3", "--format",
                       "npz", "-o", str(budget_out), "--store", str(store.root))  # fmt: skip
    assert code == 0, err
    with np.load(budget_out) as z:
        assert int(z["poison"].sum()) == 3


def test_replaying_a_toy_poison_set_reproduces_the_original_rows(toy_store, tmp_path):
    store, rows = toy_store
    ((trial_id, source),) = rows.items()
    _, replayed = run(tmp_path, TOY_CAMPAIGN, "again", attack=replay_attack(store.root, "src", trial_id))
    (again,) = replayed.values()
    assert all(r["status"] == "ok" for r in again)
    original = [{k: r[k] for k in REPRODUCED} for r in checkpoints(source)]
    assert [{k: r[k] for k in REPRODUCED} for r in checkpoints(again)] == original
    assert len(original) == 4


def test_replaying_a_built_in_attack_reproduces_it_and_transfers_to_another_learner(tmp_path):
    flip = 'name = "label-flip"\nparams = { batch_size = 3 }'
    store, rows = run(tmp_path, GAUSSIANS_CAMPAIGN, "svm-flip", modules=(), learner="svm", attack=flip)
    ((trial_id, source),) = rows.items()
    assert all(r["status"] == "ok" for r in source)
    replay = replay_attack(store.root, "svm-flip", trial_id)
    _, same = run(tmp_path, GAUSSIANS_CAMPAIGN, "svm-replay", modules=(), learner="svm", attack=replay)
    (same_rows,) = same.values()
    assert [{k: r[k] for k in REPRODUCED} for r in checkpoints(same_rows)] == [
        {k: r[k] for k in REPRODUCED} for r in checkpoints(source)
    ]
    _, transfer = run(tmp_path, GAUSSIANS_CAMPAIGN, "lr-replay", modules=(), learner="logistic", attack=replay)
    (transfer_rows,) = transfer.values()
    assert [r["status"] for r in checkpoints(transfer_rows)] == ["ok"] * 3
    assert [r["n_poisons"] for r in checkpoints(transfer_rows)] == [0, 4, 8]
    assert {r["poisons_sha256"] for r in transfer_rows} == {source[0]["poisons_sha256"]}


def test_poisons_crafted_on_other_data_cannot_be_replayed(toy_store, tmp_path):
    store, rows = toy_store
    (trial_id,) = rows
    other = TOY_CAMPAIGN.replace("n = 40", "n = 60")
    _, replayed = run(tmp_path, other, "elsewhere", attack=replay_attack(store.root, "src", trial_id))
    (again,) = replayed.values()
    assert {r["status"] for r in again} == {"failed"}
    assert "poisons crafted on other data cannot be replayed" in again[-1]["error"]
