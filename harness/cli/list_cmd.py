"""``poisonbench list``: the registered components with their parameters, or the loaded plugins."""

from __future__ import annotations

import json

import click

from poisonbench.cli.common import UserError, get_host
from poisonbench.registry import KINDS, UnknownNameError

LIST_TOPICS = (*KINDS, "plugins")


@click.command("list")
@click.argument("topic", required=False, default=None)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_cmd(ctx: click.Context, topic: str | None, as_json: bool) -> None:
    """List registered datasets, learners, attacks, defences, or the loaded plugins."""
    if topic is not None and topic not in LIST_TOPICS:
        raise UserError(str(UnknownNameError("topics", topic, list(LIST_TOPICS))))
    host = get_host(ctx)
    if topic == "plugins":
        rows = [p.as_dict() for p in host.plugins]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            for r in rows:
                click.echo(f"{r['name']:32} {r['version']:10} {r['source']:12} {', '.join(r['hooks'])}")
        return
    comps = host.registry.components(topic)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in comps], indent=2))
        return
    for c in comps:
        d = c.as_dict()
        click.echo(f"{d['kind']:8} {d['name']:24} {d['plugin']} {d['version']}")
        if d["description"]:
            click.echo(f"    {d['description']}")
        for k, v in d["parameters"].items():
            click.echo(f"    --{k} = {v!r}" if v != "<required>" else f"    --{k} (required)")
