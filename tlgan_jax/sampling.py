"""Step 3 of TL-GAN: sample z, render G(z), label with every extractor F; images never leave
the device and are never stored.

    y = concat_j F_j(G(z))      one jitted function, data-parallel over the local devices.

On CPU (the default there, chosen by measurement, see docs/cpu_notes.md) the labeller is
compiled for speed without changing its maths: each device labels its rows in micro-batches
of `CPU_MICRO_BATCH` inside one executable (`lax.map`: a layer's activations stay in cache),
XLA:CPU's YNNPACK fusions are off for this executable only (its own convolutions are faster
on these small nets), and with one CPU device per core (`runtime.configure`) each device's
shard runs single-threaded. Labels equal the plain `jax.jit(label)`'s to float rounding.

Determinism: the latents of shard i are `normal(fold_in(key, i), [shard_size, d])`, so a seed
gives the same (z, y) whatever the batch size, the number of devices or of hosts (shards are
dealt round-robin to `jax.distributed` processes). Shards are streamed to disk (`store.py`)
and a killed run resumes from its last complete shard. For style-based generators the samples
also carry w = mapping(z) (`Samples.w`), for axes in W.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from tlgan_jax import runtime
from tlgan_jax import store as shard_io
from tlgan_jax.extractors import Extractor, as_extractor, stack_scores
from tlgan_jax.generators import Generator
from tlgan_jax.store import Samples

DEFAULT_SHARD_SIZE = 4096
CPU_MICRO_BATCH = 32        # rows per step of a CPU device's lax.map (measured; docs/cpu_notes.md)
# XLA options of the CPU labeller's executable: YNNPACK fusions off (XLA's own convolutions are
# 1.5-2x faster on these small nets); applied only where this jaxlib knows the option.
CPU_LABELLER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def shard_latents(key: jax.Array, shard_index: int, shard_size: int, latent_dim: int) -> jax.Array:
    """z for shard i: N(0, I) draws from fold_in(key, i); shape [shard_size, latent_dim]."""
    return jax.random.normal(jax.random.fold_in(key, shard_index), (shard_size, latent_dim),
                             jnp.float32)


def make_labeller(gen: Generator, extractors: Sequence[Extractor]):
    """Pure function (params, z) -> y with params = (gen.params, [ext.params...])."""
    extractors = tuple(extractors)

    def label(params, z):
        gen_params, ext_params = params
        return stack_scores(extractors, ext_params, gen.apply(gen_params, z))

    params = (gen.params, [e.params for e in extractors])
    return label, params


def micro_batched(fn, rows: int):
    """fn(params, x) computed `rows` rows of x at a time in one `lax.map` (x's row count must
    be a multiple of `rows`); same values, smaller live activations."""
    def chunked(params, x):
        n = x.shape[0]
        y = jax.lax.map(lambda xc: fn(params, xc), x.reshape(n // rows, rows, *x.shape[1:]))
        return y.reshape(n, *y.shape[2:])
    return chunked


def labeller_options(devices: Sequence[jax.Device]) -> dict:
    """XLA compiler options for the labeller on `devices` (module doc): on CPU, YNNPACK fusions
    off, and single-threaded per device when there is a device per usable core."""
    if any(d.platform != "cpu" for d in devices):
        return {}
    options = dict(CPU_LABELLER_OPTIONS)
    if len(devices) > 1 and len(devices) >= runtime.usable_cores():
        options["xla_cpu_multi_thread_eigen"] = False
    return runtime.supported_compiler_options(options)


class RowParallel:
    """fn(params, x) -> y, row-wise, compiled data-parallel over `devices` (default: the local
    ones): x's rows are split over the devices (shard_map), each device runs its rows in
    micro-batches (`micro_batched`) with `labeller_options`. Call `self(x)` with exactly
    `batch_size` rows: batch_size is rounded up to a multiple of devices × micro_batch.

    micro_batch: rows per `lax.map` step on each device; "auto" = `CPU_MICRO_BATCH` on CPU,
    none elsewhere; None = off (also when a device gets no more than one micro-batch).
    """

    def __init__(self, fn, params, batch_size: int, *,
                 devices: Sequence[jax.Device] | None = None,
                 micro_batch: int | str | None = "auto"):
        devices = list(devices) if devices is not None else jax.local_devices()
        self.mesh = Mesh(np.array(devices), ("data",))
        if micro_batch == "auto":
            micro_batch = CPU_MICRO_BATCH if all(d.platform == "cpu" for d in devices) else None
        if micro_batch is not None and (not isinstance(micro_batch, int) or micro_batch < 1):
            raise ValueError(f"micro_batch must be a positive integer, 'auto' or None, got "
                             f"{micro_batch!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rows = -(-int(batch_size) // len(devices))                 # per device
        if micro_batch is not None and rows > micro_batch:
            rows = -(-rows // micro_batch) * micro_batch
        else:
            micro_batch = None                                     # one step: no lax.map
        self.batch_size, self.micro_batch = rows * len(devices), micro_batch
        self.replicated = NamedSharding(self.mesh, P())
        self.by_row = NamedSharding(self.mesh, P("data"))
        self.params = jax.device_put(params, self.replicated)
        self.compiler_options = labeller_options(devices)
        per_device = micro_batched(fn, micro_batch) if micro_batch else fn
        self.jitted = jax.jit(
            jax.shard_map(per_device, mesh=self.mesh, in_specs=(P(), P("data")),
                          out_specs=P("data")),
            in_shardings=(self.replicated, self.by_row), out_shardings=self.by_row,
            compiler_options=self.compiler_options or None)

    def __call__(self, x) -> jax.Array:
        """fn(params, x) for x with `batch_size` rows (asynchronous; sharded by row)."""
        return self.jitted(self.params, jax.device_put(x, self.by_row))


class Sampler:
    """Labels latents with `extractors` applied to `gen`'s images, batch by batch, data-parallel
    over `devices` (default: this process's local devices), in the form `RowParallel` compiles
    (micro_batch: see there). batch_size is rounded up to a multiple of devices × micro-batch.
    """

    def __init__(self, gen: Generator, extractors: Sequence[Any], *, batch_size: int = 256,
                 devices: Sequence[jax.Device] | None = None,
                 micro_batch: int | str | None = "auto"):
        runtime.ensure_configured()
        self.gen = gen
        self.extractors = tuple(as_extractor(e, gen.resolution) for e in extractors)
        if not self.extractors:
            raise ValueError("at least one extractor is needed to label samples")
        self.names = tuple(a for e in self.extractors for a in e.attributes)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"attribute names must be unique across extractors, got {self.names}")
        self.binary = tuple(b for e in self.extractors for b in e.binary)
        label, params = make_labeller(gen, self.extractors)
        self.labeller = RowParallel(label, params, batch_size, devices=devices,
                                    micro_batch=micro_batch)
        self.mesh, self.batch_size = self.labeller.mesh, self.labeller.batch_size
        self.micro_batch = self.labeller.micro_batch
        self.compiler_options = self.labeller.compiler_options

    @functools.cached_property
    def metadata(self) -> dict:
        return {"generator": self.gen.name, "latent_dim": self.gen.latent_dim,
                "generator_dtype": self.gen.info.get("dtype", "float32"),
                "extractors": [e.name for e in self.extractors], "attributes": list(self.names),
                "binary": list(self.binary)}

    def _label_async(self, z: jax.Array) -> list[tuple[jax.Array, int]]:
        """Dispatch labelling of z in batches (async); returns device arrays and valid rows."""
        out, b = [], self.batch_size
        for s in range(0, z.shape[0], b):
            zb = z[s:s + b]
            n = zb.shape[0]
            if n < b:  # keep one compiled shape: pad the last batch, drop the padding after
                zb = jnp.concatenate([zb, jnp.zeros((b - n, zb.shape[1]), zb.dtype)])
            out.append((self.labeller(zb), n))
        return out

    def label(self, z) -> np.ndarray:
        """y [N, k] (numpy) for latents z [N, d]."""
        z = self.gen.check_latents(z)
        parts = [np.asarray(y)[:n] for y, n in self._label_async(z)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.names)), np.float32)

    def run(self, seed: int, num: int, out_dir: str | Path | None = None, *,
            shard_size: int = DEFAULT_SHARD_SIZE, progress: bool = True) -> Samples:
        """Draw `num` labelled samples for `seed`; stream shards to `out_dir` if given.

        With out_dir, shards already complete there (same configuration) are kept, so a
        killed run resumes; with several `jax.distributed` processes, process p computes the
        shards i with i % process_count == p and out_dir must be on a shared filesystem.
        """
        if num <= 0:
            raise ValueError(f"num must be positive, got {num}")
        if self.gen.latent_space != "z":
            raise ValueError(f"{self.gen.name}: sample with the z generator (samples are drawn "
                             f"as z ~ N(0, I) and their w recorded); label given w latents "
                             f"with Sampler.label")
        n_proc, proc = jax.process_count(), jax.process_index()
        if n_proc > 1 and out_dir is None:
            raise ValueError("several processes need out_dir (a shared directory) to meet in")
        num_shards = -(-num // shard_size)
        meta = dict(self.metadata, seed=int(seed), num=int(num), shard_size=int(shard_size),
                    num_shards=num_shards)
        store = (shard_io.ShardStore(out_dir, meta, process=proc, processes=n_proc)
                 if out_dir is not None else None)
        try:
            return self._run(store, meta, seed, progress, n_proc, proc)
        finally:
            if store is not None:
                store.close()

    def _run(self, store, meta: dict, seed: int, progress: bool, n_proc: int,
             proc: int) -> Samples:
        num, shard_size, num_shards = meta["num"], meta["shard_size"], meta["num_shards"]
        mine = [i for i in range(num_shards) if i % n_proc == proc]
        todo = [i for i in mine if store is None or not store.has(i)]
        key = jax.random.key(seed)
        held: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        done = sum(min(shard_size, num - i * shard_size) for i in mine if i not in todo)
        total = sum(min(shard_size, num - i * shard_size) for i in mine)
        with tqdm(total=total, initial=done, desc="labelling", unit="samples",
                  disable=not progress) as bar:
            for i in todo:
                rows = min(shard_size, num - i * shard_size)
                z = shard_latents(key, i, shard_size, self.gen.latent_dim)[:rows]
                parts = []
                for yb, n in self._label_async(z):
                    parts.append(np.asarray(yb)[:n])
                    bar.update(n)
                y = np.concatenate(parts)
                z = np.asarray(z)
                if store is not None:
                    store.write(i, z, y)
                else:
                    held[i] = (z, y)
        if store is not None:
            store.finish()
            z, y = store.load_all()
        else:
            z = np.concatenate([held[i][0] for i in range(num_shards)])
            y = np.concatenate([held[i][1] for i in range(num_shards)])
        w = np.asarray(self.gen.encode(z, "w")) if self.gen.w_space is not None else None
        return Samples(z, y, self.names, self.binary, meta, w)


def sample(gen: Generator, extractors: Sequence[Any], num: int, seed: int = 0,
           out_dir: str | Path | None = None, *, batch_size: int = 256,
           shard_size: int = DEFAULT_SHARD_SIZE, progress: bool = True) -> Samples:
    """Convenience: `Sampler(gen, extractors, batch_size).run(seed, num, out_dir)`."""
    return Sampler(gen, extractors, batch_size=batch_size).run(
        seed, num, out_dir, shard_size=shard_size, progress=progress)
