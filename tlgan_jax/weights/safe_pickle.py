"""Unpickling hostile files: nothing from the file runs, nothing crashes, memory is bounded
by the file's own size (never by a number in it), and no file changes how a later file decodes.

`pickle` resolves every class or function a stream names with `find_class(module, name)`; a
hostile stream names `os.system` or `builtins.eval` and calls it via REDUCE. Here `find_class`
only returns objects from an explicit allow-list and refuses everything else *before* anything
is imported or called. Further rules, each closing a hole found by crafted files:

* The pure-Python unpickler is used, not the C one: the C unpickler sizes its memo table by the
  largest index a PUT opcode names and zeroes it, so a 9-byte stream (LONG_BINPUT 2**25) makes
  it touch 512 MiB. The Python one keeps the memo in a dict and reads length-prefixed data with
  `read(n)`, so every object costs at most a bounded multiple of the bytes that describe it
  (the worst is about 70x: an empty dict from one opcode byte); arrays, below, at most 1x.
* Dict keys and set members must be plain values (str, bytes, numbers, None, or tuples of
  them two levels deep), checked before they are hashed: hashing a million-deep tuple
  recurses in C without a limit and kills the interpreter.
* Allow-listed objects are inert (`Inert` instances, classes of metaclass `FrozenType`, or
  immutable built-in types; checked when an unpickler is made): BUILD and attribute writes on
  them are refused, so one file cannot re-define, say, which dtype a storage type stands for.
* NumPy's constructors are never handed to a pickle. `NUMPY_GLOBALS` maps the names official
  pickles use (`numpy.dtype`, `numpy.ndarray`, `_reconstruct`, `scalar`) to wrappers that
  accept only plain numeric dtypes (bool, int, uint, float; fixed byte order; no fields,
  subarrays or objects), check that the raw bytes are exactly shape x itemsize, and build a
  fresh array with `np.frombuffer(...).reshape(...)` (a copy). The bytes of all arrays built
  during one load may not exceed the pickle's size. Arrays come back as `NumpyArray` objects;
  `as_array` gives the ndarray.
* Allocation failures (MemoryError, OverflowError) and malformed streams become
  `CorruptPickleError`, a refused name or value `UnsafePickleError`; both name the file.
"""
from __future__ import annotations

import contextvars
import io
import math
import os
import pickle
import stat
import struct
import types
from typing import Any, Callable, Mapping

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle named a global off the allow-list, or asked an allowed one for something it
    refuses (an object dtype, BUILD on a shared object); nothing from the file was executed."""


class CorruptPickleError(pickle.UnpicklingError):
    """A pickle stream is truncated or malformed, or declares sizes its bytes do not hold."""


class _Load:
    """Per-load context: the file's name for messages and the array-byte budget left."""

    def __init__(self, what: str, array_bytes: int):
        self.what, self.left = what, array_bytes


_LOAD: contextvars.ContextVar[_Load | None] = contextvars.ContextVar("tlgan_pickle_load",
                                                                      default=None)


def _error(cls, message: str):
    load = _LOAD.get()
    return cls(f"{load.what if load else 'pickle'}: {message}")


