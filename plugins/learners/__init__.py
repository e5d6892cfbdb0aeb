"""Built-in poisonbench plugins."""
