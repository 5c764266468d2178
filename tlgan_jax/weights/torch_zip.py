"""Read a PyTorch zip checkpoint (`torch.save`'s default format since 1.6) without torch.

Layout: a zip whose records share one folder `<prefix>/`:
  `<prefix>/data.pkl`      the object tree, pickled; every tensor is
                           `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
                           and every storage a persistent id
                           `('storage', torch.<Type>Storage, key, location, numel)`;
  `<prefix>/data/<key>`    the raw bytes of storage `key` (numel elements of the type's dtype);
  `<prefix>/byteorder`     b"little" or b"big" (absent in old files: little).
A tensor is the strided view  t[i_0..i_k] = storage[offset + sum_j i_j * stride_j].

`data.pkl` is unpickled through `safe_pickle.restricted_loads` with an allow-list of only the
rebuild functions, the storage-type names (used as dtype markers) and `OrderedDict`; nothing
from the file is ever executed. The stand-ins are inert and made afresh for every load, so no
file can change how a later one decodes. Tensors come back as owned, C-contiguous numpy arrays,
OrderedDicts as plain dicts.

Nothing a file declares can make the reader allocate more than the file's size: every record
read must be no larger than the file, a storage record must hold exactly the bytes its pickle
declares, the storages read sum to at most the file's size, and so do the tensors materialised
from them; a tensor must be a non-overlapping view inside its storage (stride 0, i.e. an
expanded tensor, is refused).
"""
from __future__ import annotations

import collections
import math
import os
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np

from tlgan_jax.files import zip_member_problem
from tlgan_jax.weights.safe_pickle import (
    Inert,
    InertFunction,
    describe,
    require_regular_file,
    restricted_loads,
)


class TorchCheckpointError(ValueError):
    """The file is not a readable PyTorch zip checkpoint (bad zip, missing or short record, a
    tensor outside its storage or larger than the file)."""


class _StorageType(Inert):
    """Stand-in for `torch.<Name>Storage` in the pickle: only says which dtype the bytes hold."""
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", np.dtype(dtype))

    def __repr__(self):
        return f"torch.{self.name}"


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexDoubleStorage": np.complex128,
    "ComplexFloatStorage": np.complex64, "UntypedStorage": np.uint8,
}
_MAX_NDIM = 64


class _StorageRef(Inert):
    """A storage named by the pickle; its bytes are read from the zip after unpickling."""
    __slots__ = ("storage_type", "key", "numel")

    def __init__(self, storage_type: _StorageType, key: str, numel: int):
        object.__setattr__(self, "storage_type", storage_type)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "numel", numel)


class _TensorRef(Inert):
    """A tensor named by the pickle: a strided view of a `_StorageRef`, materialised later."""
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise TypeError(f"tensor rebuilt from {describe(storage)}, not a storage")
        if not (isinstance(size, tuple) and isinstance(stride, tuple)
                and len(size) == len(stride) <= _MAX_NDIM
                and all(type(v) is int for v in (offset, *size, *stride))):
            raise ValueError(f"tensor size {describe(size)} / stride {describe(stride)} / offset "
                             f"{describe(offset)} are not integer tuples of one rank <= "
                             f"{_MAX_NDIM} and an integer")
        for name, value in (("storage", storage), ("offset", offset), ("size", size),
                            ("stride", stride)):
            object.__setattr__(self, name, value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _allowed() -> dict:
    """A fresh allow-list for one load (inert stand-ins, none shared with another load)."""
    funcs = {"_rebuild_tensor_v2": _rebuild_tensor_v2, "_rebuild_parameter": _rebuild_parameter,
             "_rebuild_parameter_with_state": _rebuild_parameter_with_state}
    return {("collections", "OrderedDict"): collections.OrderedDict,
            **{("torch._utils", n): InertFunction(f, f"torch._utils.{n}")
               for n, f in funcs.items()},
            **{("torch", n): _StorageType(n, dt) for n, dt in _STORAGE_DTYPES.items()}}


def _persistent_loader():
    """persistent_load for one load: ('storage', type, key, location, numel) -> one _StorageRef
    per key (a key declared twice must agree)."""
    seen: dict[str, _StorageRef] = {}

    def persistent_load(pid) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"unsupported persistent id {describe(pid)} (expected ('storage', "
                             f"type, key, location, numel))")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"persistent id names {describe(storage_type)}, not a torch "
                             f"storage type")
        if not (isinstance(key, str) and type(numel) is int and numel >= 0):
            raise ValueError(f"persistent id key {describe(key)} / numel {describe(numel)} are "
                             f"not a string and an integer >= 0")
        ref = seen.setdefault(key, _StorageRef(storage_type, key, numel))
        if ref.storage_type is not storage_type or ref.numel != numel:
            raise ValueError(f"storage {describe(key)} is declared twice, as {ref.numel} x "
                             f"{ref.storage_type} and as {numel} x {storage_type}")
        return ref

    return persistent_load