def clip(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters (messages quoting a file stay short)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def describe(value: Any, limit: int = 60) -> str:
    """A short description of a value from a file, safe to put in a message: repr of short
    plain values, the type's name otherwise (repr of a hostile object can be huge or recurse)."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10 ** 18 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, Inert):
        return repr(value)
    if isinstance(value, (str, bytes)):
        text = repr(value[:limit])
        return text if len(value) <= limit else f"{text}... ({len(value)} long)"
    if type(value) is list and len(value) <= 8 and all(
            type(v) in (bool, float, str) and len(describe(v)) < 24
            or type(v) is int and abs(v) < 10 ** 18 for v in value):
        return repr(value)            # e.g. resample_kernel [1, 3, 3, 1]
    return f"a {type(value).__name__}"


def str_keys(d: dict, most: int = 16) -> list[str]:
    """The first `most` string keys of a dict from a file, sorted (for messages: a hostile
    dict may mix key types, which `sorted` cannot compare, or hold millions)."""
    return sorted(k for k in d if isinstance(k, str))[:most]


def require_regular_file(path, error: type[Exception], kind: str) -> None:
    """Raise `error` naming `path` unless it is an existing regular file: a device such as
    /dev/zero would be read until memory runs out, a FIFO blocks on open, a directory cannot be
    read."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise error(f"{os.fspath(path)}: cannot read the {kind} ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise error(f"{os.fspath(path)} is not a regular file; give the path of the {kind} "
                    f"file itself")


# ----------------------------------------------------------------------------- inert objects

class Inert:
    """Base of objects a pickle may name or receive: attributes are set once in `__init__`
    (with `object.__setattr__`) and never again; BUILD (`__setstate__`) is refused."""
    __slots__ = ()

    def __setattr__(self, name, value):
        raise _error(UnsafePickleError, f"refusing to set attribute {describe(name)} of "
                                        f"{self!r}: reader objects are read-only")

    def __delattr__(self, name):
        raise _error(UnsafePickleError, f"refusing to delete attribute {describe(name)} of "
                                        f"{self!r}: reader objects are read-only")

    def __setstate__(self, state):
        raise _error(UnsafePickleError, f"refusing BUILD on {self!r}: its state is not taken "
                                        f"from files")


class FrozenType(type):
    """Metaclass of classes a pickle may name (NEWOBJ needs a real class): the class itself
    cannot be changed, so one file cannot alter what a later file's instances are."""

    def __setattr__(cls, name, value):
        raise _error(UnsafePickleError, f"refusing to set attribute {describe(name)} of the "
                                        f"class {cls.__name__}")

    def __delattr__(cls, name):
        raise _error(UnsafePickleError, f"refusing to delete attribute {describe(name)} of the "
                                        f"class {cls.__name__}")


class InertFunction(Inert):
    """A function a pickle may call (REDUCE), behind an inert front (a plain function's
    `__defaults__` and `__dict__` could otherwise be set by BUILD)."""
    __slots__ = ("_fn", "_name")

    def __init__(self, fn: Callable, name: str):
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_name", name)

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __repr__(self):
        return self._name


_IMMUTABLE_TYPE = 1 << 8   # Py_TPFLAGS_IMMUTABLETYPE: built-in types whose attributes are fixed


def is_inert(obj: Any) -> bool:
    """Whether a pickle can neither BUILD into nor set attributes on `obj`."""
    if isinstance(obj, Inert):
        return True
    if isinstance(obj, type):
        return isinstance(obj, FrozenType) or bool(obj.__flags__ & _IMMUTABLE_TYPE)
    return False


class StateHolder(metaclass=FrozenType):
    """Plain stand-in for a pickled class: records the args it was called with and the state
    given to `__setstate__` (a fresh instance per object in the file)."""
    args: tuple = ()
    kwargs: Mapping = types.MappingProxyType({})
    state: Any = None

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state


# ----------------------------------------------------------------------------- numpy arrays

# Plain numeric dtypes by NumPy's pickle name: bool, signed/unsigned integers, floats.
_PLAIN_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                           "f2", "f4", "f8"})
_MAX_NDIM = 32


def _is_int(x) -> bool:
    return type(x) is int


