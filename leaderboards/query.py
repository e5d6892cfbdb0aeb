"""Leaderboard queries over the store's rows (pyarrow compute): ranked tables and comparisons.

An *entry* is one (campaign, dataset, learner, defence, subpopulation, attack, budget); its
value for a metric is the mean over the seeds of the successful checkpoint rows, with the
standard error ``s / √n`` (``s`` the sample standard deviation, ``n`` the number of seeds;
no s.e. when ``n = 1``). Entries are ranked per (campaign, dataset, learner, defence,
subpopulation, budget): by default the lowest accuracy first, i.e. the strongest attack.

A *metric* is a numeric column of the store (:data:`METRICS`) or any numeric key of the
attacks' diagnostics, named ``attack.KEY`` (``attack.kkt_objective``, ``attack.test_accuracy``:
the attack's own estimate, distinct from the harness's measured ``test_accuracy``); a
checkpoint row has a diagnostic value only when the diagnostics describe the model it fitted
(``diagnostics_n_poisons == n_poisons``), as for the diagnostic columns.
"""

from __future__ import annotations

import difflib
import json
import math
import statistics
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
COLUMNS = (*ENTRY, "kind", "status", "trial_id", "seed", "n_poisons", "budget", *METRICS)
#: Prefix of the metrics taken from the attacks' diagnostics.
DIAGNOSTIC_PREFIX = "attack."
#: The columns a diagnostic metric is read from.
DIAGNOSTIC_SOURCE = ("diagnostics", "diagnostics_n_poisons")


def columns_for(metric: str) -> tuple[str, ...]:
    """The store columns :func:`leaderboard` and :func:`compare` need for ``metric``."""
    return COLUMNS if metric in METRICS else (*COLUMNS, *DIAGNOSTIC_SOURCE)


def with_metric(table: pa.Table, metric: str) -> pa.Table:
    """``table`` with a float column ``metric``: itself for a store column of :data:`METRICS`,
    else the attack diagnostic ``attack.KEY`` (or a bare ``KEY`` that names no column) read from
    the ``diagnostics`` JSON: null where a row has no numeric value for it, and on a checkpoint row
    whose diagnostics describe another model than the one it fitted. An unknown name raises
    ``ValueError`` listing the metrics the rows have."""
    if metric in METRICS:
        return table
    if metric in table.column_names and pa.types.is_floating(table.schema.field(metric).type):
        return table
    values = _diagnostic_values(table, metric.removeprefix(DIAGNOSTIC_PREFIX))
    if values is None or all(v is None for v in values):
        close = difflib.get_close_matches(metric, available_metrics(table), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"--metric {metric!r}: no row has this metric.{hint} Metrics in the selected rows: "
            f"{', '.join(available_metrics(table)) or '(none)'}"
        )
    return table.append_column(pa.field(metric, pa.float64()), pa.array(values, pa.float64()))


def available_metrics(table: pa.Table) -> list[str]:
    """The metrics with a value in some row of ``table``: the store's metric columns, then the
    numeric diagnostic keys as ``attack.KEY``, sorted."""
    out = [m for m in METRICS if m in table.column_names and table[m].null_count < table.num_rows]
    keys: set[str] = set()
    if "diagnostics" in table.column_names:
        for text in pc.unique(table["diagnostics"]).to_pylist():
            keys.update(k for k, v in _parse(text).items() if _numeric(v))
    return out + sorted(DIAGNOSTIC_PREFIX + k for k in keys)


def _diagnostic_values(table: pa.Table, key: str) -> list[float | None] | None:
    if not all(c in table.column_names for c in DIAGNOSTIC_SOURCE):
        return None
    kinds = table["kind"].to_pylist() if "kind" in table.column_names else [None] * table.num_rows
    out: list[float | None] = []
    for text, described, n, kind in zip(
        table["diagnostics"].to_pylist(),
        table["diagnostics_n_poisons"].to_pylist(),
        table["n_poisons"].to_pylist(),
        kinds,
    ):
        value = _parse(text).get(key)
        same_model = kind != "checkpoint" or described == n
        out.append(float(value) if _numeric(value) and same_model else None)
    return out


