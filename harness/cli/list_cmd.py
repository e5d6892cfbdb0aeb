"""``poisonbench list``: the registered components with their parameters, or the loaded plugins.

Each component is shown as the campaign-file entry that uses it: its ``[[<kind>]]`` table, its
``name`` and one ``params.<name> = <default>`` line per parameter (TOML dotted keys, which a
campaign file accepts as written), each with its documentation and accepted values as a
comment. ``<required>`` marks a parameter without a default, ``<unset>`` an optional one whose
default is None (leave the key out). ``--json`` gives the same as data.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import click

from poisonbench.cli.common import UserError, get_host
from poisonbench.registry import KINDS, RESERVED_PARAMETERS, Component, UnknownNameError

LIST_TOPICS = (*KINDS, "plugins")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
#: Widest ``params.<name> = <value>`` column before the comments start.
_KEY_COLUMN = 36


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
        click.echo("\n".join(component_lines(c)))


def component_lines(component: Component) -> list[str]:
    """The text ``list`` prints for ``component``: a header, its description and its campaign
    entry in TOML, one commented line per parameter."""
    d = component.as_dict()
    lines = [f"{d['kind']:8} {d['name']:24} {d['plugin']} {d['version']}"]
    if d["description"]:
        lines.append(f"    {d['description']}")
    lines += [f"    [[{component.kind}]]", f"    name = {toml_value(component.name)}"]
    reserved = RESERVED_PARAMETERS.get(component.kind, ())
    entries = []
    for name, default in d["parameters"].items():
        info = d["parameter_docs"][name]
        comment = "; ".join(part for part in (info["doc"], info["expected"]) if part)
        if name in reserved:
            lines.append(f"    # {name}: set by the campaign (top-level 'seeds'){': ' + comment if comment else ''}")
            continue
        value = component.parameters[name]
        shown = "<required>" if default == "<required>" else "<unset>" if value is None else toml_value(value)
        entries.append((f"params.{_key(name)} = {shown}", comment))
    width = min(_KEY_COLUMN, max((len(e) for e, _ in entries), default=0))
    lines += [f"    {e:{width}}  # {c}" if c else f"    {e}" for e, c in entries]
    return lines


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (strings quoted, booleans lower case, lists, inline
    tables); a value TOML cannot hold (an object) as ``<repr>``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    return f"<{value!r}>"


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name, ensure_ascii=False)
