"""Throughput of the labelling pipeline z -> G(z) -> extractors -> y, and the fast path's fidelity.

  samples/s = num / seconds to draw and label `num` latents (after compilation and a warm-up;
              latent drawing and the transfer of y to the host included; images never leave
              the device)
  TFLOP/s   = FLOPs per sample (XLA's cost analysis of the compiled labeller) · samples/s
  generator FLOPs per image: XLA's cost analysis of the compiled generator alone

Fidelity of the fast path (bf16 generator) on the same latents, against the float32 path at
highest matmul precision, over all attributes together (as the generator's image tests):
  rms_rel = ||y_fast − y_ref||₂ / ||y_ref||₂      ≤ BF16_RMS_TOL
  max_rel = max|y_fast − y_ref| / max|y_ref|      ≤ BF16_MAX_TOL
and per attribute the correlation across samples and the sign agreement.
"""
from __future__ import annotations

import time
from typing import Sequence

import jax
import numpy as np

from tlgan_jax.bench.machine import machine_info  # noqa: F401  (part of this module's API)
from tlgan_jax.extractors import Extractor, load_extractor
from tlgan_jax.generators import Generator, load_generator
from tlgan_jax.sampling import Sampler

DTYPES = ("float32", "bfloat16")
BF16_RMS_TOL = 2e-2      # bf16 keeps 8 significant bits: 2^-8 ≈ 4e-3 per rounding, ~20 layers
BF16_MAX_TOL = 4e-2


Models = tuple[Generator, list[Extractor]]


def load_models(generator: str, extractors: Sequence[str], dtype: str = "float32") -> Models:
    """The generator and extractors for registry names; dtype 'bfloat16' takes the generator's fast
    path. Load once per dtype and build a `Sampler(*models, batch_size=b)` per batch size."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    gen = load_generator(generator, fast=(dtype == "bfloat16"))
    if dtype == "bfloat16" and gen.info.get("dtype") != "bfloat16":
        raise ValueError(f"generator {generator!r} has no bfloat16 fast path (the pg-GAN "
                         f"and StyleGAN2 generators have one)")
    return gen, [load_extractor(e) for e in extractors]


def flops_per_sample(sampler: Sampler) -> float | None:
    """FLOPs of one labelled sample from XLA's cost analysis (None where not reported)."""
    try:
        z = jax.ShapeDtypeStruct((sampler.batch_size, sampler.gen.latent_dim), np.float32)
        cost = sampler._label.lower(sampler._params, z).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"]) / sampler.batch_size
    except Exception:  # best effort: not every backend reports a cost analysis
        return None


def generator_flops_per_image(gen: Generator, batch: int = 1) -> float | None:
    """FLOPs of one image of `gen` alone: XLA's cost analysis of jit(gen.apply) compiled for
    a batch of `batch` latents, divided by `batch` (None where the backend reports none)."""
    try:
        z = jax.ShapeDtypeStruct((batch, gen.latent_dim), np.float32)
        cost = jax.jit(gen.apply).lower(gen.params, z).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"]) / batch
    except Exception:  # best effort: not every backend reports a cost analysis
        return None


def timed_run(sampler: Sampler, num: int, seed: int) -> float:
    """Seconds to draw and label `num` samples (latents drawn, y fetched to the host)."""
    t0 = time.perf_counter()
    sampler.run(seed=seed, num=num, progress=False, shard_size=max(num // 4, sampler.batch_size))
    return time.perf_counter() - t0


def warm_up(sampler: Sampler, num: int) -> float:
    """Compile and run once with the timed run's shapes (`num` samples); returns the seconds."""
    return timed_run(sampler, num, seed=1)


def measure(sampler: Sampler, dtype: str, num: int, repeats: int = 1,
            compile_s: float | None = None) -> dict:
    """One configuration's row: the best of `repeats` timed runs of `num` samples."""
    best = min(timed_run(sampler, num, seed=2 + r) for r in range(repeats))
    flops = flops_per_sample(sampler)
    sps = num / best
    return {"generator": sampler.gen.name, "extractors": [e.name for e in sampler.extractors],
            "batch": sampler.batch_size, "dtype": dtype, "num": num, "seconds": best,
            "samples_per_second": sps, "compile_and_warmup_s": compile_s,
            "flops_per_sample": flops,
            "tflops_per_second": None if flops is None else flops * sps / 1e12}


def output_agreement(y_ref: np.ndarray, y: np.ndarray, names: Sequence[str],
                     binary: Sequence[bool]) -> dict:
    """How closely y [N, k] reproduces y_ref (module doc); `within_bf16_tolerance` says whether
    both whole-output criteria hold."""
    y_ref, y = np.asarray(y_ref, np.float64), np.asarray(y, np.float64)
    if y_ref.shape != y.shape or y.ndim != 2 or y.shape[1] != len(names):
        raise ValueError(f"scores must both be [N, {len(names)}], got {y_ref.shape} and {y.shape}")
    d = y - y_ref
    rms_rel = float(np.sqrt(np.mean(d ** 2) / np.mean(y_ref ** 2)))
    max_rel = float(np.max(np.abs(d)) / np.max(np.abs(y_ref)))
    per = {}
    for j, (name, is_binary) in enumerate(zip(names, binary)):
        a, b = y_ref[:, j], y[:, j]
        corr = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else None
        per[name] = {"max_abs": float(np.max(np.abs(d[:, j]))), "correlation": corr,
                     "sign_agreement": float(np.mean(np.sign(a) == np.sign(b)))
                     if is_binary else None}
    return {"num": int(y.shape[0]), "rms_rel": rms_rel, "max_rel": max_rel,
            "rms_tol": BF16_RMS_TOL, "max_tol": BF16_MAX_TOL,
            "within_bf16_tolerance": bool(rms_rel <= BF16_RMS_TOL and max_rel <= BF16_MAX_TOL),
            "attributes": per}


def fast_path_agreement(reference: Models, fast: Models, num: int = 64, seed: int = 0,
                        batch: int = 64) -> dict:
    """`output_agreement` of the `fast` (bf16) models against the float32 `reference` at
    highest matmul precision on the same `num` latents (the generator's prior, `seed`)."""
    with jax.default_matmul_precision("highest"):
        ref = Sampler(*reference, batch_size=min(batch, num))
        z = np.asarray(ref.gen.sample_latents(jax.random.key(seed), num))
        y_ref = ref.label(z)
    y_fast = Sampler(*fast, batch_size=min(batch, num)).label(z)
    return output_agreement(y_ref, y_fast, ref.names, ref.binary)
