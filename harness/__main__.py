"""``python -m poisonbench`` runs the poisonbench CLI."""

from poisonbench.cli.main import main

main()
