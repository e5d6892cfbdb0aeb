"""The ``poisonbench`` command line.

Every user error (unknown name, malformed config, bad data) prints one line on stderr and
exits with code 2; no traceback.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import click

from harness import __version__
from harness.plugins import PluginError, PluginHost, load_host
from harness.registry import KINDS, UnknownNameError

LIST_TOPICS = (*KINDS, "plugins")
USER_ERRORS = (UnknownNameError, PluginError, ValueError, TypeError, FileNotFoundError)


class UserError(click.ClickException):
    """A one-line error with exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


def get_host(ctx: click.Context) -> PluginHost:
    """The plugin host for this invocation (built once, with the ``--plugin`` modules)."""
    obj = ctx.ensure_object(dict)
    if "host" not in obj:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                obj["host"] = load_host(obj.get("plugin_modules", ()))
            except PluginError as exc:
                raise UserError(str(exc)) from None
        for w in caught:
            click.echo(f"Warning: {w.message}", err=True)
    return obj["host"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poisonbench")
@click.option("--plugin", "plugin_modules", multiple=True, metavar="MODULE", help="Also load this plugin module (repeatable).")
@click.pass_context
def cli(ctx: click.Context, plugin_modules: tuple[str, ...]) -> None:
    """poisonbench: benchmark data-poisoning attacks and defences."""
    ctx.ensure_object(dict)["plugin_modules"] = plugin_modules


@cli.command("list")
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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning user errors into one line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="poisonbench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except USER_ERRORS as exc:
        UserError(str(exc)).show()
        sys.exit(2)
from harness.cli_campaign import leaderboard, run  # noqa: E402
cli.add_command(run); cli.add_command(leaderboard)  # noqa: E702
