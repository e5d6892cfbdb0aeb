"""A static leaderboard site from the store's rows: HTML pages that work from ``file://``, offline.

Layout of the output folder::

    index.html                      the campaigns: datasets, learners, defences, attacks, trials, last run
    style.css                       the one stylesheet (every link is relative)
    rows.csv, rows.parquet          every store column of the rows the site was built from
    campaigns/<slug>/index.html     per dataset × learner × defence (× subpopulation): a ranked,
                                    sortable table, each entry's provenance, inline SVG figures;
                                    the attack × defence matrix where there are several defences
    campaigns/<slug>/rows.csv, rows.parquet   the campaign's rows

The pages are rendered by Jinja2 templates (``templates/``) with autoescaping on: labels and
error texts come from plugins and appear as text, never as markup. The only markup inserted
unescaped is matplotlib's SVG (which escapes its text) and the site's own sorting script.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from markupsafe import Markup

from poisonbench.leaderboards import plot
from poisonbench.leaderboards.query import GROUP, leaderboard
from poisonbench.version import __version__

TEMPLATES = Path(__file__).parent / "templates"
#: Columns shown in an entry's provenance (the JSON ones pretty-printed).
PROVENANCE = (
    "poisonbench_version",
    "package_versions",
    "plugin_versions",
    "git_revision",
    "code_hash",
    "host",
    "device",
    "executor",
)
#: Unicode look-alikes of the matplotlib markers of :data:`plot.MARKERS`, for the tables.
MARKER_GLYPHS = {"o": "●", "s": "■", "^": "▲", "D": "◆", "v": "▼", "P": "✚", "X": "✖", "*": "★"}
#: Figures of a section: (plot kind, caption, columns of which one must have values).
FIGURES = (
    ("accuracy", "{metric} vs poisons (mean ± s.e. over seeds)", ()),
    ("convergence", "loss-based distance vs poisons (log-log)", ("max_loss_diff",)),
    ("lambda", "λ vs poison fraction", ("lambda",)),
    ("bound", "lower bound on the poisons needed vs poisons used", ("lower_bound_induced", "lower_bound")),
)
#: A text cell that a spreadsheet would run as a formula (OWASP's CSV-injection rule).
FORMULA_START = r"^[=+\-@\t\r]"


def build_site(
    table: pa.Table, out: Path, metric: str = "test_accuracy", title: str = "poisonbench leaderboard"
) -> Path:
    """Write the static site of the store rows ``table`` (every column, as ``Store.read()``
    returns them) into the folder ``out``, ranking entries by ``metric``; return the path of
    its ``index.html``."""
    if table.num_rows == 0:
        raise ValueError("no rows to build a site from")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    shutil.copyfile(TEMPLATES / "style.css", out / "style.css")
    write_rows(table, out)
    summaries = []
    for name in sorted(set(table["campaign"].to_pylist())):
        rows = table.filter(pc.equal(table["campaign"], name))
        summary = summarise(name, rows)
        folder = out / "campaigns" / summary["slug"]
        folder.mkdir(parents=True, exist_ok=True)
        write_rows(rows, folder)
        page = env.get_template("campaign.html").render(
            title=title, root="../../", summary=summary, metric=metric, **campaign_page(rows, metric)
        )
        (folder / "index.html").write_text(page, encoding="utf-8")
        summaries.append(summary)
    index = out / "index.html"
    page = env.get_template("index.html").render(title=title, root="", campaigns=summaries, metric=metric)
    index.write_text(page, encoding="utf-8")
    return index


def environment() -> jinja2.Environment:
    """The Jinja2 environment of the site's templates: autoescaping on, undefined names errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    return env


def write_rows(rows: pa.Table, folder: Path) -> None:
    """``rows.parquet`` (exact) and ``rows.csv`` (text cells that a spreadsheet would run as a
    formula get a leading apostrophe) in ``folder``."""
    pq.write_table(rows, folder / "rows.parquet", compression="zstd")
    pa_csv.write_csv(_formula_safe(rows), folder / "rows.csv")


def _formula_safe(rows: pa.Table) -> pa.Table:
    for i, field in enumerate(rows.schema):
        if pa.types.is_string(field.type):
            column = rows.column(i)
            risky = pc.fill_null(pc.match_substring_regex(column, FORMULA_START), False)
            quoted = pc.binary_join_element_wise(pa.scalar("'"), column, "")
            rows = rows.set_column(i, field, pc.if_else(risky, quoted, column))
    return rows


