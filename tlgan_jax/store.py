"""(z, y) shards on disk with a manifest; crash-safe and resumable.

Layout of a run directory:
  manifest.json        the run's configuration (generator, extractors, seed, num, shard
                       size, ...) and, once finished, "complete": true and the shard list
  shard_000000.npz     z [rows, d] and y [rows, k] of shard 0, and so on
A shard is written to a hidden temporary file and renamed into place, so a file named
shard_*.npz is always complete; leftovers of a killed writer (.*.tmp-*) are never read.
Reopening a directory with a different configuration is an error (nothing is overwritten).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from absl import logging

MANIFEST = "manifest.json"
_RUN_KEYS = ("generator", "latent_dim", "generator_dtype", "extractors", "attributes", "seed",
             "num", "shard_size")
_LATER_KEYS = ("generator_dtype",)   # absent from manifests written before it was recorded


@dataclasses.dataclass(frozen=True)
class Samples:
    """Latent/label pairs: z [N, d] float32, y [N, k] float32, one column per attribute."""
    z: np.ndarray
    y: np.ndarray
    names: tuple[str, ...]
    binary: tuple[bool, ...]
    metadata: dict

    def column(self, name: str) -> np.ndarray:
        return self.y[:, self.names.index(name)]


class ShardStoreError(RuntimeError):
    """A run directory holds data of another configuration or a damaged shard."""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_npz(path: Path, **arrays) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardStore:
    """Shards of one sampling run in `root`; `meta` must contain the keys of `_RUN_KEYS`."""

    def __init__(self, root: str | Path, meta: dict):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta)
        path = self.root / MANIFEST
        if path.exists():
            old = json.loads(path.read_text())
            diff = {k: (old.get(k), meta.get(k)) for k in _RUN_KEYS
                    if old.get(k) != meta.get(k) and (k in old or k not in _LATER_KEYS)}
            if diff:
                raise ShardStoreError(
                    f"{self.root} holds samples of another run (differs in "
                    + ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
                    + "); use another directory or delete it. Nothing was overwritten.")
        else:
            _atomic_write_bytes(path, json.dumps(dict(meta, complete=False), indent=1).encode())

    def path(self, i: int) -> Path:
        return self.root / f"shard_{i:06d}.npz"

    def rows(self, i: int) -> int:
        return min(self.meta["shard_size"], self.meta["num"] - i * self.meta["shard_size"])

    def has(self, i: int) -> bool:
        """True if shard i is on disk and readable with the expected shapes."""
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
        try:
            with np.load(p, allow_pickle=False) as f:
                z, y = f["z"], f["y"]
        except Exception as e:
            raise ShardStoreError(f"shard {p} is unreadable ({type(e).__name__}: {e})") from e
        want_z = (self.rows(i), self.meta["latent_dim"])
        want_y = (self.rows(i), len(self.meta["attributes"]))
        if z.shape != want_z or y.shape != want_y:
            raise ShardStoreError(f"shard {p} has shapes z{z.shape} y{y.shape}, expected "
                                  f"z{want_z} y{want_y}")
        return z, y

    def write(self, i: int, z: np.ndarray, y: np.ndarray) -> None:
        _atomic_write_npz(self.path(i), z=np.asarray(z, np.float32), y=np.asarray(y, np.float32))

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
            _atomic_write_bytes(self.root / MANIFEST, json.dumps(manifest, indent=1).encode())
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
    meta = json.loads(path.read_text())
    if not meta.get("complete"):
        raise ShardStoreError(f"{root}: the run is not complete; run it again with the same "
                              f"settings to resume it")
    z, y = ShardStore(root, meta).load_all()
    return Samples(z, y, tuple(meta["attributes"]), tuple(meta["binary"]), meta)
