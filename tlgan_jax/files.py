"""Files written safely: whole or not at all, and one writer at a time where asked.

  atomic_open(path)        write to `.<name>.tmp-<pid>-<random>` beside `path`, then rename it
                           onto `path` (POSIX rename is atomic: a reader sees the old file or
                           the new one, never a partial one); on an error the temporary file
                           is removed and `path` is untouched. Leftovers of a killed writer
                           match `.*.tmp-*` and are never read as results.
  atomic_write(path, data)     bytes or text;   write_json(path, obj): `jsonable(obj)` as
                           strict JSON (no NaN tokens);   write_npz(path, **arrays): np.savez.
  file_lock(path)          exclusive inter-process lock on `path`.lock (fcntl.flock; blocks).
  jsonable(x)              plain Python data for JSON (arrays to lists, non-finite to None).
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """`open(tmp, mode)` for writing; on a clean exit the file is flushed, synced and renamed
    onto `path` (parent directories are created)."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open: mode must be a write mode ('w' or 'wb'), got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` (bytes, or text as UTF-8) to exactly `path`, atomically; returns it."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1,
               sort_keys: bool = False) -> Path:
    """`jsonable(obj)` as strict JSON (non-finite numbers become null), atomically."""
    text = json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)
    return atomic_write(path, text + ("\n" if indent is not None else ""))


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """np.savez(**arrays) to exactly `path` (no `.npz` appended), atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write(path, buf.getvalue())


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive inter-process lock on `path`.lock while inside (blocks until free)."""
    lock = Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def jsonable(x: Any) -> Any:
    """Plain Python data for JSON: arrays to lists, numpy/jax scalars to numbers, non-finite
    floats to None, paths to strings."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic) or hasattr(x, "__array__"):
        return jsonable(np.asarray(x).tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x
