"""Attribute directions in the file formats of the peer tools, read and written safely.

InterFaceGAN boundary (`train_boundary` + `np.save`): one attribute per `.npy`, float32
[1, d], a unit vector (the linear SVM's normal), e.g. `stylegan_ffhq_age_w_boundary.npy`.
Read with `allow_pickle=False` after checking the header against the file size (a header may
not make the reader allocate more than the file holds).

TL-GAN feature directions (`script_label_regression.py`): `pickle.dump({'direction': D,
'name': names}, f)` with D a float ndarray [d, k] (one column per attribute, normalised) and
names the k CelebA attribute names. Read through the tflib readers' NumPy allow-list (no other
global; nothing from the file runs); written with the NumPy 1 spelling of the array
reconstruction (`numpy.core.multiarray._reconstruct`), which every NumPy reads, protocol 3
(Python 3.6's default, what TL-GAN wrote).
"""
from __future__ import annotations

import io
import math
import os
import pickle
import stat
from pathlib import Path
from typing import Sequence

import numpy as np

from tlgan_jax.files import read_npy_header
from tlgan_jax.weights.safe_pickle import NUMPY_GLOBALS, as_array, restricted_loads

try:  # NumPy 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core import multiarray as _multiarray

MAX_DIRECTION_BYTES = 1 << 30          # no direction file of ours or theirs comes close


class PeerAxesError(ValueError):
    """A file is not an InterFaceGAN boundary / TL-GAN feature-direction file."""


def _read_regular(path: str | os.PathLike, what: str) -> bytes:
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PeerAxesError(f"{path}: not a regular file (expected a {what})")
    if st.st_size > MAX_DIRECTION_BYTES:
        raise PeerAxesError(f"{path}: {st.st_size} bytes is too large for a {what}")
    with open(path, "rb") as f:
        return f.read()


def read_interfacegan_boundary(path: str | os.PathLike) -> np.ndarray:
    """An InterFaceGAN boundary file -> its direction [d] float32 (as stored; [1, d] or [d])."""
    what = "InterFaceGAN boundary (.npy, float [1, d])"
    data = _read_regular(path, what)
    f = io.BytesIO(data)
    try:
        shape, fortran, dtype = read_npy_header(f)
    except Exception as e:          # NumPy's header parser raises several kinds on bad input
        raise PeerAxesError(f"{path}: not an {what}: {type(e).__name__}: {e}") from None
    if dtype.kind != "f" or dtype.hasobject or len(shape) not in (1, 2) or \
            (len(shape) == 2 and shape[0] != 1) or shape[-1] < 1:
        raise PeerAxesError(f"{path}: expected a float array of shape [1, d], got dtype "
                            f"{dtype} and shape {tuple(shape)}")
    if f.tell() + math.prod(shape) * dtype.itemsize != len(data):
        raise PeerAxesError(f"{path}: the header declares {tuple(shape)} {dtype} but the file "
                            f"holds {len(data) - f.tell()} data bytes (truncated or corrupt)")
    arr = np.frombuffer(data, dtype, offset=f.tell()).reshape(shape[-1])
    if not np.all(np.isfinite(arr)) or not np.any(arr):
        raise PeerAxesError(f"{path}: the boundary is zero or not finite")
    return arr.astype(np.float32)


def write_interfacegan_boundary(path: str | os.PathLike, direction) -> Path:
    """Write one direction [d] as InterFaceGAN does: np.save of float32 [1, d]."""
    path = Path(path)
    d = np.asarray(direction, np.float32).reshape(1, -1)
    with open(path, "wb") as f:
        np.save(f, d, allow_pickle=False)
    return path


def read_tlgan_directions(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """A TL-GAN feature_direction_*.pkl -> (directions [d, k] float32, k names)."""
    what = "TL-GAN feature-direction pickle"
    data = _read_regular(path, what)
    obj = restricted_loads(data, NUMPY_GLOBALS, what=os.fspath(path))
    if not isinstance(obj, dict) or "direction" not in obj or "name" not in obj:
        kind = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise PeerAxesError(f"{path}: expected TL-GAN's dict {{'direction': [d, k] array, "
                            f"'name': k names}}, got {kind}")
    direction, names = obj["direction"], obj["name"]
    array = as_array(direction)
    if array is None or array.dtype.kind != "f" or array.ndim != 2:
        raise PeerAxesError(f"{path}: 'direction' must be a float array [d, k], got "
                            f"{type(direction).__name__} {getattr(array, 'shape', '')}")
    direction = array
    if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
        raise PeerAxesError(f"{path}: 'name' must be a list of strings")
    if len(names) != direction.shape[1]:
        raise PeerAxesError(f"{path}: {len(names)} names for {direction.shape[1]} direction "
                            f"columns")
    return np.asarray(direction, np.float32), list(names)


class _NumPy1Pickler(pickle._Pickler):
    """The pure-Python pickler, naming NumPy's array reconstruction by its NumPy 1 path."""

    _NP1 = {id(obj): name for name, obj in (
        ("_reconstruct", _multiarray._reconstruct),
        ("scalar", _multiarray.scalar))}

    def save_global(self, obj, name=None):
        np1 = self._NP1.get(id(obj))
        if np1 is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"numpy.core.multiarray\n{np1}\n".encode())
        self.memoize(obj)


def write_tlgan_directions(path: str | os.PathLike, directions, names: Sequence[str]) -> Path:
    """Write {'direction': [d, k] float64 array, 'name': [names]} as TL-GAN does (pickle)."""
    path = Path(path)
    d = np.array(directions, np.float64)
    buf = io.BytesIO()
    _NumPy1Pickler(buf, protocol=3).dump({"direction": d, "name": [str(n) for n in names]})
    path.write_bytes(buf.getvalue())
    return path
