"""``poisonbench leaderboard show | compare | metrics | export | plot | site | compact``: read the result store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from poisonbench.cli.common import STORE_OPTION, UserError, lock_waiting, warnings_to_stderr
from poisonbench.leaderboards import export as lb_export
from poisonbench.leaderboards import plot as lb_plot
from poisonbench.leaderboards import query
from poisonbench.leaderboards import site as lb_site
from poisonbench.leaderboards.store import Store, campaign_lock

CAMPAIGN_OPTION = click.option(
    "--campaign", "campaigns", multiple=True, metavar="NAME", help="Only these campaigns (repeatable; default: all)."
)
BUDGET_OPTION = click.option(
    "--budget",
    "budgets",
    multiple=True,
    metavar="B",
    help="Only these budgets, as in the campaign: 100 or 0.05 (repeatable).",
)
METRIC_OPTION = click.option(
    "--metric",
    default="test_accuracy",
    show_default=True,
    metavar="NAME",
    help="Metric to rank / compare / plot: a store column (test_accuracy, lambda, lower_bound, n_removed, …) "
    "or an attack diagnostic as attack.KEY (attack.test_accuracy is the attack's own estimate); "
    "`poisonbench leaderboard metrics` lists those in the store.",
)


@click.group("leaderboard")
def leaderboard() -> None:
    """Query the result store: ranked tables, comparisons, exports and plots."""


@leaderboard.command("show")
@STORE_OPTION
@CAMPAIGN_OPTION
@BUDGET_OPTION
@METRIC_OPTION
@click.option(
    "--descending",
    is_flag=True,
    help="Rank the highest value first (default: lowest accuracy = strongest attack first).",
)
def show(store_dir: str, campaigns: tuple[str, ...], budgets: tuple[str, ...], metric: str, descending: bool) -> None:
    """Ranked attacks per campaign × dataset × learner × defence × budget (mean ± s.e. over seeds)."""
    entries = _leaderboard(store_dir, campaigns, budgets, metric, descending)
    columns = lb_export.leaderboard_columns(entries, metric)
    body = [c for c in columns if c[1] not in query.GROUP]
    blocks: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in entries:
        blocks.setdefault(tuple(e[k] for k in query.GROUP), []).append(e)
    for key, rows in blocks.items():
        campaign, *parts = key
        title = " / ".join(str(p) for p in parts[:3]) + (f"  (subpopulation {parts[3]})" if parts[3] else "")
        click.echo(f"== {title}  [campaign {campaign}] ==")
        click.echo(lb_export.render(rows, body, "text"))


@leaderboard.command("compare")
@click.argument("names", nargs=-1, metavar="A B [C ...]")
@click.option("--attacks", "by_attacks", is_flag=True, help="NAMES are attack labels (the default).")
@click.option("--campaigns", "by_campaigns", is_flag=True, help="NAMES are campaigns.")
@STORE_OPTION
@CAMPAIGN_OPTION
@BUDGET_OPTION
@METRIC_OPTION
@click.option("--format", "fmt", type=click.Choice(lb_export.FORMATS), default="text", show_default=True)
def compare(
    names: tuple[str, ...],
    by_attacks: bool,
    by_campaigns: bool,
    store_dir: str,
    campaigns: tuple[str, ...],
    budgets: tuple[str, ...],
    metric: str,
    fmt: str,
) -> None:
    """Attacks (--attacks A B C …) or campaigns (--campaigns C1 C2 …) side by side: each against
    the first, with the difference B − A paired by seed (the same split) and its s.e."""
    if by_attacks and by_campaigns:
        raise UserError("compare: give one of --attacks or --campaigns, not both")
    if len(names) < 2:
        raise UserError("compare: give at least two names, e.g. `compare --attacks A B` or `compare --campaigns C1 C2`")
    by = "campaigns" if by_campaigns else "attacks"
    selected = campaigns if by == "attacks" else tuple(dict.fromkeys((*campaigns, *names)))
    table = _read(store_dir, selected, query.columns_for(metric))
    try:
        rows = query.compare(table, by, names, metric, budgets)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(lb_export.render(rows, lb_export.compare_columns(rows), fmt), nl=False)


@leaderboard.command("metrics")
@STORE_OPTION
@CAMPAIGN_OPTION
def metrics(store_dir: str, campaigns: tuple[str, ...]) -> None:
    """The metrics with a value in the store: its metric columns, then the attacks' numeric
    diagnostics as attack.KEY."""
    table = _read(store_dir, campaigns, ("kind", "n_poisons", *query.METRICS, *query.DIAGNOSTIC_SOURCE))
    for name in query.available_metrics(table):
        click.echo(name)


@leaderboard.command("export")
@click.option("--format", "fmt", type=click.Choice(lb_export.FORMATS[1:]), required=True, help="Output format.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: stdout).",
)
@STORE_OPTION
@CAMPAIGN_OPTION
@BUDGET_OPTION
@METRIC_OPTION
@click.option("--descending", is_flag=True, help="Rank the highest value first.")
def export(
    fmt: str,
    output: Path | None,
    store_dir: str,
    campaigns: tuple[str, ...],
    budgets: tuple[str, ...],
    metric: str,
    descending: bool,
) -> None:
    """The ranked leaderboard as Markdown, CSV, HTML or JSON."""
    entries = _leaderboard(store_dir, campaigns, budgets, metric, descending)
    text = lb_export.render(entries, lb_export.leaderboard_columns(entries, metric), fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@leaderboard.command("compact")
@STORE_OPTION
@CAMPAIGN_OPTION
def compact(store_dir: str, campaigns: tuple[str, ...]) -> None:
    """Merge each campaign's result files into one part file (waits for a run of the campaign
    to end; rows are never lost, see docs/campaigns.md)."""
    store = Store(store_dir)
    with warnings_to_stderr():
        names = list(campaigns) or store.campaigns()
        for name in names:
            if not store.campaign_dir(name).is_dir():
                raise UserError(f"campaign {name!r} has no results in {store_dir!r}")
            with campaign_lock(store, name, lock_waiting(name)):
                report = store.compact(name)
            if report.part is None:
                click.echo(f"{name}: nothing to compact", err=True)
            else:
                click.echo(
                    f"{name}: {report.files_merged} file(s), {report.rows} row(s) -> {report.part.name}", err=True
                )


@leaderboard.command("plot")
@click.argument("kind", type=click.Choice(lb_plot.KINDS))
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG, SVG or PDF file."
)
@STORE_OPTION
@CAMPAIGN_OPTION
@METRIC_OPTION
def plot(kind: str, output: Path, store_dir: str, campaigns: tuple[str, ...], metric: str) -> None:
    """Figures: accuracy vs poisons, loss-distance convergence, λ vs poison fraction."""
    table = _read(store_dir, campaigns)
    try:
        path = lb_plot.plot(query.with_metric(table, metric), kind, output, metric)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"wrote {path}", err=True)


@leaderboard.command("site")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@STORE_OPTION
@CAMPAIGN_OPTION
@METRIC_OPTION
@click.option("--title", default="poisonbench leaderboard", show_default=True, help="Title of the pages.")
def site(out: Path, store_dir: str, campaigns: tuple[str, ...], metric: str, title: str) -> None:
    """A static site in OUT/ (open OUT/index.html; no server, works offline): per campaign the
    ranked, sortable tables, the attack × defence matrix, figures, each entry's provenance and the
    rows as CSV / Parquet."""
    table = _read(store_dir, campaigns)
    try:
        index = lb_site.build_site(query.with_metric(table, metric), out, metric, title)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"wrote {index}", err=True)


def _read(store_dir: str, campaigns: tuple[str, ...], columns: tuple[str, ...] | None = None) -> Any:
    store = Store(store_dir)
    with warnings_to_stderr():
        try:
            table = store.read(campaigns or None, None if columns is None else list(columns))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if table.num_rows == 0:
        raise UserError(f"no results in the store {store_dir!r}; run `poisonbench run CAMPAIGN.toml` first")
    return table


def _leaderboard(
    store_dir: str, campaigns: tuple[str, ...], budgets: tuple[str, ...], metric: str, descending: bool
) -> list[dict[str, Any]]:
    table = _read(store_dir, campaigns, query.columns_for(metric))
    try:
        return query.leaderboard(table, metric, budgets, ascending=not descending)
    except ValueError as exc:
        raise UserError(str(exc)) from None
