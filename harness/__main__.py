"""``python -m harness`` runs the poisonbench CLI."""

from harness.cli import main

main()
