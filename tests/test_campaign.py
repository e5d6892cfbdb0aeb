"""Campaign parsing / validation / expansion and the trial runner (poisonbench.campaign, poisonbench.trial)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from poisonbench import __version__
from poisonbench.campaign import DEFAULT_TIMEOUT, CampaignError, load_campaign, parse_campaign, resolve_budget
from poisonbench.host import load_host
from poisonbench.results import COLUMN_NAMES, rows_to_table
from poisonbench.trial import run_trial

CAMPAIGNS = Path(__file__).parent / "campaigns"
PLUGINS = ("plugins_for_tests.toy", "plugins_for_tests.faulty")


@pytest.fixture(scope="module")
def host():
    return load_host(PLUGINS, load_external=False)


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


BASE = """
name = "t"
seeds = [0]
budgets = [0, 2, 4]
[[datasets]]
name = "tiny"
[[learners]]
name = "toy-ridge"
"""


def campaign(tmp_path, host, attack: str, extra: str = "", base: str = BASE):
    text = base + extra if extra.startswith("[") else extra + base
    path = write(tmp_path, text + f"\n[[attacks]]\n{attack}\n")
    return load_campaign(path).trials(host.registry)


# --- parsing and validation -------------------------------------------------------------


def test_example_campaign_expands_grid_seeds_subpops_and_budget_needing_attacks(host):
    c = load_campaign(CAMPAIGNS / "toy.toml")
    trials = c.trials(host.registry)
    # 2 defences x (2 grid settings x 2 seeds of toy-flip + 3 budgets x 2 seeds of toy-budgeted)
    assert len(trials) == 2 * (2 * 2 + 3 * 2)
    labels = {t.attack.label for t in trials}
    assert labels == {"toy-flip(copies=1)", "toy-flip(copies=2)", "toy-budgeted"}
    flips = [t for t in trials if t.attack.name == "toy-flip"]
    assert all(t.budgets == (0, 2, 0.1) and t.subpopulation == "corner" for t in flips)
    budgeted = [t for t in trials if t.attack.name == "toy-budgeted"]
    assert sorted({t.budgets for t in budgeted}, key=str) == [(0,), (0.1,), (2,)]
    assert len({t.trial_id for t in trials}) == len(trials)


def test_trial_id_is_a_hash_of_the_resolved_config_only(tmp_path, host):
    a = campaign(tmp_path, host, 'name = "toy-flip"\nparams = { copies = 1 }')
    b = campaign(
        tmp_path,
        host,
        'name = "toy-flip"\nparams = { copies = 1 }\nlabel = "renamed"',
        base="timeout = 5\n" + BASE.replace('"t"', '"other"'),
    )
    c = campaign(tmp_path, host, 'name = "toy-flip"\nparams = { copies = 2 }')
    assert a[0].trial_id == b[0].trial_id  # campaign name, label, timeout do not change results
    assert a[0].trial_id != c[0].trial_id
    assert len(a[0].trial_id) == 16 and a[0].config_hash.startswith(a[0].trial_id)
    cfg = json.loads(json.dumps(a[0].as_dict()))
    assert cfg["attack"] == {"name": "toy-flip", "params": {"copies": 1}} and cfg["trial_id"] == a[0].trial_id


@pytest.mark.parametrize(
    "extra, key, problem",
    [
        ("bugdets = [1]\n", "top level bugdets", "did you mean 'budgets'"),
        ("", "budgets[0]", "fraction"),
        ("", "seeds[1]", "integer"),
        ("[resources]\nnum_gpu = 1\n", "[resources] num_gpu", "did you mean 'num_gpus'"),
        ("timeout = -1\n", "timeout", "> 0"),
    ],
)
def test_structure_errors_name_file_key_and_problem(tmp_path, extra, key, problem):
    text = (BASE + extra if extra.startswith("[") else extra + BASE) + '[[attacks]]\nname = "toy-flip"\n'
    if key == "budgets[0]":
        text = text.replace("budgets = [0, 2, 4]", "budgets = [1.5]")
    if key == "seeds[1]":
        text = text.replace("seeds = [0]", 'seeds = [0, "1"]')
    path = write(tmp_path, text)
    with pytest.raises(CampaignError) as err:
        load_campaign(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and key in msg and problem in msg


def test_unknown_component_names_suggest_close_matches(tmp_path, host):
    path = write(tmp_path, BASE + '[[attacks]]\nname = "toy-flop"\n')
    with pytest.raises(CampaignError, match=r"\[\[attacks\]\] #1.*unknown attack 'toy-flop'. Did you mean: toy-flip"):
        load_campaign(path).trials(host.registry)


def test_unknown_and_missing_parameters_are_reported(tmp_path, host):
    with pytest.raises(CampaignError, match=r"params.copys: unknown parameter of attack 'toy-flip'; valid: copies"):
        campaign(tmp_path, host, 'name = "toy-flip"\nparams = { copys = 2 }')
    with pytest.raises(CampaignError, match=r"params.seed: set seeds"):
        load_campaign(
            write(
                tmp_path,
                BASE.replace('name = "tiny"', 'name = "tiny"\nparams = { seed = 3 }')
                + '[[attacks]]\nname = "toy-flip"\n',
            )
        ).trials(host.registry)


def test_grid_value_also_in_params_and_duplicate_labels_are_errors(tmp_path):
    with pytest.raises(CampaignError, match="grid.copies: also set in params"):
        load_campaign(
            write(
                tmp_path, BASE + '[[attacks]]\nname = "toy-flip"\nparams = { copies = 1 }\ngrid = { copies = [1, 2] }\n'
            )
        )
    with pytest.raises(CampaignError, match="label 'toy-flip'; give each a distinct 'label'"):
        load_campaign(
            write(
                tmp_path,
                BASE + '[[attacks]]\nname = "toy-flip"\n[[attacks]]\nname = "toy-flip"\nparams = { copies = 2 }\n',
            )
        )


def test_missing_sections_and_invalid_toml(tmp_path):
    with pytest.raises(CampaignError, match=r"attacks: missing"):
        load_campaign(write(tmp_path, BASE))
    with pytest.raises(CampaignError, match="not valid TOML"):
        load_campaign(write(tmp_path, "name = \n"))
    with pytest.raises(CampaignError, match="not found"):
        load_campaign(tmp_path / "absent.toml")


def test_defaults_and_resources():
    c = parse_campaign(
        {
            "budgets": [3],
            "datasets": [{"name": "d"}],
            "learners": [{"name": "l"}],
            "attacks": [{"name": "a"}],
            "resources": {"num_cpus": 2, "num_gpus": 0.5},
        },
        "x.toml",
        "x",
    )
    assert c.name == "x" and c.seeds == (0,) and [d.name for d in c.components["defences"]] == ["none"]
    assert (c.num_cpus, c.num_gpus, c.timeout, c.max_retries) == (2.0, 0.5, DEFAULT_TIMEOUT, 1)


def test_budget_resolution():
    assert resolve_budget(7, 1000) == 7
    assert resolve_budget(0.05, 1000) == 50
    assert resolve_budget(0.1, 45) == 5  # 4.5 rounds half up


# --- the trial runner ---------------------------------------------------------------------


def rows_of(host, trials, **kw):
    assert len(trials) == 1
    return run_trial(trials[0], host, **kw)


def test_incremental_attack_checkpoints_and_traces(tmp_path, host):
    trials = campaign(tmp_path, host, 'name = "toy-flip"', "record_every = 1\n")
    rows = rows_of(host, trials)
    checkpoints = [r for r in rows if r["kind"] == "checkpoint"]
    traces = [r for r in rows if r["kind"] == "trace"]
    assert [r["budget"] for r in checkpoints] == [0, 2, 4]
    assert [r["n_poisons"] for r in checkpoints] == [0, 2, 4]
    assert [r["step"] for r in traces] == [1, 2, 3, 4]
    assert [r["max_loss_diff"] for r in traces] == [1.0, 0.5, pytest.approx(1 / 3), 0.25]
    assert checkpoints[0]["max_loss_diff"] is None and checkpoints[2]["lower_bound"] == 4.0
    # the attack's own estimate of the accuracy is a diagnostic, never the measured column
    assert all(r.get("test_accuracy") is None and json.loads(r["diagnostics"])["test_accuracy"] == 0.0 for r in traces)
    assert all(r["test_accuracy"] > 0.5 for r in checkpoints)
    assert all(r["status"] == "ok" and r.get("error") is None for r in rows)
    # every row fits the store schema and carries provenance
    table = rows_to_table(rows)
    assert table.num_rows == len(rows) and table.schema.names == list(COLUMN_NAMES)
    row = table.to_pylist()[-1]
    assert row["git_revision"] is None or len(row["git_revision"]) >= 40
    assert row["host"] and row["device"] and row["poisonbench_version"] and row["started_at"] <= row["finished_at"]
    assert json.loads(row["config"])["trial_id"] == row["trial_id"]
    assert json.loads(row["plugin_versions"]) == {
        "dataset": "plugins_for_tests.toy unknown",
        "learner": "plugins_for_tests.toy unknown",
        "defence": f"poisonbench.plugins.defences.none {__version__}",
        "attack": "plugins_for_tests.toy unknown",
    }
    assert set(json.loads(row["package_versions"])) >= {"python", "numpy", "pyarrow"}
    assert json.loads(row["diagnostics"])["extra"] == 4


def test_checkpoint_metrics_equal_a_direct_fit(tmp_path, host):
    trial = campaign(tmp_path, host, 'name = "toy-flip"')[0]
    rows = run_trial(trial, host)
    ds = host.create("datasets", "tiny", seed=0)
    learner = host.create("learners", "toy-ridge")
    X, y = [], []
    rng = np.random.default_rng([0, 1])
    for _ in range(4):
        i = int(rng.integers(ds.n_train))
        X.append(ds.X_train[i]), y.append(-ds.y_train[i])
    model = learner.fit(np.vstack([ds.X_train, X]), np.concatenate([ds.y_train, y]))
    assert rows[-1]["test_accuracy"] == pytest.approx(model.accuracy(ds.X_test, ds.y_test))
    clean = learner.fit(ds.X_train, ds.y_train)
    assert rows[0]["test_accuracy"] == pytest.approx(clean.accuracy(ds.X_test, ds.y_test))


def test_batches_crossing_a_budget_are_truncated_and_early_stop_is_flagged(tmp_path, host):
    rows = rows_of(host, campaign(tmp_path, host, 'name = "toy-flip"\nparams = { copies = 3 }'))
    assert [(r["budget"], r["n_poisons"], r["step"]) for r in rows] == [(0, 0, 0), (2, 2, 1), (4, 4, 2)]
    rows = rows_of(host, campaign(tmp_path, host, 'name = "toy-flip"\nparams = { stop_after = 1 }'))
    assert [(r["budget"], r["n_poisons"], r["stopped_early"]) for r in rows] == [
        (0, 0, False),
        (2, 1, True),
        (4, 1, True),
    ]
    assert rows[1]["test_accuracy"] == rows[2]["test_accuracy"]


def test_fraction_budgets_subpopulation_and_defence_lambda(tmp_path, host):
    base = BASE.replace("budgets = [0, 2, 4]", "budgets = [0.1]").replace(
        'name = "tiny"', 'name = "tiny"\nsubpopulations = ["corner"]'
    )
    trials = campaign(
        tmp_path, host, 'name = "toy-flip"', '[[defences]]\nname = "toy-l2"\nparams = { lambda_ = -1.0 }\n', base=base
    )
    (row,) = run_trial(trials[0], host)
    assert (row["budget_spec"], row["budget"], row["n_train"], row["poison_fraction"]) == ("0.1", 4, 40, 0.1)
    assert row["subpopulation"] == "corner" and 0.0 <= row["subpop_accuracy"] <= 1.0
    assert row["lambda"] == -1.0 and row["n_removed"] == 0


def test_budget_needing_attack_runs_once_per_budget(tmp_path, host):
    trials = campaign(tmp_path, host, 'name = "toy-budgeted"')
    assert [t.budgets for t in trials] == [(0,), (2,), (4,)]
    rows = [run_trial(t, host)[0] for t in trials]
    assert [(r["budget"], r["n_poisons"], r["checkpoint"]) for r in rows] == [(0, 0, 0), (2, 2, 0), (4, 4, 0)]


@pytest.mark.parametrize(
    "attack, message",
    [
        ('name = "fault-raise"\nparams = { after = 2 }', "attack 'fault-raise': RuntimeError: boom"),
        ('name = "fault-nan"', "attack 'fault-nan': ValueError: poison X: expected finite values"),
        (
            'name = "fault-bad"\nparams = { mode = "shape" }',
            "attack 'fault-bad': yielded poisons X(2, 4), y(2,); expected X (k, 3)",
        ),
        (
            'name = "fault-bad"\nparams = { mode = "infeasible" }',
            "attack 'fault-bad': 1 poison(s) outside the feasible box (first: feature 0 = 6",
        ),
        (
            'name = "fault-bad"\nparams = { mode = "overbudget" }',
            "attack 'fault-bad': exceeded the budget: 5 poisons > 4",
        ),
        (
            'name = "fault-bad"\nparams = { mode = "type" }',
            "attack 'fault-bad': yielded _Batch, expected poisonbench.attack.PoisonBatch",
        ),
    ],
)
def test_misbehaving_attacks_become_failed_rows(tmp_path, host, attack, message):
    rows = rows_of(host, campaign(tmp_path, host, attack))
    assert all(r["status"] == "failed" for r in rows)
    assert rows[-1]["error"].startswith(message), rows[-1]["error"]
    assert "Traceback" in rows[-1]["traceback"]
    rows_to_table(rows)  # failed rows still fit the schema


def test_failure_keeps_reached_checkpoints_marked_failed(tmp_path, host):
    rows = rows_of(host, campaign(tmp_path, host, 'name = "fault-raise"\nparams = { after = 2 }'))
    assert [(r["checkpoint"], r["n_poisons"]) for r in rows] == [(0, 0), (1, 2), (2, 2)]
    assert rows[1]["test_accuracy"] is not None and rows[2]["budget"] == 4


def test_component_construction_errors_name_the_component(tmp_path, host):
    base = BASE.replace('name = "toy-ridge"', 'name = "toy-ridge"\nparams = { C_R = -1.0 }')
    (row,) = rows_of(host, campaign(tmp_path, host, 'name = "toy-flip"', base=base))
    assert row["status"] == "failed" and row["error"].startswith("learner 'toy-ridge': ValueError: C_R")
    base = BASE.replace('name = "tiny"', 'name = "tiny"\nsubpopulations = ["nowhere"]')
    (row,) = rows_of(host, campaign(tmp_path, host, 'name = "toy-flip"', base=base))
    assert row["error"].startswith("dataset 'tiny': unknown subpopulation 'nowhere'")


def test_isolation_defaults_to_a_worker_process_and_in_process_refuses_limits():
    base = {"budgets": [3], "datasets": [{"name": "d"}], "learners": [{"name": "l"}], "attacks": [{"name": "a"}]}
    default = parse_campaign(base)
    assert (default.isolation, default.timeout, default.memory_limit_mb) == ("process", DEFAULT_TIMEOUT, None)
    assert parse_campaign({**base, "isolation": "none"}).timeout is None
    with pytest.raises(CampaignError, match="timeout: needs isolation = 'process'"):
        parse_campaign({**base, "isolation": "none", "timeout": 5})
    with pytest.raises(CampaignError, match="isolation: expected one of 'process', 'none', got 'thread'"):
        parse_campaign({**base, "isolation": "thread"})


def test_a_huge_grid_is_refused_with_its_size_before_expansion(host, monkeypatch):
    import poisonbench.campaign

    def no_trials(*args, **kwargs):
        raise AssertionError("the grid was expanded")

    monkeypatch.setattr(poisonbench.campaign, "Trial", no_trials)
    raw = {
        "budgets": [5],
        "seeds": list(range(1000)),
        "datasets": [{"name": "tiny"}],
        "learners": [{"name": "toy-ridge", "grid": {"C_R": [0.01 * (k + 1) for k in range(1000)]}}],
        "attacks": [{"name": "toy-flip"}],
    }
    with pytest.raises(CampaignError, match="expands to 1,000,000 trials, more than the limit of 100,000"):
        parse_campaign(raw).trials(host.registry)


def test_a_budget_far_past_the_training_set_fails_the_trial_with_one_line(host):
    from poisonbench.trial import run_trial

    raw = {
        "budgets": [10**12],
        "datasets": [{"name": "tiny"}],
        "learners": [{"name": "toy-ridge"}],
        "attacks": [{"name": "toy-flip"}],
    }
    (trial,) = parse_campaign(raw).trials(host.registry)
    rows = run_trial(trial, host)
    assert rows[-1]["status"] == "failed"
    assert rows[-1]["error"].startswith("budgets: ValueError: budget 1000000000000: 1,000,000,000,000 poisons")