class _Budget:
    """Bytes the reader may still allocate for one kind of thing, at most the file's size."""

    def __init__(self, limit: int, path, kind: str):
        self.left, self.limit, self.path, self.kind = limit, limit, path, kind

    def take(self, nbytes: int, for_what: str) -> None:
        if nbytes > self.left:
            raise TorchCheckpointError(
                f"{self.path}: {for_what} would bring the {self.kind} read to more than the "
                f"file's {self.limit} bytes, so the checkpoint is corrupt or hostile")
        self.left -= nbytes


def _find_prefix(names: list[str], path) -> str:
    pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pkls:
        raise TorchCheckpointError(f"{path}: no data.pkl record in the zip, so it is not a "
                                   f"PyTorch zip checkpoint")
    return min(pkls, key=len)[: -len("data.pkl")]


def _read_record(zf: zipfile.ZipFile, name: str, file_size: int, path) -> bytes:
    """The bytes of record `name`, refused if it claims more bytes than the whole file has
    (a compressed record could otherwise inflate without bound)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise TorchCheckpointError(f"{path}: record {name!r} is missing") from None
    if info.file_size > file_size:
        raise TorchCheckpointError(f"{path}: record {name!r} claims {info.file_size} bytes, "
                                   f"more than the whole file ({file_size})")
    problem = zip_member_problem(info, file_size)
    if problem:
        raise TorchCheckpointError(f"{path}: record {name!r} {problem}")
    raw = zf.read(info)
    if len(raw) != info.file_size:
        raise TorchCheckpointError(f"{path}: record {name!r} holds {len(raw)} bytes, its "
                                   f"header says {info.file_size}")
    return raw


def _read_storage(zf: zipfile.ZipFile, prefix: str, ref: _StorageRef, big_endian: bool,
                  path, budget: _Budget) -> np.ndarray:
    name = f"{prefix}data/{ref.key}"
    try:
        size = zf.getinfo(name).file_size
    except KeyError:
        raise TorchCheckpointError(f"{path}: storage record {name!r} is missing") from None
    dtype = ref.storage_type.dtype
    need = ref.numel * dtype.itemsize
    if size != need:
        raise TorchCheckpointError(f"{path}: storage record {name!r} has {size} bytes, "
                                   f"the pickle declares {ref.numel} x {ref.storage_type} "
                                   f"= {need} bytes")
    budget.take(need, f"storage {name!r}")
    raw = _read_record(zf, name, budget.limit, path)
    storage = np.frombuffer(raw, dtype=dtype, count=ref.numel)
    return storage.byteswap() if big_endian and dtype.itemsize > 1 else storage


def _materialise(t: _TensorRef, storage: np.ndarray, path, budget: _Budget) -> np.ndarray:
    """The strided view t[i] = storage[offset + sum_j i_j * stride_j] as an owned C array.

    Refused: negative sizes/strides/offset, stride 0 or overlapping steps on an axis longer
    than 1 (the copy would be larger than the storage), and views reaching past the storage."""
    if any(s < 0 for s in t.size) or any(s < 0 for s in t.stride) or t.offset < 0:
        raise TorchCheckpointError(f"{path}: tensor with negative size/stride/offset "
                                   f"{t.size}/{t.stride}/{t.offset}")
    if 0 in t.size:
        return np.zeros(t.size, storage.dtype)
    span = 1  # elements covered by the axes checked so far, innermost (smallest stride) first
    for n, s in sorted(((n, s) for n, s in zip(t.size, t.stride) if n > 1), key=lambda a: a[1]):
        if s < span:
            raise TorchCheckpointError(
                f"{path}: tensor of size {t.size} with stride {t.stride} repeats storage "
                f"elements ({'stride 0, an expanded tensor' if s == 0 else 'overlapping axes'})"
                f"; save it with .contiguous() (or .clone()) first")
        span += (n - 1) * s
    last = t.offset + span - 1
    if last >= storage.size:
        raise TorchCheckpointError(
            f"{path}: storage {t.storage.key!r} holds {storage.size} elements but a tensor of "
            f"size {t.size}, stride {t.stride}, offset {t.offset} needs {last + 1}")
    item = storage.dtype.itemsize
    budget.take(math.prod(t.size) * item, f"a tensor of size {t.size}")
    view = np.lib.stride_tricks.as_strided(storage[t.offset:], shape=t.size,
                                           strides=[s * item for s in t.stride], writeable=False)
    return np.array(view, order="C", copy=True)


def load_torch_zip(path: str | os.PathLike) -> Any:
    """Load a `torch.save` zip checkpoint: nested dicts/lists of numpy arrays (no torch needed).

    Raises TorchCheckpointError (a ValueError) for a file that is not, or not a whole, zip
    checkpoint, or declares more data than it holds, and safe_pickle's UnsafePickleError /
    CorruptPickleError for a hostile or broken data.pkl; each names the file.
    """
    require_regular_file(path, TorchCheckpointError, "PyTorch checkpoint")
    try:
        with zipfile.ZipFile(path) as zf:
            file_size = os.fstat(zf.fp.fileno()).st_size
            names = zf.namelist()
            prefix = _find_prefix(names, path)
            order = (_read_record(zf, prefix + "byteorder", file_size, path).strip()
                     if prefix + "byteorder" in names else b"little")
            if order not in (b"little", b"big"):
                raise TorchCheckpointError(f"{path}: unknown byteorder record {describe(order)}")
            tree = restricted_loads(_read_record(zf, prefix + "data.pkl", file_size, path),
                                    _allowed(), _persistent_loader(),
                                    what=f"PyTorch checkpoint {os.fspath(path)}")
            storage_budget = _Budget(file_size, path, "storage bytes")
            tensor_budget = _Budget(file_size, path, "tensor bytes")
            storages: dict[str, np.ndarray] = {}
            done: dict[int, Any] = {}   # id -> converted: shared objects converted once

            def storage_of(ref: _StorageRef) -> np.ndarray:
                if ref.key not in storages:
                    storages[ref.key] = _read_storage(zf, prefix, ref, order == b"big", path,
                                                      storage_budget)
                return storages[ref.key]

            def convert(obj):
                if id(obj) in done:
                    return done[id(obj)]
                if isinstance(obj, _TensorRef):
                    out = _materialise(obj, storage_of(obj.storage), path, tensor_budget)
                elif isinstance(obj, _StorageRef):
                    s = storage_of(obj)
                    tensor_budget.take(s.nbytes, f"storage {obj.key!r}")
                    out = s.copy()
                elif isinstance(obj, dict):
                    out = done[id(obj)] = {}
                    for k, v in obj.items():
                        out[k] = convert(v)
                elif isinstance(obj, list):
                    out = done[id(obj)] = []
                    out.extend(convert(v) for v in obj)
                elif isinstance(obj, tuple):
                    out = tuple(convert(v) for v in obj)
                else:
                    return obj
                done[id(obj)] = out
                return out

            return convert(tree)
    except RecursionError:
        raise TorchCheckpointError(f"{path}: the checkpoint's objects nest too deeply") from None
    except RuntimeError as e:  # zipfile: an encrypted record
        raise TorchCheckpointError(f"{path}: {e}; PyTorch checkpoints are not encrypted") \
            from None
    except (MemoryError, OverflowError) as e:
        raise TorchCheckpointError(f"{path}: the checkpoint declares a size that cannot be "
                                   f"allocated ({type(e).__name__}), so it is corrupt or "
                                   f"hostile") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise TorchCheckpointError(f"{path} is truncated or not a PyTorch zip checkpoint "
                                   f"({e})") from e
