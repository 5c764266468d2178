"""pytest configuration. Shared helpers are in tests/helpers.py (`from helpers import ...`);
the `slow` marker is registered in pyproject.toml (`pytest -m "not slow"`: the quick loop)."""
