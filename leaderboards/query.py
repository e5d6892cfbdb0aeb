"""Leaderboard queries over the store's rows (pyarrow compute): ranked tables and comparisons.

An *entry* is one (campaign, dataset, learner, defence, subpopulation, attack, budget); its
value for a metric is the mean over the seeds of the successful checkpoint rows, with the
standard error ``s / √n`` (``s`` the sample standard deviation, ``n`` the number of seeds;
no s.e. when ``n = 1``). Entries are ranked per (campaign, dataset, learner, defence,
subpopulation, budget): by default the lowest accuracy first, i.e. the strongest attack.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from poisonbench.campaign import budget_spec
from poisonbench.results import METRIC_COLUMNS

GROUP = ("campaign", "dataset_label", "learner_label", "defence_label", "subpopulation")
ENTRY = (*GROUP, "attack_label", "budget_spec")
METRICS = METRIC_COLUMNS
#: Output names of the key columns (labels shown under their kind's name).
DISPLAY = {
    "dataset_label": "dataset",
    "learner_label": "learner",
    "defence_label": "defence",
    "attack_label": "attack",
    "budget_spec": "budget",
}
COMPARE_BY = {"attacks": "attack_label", "campaigns": "campaign"}
#: The columns :func:`leaderboard` and :func:`compare` read (the store reads only these).
COLUMNS = (*ENTRY, "kind", "status", "trial_id", "n_poisons", "budget", *METRICS)


def checkpoints(table: pa.Table, budgets: Iterable[str] | None = None) -> pa.Table:
    """The checkpoint rows of ``table`` (optionally only the budgets ``budgets``, as written in
    the campaign: ``"100"``, ``"0.05"``)."""
    rows = table.filter(pc.equal(table["kind"], "checkpoint"))
    if budgets:
        wanted = [normalise_budget(b) for b in budgets]
        present = set(rows["budget_spec"].drop_null().to_pylist())
        unknown = [b for b in wanted if b not in present]
        if unknown:
            raise ValueError(
                f"--budget {unknown[0]}: no results at this budget; budgets in the store: {', '.join(sorted(present, key=float)) or '(none)'}"
            )
        rows = rows.filter(pc.is_in(rows["budget_spec"], pa.array(wanted)))
    return rows


def normalise_budget(text: str) -> str:
    """``"100"`` -> ``"100"``, ``"0.050"`` -> ``"0.05"`` (the form the store uses)."""
    try:
        return budget_spec(int(text))
    except ValueError:
        pass
    try:
        return budget_spec(float(text))
    except ValueError:
        raise ValueError(f"--budget {text!r}: expected a poison count (100) or a fraction (0.05)") from None


def aggregate(table: pa.Table, keys: Sequence[str] = ENTRY) -> list[dict[str, Any]]:
    """Mean, s.e. and count of every metric per ``keys`` over the ``ok`` rows, plus the number of
    failed trials of the same (keys without the budget)."""
    ok = table.filter(pc.equal(table["status"], "ok"))
    variance = pc.VarianceOptions(ddof=1)
    specs: list[tuple[Any, ...]] = [("trial_id", "count_distinct"), ("n_poisons", "mean"), ("budget", "mean")]
    for m in METRICS:
        specs += [(m, "mean"), (m, "stddev", variance), (m, "count")]
    out = []
    for r in ok.group_by(list(keys), use_threads=False).aggregate(specs).to_pylist():
        entry = {k: r[k] for k in keys}
        entry["seeds"] = r["trial_id_count_distinct"]
        entry["n_poisons"] = r["n_poisons_mean"]
        entry["_budget"] = r["budget_mean"]
        for m in METRICS:
            n, sd = r[f"{m}_count"], r[f"{m}_stddev"]
            entry[m] = r[f"{m}_mean"] if n else None
            entry[f"{m}_se"] = sd / math.sqrt(n) if n and n > 1 and sd is not None else None
        out.append(entry)
    failed = _failed_trials(table, [k for k in keys if k != "budget_spec"])
    for entry in out:
        entry["failed"] = failed.get(tuple(entry[k] for k in keys if k != "budget_spec"), 0)
    return out


def _failed_trials(table: pa.Table, keys: list[str]) -> dict[tuple[Any, ...], int]:
    bad = table.filter(pc.equal(table["status"], "failed"))
    if bad.num_rows == 0:
        return {}
    agg = bad.group_by(keys, use_threads=False).aggregate([("trial_id", "count_distinct")]).to_pylist()
    return {tuple(r[k] for k in keys): r["trial_id_count_distinct"] for r in agg}


def leaderboard(
    table: pa.Table, metric: str = "test_accuracy", budgets: Iterable[str] | None = None, ascending: bool = True
) -> list[dict[str, Any]]:
    """Ranked entries: per (campaign, dataset, learner, defence, subpopulation, budget), attacks
    ordered by the mean of ``metric`` (ascending: lowest accuracy = strongest attack first).
    Equal means share a rank (competition ranking: 1, 1, 3). Entries without poisons (budget 0:
    the clean model, the same for every attack) and entries whose trials all failed get no rank;
    the latter appear last."""
    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r}: expected one of {', '.join(METRICS)}")
    rows = checkpoints(table, budgets)
    entries = aggregate(rows)
    entries += _only_failed(rows, entries)
    by_group: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in entries:
        by_group.setdefault(tuple(e[k] for k in (*GROUP, "budget_spec")), []).append(e)
    sign = 1.0 if ascending else -1.0
    out = []
    for _, group in sorted(by_group.items(), key=lambda kv: (_sort_key(kv[0][: len(GROUP)]), _budget_order(kv[1]))):
        scored = sorted(group, key=lambda e: (e[metric] is None, sign * (e[metric] or 0.0), e["attack_label"]))
        ranked = [e for e in scored if e[metric] is not None and e.get("n_poisons") != 0]
        for position, e in enumerate(ranked, start=1):
            tied = position > 1 and math.isclose(e[metric], ranked[position - 2][metric], rel_tol=1e-12, abs_tol=1e-15)
            e["rank"] = ranked[position - 2]["rank"] if tied else position
        for e in scored:
            e.setdefault("rank", None)
            out.append(e)
    return out


def _only_failed(rows: pa.Table, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries with failed trials but no successful row (so that they still show up)."""
    seen = {tuple(e[k] for k in ENTRY) for e in entries}
    failed = rows.filter(pc.equal(rows["status"], "failed"))
    out = []
    counts = _failed_trials(failed, list(ENTRY))
    for key, n in counts.items():
        if key not in seen and key[-1] is not None:
            e: dict[str, Any] = dict(zip(ENTRY, key))
            e.update(seeds=0, failed=n, n_poisons=None, _budget=None)
            for m in METRICS:
                e[m] = e[f"{m}_se"] = None
            out.append(e)
    return out


