"""The committed paper-reproduction leaderboard (results/paper-repro) regenerates.

For each ``campaigns/paper-*.toml`` one cell is re-run (:data:`CELLS`): the campaign is loaded,
narrowed to one dataset / learner / defence / attack entry, and its budget list cut to ``(0, k)``
(or ``(k,)`` for a budgeted attack) with ``k`` a small budget of the original list, so that the
trial takes seconds. An incremental attack's state after ``k`` poisons does not depend on the
budgets after ``k``, so the row at ``k`` must match the committed row of the full campaign at ``k``.

Tolerances come from a measurement, not a guess. MTP's path is chaotic in near-ties of its
argmax, so a different CPU or BLAS build can move it: ``docs/scripts/regeneration_spread.py``
re-runs every cell with the data multiplied by ``1 + 1e-12·N(0, 1)`` under several noise seeds
and writes the largest deviation of each quantity from the unperturbed run to
``results/regeneration-spread.json``. A quantity must match within twice its measured spread, and
never tighter than one test point (accuracies) or 1e-3 relative (diagnostics, λ). The poison
count must match exactly. ``POISONBENCH_REGEN_PERTURB=<rel>:<seed>`` runs the cells on perturbed
data instead, which checks that the measured spread covers a perturbation it was not measured on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import runpy
from pathlib import Path

import pyarrow.compute as pc
import pytest

from poisonbench.campaign import ComponentSpec, load_campaign
from poisonbench.leaderboards.store import Store
from poisonbench.results import to_json
from poisonbench.trial import components_code_hash, host_for, run_trial

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "results" / "paper-repro"
SPREAD_FILE = ROOT / "results" / "regeneration-spread.json"
CAMPAIGNS = ROOT / "campaigns"
KINDS = ("datasets", "learners", "defences", "attacks")
DIAGNOSTICS = ("max_loss_diff", "lower_bound", "lambda")
ACCURACIES = ("test_accuracy", "subpop_accuracy")
#: one test point of the smallest test split (MNIST 1 vs 7: 200 points)
ACCURACY_TOL = 1.01 / 200
#: the regenerated cells: name -> (campaign file, budget, entry labels, subpopulation)
CELLS: dict[str, tuple[str, int | None, dict[str, str], str | None]] = {
    "clean-mnist-svm": ("paper-clean.toml", 0, {"datasets": "mnist", "learners": "svm"}, None),
    "mnist-targets-mtp-5%": ("paper-mnist-targets.toml", 25, {"attacks": 'mtp(target="error:0.05")'}, None),
    "mnist-label-flip": ("paper-mnist-labelflip.toml", 100, {}, None),
    "copies-2": ("paper-copies.toml", 50, {"attacks": 'mtp(target="error:0.1",copies=2)'}, None),
    "learned-l2-mtp": ("paper-learned-l2.toml", 50, {"defences": "learned-l2", "attacks": "mtp"}, None),
    "adult-svm-subpop-flip": ("paper-adult-svm.toml", 100, {"attacks": "subpop-label-flip"}, "cluster-7"),
    "adult-lr-subpop-flip": ("paper-adult-lr.toml", 100, {"attacks": "subpop-label-flip"}, "cluster-7"),
    "adult-kkt-svm": ("paper-adult-kkt-svm-cluster-7.toml", None, {"attacks": "kkt"}, "cluster-7"),
    "adult-kkt-lr": ("paper-adult-kkt-lr-cluster-7.toml", None, {"attacks": "kkt"}, "cluster-7"),
    "rmd-fig2-fixed-lambda-minus-8": ("paper-rmd-fig2-fixed.toml", 10, {"defences": "fixed-l2(lam=-8.0)"}, None),
    "rmd-fig2-learned-clean": ("paper-rmd-fig2-learned.toml", 0, {}, None),
    "rmd-mlp-clean": ("paper-rmd-mlp.toml", 0, {"attacks": 'rmd(beta_scale="mean")'}, None),
    "rmd-mlp-fixed-clean": ("paper-rmd-mlp-fixed.toml", 0, {}, None),
    "adult-kkt-svm-cluster-10": ("paper-adult-kkt-svm-cluster-10.toml", None, {"attacks": "kkt"}, "cluster-10"),
    "adult-kkt-svm-cluster-19": ("paper-adult-kkt-svm-cluster-19.toml", None, {"attacks": "kkt"}, "cluster-19"),
    "adult-kkt-lr-cluster-4": ("paper-adult-kkt-lr-cluster-4.toml", None, {"attacks": "kkt"}, "cluster-4"),
    "adult-kkt-lr-cluster-19": ("paper-adult-kkt-lr-cluster-19.toml", None, {"attacks": "kkt"}, "cluster-19"),
    "adult-svm-labelflip-table7": ("paper-adult-labelflip-svm.toml", None, {}, "cluster-7"),
    "adult-lr-labelflip-table7": ("paper-adult-labelflip-lr.toml", None, {}, "cluster-7"),
    "mnist-kohflip-10%": ("paper-mnist-kohflip.toml", 20, {"attacks": 'koh-label-flip(target="error:0.1")'}, None),
    "mnist-convergence-kkt": ("paper-mnist-convergence.toml", 10, {"attacks": "kkt"}, None),
    "mnist-mtp-svm-10%": ("paper-mnist-mtp-svm.toml", 25, {"attacks": 'mtp(target="error:0.1")'}, None),
    "mnist-mtp-lr-10%": ("paper-mnist-mtp-lr.toml", 25, {"attacks": 'mtp(target="error:0.1")'}, None),
    "sanitisers-sphere-oracle-mtp": (
        "paper-sanitisers-mnist.toml",
        40,
        {"defences": 'sphere(reference="oracle")', "attacks": "mtp"},
        None,
    ),
    "sanitisers-aware-sphere-oracle-mtp": (
        "paper-sanitisers-aware-mnist.toml",
        40,
        {"defences": 'sphere(reference="oracle")', "attacks": "mtp-defence-aware"},
        None,
    ),
    "sanitisers-aware-slab-empirical-kkt": (
        "paper-sanitisers-aware-mnist.toml",
        None,
        {"defences": 'slab(reference="empirical")', "attacks": "kkt-defence-aware"},
        None,
    ),
    "sanitisers-adult-trim-empirical-label-flip": (
        "paper-sanitisers-adult.toml",
        157,
        {"defences": 'trim(reference="empirical")', "attacks": "label-flip"},
        None,
    ),
    "table6-svm-influence-40": ("paper-table6-svm.toml", 40, {"attacks": "influence"}, None),
    "table6-lr-gradient-lr-40": ("paper-table6-lr.toml", 40, {"attacks": "gradient-lr"}, None),
    "transfer-lr-sphere-mtp@svm": (
        "paper-transfer-mnist.toml",
        240,
        {"learners": "logistic", "defences": "sphere", "attacks": "mtp@svm"},
        None,
    ),
    "transfer-mlp-influence@svm": ("paper-transfer-mnist-mlp.toml", 240, {"attacks": "influence@svm"}, None),
    **{
        f"mnist-kkt-{learner}-{rate}": (f"paper-mnist-kkt-{learner}-error-{rate}.toml", None, {}, None)
        for learner in ("svm", "lr")
        for rate in ("0.05", "0.1", "0.15")
    },
}


def cell_budget(name: str) -> int:
    """The cell's budget (``None`` in :data:`CELLS`: the campaign's smallest positive budget)."""
    campaign_file, budget, _, _ = CELLS[name]
    if budget is not None:
        return budget
    return min(b for b in load_campaign(CAMPAIGNS / campaign_file).budgets if b > 0)


def perturbation() -> tuple[float, int] | None:
    """``(rel, seed)`` from ``POISONBENCH_REGEN_PERTURB=<rel>:<seed>``, else None."""
    raw = os.environ.get("POISONBENCH_REGEN_PERTURB")
    if not raw:
        return None
    rel, _, seed = raw.partition(":")
    return float(rel), int(seed or 0)


def regenerate(name: str, perturb: tuple[float, int] | None = None) -> dict:
    """Re-run the cell ``name``: the entry of each kind whose label is given (the only entry when
    a kind is not named), at the cell's budget, on data perturbed by ``perturb = (rel, seed)``
    (``plugins_for_tests.perturbed``) when given. Returns the row at that budget."""
    campaign_file, _, labels, subpopulation = CELLS[name]
    budget = cell_budget(name)
    campaign = load_campaign(CAMPAIGNS / campaign_file)
    components = {}
    for kind in KINDS:
        specs = campaign.components[kind]
        chosen = [s for s in specs if s.label == labels[kind]] if kind in labels else list(specs)
        assert len(chosen) == 1, f"{campaign_file}: {kind}: expected one entry, got {[s.label for s in specs]}"
        components[kind] = tuple(chosen)
    if perturb is not None:
        (inner,) = components["datasets"]
        params = {"inner": inner.name, "inner_params": inner.params, "rel": perturb[0], "noise_seed": perturb[1]}
        components["datasets"] = (ComponentSpec("datasets", "perturbed", params, inner.label, inner.subpopulations),)
    assert budget in campaign.budgets, f"{campaign_file}: budget {budget} is not one of {campaign.budgets}"
    small = dataclasses.replace(
        campaign, components=components, seeds=campaign.seeds[:1], budgets=tuple(sorted({0, budget}))
    )
    host = host_for(("plugins_for_tests.perturbed",) if perturb is not None else ())
    trials = [t for t in small.trials(host.registry) if t.subpopulation == subpopulation and budget in t.budgets]
    assert len(trials) == 1, [t.describe() for t in trials]
    rows = [r for r in run_trial(trials[0], host) if r["kind"] == "checkpoint" and r["budget"] == budget]
    assert len(rows) == 1 and rows[0]["status"] == "ok", rows
    return rows[0]


def committed(campaign: str, row: dict) -> dict:
    """The committed checkpoint row of ``campaign`` with ``row``'s components, seed and budget."""
    table = Store(STORE).read([campaign])
    keys = (
        "learner_params",
        "defence_params",
        "attack_params",
        "attack",
        "defence",
        "learner",
        "seed",
        "budget",
        "kind",
        "status",
    )
    mask = None
    for key in keys:
        term = pc.equal(table[key], row[key])
        mask = term if mask is None else pc.and_(mask, term)
    config = json.loads(row["config"])["dataset"]
    dataset = config["params"]["inner"] if row["dataset"] == "perturbed" else row["dataset"]
    params = config["params"]["inner_params"] if row["dataset"] == "perturbed" else config["params"]
    mask = pc.and_(mask, pc.equal(table["dataset"], dataset))
    mask = pc.and_(mask, pc.equal(table["dataset_params"], to_json(params)))
    if row["subpopulation"] is not None:
        mask = pc.and_(mask, pc.equal(table["subpopulation"], row["subpopulation"]))
    matches = table.filter(mask).to_pylist()
    assert len(matches) == 1, (
        f"{campaign}: {len(matches)} committed rows match {row['attack_label']} at {row['budget']}"
    )
    return matches[0]