def summarise(name: str, rows: pa.Table) -> dict[str, Any]:
    """One campaign's line of the index: its labels, trials ok / failed and last finish."""
    failed = rows.filter(pc.fill_null(pc.not_equal(rows["status"], "ok"), True))
    failed_ids = set(failed["trial_id"].to_pylist())
    trial_ids = set(rows["trial_id"].to_pylist())
    last = pc.max(rows["finished_at"]).as_py()
    return {
        "name": name,
        "slug": slug(name),
        "datasets": _labels(rows, "dataset_label"),
        "learners": _labels(rows, "learner_label"),
        "defences": _labels(rows, "defence_label"),
        "attacks": _labels(rows, "attack_label"),
        "trials_ok": len(trial_ids - failed_ids),
        "trials_failed": len(failed_ids),
        "last_finished": _time(last),
        "last_finished_sort": last.isoformat() if last else "",
    }


def slug(name: str) -> str:
    """A directory name for campaign ``name`` that needs no escaping in a relative link (names
    that had to change get 8 hex digits of their hash, so that two never meet)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "campaign"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return safe


def campaign_page(rows: pa.Table, metric: str) -> dict[str, Any]:
    """The template values of one campaign's page: its sections, matrices and failed trials."""
    entries = leaderboard(rows, metric)
    trials = trials_by_entry(rows)
    return {
        "sections": sections(rows, entries, trials, metric),
        "matrices": matrices(entries, metric),
        "failures": failures(rows),
    }


def sections(
    rows: pa.Table, entries: list[dict[str, Any]], trials: dict[tuple[Any, ...], list[dict[str, Any]]], metric: str
) -> list[dict[str, Any]]:
    """One section per (dataset, learner, defence, subpopulation): its title, its ranked table
    (with the certified-bound columns when some entry has them) and its figures."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in entries:
        groups.setdefault(tuple(e[k] for k in GROUP), []).append(e)
    out = []
    for number, (key, group) in enumerate(groups.items(), start=1):
        bounds = [b for b in ("lower_bound_induced", "lower_bound") if any(e[b] is not None for e in group)]
        out.append(
            {
                "anchor": f"s{number}",
                "title": " / ".join(str(v) for v in key[1:] if v is not None),
                "bounds": bounds,
                "entries": [_entry(e, metric, bounds, trials.get(_entry_key(e), [])) for e in group],
                "figures": figures(_select(rows, dict(zip(GROUP, key))), metric),
            }
        )
    return out


def _entry(e: dict[str, Any], metric: str, bounds: Sequence[str], trials: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row: display text and sort keys of an entry, with its trials' provenance."""
    style = plot.attack_style(e["attack_label"])
    return {
        "rank": e["rank"],
        "attack": e["attack_label"],
        "color": style["color"],
        "glyph": MARKER_GLYPHS[style["marker"]],
        "budget": e["budget_spec"],
        "budget_sort": _sort_value(e["_budget"]),
        "n_poisons": "–" if e["n_poisons"] is None else f"{e['n_poisons']:g}",
        "n_poisons_sort": _sort_value(e["n_poisons"]),
        "bounds": [(_mean_se(e[b], e[f"{b}_se"]), _sort_value(e[b])) for b in bounds],
        "value": _mean_se(e[metric], e[f"{metric}_se"]),
        "value_sort": _sort_value(e[metric]),
        "seeds": e["seeds"],
        "failed": e["failed"],
        "trials": trials,
    }


def _entry_key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (*(e[k] for k in GROUP), e["attack_label"], e["budget_spec"])


def trials_by_entry(rows: pa.Table) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Per entry (group, attack, budget): the provenance of each of its trials (from its
    checkpoint row at that budget), ordered by seed."""
    checkpoints = rows.filter(pc.equal(rows["kind"], "checkpoint"))
    columns = [*GROUP, "attack_label", "budget_spec", "trial_id", "seed", "status", "error", "config", *PROVENANCE]
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in checkpoints.select(columns).to_pylist():
        key = (*(r[k] for k in GROUP), r["attack_label"], r["budget_spec"])
        fields = [(name, _pretty(r[name])) for name in PROVENANCE if r[name] is not None]
        trial = {"trial_id": r["trial_id"], "seed": r["seed"], "status": r["status"], "error": r["error"]}
        out.setdefault(key, []).append({**trial, "fields": fields, "config": _pretty(r["config"])})
    for trials in out.values():
        trials.sort(key=lambda t: (t["seed"] is None, t["seed"] or 0, t["trial_id"]))
    return out


def figures(rows: pa.Table, metric: str) -> list[dict[str, Any]]:
    """The inline SVG figures of one section's rows, each where its columns have values."""
    out = []
    for kind, caption, columns in FIGURES:
        needed = columns or (metric,)
        if not any(_has_values(rows, c) for c in needed):
            continue
        svg = plot.svg(rows, kind, metric)
        out.append({"caption": caption.format(metric=metric.replace("_", " ")), "svg": Markup(_svg_element(svg))})
    return out


