"""Lazy package exports: names imported from their submodule on first attribute access."""
import importlib


def lazy_getattr(package: str, namespace: dict, exports: dict):
    """A module `__getattr__` for `package` that imports `exports[name]` (a submodule) on
    first use and caches the value in `namespace` (the package's globals())."""

    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