def measured_spread(name: str) -> dict[str, float]:
    """The cell's measured spread per quantity (absolute for accuracies, relative otherwise)."""
    if not SPREAD_FILE.is_file():
        return {}
    return json.loads(SPREAD_FILE.read_text(encoding="utf-8")).get("cells", {}).get(name, {})


def within(key: str, value: float | None, ref: float | None, spread: dict[str, float]) -> bool:
    """Both missing, or equal within twice the measured spread (never tighter than the floors)."""
    if value is None or ref is None:
        return value is None and ref is None
    if key in ACCURACIES:
        return abs(value - ref) <= max(ACCURACY_TOL, 2 * spread.get(key, 0.0))
    rel = max(1e-3, 2 * spread.get(key, 0.0))
    return math.isclose(value, ref, rel_tol=rel, abs_tol=1e-3)


def check(name: str) -> dict:
    """Regenerate one cell and assert it matches the committed row within its measured spread."""
    row = regenerate(name, perturbation())
    ref = committed(row["campaign"], row)
    spread = measured_spread(name)
    for key in ("n_poisons", "n_removed", "n_removed_poisons", "n_removed_clean"):
        assert row[key] == ref[key], (key, row[key], ref[key])
    for key in (*ACCURACIES, *DIAGNOSTICS):
        assert within(key, row[key], ref[key], spread), (key, row[key], ref[key], spread.get(key))
    return row