def _sort_key(values: Sequence[Any]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in values)


def _budget_order(group: list[dict[str, Any]]) -> float:
    known = [e["_budget"] for e in group if e.get("_budget") is not None]
    return known[0] if known else math.inf


def compare(
    table: pa.Table, by: str, a: str, b: str, metric: str = "test_accuracy", budgets: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """``a`` and ``b`` side by side (two attacks, or two campaigns) on every entry they share:
    their means and s.e. of ``metric`` and the difference ``b − a`` with s.e.
    ``√(se_a² + se_b²)`` (independent seeds)."""
    if by not in COMPARE_BY:
        raise ValueError(f"compare by {by!r}: expected one of {', '.join(COMPARE_BY)}")
    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r}: expected one of {', '.join(METRICS)}")
    column = COMPARE_BY[by]
    rows = checkpoints(table, budgets)
    present = sorted(set(rows[column].drop_null().to_pylist()))
    for name in (a, b):
        if name not in present:
            close = difflib.get_close_matches(name, present, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(
                f"{by[:-1]} {name!r} has no results in the store.{hint} Found: {', '.join(present) or '(none)'}"
            )
    keys = [k for k in ENTRY if k != column]
    sides = {}
    for name in (a, b):
        subset = rows.filter(pc.equal(rows[column], name))
        sides[name] = {tuple(e[k] for k in keys): e for e in aggregate(subset, keys)}
    out = []
    shared = set(sides[a]) & set(sides[b])
    for key in sorted(shared, key=lambda k: (_sort_key(k[:-1]), _budget_order([sides[a][k]]))):
        ea, eb = sides[a][key], sides[b][key]
        row = dict(zip(keys, key))
        row.update(
            {
                "a": a,
                "b": b,
                "metric": metric,
                "a_mean": ea[metric],
                "a_se": ea[f"{metric}_se"],
                "a_seeds": ea["seeds"],
                "b_mean": eb[metric],
                "b_se": eb[f"{metric}_se"],
                "b_seeds": eb["seeds"],
            }
        )
        both = ea[metric] is not None and eb[metric] is not None
        row["diff"] = eb[metric] - ea[metric] if both else None
        ses = [s for s in (ea[f"{metric}_se"], eb[f"{metric}_se"]) if s is not None]
        row["diff_se"] = math.sqrt(sum(s * s for s in ses)) if both and len(ses) == 2 else None
        out.append(row)
    if not out:
        raise ValueError(f"{a!r} and {b!r} share no (dataset, learner, defence, budget) entry to compare")
    return out
