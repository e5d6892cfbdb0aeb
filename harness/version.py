"""The installed poisonbench version (one source: ``pyproject.toml``)."""

from importlib.metadata import version

__version__ = version("poisonbench")