class NumpyDtype(Inert):
    """`numpy.dtype(name, align, copy)` from a pickle, for a plain numeric `name` only; its
    BUILD state may only fix the byte order."""
    __slots__ = ("dtype", "_built")

    def __init__(self, name, align=False, copy=True):
        if not (isinstance(name, str) and name in _PLAIN_DTYPES):
            raise _error(UnsafePickleError,
                         f"refusing numpy dtype {describe(name)}: only plain numeric dtypes "
                         f"({', '.join(sorted(_PLAIN_DTYPES))}) are read")
        if type(align) not in (bool, int) or align or type(copy) not in (bool, int):
            raise _error(CorruptPickleError, f"numpy dtype {name!r} with align={describe(align)}"
                                             f", copy={describe(copy)}; expected False, True")
        object.__setattr__(self, "dtype", np.dtype(name))
        object.__setattr__(self, "_built", False)

    def __setstate__(self, state):
        """State (3, order, None, None, None, -1, -1, 0) (version 4 adds metadata None)."""
        dt = self.dtype
        ok = (isinstance(state, tuple) and len(state) in (8, 9) and not self._built
              and _is_int(state[0]) and state[0] in (3, 4) and len(state) == state[0] + 5
              and all(s is None for s in state[2:5]) and (len(state) == 8 or state[8] is None)
              and _is_int(state[5]) and state[5] in (-1, dt.itemsize)
              and _is_int(state[6]) and state[6] in (-1, 1, 2, 4, 8)
              and _is_int(state[7]) and state[7] == 0
              and isinstance(state[1], str)
              and state[1] in (("<", ">", "|") if dt.itemsize == 1 else ("<", ">")))
        if not ok:
            raise _error(UnsafePickleError,
                         f"refusing numpy dtype {dt.str[1:]!r} with state {describe(state)}"
                         f"{' (set twice)' if self._built else ''}: only a plain numeric dtype "
                         f"with a fixed byte order (no fields, subarray, metadata or flags) is "
                         f"read" + (f"; got {_state_summary(state)}"
                                    if isinstance(state, tuple) else ""))
        order = state[1] if dt.itemsize > 1 else "|"
        object.__setattr__(self, "dtype", dt.newbyteorder(order))
        object.__setattr__(self, "_built", True)

    def __repr__(self):
        return f"numpy.dtype({self.dtype.str!r})"


def _state_summary(state: tuple) -> str:
    return "(" + ", ".join(describe(s, 8) for s in state[:10]) + (")" if len(state) <= 10
                                                                 else ", ...)")


class _NdarrayName(Inert):
    """`numpy.ndarray` in a pickle: only a marker passed to `_reconstruct`, never called."""
    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise _error(UnsafePickleError, "refusing to call numpy.ndarray(...) from a pickle: "
                                        "arrays are read only in NumPy's own pickle form "
                                        "(_reconstruct + state with their bytes)")

    def __repr__(self):
        return "numpy.ndarray"


NDARRAY = _NdarrayName()


class NumpyArray(Inert):
    """An array from a pickle: `_reconstruct(ndarray, (0,), b'b')` gives an empty one, its BUILD
    state (1, shape, dtype, is_fortran, raw) the contents; `.array` is the ndarray (None before
    BUILD)."""
    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None):
        object.__setattr__(self, "array", array)

    def __setstate__(self, state):
        if self.array is not None:
            raise _error(UnsafePickleError, "refusing a second BUILD on a numpy array")
        if not (isinstance(state, tuple) and len(state) == 5 and _is_int(state[0])
                and state[0] == 1):
            raise _error(CorruptPickleError, f"numpy array state {describe(state)} is not "
                                             f"NumPy's (1, shape, dtype, is_fortran, bytes)")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and len(shape) <= _MAX_NDIM
                and all(_is_int(n) and n >= 0 for n in shape)):
            raise _error(CorruptPickleError, f"numpy array shape {describe(shape)} is not a "
                                             f"tuple of at most {_MAX_NDIM} sizes >= 0")
        if not isinstance(dtype, NumpyDtype):
            raise _error(UnsafePickleError, f"numpy array with dtype {describe(dtype)}: only "
                                            f"plain numeric dtypes are read")
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise _error(CorruptPickleError, f"numpy array is_fortran {describe(fortran)}")
        object.__setattr__(self, "array", _from_bytes(raw, dtype.dtype, shape,
                                                      "F" if fortran else "C"))

    def __repr__(self):
        return "numpy array" if self.array is None else \
            f"numpy array {self.array.dtype.str} {self.array.shape}"


