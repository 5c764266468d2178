"""(z, y) shards on disk with a manifest; crash-safe, resumable, and never mixed across runs.

Layout of a run directory:
  manifest.json        the run's configuration (generator, extractors, seed, num, shard
                       size, ...) and, once finished, "complete": true and the shard list
  shard_000000.npz     z [rows, d] and y [rows, k] of shard 0, with the run's hash, the
                       shard's index and a checksum of z and y; and so on
  .writer-P-of-N.lock  held (flock) by the sampler process P of N writing the directory
Every file is written to a hidden temporary name and renamed (the manifest: hard-linked, so
it is created only if absent), so a file named shard_*.npz or manifest.json is complete.

Trust rules: the manifest is created atomically and exclusively (two samplers starting
together cannot both create it; the loser compares its configuration with the winner's);
a second sampler on a directory being written gets a ShardStoreError naming the holder; a
shard is reused only when its run hash (sha256 of the run configuration, `run_hash`) is this
run's, its index is right and the checksum of its data matches; shards without a manifest
are never reused (error), and shards of an older format (no hash) are recomputed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
from absl import logging

from tlgan_jax.files import (
    DirectoryLock,
    NpzError,
    create_exclusive,
    read_npz,
    write_json,
    write_npz,
)

MANIFEST = "manifest.json"
SHARD_FORMAT = "tlgan_jax.shard/2"
# What makes two runs the same run: shard i holds the latents drawn from (seed, i) and their
# labels, so it depends on these and not on how many samples the run asks for. A run grown or
# shrunk (another `num`) in its directory reuses every complete shard it shares.
_RUN_KEYS = ("generator", "latent_dim", "generator_dtype", "extractors", "attributes", "seed",
             "shard_size")
_LATER_KEYS = ("generator_dtype",)   # absent from manifests written before it was recorded
_MAX_MANIFEST_BYTES = 16 << 20


@dataclasses.dataclass(frozen=True)
class Samples:
    """Latent/label pairs: z [N, d] float32, y [N, k] float32, one column per attribute; for
    style-based generators also w [N, w_dim] = the mapping of z (not stored in the shards: a
    deterministic function of z)."""
    z: np.ndarray
    y: np.ndarray
    names: tuple[str, ...]
    binary: tuple[bool, ...]
    metadata: dict
    w: np.ndarray | None = None

    def column(self, name: str) -> np.ndarray:
        return self.y[:, self.names.index(name)]


class ShardStoreError(RuntimeError):
    """A run directory holds data of another configuration, a damaged shard or manifest, or
    is being written by another sampler."""


def run_hash(meta: dict) -> str:
    """sha256 of the run configuration (the `_RUN_KEYS` of `meta`, as sorted JSON)."""
    config = {k: meta.get(k) for k in _RUN_KEYS}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def data_checksum(z: np.ndarray, y: np.ndarray) -> str:
    """sha256 of a shard's content: shapes, then the float32 bytes of z and y."""
    h = hashlib.sha256()
    for a in (z, y):
        a = np.ascontiguousarray(a, np.float32)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_manifest(path: Path) -> dict:
    """The JSON object in `path`; ShardStoreError naming the file when it is not one."""
    try:
        size = path.stat().st_size
        if size > _MAX_MANIFEST_BYTES:
            raise ShardStoreError(f"{path} is {size} bytes, too large for a manifest; the "
                                  f"directory is not a sampling run: use another directory")
        meta = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:   # JSONDecodeError, bad UTF-8, huge ints
        raise ShardStoreError(f"{path} is empty or damaged (not a JSON manifest: {e}); "
                              f"delete the run directory or use another one") from None
    except OSError as e:
        raise ShardStoreError(f"cannot read {path}: {e}") from None
    if not isinstance(meta, dict):
        raise ShardStoreError(f"{path} is damaged (a JSON {type(meta).__name__}, not an "
                              f"object); delete the run directory or use another one")
    return meta


