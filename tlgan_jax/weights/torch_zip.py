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
from the file is ever executed. Tensors come back as owned, C-contiguous numpy arrays,
OrderedDicts as plain dicts.
"""
from __future__ import annotations

import collections
import os
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from tlgan_jax.weights.safe_pickle import restricted_loads


class TorchCheckpointError(ValueError):
    """The file is not a readable PyTorch zip checkpoint (bad zip, missing or short record)."""


class _StorageType:
    """Stand-in for `torch.<Name>Storage` in the pickle: only says which dtype the bytes hold."""

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __repr__(self):
        return f"torch.{self.name}"


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexDoubleStorage": np.complex128,
    "ComplexFloatStorage": np.complex64, "UntypedStorage": np.uint8,
}
_STORAGE_TYPES = {name: _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()}


class _StorageRef:
    """A storage named by the pickle; its bytes are read from the zip after unpickling."""

    def __init__(self, storage_type: _StorageType, key: str, numel: int):
        self.storage_type, self.key, self.numel = storage_type, key, numel


class _TensorRef:
    """A tensor named by the pickle: a strided view of a `_StorageRef`, materialised later."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise TypeError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)
        if len(self.size) != len(self.stride):
            raise ValueError(f"tensor size {self.size} and stride {self.stride} differ in rank")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
}


def _persistent_load(pid) -> _StorageRef:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
        raise ValueError(f"unsupported persistent id {pid!r} (expected ('storage', type, key, "
                         f"location, numel))")
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, _StorageType):
        raise ValueError(f"persistent id names {storage_type!r}, not a torch storage type")
    return _StorageRef(storage_type, str(key), int(numel))


def _find_prefix(names: list[str], path) -> str:
    pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pkls:
        raise TorchCheckpointError(f"{path}: no data.pkl record in the zip, so it is not a "
                                   f"PyTorch zip checkpoint")
    return min(pkls, key=len)[: -len("data.pkl")]


def _read_storage(zf: zipfile.ZipFile, prefix: str, ref: _StorageRef, big_endian: bool,
                  path) -> np.ndarray:
    name = f"{prefix}data/{ref.key}"
    try:
        raw = zf.read(name)
    except KeyError:
        raise TorchCheckpointError(f"{path}: storage record {name!r} is missing") from None
    dtype = ref.storage_type.dtype
    need = ref.numel * dtype.itemsize
    if len(raw) < need:
        raise TorchCheckpointError(f"{path}: storage record {name!r} has {len(raw)} bytes, "
                                   f"the pickle declares {ref.numel} x {ref.storage_type} "
                                   f"= {need} bytes")
    storage = np.frombuffer(raw, dtype=dtype, count=ref.numel)
    return storage.byteswap() if big_endian and dtype.itemsize > 1 else storage


def _materialise(t: _TensorRef, storage: np.ndarray, path) -> np.ndarray:
    if any(s < 0 for s in t.size) or any(s < 0 for s in t.stride) or t.offset < 0:
        raise TorchCheckpointError(f"{path}: tensor with negative size/stride/offset "
                                   f"{t.size}/{t.stride}/{t.offset}")
    if 0 in t.size:
        return np.zeros(t.size, storage.dtype)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if last >= storage.size:
        raise TorchCheckpointError(
            f"{path}: storage {t.storage.key!r} holds {storage.size} elements but a tensor of "
            f"size {t.size}, stride {t.stride}, offset {t.offset} needs {last + 1}")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[t.offset:], shape=t.size,
                                           strides=[s * item for s in t.stride], writeable=False)
    return np.array(view, order="C", copy=True)


def load_torch_zip(path: str | os.PathLike) -> Any:
    """Load a `torch.save` zip checkpoint: nested dicts/lists of numpy arrays (no torch needed).

    Raises TorchCheckpointError (a ValueError) for a file that is not, or not a whole, zip
    checkpoint, and safe_pickle's UnsafePickleError / CorruptPickleError for a hostile or
    broken data.pkl.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            prefix = _find_prefix(names, path)
            order = (zf.read(prefix + "byteorder").strip()
                     if prefix + "byteorder" in names else b"little")
            if order not in (b"little", b"big"):
                raise TorchCheckpointError(f"{path}: unknown byteorder record {order!r}")
            tree = restricted_loads(zf.read(prefix + "data.pkl"), _ALLOWED, _persistent_load,
                                    what=f"PyTorch checkpoint {os.fspath(path)}")
            storages: dict[str, np.ndarray] = {}

            def convert(obj):
                if isinstance(obj, _TensorRef):
                    key = obj.storage.key
                    if key not in storages:
                        storages[key] = _read_storage(zf, prefix, obj.storage,
                                                      order == b"big", path)
                    return _materialise(obj, storages[key], path)
                if isinstance(obj, _StorageRef):
                    return _read_storage(zf, prefix, obj, order == b"big", path).copy()
                if isinstance(obj, dict):
                    return {k: convert(v) for k, v in obj.items()}
                if isinstance(obj, (list, tuple)):
                    return type(obj)(convert(v) for v in obj)
                return obj

            return convert(tree)
    except (zipfile.BadZipFile, EOFError) as e:
        raise TorchCheckpointError(f"{path} is truncated or not a PyTorch zip checkpoint "
                                   f"({e})") from e