def _raw_bytes(raw) -> bytes | bytearray:
    if isinstance(raw, str):     # Python 2 pickles read with encoding='latin1'
        return raw.encode("latin1")
    if isinstance(raw, (bytes, bytearray)):
        return raw
    raise _error(CorruptPickleError, f"numpy data is {describe(raw)}, not bytes")


def _from_bytes(raw, dtype: np.dtype, shape: tuple, order: str) -> np.ndarray:
    """A fresh array of `shape` from exactly prod(shape) * itemsize bytes, charged to the load's
    budget (the bytes of all arrays built in one load <= the pickle's size)."""
    raw = _raw_bytes(raw)
    count = math.prod(shape)
    need = count * dtype.itemsize
    if len(raw) != need:
        raise _error(CorruptPickleError, f"numpy array of shape {shape} and dtype {dtype.str} "
                                         f"needs {need} bytes, the pickle holds {len(raw)}")
    load = _LOAD.get()
    if load is None:
        raise UnsafePickleError("numpy arrays from a pickle are built only inside "
                                "safe_pickle.restricted_loads")
    if need > load.left:
        raise _error(CorruptPickleError,
                     "the arrays of this pickle would take more bytes than the file holds "
                     "(one array's bytes are used more than once), so it is corrupt or hostile")
    load.left -= need
    flat = np.frombuffer(raw, dtype=dtype, count=count)
    return np.array(flat.reshape(shape, order=order), order="C", copy=True)


def _reconstruct(subtype, shape, dtype):
    """numpy's `_reconstruct(ndarray, (0,), b'b')`: an empty array awaiting its BUILD state."""
    if subtype is not NDARRAY or shape not in ((0,), [0]) or dtype not in (b"b", "b"):
        raise _error(UnsafePickleError, f"refusing numpy _reconstruct({describe(subtype)}, "
                                        f"{describe(shape)}, {describe(dtype)}): only NumPy's "
                                        f"own form _reconstruct(ndarray, (0,), b'b') is read")
    return NumpyArray()


def _scalar(dtype, raw):
    """numpy's `scalar(dtype, raw)`: a 0-d value of a plain numeric dtype."""
    if not isinstance(dtype, NumpyDtype):
        raise _error(UnsafePickleError, f"refusing numpy scalar of {describe(dtype)}: only "
                                        f"plain numeric dtypes are read")
    return NumpyArray(_from_bytes(raw, dtype.dtype, (), "C"))


# What official pickles use to store arrays (NumPy 1 and NumPy 2 module spellings); readers
# merge this into their allow-lists. Read-only and shared: keep it the one numpy allow-list.
NUMPY_GLOBALS: Mapping[tuple[str, str], Any] = types.MappingProxyType({
    ("numpy", "dtype"): InertFunction(NumpyDtype, "numpy.dtype"),
    ("numpy", "ndarray"): NDARRAY,
    **{(m, "_reconstruct"): InertFunction(_reconstruct, f"{m}._reconstruct")
       for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): InertFunction(_scalar, f"{m}.scalar")
       for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
})


def as_array(value: Any) -> np.ndarray | None:
    """The ndarray a pickle stored (via `NUMPY_GLOBALS`), or None if `value` is not one."""
    return value.array if isinstance(value, NumpyArray) else None


# ----------------------------------------------------------------------------- unpickling

class RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python `pickle` unpickler whose globals come only from `allowed[(module, name)]`
    (each inert, see `is_inert`). `persistent_load`, when given, resolves persistent ids
    (torch's storages). Arrays built by `NUMPY_GLOBALS` during `load()` may take at most
    `array_bytes` bytes in all."""

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any],
                 persistent_load: Callable[[Any], Any] | None = None, what: str = "pickle",
                 array_bytes: int = 0):
        super().__init__(file, encoding="latin1")
        bad = [k for k, v in allowed.items() if not is_inert(v)]
        if bad:  # a programming error, not a file error
            raise TypeError(f"allow-list entries {bad} could be modified by a pickle; make them "
                            f"safe_pickle.Inert / InertFunction / FrozenType")
        self._allowed = dict(allowed)
        self._what = what
        self._array_bytes = array_bytes
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            glob = clip(f"{module}.{name}", 120)
            raise UnsafePickleError(
                f"{self._what}: refusing to load global '{glob}': it is not on the allow-list "
                f"of this reader, so the file is hostile, corrupt or of an unsupported kind "
                f"(nothing from it was executed)") from None

    def _plain_keys(self, keys) -> None:
        """Dict keys and set members must be plain values (or shallow tuples of them):
        hashing a hostile million-deep tuple recurses in C without a limit and kills the
        process (SIGSEGV), so such keys are refused before they are hashed."""
        for k in keys:
            if not _plain(k, depth=2):
                raise _error(UnsafePickleError, f"refusing {describe(k)} as a dict key or set "
                                                f"member: only plain values are read")

    # the opcodes that hash: SETITEM, SETITEMS, DICT (keys), ADDITEMS, FROZENSET (members);
    # after MARK the items are `self.stack`
    dispatch = dict(pickle._Unpickler.dispatch)
    for _op, _keys in ((pickle.SETITEM, lambda self: self.stack[-2:-1]),
                       (pickle.SETITEMS, lambda self: self.stack[0::2]),
                       (pickle.DICT, lambda self: self.stack[0::2]),
                       (pickle.ADDITEMS, lambda self: self.stack),
                       (pickle.FROZENSET, lambda self: self.stack)):
        def _checked(self, _load=dispatch[_op[0]], _keys=_keys):
            self._plain_keys(_keys(self))
            _load(self)
        dispatch[_op[0]] = _checked
    del _op, _keys, _checked

    def load(self):
        token = _LOAD.set(_Load(self._what, self._array_bytes))
        try:
            return super().load()
        finally:
            _LOAD.reset(token)


def _plain(value: Any, depth: int) -> bool:
    """str / bytes / int / float / bool / None, or a tuple of such of at most `depth` levels."""
    if value is None or type(value) in (str, bytes, int, float, bool):
        return True
    return (type(value) is tuple and depth > 0 and len(value) <= 64
            and all(_plain(v, depth - 1) for v in value))


class _Stream(io.BytesIO):
    """The pickle's bytes; a text line (GLOBAL, INT, ...) cut off by the end is an error (the
    pure-Python unpickler would take the fragment as the line)."""

    def readline(self, size=-1):
        line = super().readline(size)
        if not line.endswith(b"\n"):
            raise EOFError("the stream ends inside a text line")
        return line


def restricted_loads(data: bytes, allowed: Mapping[tuple[str, str], Any],
                     persistent_load: Callable[[Any], Any] | None = None,
                     what: str = "pickle") -> Any:
    """Unpickle `data` with `RestrictedUnpickler`; arrays may take at most len(data) bytes.

    Raises UnsafePickleError (refused; nothing ran) or CorruptPickleError (truncated, malformed,
    or sizes the bytes do not hold), each naming `what`."""
    try:
        return RestrictedUnpickler(_Stream(data), allowed, persistent_load, what,
                                   array_bytes=len(data)).load()
    except (UnsafePickleError, CorruptPickleError):
        raise
    except (MemoryError, OverflowError) as e:
        raise CorruptPickleError(f"{what}: the pickle declares a size that cannot be allocated "
                                 f"({type(e).__name__}), so it is corrupt or hostile") from None
    except RecursionError:
        raise CorruptPickleError(f"{what}: the pickle nests objects too deeply") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError,
            KeyError, AttributeError, struct.error) as e:
        raise CorruptPickleError(f"{what}: the pickle stream is truncated or corrupt "
                                 f"({type(e).__name__}: {clip(str(e))})") from e
