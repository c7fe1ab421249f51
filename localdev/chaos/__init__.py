"""The chaos test: `python -m localdev chaos` (see README, "Chaos test", and docs/local-development.md)."""
