"""dropscore's deployed package: settings, the pure core, use cases, ports and Azure adapters."""
