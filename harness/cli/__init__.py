"""The ``poisonbench`` command line (entry point :func:`poisonbench.cli.main.main`)."""
