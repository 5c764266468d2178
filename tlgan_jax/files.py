"""Files written and read safely: whole or not at all, one writer at a time where asked, and
a bounded reader for .npz files that come from outside.

  atomic_open(path)        write to `.<name>.tmp-<pid>-<random>` beside `path`, then rename it
                           onto `path` (POSIX rename is atomic: a reader sees the old file or
                           the new one, never a partial one); on an error the temporary file
                           is removed and `path` is untouched. Leftovers of a killed writer
                           match `.*.tmp-*` and are never read as results.
  atomic_write(path, data)     bytes or text;   write_json(path, obj): `jsonable(obj)` as
                           strict JSON (no NaN tokens);   write_npz(path, **arrays): np.savez.
  create_exclusive(path, data) atomically create `path` only if absent (of two racing
                           creators exactly one wins).
  file_lock(path)          exclusive inter-process lock on `path`.lock (fcntl.flock; blocks).
  DirectoryLock            the same lock, non-blocking and held until released (a writer's
                           claim on a directory).
  read_npz(path, limits)   treats the file as hostile: only the members asked for are read,
                           each member's size (from the zip central directory) must fit the
                           caller's limit and equal its .npy header's shape × itemsize before
                           anything is allocated, object arrays are refused, and every failure
                           is an `NpzError` naming the file.
  jsonable(x)              plain Python data for JSON (arrays to lists, non-finite to None).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import math
import os
import secrets
import stat
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

import numpy as np

_NPY_MAGIC = b"\x93NUMPY"


class NpzError(ValueError):
    """A .npz file that is not what the reader expects. str(): "PATH: REASON"; `reason` alone;
    `pickled`: the file holds pickled Python objects (never read)."""

    def __init__(self, path: Path, reason: str, pickled: bool = False):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.pickled = path, reason, pickled


def _tmp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def _write_synced(path: Path, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o644)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """`open(tmp, mode)` for writing; on a clean exit the file is flushed, synced and renamed
    onto `path` (parent directories are created)."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open: mode must be a write mode ('w' or 'wb'), got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
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


def create_exclusive(path: str | Path, data: bytes) -> bool:
    """Create `path` holding `data` only if it does not exist, atomically: the data is written
    to a temporary file and hard-linked to `path` (link fails if `path` exists), so no reader
    ever sees a partial file and of two racing creators exactly one wins. Returns True when
    this call created it, False when it already existed. Where hard links are not supported
    it falls back to O_CREAT|O_EXCL (still exclusive)."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        _write_synced(tmp, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                               errno.EMLINK, errno.ENOSYS):
                raise
        try:
            _write_synced(path, data, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


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


class DirectoryLock:
    """A non-blocking exclusive lock (fcntl.flock) on the file `path`, held until `release()`
    or the process ends (a killed holder frees it). `DirectoryLock.acquire(path)` returns the
    lock, or None when another process holds it."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def acquire(cls, path: str | Path) -> DirectoryLock | None:
        path = Path(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return cls(fd, path)

    @staticmethod
    def holder(path: str | Path) -> str:
        """The pid written by the holder, or '?'."""
        try:
            return Path(path).read_text()[:20].strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)                    # closing the descriptor drops the flock
            self.fd = -1

    def __del__(self):
        self.release()


def read_npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the .npy at `stream` (versions 1.0 to 3.0; the stream is
    left at the data). NumPy's parser raises several exception kinds on bad input; callers
    catch Exception and name the file."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f"unsupported .npy version {version}")


def zip_member_problem(info: zipfile.ZipInfo, archive_size: int) -> str | None:
    """Why a zip member of a file from outside must not be read, or None. Only stored and
    deflate members (all that np.savez and torch.save write) are read: zipfile inflates bz2
    and lzma members without an output bound, so a few hundred bytes could take GBs; and no
    member may claim more compressed bytes than the whole archive has (zipfile reads that
    many at once)."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return (f"is compressed with zip method {info.compress_type}; only stored and deflate "
                f"members are read (NumPy and PyTorch write no other)")
    if info.compress_size > archive_size:
        return (f"claims {info.compress_size} compressed bytes, more than the whole archive "
                f"({archive_size})")
    return None


def read_npz(path: str | Path, limits: Mapping[str, int], *, what: str = "an .npz file",
             required: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Read the members `limits` names (key -> the most bytes its .npy may hold) from an
    .npz written by np.savez / np.savez_compressed; other members are never read. Members
    missing from the file are left out of the result unless listed in `required` (default:
    every key). Raises FileNotFoundError, or NpzError naming the file and the problem."""
    path = Path(path)
    required = tuple(limits) if required is None else required
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except OSError as e:
        raise NpzError(path, f"cannot read it: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise NpzError(path, f"not a regular file; expected {what}")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head.startswith(_NPY_MAGIC):
                raise NpzError(path, f"a single .npy array, not {what} (an .npz archive)")
            if not head.startswith(b"PK"):
                raise NpzError(path, f"not {what}: it is not an .npz (zip) archive")
            f.seek(0)
            try:
                archive = zipfile.ZipFile(f)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
                raise NpzError(path, f"not {what}: the archive is truncated or damaged "
                                     f"({e})") from None
            with archive:
                members = {info.filename: info for info in archive.infolist()}
                missing = [k for k in required if f"{k}.npy" not in members]
                if missing:
                    raise NpzError(path, f"not {what}: missing key(s) {missing}")
                size = os.fstat(f.fileno()).st_size
                return {k: _read_member(archive, members[f"{k}.npy"], limit, path, size)
                        for k, limit in limits.items() if f"{k}.npy" in members}
    except NpzError:
        raise
    except OSError as e:
        raise NpzError(path, f"cannot read it: {e}") from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int,
                 path: Path, archive_size: int) -> np.ndarray:
    name = info.filename
    if info.file_size > limit:
        raise NpzError(path, f"member {name} holds {info.file_size} bytes; at most {limit} "
                             f"are expected")
    problem = zip_member_problem(info, archive_size)
    if problem:
        raise NpzError(path, f"member {name} {problem}")
    try:
        with archive.open(info) as fp:
            header = fp.read(min(info.file_size, 65536 + 16))
            stream = io.BytesIO(header)
            shape, fortran, dtype = read_npy_header(stream)
            if dtype.hasobject:
                raise NpzError(path, f"member {name} holds Python objects (pickled data), "
                                     f"which are never read", pickled=True)
            if any(n < 0 for n in shape) or dtype.itemsize == 0:
                raise ValueError(f"its header declares shape {shape} of {dtype}")
            offset = stream.tell()
            nbytes = math.prod(shape) * dtype.itemsize
            if offset + nbytes != info.file_size:
                raise ValueError(f"its header declares shape {shape} of {dtype} "
                                 f"({nbytes} bytes) but it holds {info.file_size - offset}")
            data = header[offset:] + fp.read(nbytes - (len(header) - offset))
    except NpzError:
        raise
    except (ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError,
            NotImplementedError, RuntimeError) as e:
        raise NpzError(path, f"member {name} is not a valid .npy array: {e}") from None
    if len(data) != nbytes:
        raise NpzError(path, f"member {name} is truncated ({len(data)} of {nbytes} bytes)")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    return array.copy()