def _check_finished_manifest(meta: dict, path: Path) -> None:
    def ok(k, kind):
        return isinstance(meta.get(k), kind) and not isinstance(meta.get(k), bool)
    bad = [k for k in ("latent_dim", "num", "shard_size", "num_shards") if not ok(k, int)]
    bad += [k for k in ("attributes", "binary") if not ok(k, list)]
    if bad or meta["shard_size"] < 1 or meta["num"] < 1 or meta["latent_dim"] < 1 \
            or meta["num_shards"] != -(-meta["num"] // meta["shard_size"]):
        raise ShardStoreError(f"{path} is damaged (fields {bad or ['num_shards']} missing or "
                              f"inconsistent); run the sampler again in a new directory")


class ShardStore:
    """Shards of one sampling run in `root`; `meta` must contain the keys of `_RUN_KEYS`.

    writer=True (sampling): takes the directory's writer lock for process `process` of
    `processes` (released by `close()` or when the process ends) and creates or checks the
    manifest. writer=False: reads a finished run."""

    def __init__(self, root: str | Path, meta: dict, *, writer: bool = True,
                 process: int = 0, processes: int = 1):
        self.root = Path(root)
        self.meta = dict(meta)
        self.hash = run_hash(self.meta)
        self._lock = None
        if not writer:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f".writer-{process}-of-{processes}.lock"
        self._lock = DirectoryLock.acquire(lock_path)
        if self._lock is None:
            raise ShardStoreError(
                f"{self.root} is being written by another sampler (process "
                f"{DirectoryLock.holder(lock_path)}); wait for it to finish or use another "
                f"directory")
        try:
            self._open_manifest()
        except BaseException:
            self.close()
            raise

    def _open_manifest(self) -> None:
        path = self.root / MANIFEST
        if not path.exists():
            orphans = sorted(p.name for p in self.root.glob("shard_*.npz"))
            if orphans:
                raise ShardStoreError(
                    f"{self.root} holds shard files ({orphans[0]}, … {len(orphans)} in all) "
                    f"but no {MANIFEST}, so nothing says which run they belong to; they are "
                    f"never reused: delete them or use another directory")
            manifest = json.dumps(dict(self.meta, complete=False), indent=1).encode()
            if create_exclusive(path, manifest):
                return
        old = read_manifest(path)                # created by an earlier or a concurrent run
        meta = self.meta
        diff = {k: (old.get(k), meta.get(k)) for k in _RUN_KEYS
                if old.get(k) != meta.get(k) and (k in old or k not in _LATER_KEYS)}
        if diff:
            raise ShardStoreError(
                f"{self.root} holds samples of another run (differs in "
                + ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
                + "); use another directory or delete it. Nothing was overwritten.")
        if old.get("num") != meta["num"]:          # the same run, grown or shrunk
            logging.info("tlgan_jax: %s: %d samples there, %d asked for: the same run "
                         "(seed %s, shard size %d), so its complete shards are reused",
                         self.root, old.get("num"), meta["num"], meta["seed"],
                         meta["shard_size"])
            write_json(path, dict(meta, complete=False))

    def close(self) -> None:
        """Release the writer lock (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def path(self, i: int) -> Path:
        return self.root / f"shard_{i:06d}.npz"

    def rows(self, i: int) -> int:
        return min(self.meta["shard_size"], self.meta["num"] - i * self.meta["shard_size"])

    def has(self, i: int) -> bool:
        """True if shard i is on disk, of this run, intact and of the expected shapes."""
        p = self.path(i)
        if not p.exists():
            return False
        try:
            self._read(i)
            return True
        except ShardStoreError as e:
            logging.warning("tlgan_jax: %s; recomputing it", e)
            return False

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.path(i)
        want_z = (self.rows(i), self.meta["latent_dim"])
        want_y = (self.rows(i), len(self.meta["attributes"]))
        slack = 4096                                     # .npy headers
        limits = {"z": 4 * want_z[0] * want_z[1] + slack, "y": 4 * want_y[0] * want_y[1] + slack,
                  "format": slack, "run": slack, "shard": slack, "checksum": slack}
        try:
            f = read_npz(p, limits, what="a shard", required=("z", "y"))
        except (NpzError, FileNotFoundError) as e:
            raise ShardStoreError(f"shard {p} is unreadable ({e})") from None
        if "run" not in f or "checksum" not in f or "shard" not in f \
                or "format" not in f or str(f["format"]) != SHARD_FORMAT:
            raise ShardStoreError(f"shard {p} was written by an older version of tlgan_jax "
                                  f"(another shard format, or no run hash or checksum), so it "
                                  f"is not trusted")
        if f["run"].shape != () or str(f["run"]) != self.hash:
            raise ShardStoreError(f"shard {p} belongs to another run (its run hash is not "
                                  f"this configuration's)")
        if f["shard"].shape != () or f["shard"].dtype.kind not in "iu" or int(f["shard"]) != i:
            raise ShardStoreError(f"shard {p} holds another shard's data")
        z, y = f["z"], f["y"]
        if z.shape != want_z or y.shape != want_y or z.dtype != np.float32 \
                or y.dtype != np.float32:
            raise ShardStoreError(f"shard {p} has shapes z{z.shape} y{y.shape}, expected "
                                  f"z{want_z} y{want_y} (float32)")
        if str(f["checksum"]) != data_checksum(z, y):
            raise ShardStoreError(f"shard {p} is damaged (its data do not match its checksum)")
        return z, y

    def write(self, i: int, z: np.ndarray, y: np.ndarray) -> None:
        z, y = np.asarray(z, np.float32), np.asarray(y, np.float32)
        write_npz(self.path(i), z=z, y=y, format=np.array(SHARD_FORMAT), run=np.array(self.hash),
                  shard=np.array(i, np.int64), checksum=np.array(data_checksum(z, y)))

    def finish(self) -> None:
        """Wait for every process, then (process 0) mark the run complete in the manifest."""
        import jax
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("tlgan_jax.store.finish")
        if jax.process_index() == 0:
            n = self.meta["num_shards"]
            missing = [i for i in range(n) if not self.path(i).exists()]
            if missing:
                raise ShardStoreError(f"{self.root}: shards {missing[:10]} are missing at the end")
            manifest = dict(self.meta, complete=True,
                            shards=[self.path(i).name for i in range(n)])
            write_json(self.root / MANIFEST, manifest)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("tlgan_jax.store.finished")

    def load_all(self) -> tuple[np.ndarray, np.ndarray]:
        parts = [self._read(i) for i in range(self.meta["num_shards"])]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_samples(root: str | Path):
    """Samples of a finished run directory."""
    root = Path(root)
    path = root / MANIFEST
    if not path.exists():
        raise ShardStoreError(f"{root} has no {MANIFEST}: not a sampling run directory")
    meta = read_manifest(path)
    if not meta.get("complete"):
        raise ShardStoreError(f"{root}: the run is not complete; run it again with the same "
                              f"settings to resume it")
    _check_finished_manifest(meta, path)
    z, y = ShardStore(root, meta, writer=False).load_all()
    return Samples(z, y, tuple(meta["attributes"]), tuple(meta["binary"]), meta)
