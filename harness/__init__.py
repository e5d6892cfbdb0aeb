"""poisonbench: a plugin-based benchmark harness for data-poisoning attacks and defences."""

from harness.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
