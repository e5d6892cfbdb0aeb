"""Test plugin: registers a defence named 'none', clashing with the built-in."""

from poisonbench import hookimpl
from poisonbench.defence import NoDefence


@hookimpl
def register_defences(register):
    register(NoDefence)