def _svg_element(document: str) -> str:
    """The ``<svg>`` element of an SVG document (without its XML declaration and doctype)."""
    return document[document.index("<svg") :]


def _has_values(rows: pa.Table, column: str) -> bool:
    ok = rows.filter(pc.equal(rows["status"], "ok"))
    return column in ok.column_names and ok[column].null_count < ok.num_rows


def matrices(entries: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per (dataset, learner, subpopulation) with more than one defence: the attack × defence
    matrix, a row per (attack, budget), each cell the mean ± s.e. of ``metric`` and a shade
    (0 = the lowest value of the matrix, 1 = the highest)."""
    by_setting: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in entries:
        by_setting.setdefault((e["dataset_label"], e["learner_label"], e["subpopulation"]), []).append(e)
    out = []
    for setting, group in by_setting.items():
        defences = sorted({e["defence_label"] for e in group}, key=str)
        if len(defences) < 2:
            continue
        values = [e[metric] for e in group if e[metric] is not None]
        low, high = (min(values), max(values)) if values else (0.0, 0.0)
        cells = {(e["attack_label"], e["budget_spec"], e["defence_label"]): e for e in group}
        budgets = _budgets_in_order(group)
        rows = []
        for attack in sorted({e["attack_label"] for e in group}, key=str):
            present = [b for b in budgets if any((attack, b, d) in cells for d in defences)]
            for i, budget in enumerate(present):
                row_cells = [_matrix_cell(cells.get((attack, budget, d)), metric, low, high) for d in defences]
                rows.append(
                    {"attack": attack, "span": len(present) if i == 0 else 0, "budget": budget, "cells": row_cells}
                )
        title = " / ".join(str(v) for v in setting if v is not None)
        out.append({"title": title, "defences": defences, "rows": rows})
    return out


def _budgets_in_order(entries: Iterable[dict[str, Any]]) -> list[str]:
    """The budgets of ``entries`` by their number of poisons (budgets never resolved last)."""
    poisons: dict[str, float] = {}
    for e in entries:
        budget = e["_budget"] if e["_budget"] is not None else math.inf
        poisons[e["budget_spec"]] = min(poisons.get(e["budget_spec"], math.inf), budget)
    return sorted(poisons, key=lambda b: (poisons[b], b))


def _matrix_cell(entry: dict[str, Any] | None, metric: str, low: float, high: float) -> dict[str, Any]:
    if entry is None or entry[metric] is None:
        return {"text": "–", "shade": None}
    shade = (entry[metric] - low) / (high - low) if high > low else 0.5
    return {"text": _mean_se(entry[metric], entry[f"{metric}_se"]), "shade": f"{shade:.3f}"}


def failures(rows: pa.Table) -> list[dict[str, Any]]:
    """The failed trials of a campaign: one line each, with its error."""
    failed = rows.filter(pc.fill_null(pc.not_equal(rows["status"], "ok"), True))
    columns = ["trial_id", "seed", *GROUP[1:], "attack_label", "error"]
    seen: dict[str, dict[str, Any]] = {}
    for r in failed.select(columns).to_pylist():
        seen.setdefault(r["trial_id"], r)
    return sorted(seen.values(), key=lambda r: (str(r["attack_label"]), r["seed"] or 0, r["trial_id"]))


def _select(rows: pa.Table, values: dict[str, Any]) -> pa.Table:
    """The rows whose columns equal ``values`` (None matches null)."""
    mask = None
    for column, value in values.items():
        match = pc.is_null(rows[column]) if value is None else pc.fill_null(pc.equal(rows[column], value), False)
        mask = match if mask is None else pc.and_(mask, match)
    return rows if mask is None else rows.filter(mask)


def _labels(rows: pa.Table, column: str) -> list[str]:
    return sorted(str(v) for v in pc.unique(rows[column].drop_null()).to_pylist())


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "–"


def _pretty(value: str | None) -> str:
    """JSON text indented for reading; other text unchanged."""
    if value is None:
        return ""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return json.dumps(parsed, indent=2, sort_keys=True) if isinstance(parsed, (dict, list)) else value


def _mean_se(mean: float | None, se: float | None) -> str:
    if mean is None:
        return "–"
    return f"{_number(mean)} ± {_number(se)}" if se is not None else _number(mean)


def _number(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 100:
        return f"{v:.4f}"
    if 100 <= abs(v) < 1e6:
        return f"{v:.1f}"
    return f"{v:.3e}"


def _sort_value(v: float | None) -> str:
    """A ``data-sort`` value: the number, or empty (sorted last) when there is none."""
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else repr(float(v))
