"""Render leaderboard / comparison rows as text, Markdown, CSV, HTML or JSON.

A column is ``(header, key, se_key)``: with an ``se_key`` the human formats (text, md, html)
show ``mean ± se`` in one cell, the machine formats (csv, json) two numeric columns. Every
format names a key column alike (``dataset``, ``attack``, ``budget``, …: ``query.DISPLAY``);
the machine formats write poison counts as integers and a comparison's rows also say which side
is ``a``, which ``b`` and which ``metric`` they compare.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from poisonbench.leaderboards.query import DISPLAY, GROUP, METRICS

FORMATS = ("text", "md", "csv", "html", "json")
Column = tuple[str, str, "str | None"]


def leaderboard_columns(rows: Sequence[dict[str, Any]], metric: str | None = None) -> list[Column]:
    """Key columns, then every metric that has a value in some row (and ``metric``, a diagnostic
    one such as ``attack.kkt_objective``, when it is not a store column)."""
    cols: list[Column] = [(DISPLAY.get(k, k), k, None) for k in GROUP]
    cols += [
        ("budget", "budget_spec", None),
        ("rank", "rank", None),
        ("attack", "attack_label", None),
        ("n_poisons", "n_poisons", None),
    ]
    extra = (metric,) if metric is not None and metric not in METRICS else ()
    cols += [(m, m, f"{m}_se") for m in (*METRICS, *extra) if any(r.get(m) is not None for r in rows)]
    cols += [("seeds", "seeds", None), ("failed", "failed", None)]
    return _drop_empty(cols, rows)


def compare_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """Key columns, the two sides ``a`` and ``b`` by name, their means and the paired
    difference ``b − a`` over the seeds both have."""
    keys = [k for k in rows[0] if k in (*GROUP, "attack_label", "budget_spec")] if rows else []
    cols: list[Column] = [(DISPLAY.get(k, k), k, None) for k in keys]
    cols += [
        ("a", "a", None),
        ("b", "b", None),
        ("mean a", "a_mean", "a_se"),
        ("mean b", "b_mean", "b_se"),
        ("b - a (paired)", "diff", "diff_se"),
        ("pairs", "pairs", None),
        ("seeds a", "a_seeds", None),
        ("seeds b", "b_seeds", None),
    ]
    return _drop_empty(cols, rows)


def _drop_empty(cols: list[Column], rows: Sequence[dict[str, Any]]) -> list[Column]:
    """Drop key columns that are empty everywhere (e.g. subpopulation without one)."""
    return [c for c in cols if c[2] is not None or any(r.get(c[1]) is not None for r in rows)]


def render(rows: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str) -> str:
    """``rows`` in format ``fmt`` (one of :data:`FORMATS`)."""
    keys = _machine_keys(columns, rows)
    if fmt == "json":
        return json.dumps([_machine_record(r, keys) for r in rows], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        records = [_machine_record(r, keys) for r in rows]
        writer = csv.DictWriter(buf, fieldnames=[name for name, _ in keys], lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else _csv_safe(v) for k, v in rec.items()} for rec in records)
        return buf.getvalue()
    header = [c[0] for c in columns]
    body = [[_cell(r, c) for c in columns] for r in rows]
    if fmt == "text":
        return text_table(header, body) + "\n"
    if fmt == "md":
        esc = [[_md_safe(x) for x in row] for row in [header, *body]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc[1:]]) + "\n"
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        trs = "\n".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>" for row in body)
        return f'<table class="poisonbench-leaderboard">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{trs}\n</tbody>\n</table>\n'
    raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")


def _csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab,
    CR) gets a leading apostrophe (OWASP's CSV-injection rule); numbers pass unchanged."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _md_safe(text: str) -> str:
    """A Markdown table cell: HTML escaped (no raw tags such as ``<script>``), pipes escaped,
    line breaks as spaces."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*map(str, r)) for r in rows]
    )


#: a comparison's identity fields, written by the machine formats beside its columns
IDENTITY = ("a", "b", "metric")


def _machine_keys(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(output name, row key)`` of every machine column: key columns under their display name."""
    out = [(k, k) for k in IDENTITY if rows and k in rows[0]]
    for _header, key, se in columns:
        if key in IDENTITY:
            continue
        out.append((DISPLAY.get(key, key), key))
        if se is not None:
            out.append((se, se))
    return out


def _machine_record(row: dict[str, Any], keys: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {name: _clean(key, row.get(key)) for name, key in keys}


def _clean(key: str, v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if key == "n_poisons" and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _cell(row: dict[str, Any], column: Column) -> str:
    _, key, se_key = column
    value = row.get(key)
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:g}" if key == "n_poisons" else _num(value)
        se = row.get(se_key) if se_key else None
        return f"{text} ± {_num(se)}" if se is not None else text
    return str(value)


def _num(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) >= 100 else f"{v:.4f}"
    return f"{v:.3e}"
