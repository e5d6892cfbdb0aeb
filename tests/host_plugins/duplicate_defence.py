"""Test plugin: registers a defence named 'none', clashing with the built-in."""

from harness import hookimpl
from harness.defence import NoDefence


@hookimpl
def register_defences(register):
    register(NoDefence)