def _parse(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


def aggregate(table: pa.Table, keys: Sequence[str] = ENTRY, metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
    """Mean, s.e. and count of every metric per ``keys`` over the ``ok`` rows, plus the number of
    failed trials of the same (keys without the budget)."""
    ok = table.filter(pc.equal(table["status"], "ok"))
    variance = pc.VarianceOptions(ddof=1)
    specs: list[tuple[Any, ...]] = [("trial_id", "count_distinct"), ("n_poisons", "mean"), ("budget", "mean")]
    for m in metrics:
        specs += [(m, "mean"), (m, "stddev", variance), (m, "count")]
    out = []
    for r in ok.group_by(list(keys), use_threads=False).aggregate(specs).to_pylist():
        entry = {k: r[k] for k in keys}
        entry["seeds"] = r["trial_id_count_distinct"]
        entry["n_poisons"] = r["n_poisons_mean"]
        entry["_budget"] = r["budget_mean"]
        for m in metrics:
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
    rows = checkpoints(with_metric(table, metric), budgets)
    metrics = _metrics_with(metric)
    entries = aggregate(rows, ENTRY, metrics)
    entries += _only_failed(rows, entries, metrics)
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


def _metrics_with(metric: str) -> tuple[str, ...]:
    return METRICS if metric in METRICS else (*METRICS, metric)


def _only_failed(rows: pa.Table, entries: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Entries with failed trials but no successful row (so that they still show up)."""
    seen = {tuple(e[k] for k in ENTRY) for e in entries}
    failed = rows.filter(pc.equal(rows["status"], "failed"))
    out = []
    counts = _failed_trials(failed, list(ENTRY))
    for key, n in counts.items():
        if key not in seen and key[-1] is not None:
            e: dict[str, Any] = dict(zip(ENTRY, key))
            e.update(seeds=0, failed=n, n_poisons=None, _budget=None)
            for m in metrics:
                e[m] = e[f"{m}_se"] = None
            out.append(e)
    return out


def _sort_key(values: Sequence[Any]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in values)


def _budget_order(group: list[dict[str, Any]]) -> float:
    known = [e["_budget"] for e in group if e.get("_budget") is not None]
    return known[0] if known else math.inf


def compare(
    table: pa.Table,
    by: str,
    names: Sequence[str],
    metric: str = "test_accuracy",
    budgets: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Each of ``names[1:]`` against ``names[0]`` (attacks, or campaigns) on every entry they
    share: both sides' mean, s.e. and seeds of ``metric``, and the **paired** difference ``b − a``:
    seed ``s`` of ``a`` and seed ``s`` of ``b`` saw the same split, so the difference is taken per
    seed, then averaged, with s.e. ``sd(differences) / √pairs`` (none for one pair). Rows say
    which side is ``a``, which ``b`` and which ``metric``."""
    if by not in COMPARE_BY:
        raise ValueError(f"compare by {by!r}: expected one of {', '.join(COMPARE_BY)}")
    names = list(dict.fromkeys(names))
    if len(names) < 2:
        raise ValueError(f"compare: give at least two different {by} to compare, got {names}")
    column = COMPARE_BY[by]
    rows = checkpoints(with_metric(table, metric), budgets)
    present = sorted(set(rows[column].drop_null().to_pylist()))
    for name in names:
        if name not in present:
            close = difflib.get_close_matches(name, present, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(
                f"{by[:-1]} {name!r} has no results in the store.{hint} Found: {', '.join(present) or '(none)'}"
            )
    keys = [k for k in ENTRY if k != column]
    metrics = _metrics_with(metric)
    sides, per_seed = {}, {}
    for name in names:
        subset = rows.filter(pc.equal(rows[column], name))
        sides[name] = {tuple(e[k] for k in keys): e for e in aggregate(subset, keys, metrics)}
        per_seed[name] = _per_seed(subset, keys, metric)
    base, out = names[0], []
    for other in names[1:]:
        shared = set(sides[base]) & set(sides[other])
        for key in sorted(shared, key=lambda k: (_sort_key(k[:-1]), _budget_order([sides[base][k]]))):
            out.append(_comparison(dict(zip(keys, key)), base, other, metric, sides, per_seed, key))
    if not out:
        raise ValueError(f"{', '.join(map(repr, names))} share no (dataset, learner, defence, budget) entry to compare")
    return out


def _per_seed(rows: pa.Table, keys: Sequence[str], metric: str) -> dict[tuple[Any, ...], dict[Any, float]]:
    """entry key -> seed -> the seed's mean of ``metric`` over its ok rows."""
    ok = rows.filter(pc.and_(pc.equal(rows["status"], "ok"), pc.is_valid(rows[metric])))
    out: dict[tuple[Any, ...], dict[Any, float]] = {}
    for r in ok.group_by([*keys, "seed"], use_threads=False).aggregate([(metric, "mean")]).to_pylist():
        out.setdefault(tuple(r[k] for k in keys), {})[r["seed"]] = r[f"{metric}_mean"]
    return out


def _comparison(
    row: dict[str, Any],
    a: str,
    b: str,
    metric: str,
    sides: dict[str, dict[tuple[Any, ...], dict[str, Any]]],
    per_seed: dict[str, dict[tuple[Any, ...], dict[Any, float]]],
    key: tuple[Any, ...],
) -> dict[str, Any]:
    ea, eb = sides[a][key], sides[b][key]
    sa, sb = per_seed[a].get(key, {}), per_seed[b].get(key, {})
    differences = [sb[s] - sa[s] for s in sorted(set(sa) & set(sb), key=str)]
    row.update(
        a=a,
        b=b,
        metric=metric,
        a_mean=ea[metric],
        a_se=ea[f"{metric}_se"],
        a_seeds=ea["seeds"],
        b_mean=eb[metric],
        b_se=eb[f"{metric}_se"],
        b_seeds=eb["seeds"],
        pairs=len(differences),
        diff=statistics.fmean(differences) if differences else None,
        diff_se=statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else None,
    )
    return row