def test_every_committed_row_was_produced_by_the_current_plugin_code():
    """A row whose components' plugin code has changed since it was produced is stale: re-run its
    campaign (``poisonbench run campaigns/<file> --store results/paper-repro``) and commit it."""
    host = host_for(())
    columns = ["campaign", "dataset", "learner", "defence", "attack", "code_hash"]
    table = Store(STORE).read(columns=columns)
    combos = {tuple(r[c] for c in columns) for r in table.to_pylist()}
    current = {
        combo[:5]: components_code_hash(host, **dict(zip(("dataset", "learner", "defence", "attack"), combo[1:5])))
        for combo in combos
    }
    stale = sorted({combo[0] for combo in combos if combo[5] is None or combo[5] != current[combo[:5]]})
    assert stale == [], f"campaigns with rows from other plugin code: {stale}"


def test_every_campaign_file_is_exactly_its_committed_trials():
    """The store holds each paper campaign as its file expands today: no trial missing (a
    changed configuration), none left over from an earlier version of the file."""
    host = host_for(())
    store = Store(STORE)
    for path in sorted(CAMPAIGNS.glob("paper-*.toml")):
        campaign = load_campaign(path)
        expected = {t.trial_id for t in campaign.iter_trials(host.registry)}
        assert set(store.finished(campaign.name)) == expected, path.name


