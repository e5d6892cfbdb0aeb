"""Test plugin: implements a hook poisonbench does not define (a typo of register_attacks)."""

from harness import hookimpl


@hookimpl
def register_atacks(register):
    pass
