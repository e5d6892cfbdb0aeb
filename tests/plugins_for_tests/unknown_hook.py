"""Test plugin: implements a hook poisonbench does not define (a typo of register_attacks)."""

from poisonbench import hookimpl


@hookimpl
def register_atacks(register):
    pass