def test_the_induced_bound_never_exceeds_the_poisons_used():
    """Theorem 2 for the induced model: a certified bound on the poisons needed to induce the
    model that ``n_poisons`` poisons did induce is at most ``n_poisons``."""
    rows = Store(STORE).read(columns=["campaign", "kind", "n_poisons", "lower_bound_induced", "diagnostics"])
    bounded = [r for r in rows.to_pylist() if r["kind"] == "checkpoint" and r["lower_bound_induced"] is not None]
    assert bounded, "no committed row has the induced bound"
    for r in bounded:
        if json.loads(r["diagnostics"]).get("lower_bound_induced_certified"):
            assert r["lower_bound_induced"] <= r["n_poisons"], r


def test_every_campaign_file_has_a_regenerated_cell():
    assert {f.name for f in CAMPAIGNS.glob("paper-*.toml")} == {c[0] for c in CELLS.values()}


def test_the_reproduction_page_is_its_rendering_from_the_store():
    """docs/reproduction.md is generated: a number edited by hand, or a store changed without
    re-rendering, fails here (``python docs/scripts/reproduction_report.py`` re-renders it)."""
    report = runpy.run_path(str(ROOT / "docs" / "scripts" / "reproduction_report.py"), run_name="report")
    page = ROOT / "docs" / "reproduction.md"
    assert page.read_text(encoding="utf-8") == report["render"](), "docs/reproduction.md is stale"


def test_the_spread_file_covers_every_cell():
    assert set(json.loads(SPREAD_FILE.read_text(encoding="utf-8"))["cells"]) == set(CELLS)


def test_tolerances_follow_the_measured_spread():
    assert within("max_loss_diff", 1.10, 1.0, {"max_loss_diff": 0.06})
    assert not within("max_loss_diff", 1.10, 1.0, {"max_loss_diff": 0.04})
    assert not within("max_loss_diff", 1.01, 1.0, {})
    assert within("test_accuracy", 0.905, 0.92, {"test_accuracy": 0.01})
    assert not within("test_accuracy", 0.90, 0.93, {"test_accuracy": 0.01})


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_regenerates(name):
    row = check(name)
    if name == "learned-l2-mtp":
        assert row["lambda"] is not None
    if name == "rmd-mlp-clean":
        layers = {k: v for k, v in json.loads(row["hyperparameters"]).items() if k.startswith("lambda_")}
        assert len(layers) == 3
