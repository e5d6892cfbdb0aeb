"""What every ``poisonbench`` command shares: the one-line :class:`UserError` and the plugin host.

Every user error (unknown name, malformed config, bad data) prints one line on stderr and
exits with code 2; no traceback.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import click

from poisonbench.host import PluginError, PluginHost, load_host
from poisonbench.leaderboards.store import DEFAULT_STORE

STORE_OPTION = click.option(
    "--store",
    "store_dir",
    envvar="POISONBENCH_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Store directory (env POISONBENCH_STORE).",
)


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


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Show warnings (corrupt store files…) as one ``Warning: …`` line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                click.echo(f"Warning: {w.message}", err=True)


def lock_waiting(campaign: str) -> Callable[[str], None]:
    """The ``on_wait`` of :func:`poisonbench.leaderboards.store.campaign_lock`: one line on stderr."""

    def say(pid: str) -> None:
        click.echo(f"[{campaign}] another process (pid {pid}) holds this campaign's store; waiting for it", err=True)

    return say
