"""Capabilities instead of names, and declared parameters checked before anything runs."""

from __future__ import annotations

import inspect
import math

import pytest

from poisonbench import Param
from poisonbench.campaign import CampaignError, parse_campaign
from poisonbench.cli.main import main
from poisonbench.host import load_host
from poisonbench.params import declare
from poisonbench.plugins.attacks.label_flip import RandomLabelFlip
from poisonbench.registry import KINDS
from poisonbench.trial import run_trial

GRID = {"target_quantiles": [0.2, 0.4], "target_repeats": [1, 3, 5]}


@pytest.fixture(scope="module")
def host():
    return load_host(["plugins_for_tests.qp_svm", "plugins_for_tests.toy"], load_external=False)


def campaign(learners: list[str], attack: dict, budgets: list[int]) -> dict:
    return {
        "name": "capabilities",
        "seeds": [0],
        "budgets": budgets,
        "datasets": [{"name": "gaussians"}],
        "learners": [{"name": n} for n in learners],
        "attacks": [attack],
    }


def rows_by_learner(host, raw: dict) -> dict[str, list[dict]]:
    out = {}
    for trial in parse_campaign(raw).trials(host.registry):
        rows = [r for r in run_trial(trial, host) if r["kind"] == "checkpoint"]
        out.setdefault(trial.learner.name, []).extend(rows)
    return out


def test_mtp_attacks_a_third_party_learner_like_the_builtin_svm(host):
    """qp-svm is a different implementation of the same eq. (1): MTP's path must agree with svm's."""
    raw = campaign(["svm", "qp-svm"], {"name": "mtp", "params": {"target": "error:0.1", **GRID}}, [0, 4])
    rows = rows_by_learner(host, raw)
    for theirs, ours in zip(rows["qp-svm"], rows["svm"]):
        assert theirs["status"] == ours["status"] == "ok", (theirs.get("error"), ours.get("error"))
        assert theirs["n_poisons"] == ours["n_poisons"]
        if ours["n_poisons"] == 0:
            assert theirs["max_loss_diff"] is ours["max_loss_diff"] is None  # before the attack's first step
        else:
            assert math.isclose(theirs["max_loss_diff"], ours["max_loss_diff"], rel_tol=1e-4, abs_tol=1e-6)
        assert theirs["test_accuracy"] == ours["test_accuracy"]


def test_kkt_attacks_a_third_party_learner(host):
    raw = campaign(["qp-svm"], {"name": "kkt", "params": {"target": "error:0.1", "split_step": 0.1}}, [6])
    (row,) = rows_by_learner(host, raw)["qp-svm"]
    assert row["status"] == "ok", row.get("error")
    assert row["n_poisons"] == 6


def test_a_learner_without_the_capability_is_refused_by_name(host):
    """toy's learner has no loss_kind / C_R: the row says which capability and members are missing."""
    raw = campaign(["toy-ridge"], {"name": "mtp", "params": {"target": "error:0.1", **GRID}}, [0, 2])
    raw["datasets"] = [{"name": "tiny"}]
    rows = rows_by_learner(host, raw)["toy-ridge"]
    assert {r["status"] for r in rows} == {"failed"}
    row = rows[-1]
    assert "is not a LinearModelLearner (missing:" in row["error"] and "loss_kind" in row["error"]


@pytest.mark.parametrize(
    ("kind", "entry", "message"),
    [
        (
            "attacks",
            {"name": "mtp", "params": {"target": "eror:0.1"}},
            "params.target: target spec 'eror:0.1' not understood",
        ),
        (
            "attacks",
            {"name": "mtp", "params": {"target": "error:1.5"}},
            "params.target: target 'error:1.5': expected an error rate",
        ),
        (
            "attacks",
            {"name": "label-flip", "params": {"batch_size": 0}},
            "params.batch_size: expected an integer >= 1, got 0",
        ),
        ("attacks", {"name": "mtp", "params": {"solver": "gurobi"}}, "params.solver: expected one of 'auto'"),
        ("datasets", {"name": "mnist", "params": {"pair": "1v77"}}, "params.pair: mnist: pair '1v77'"),
        ("learners", {"name": "svm", "params": {"C_R": -1}}, "params.C_R: expected a number > 0, got -1"),
        (
            "learners",
            {"name": "svm", "params": {"regularise_bias": 1}},
            "params.regularise_bias: expected a boolean, got 1",
        ),
        ("defences", {"name": "cv-l2", "params": {"folds": 1}}, "params.folds: expected an integer >= 2, got 1"),
    ],
)
def test_bad_values_are_caught_at_dry_run(tmp_path, capsys, kind, entry, message):
    tables = {
        "datasets": '[[datasets]]\nname = "gaussians"\n',
        "learners": '[[learners]]\nname = "svm"\n',
        "attacks": '[[attacks]]\nname = "label-flip"\n',
        "defences": '[[defences]]\nname = "none"\n',
    }
    params = ", ".join(f"{k} = {_toml(v)}" for k, v in entry["params"].items())
    tables[kind] = f'[[{kind}]]\nname = "{entry["name"]}"\nparams = {{ {params} }}\n'
    path = tmp_path / "bad.toml"
    path.write_text("budgets = [0, 5]\n" + "".join(tables.values()), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path), "--dry-run", "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and message in err, err


def _toml(value):
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def test_direct_construction_is_checked_too():
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        RandomLabelFlip(batch_size=0)
    assert RandomLabelFlip(batch_size=3).batch_size == 3


def test_every_builtin_declares_exactly_its_signature_and_its_defaults_are_valid():
    host = load_host(load_external=False)
    for kind in KINDS:
        for component in host.registry.components(kind):
            declared = component.declarations
            names = [n for n in component.parameters if not (kind == "datasets" and n == "seed")]
            assert sorted(declared) == sorted(names), (kind, component.name)
            for name, default in component.parameters.items():
                if name in declared and default != "<required>":
                    declared[name].validate(name, default)


def test_param_ranges_and_types():
    p = Param(float, low=0, high=1, low_open=True)
    assert p.describe() == "a number > 0 and <= 1"
    p.validate("x", 1)
    for bad in (0, 1.5, True, "0.5", math.nan):
        with pytest.raises(ValueError, match="x: expected a number > 0 and <= 1"):
            p.validate("x", bad)
    Param(int, optional=True).validate("n", None)
    with pytest.raises(ValueError, match="expected an integer"):
        Param(int).validate("n", 2.0)
    with pytest.raises(ValueError, match="expected one of 'a', 'b'"):
        Param(str, choices=("a", "b")).validate("c", "z")


def test_a_declaration_must_name_real_parameters():
    with pytest.raises(TypeError, match="declared parameter"):

        @declare({"nope": Param(int)})
        def factory(seed: int = 0):
            return seed


def test_campaign_file_reports_a_missing_required_parameter(host):
    raw = campaign(["svm"], {"name": "kkt"}, [5])
    with pytest.raises(
        CampaignError, match=r"\[\[attacks\]\] #1 \(kkt\) params: missing required parameter\(s\) target"
    ):
        parse_campaign(raw).trials(host.registry)


def test_declarations_are_documented_in_list_json(host):
    mtp = next(c for c in host.registry.components("attacks") if c.name == "mtp").as_dict()
    assert mtp["parameter_docs"]["copies"] == {
        "expected": "an integer >= 1",
        "doc": "copies of each chosen point per iteration",
    }
    assert inspect.signature(type(host.create("attacks", "mtp", target="error:0.1")).__init__).parameters["copies"]
