"""One real adapter per port (shared/ports.py), each translating SDK errors into shared.errors."""
