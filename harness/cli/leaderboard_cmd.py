"""``poisonbench leaderboard show | compare | export | plot``: read the result store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from poisonbench.cli.common import STORE_OPTION, UserError, lock_waiting, warnings_to_stderr
from poisonbench.leaderboards import export as lb_export
from poisonbench.leaderboards import plot as lb_plot
from poisonbench.leaderboards import query
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
    type=click.Choice(query.METRICS),
    default="test_accuracy",
    show_default=True,
    help="Metric to rank / compare / plot.",
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
    columns = lb_export.leaderboard_columns(entries)
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
@click.option("--attacks", nargs=2, metavar="A B", default=None, help="Compare two attack labels.")
@click.option("--campaigns", "two_campaigns", nargs=2, metavar="C1 C2", default=None, help="Compare two campaigns.")
@STORE_OPTION
@CAMPAIGN_OPTION
@BUDGET_OPTION
@METRIC_OPTION
@click.option("--format", "fmt", type=click.Choice(lb_export.FORMATS), default="text", show_default=True)
def compare(
    attacks: tuple[str, str] | None,
    two_campaigns: tuple[str, str] | None,
    store_dir: str,
    campaigns: tuple[str, ...],
    budgets: tuple[str, ...],
    metric: str,
    fmt: str,
) -> None:
    """Two attacks (--attacks A B) or two campaigns (--campaigns C1 C2) side by side, with B − A."""
    if (attacks is None) == (two_campaigns is None):
        raise UserError("compare: give exactly one of --attacks A B or --campaigns C1 C2")
    by = "attacks" if attacks is not None else "campaigns"
    pair = attacks if attacks is not None else two_campaigns
    assert pair is not None  # exactly one of the two is set (checked above)
    a, b = pair
    selected = campaigns if by == "attacks" else tuple(dict.fromkeys((*campaigns, a, b)))
    table = _read(store_dir, selected, query.COLUMNS)
    try:
        rows = query.compare(table, by, a, b, metric, budgets)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(lb_export.render(rows, lb_export.compare_columns(rows), fmt), nl=False)


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
    text = lb_export.render(entries, lb_export.leaderboard_columns(entries), fmt)
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
        path = lb_plot.plot(table, kind, output, metric)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"wrote {path}", err=True)


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
    table = _read(store_dir, campaigns, query.COLUMNS)
    try:
        return query.leaderboard(table, metric, budgets, ascending=not descending)
    except ValueError as exc:
        raise UserError(str(exc)) from None
