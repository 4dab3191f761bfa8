"""``python -m walg.config > docs/configuration.md`` regenerates the configuration table."""

from walg.config.registry import markdown_table

print(markdown_table(), end="")
