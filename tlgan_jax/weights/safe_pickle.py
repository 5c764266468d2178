"""Unpickling through an allow-list of globals: loading a pickle never runs code from it.

`pickle` resolves every class or function a stream names with `find_class(module, name)`;
a hostile stream names `os.system` or `builtins.eval` and calls it via REDUCE. Here
`find_class` only returns objects from an explicit allow-list and refuses everything else
*before* anything is imported or called.
"""
from __future__ import annotations

import io
import pickle
from typing import Any, Callable, Mapping


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle named a global that is not on the allow-list (nothing was executed)."""


class CorruptPickleError(pickle.UnpicklingError):
    """A pickle stream is truncated or malformed."""


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals come only from `allowed[(module, name)]`.

    `persistent_load`, when given, resolves persistent ids (torch's storages).
    """

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any],
                 persistent_load: Callable[[Any], Any] | None = None, what: str = "pickle"):
        super().__init__(file, encoding="latin1")
        self._allowed = dict(allowed)
        self._what = what
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._what}: refusing to load global '{module}.{name}': it is not on the "
                f"allow-list of this reader, so the file is hostile, corrupt or of an unsupported "
                f"kind (nothing from it was executed)") from None


def restricted_loads(data: bytes, allowed: Mapping[tuple[str, str], Any],
                     persistent_load: Callable[[Any], Any] | None = None,
                     what: str = "pickle") -> Any:
    """Unpickle `data` with `RestrictedUnpickler`; truncation gives `CorruptPickleError`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), allowed, persistent_load, what).load()
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError,
            KeyError, AttributeError) as e:
        raise CorruptPickleError(f"{what}: the pickle stream is truncated or corrupt "
                                 f"({type(e).__name__}: {e})") from e


class StateHolder:
    """Plain stand-in for a pickled class: records the state given to `__setstate__`."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state
