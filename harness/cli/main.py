"""The ``poisonbench`` command line: the group, its commands and the console entry point.

Every user error (unknown name, malformed config, bad data) prints one line on stderr and
exits with code 2; no traceback.
"""

from __future__ import annotations

import sys

import click

from poisonbench.cli.common import UserError
from poisonbench.cli.leaderboard_cmd import leaderboard
from poisonbench.cli.list_cmd import list_cmd
from poisonbench.cli.poisons_cmd import poisons
from poisonbench.cli.run_cmd import run
from poisonbench.host import PluginError
from poisonbench.registry import UnknownNameError
from poisonbench.version import __version__

USER_ERRORS = (UnknownNameError, PluginError, ValueError, TypeError, OSError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poisonbench")
@click.option(
    "--plugin", "plugin_modules", multiple=True, metavar="MODULE", help="Also load this plugin module (repeatable)."
)
@click.pass_context
def cli(ctx: click.Context, plugin_modules: tuple[str, ...]) -> None:
    """poisonbench: benchmark data-poisoning attacks and defences."""
    ctx.ensure_object(dict)["plugin_modules"] = plugin_modules


cli.add_command(list_cmd)
cli.add_command(run)
cli.add_command(leaderboard)
cli.add_command(poisons)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning user errors into one line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="poisonbench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, with the hint where to look, not the usage block
        command = exc.ctx.command_path if exc.ctx is not None else "poisonbench"
        message = " ".join(exc.format_message().split())  # click's choice lists span lines
        click.echo(f"Error: {message} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except USER_ERRORS as exc:
        UserError(str(exc)).show()
        sys.exit(2)
