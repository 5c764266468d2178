r"""Throughput of the labelling pipeline z -> G(z) -> extractors -> y, in labelled samples/s.

  python experiments/benchmark_throughput.py --generator=digiface64 --extractors=gender,age \
      --batch=256 --num=8192 --json=runs/bench.json \
      --peer_python=/path/to/python-with-torch-and-onnxruntime
  python experiments/benchmark_throughput.py --generator=pggan1024 --extractors=celeba40-random \
      --batch=32,64,128 --dtype=float32,bfloat16 --num=4096 --json=runs/bench_gpu.json
  python experiments/benchmark_throughput.py --generator=stylegan2-1024 \
      --extractors=celeba40-random --batch=16,32 --dtype=float32,bfloat16 --num=1024

Each (batch, dtype) configuration is compiled and warmed up first, then timed over --num
samples (see `tlgan_jax.bench.throughput`). When both dtypes are swept, the bf16 fast path's
attribute outputs are compared with the float32 path's at highest matmul precision on the same
--agreement_samples latents. With --peer_python, ../shared/bench/cpu_peer_embedded.py (PyTorch
generator + onnxruntime gender and age) runs in the same invocation on the same machine,
alternating with ours round by round (--peer_rounds), and the JSON records each round, the
median ratio, the machine and the load average before/after each round. --profile_json adds
the CPU profile (per-network time and FLOPs, attainable GFLOP/s, the floor). The CPU run in
docs/benchmarks, in one command (see docs/cpu_notes.md):
  python experiments/benchmark_throughput.py --peer_python=PYTHON_WITH_TORCH_AND_ORT \
      --json=docs/benchmarks/throughput_cpu_embedded.json \
      --profile_json=docs/benchmarks/cpu_profile.json
"""
import csv
import json
from pathlib import Path

from absl import app, flags

from tlgan_jax import runtime
from tlgan_jax.bench import throughput
from tlgan_jax.sampling import Sampler

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "digiface64", "Generator name (see tlgan_jax.generators).")
flags.DEFINE_list("extractors", ["gender", "age"], "Extractor names.")
flags.DEFINE_list("batch", ["256"], "Batch sizes to sweep.")
flags.DEFINE_list("dtype", ["float32"],
                  "Generator compute dtypes to sweep: float32 (faithful) and/or bfloat16 (the "
                  "generator's fast path; pg-GAN and StyleGAN2 generators).")
flags.DEFINE_integer("num", 8192, "Samples timed per configuration (after a warm-up).")
flags.DEFINE_integer("repeats", 1, "Timed repeats per configuration; the best is reported.")
flags.DEFINE_integer("agreement_samples", 64, "Latents on which the bf16 path's outputs are "
                     "compared with float32's when both dtypes are swept (0: skip).")
flags.DEFINE_string("json", None, "Write the results as JSON to this path.")
flags.DEFINE_string("csv", None, "Also write one CSV row per configuration to this path.")
flags.DEFINE_string("peer_python", None,
                    "A Python with torch and onnxruntime: runs the packages' own runtimes "
                    "(../shared/bench/cpu_peer_embedded.py) in the same run for the ratio.")
flags.DEFINE_integer("peer_rounds", 3, "Rounds of (ours, peer) timed alternately; the "
                     "median ratio is reported.")
flags.DEFINE_string("peer_script", None, "Path of cpu_peer_embedded.py (default: "
                    "../shared/bench/ next to the repository).")
flags.DEFINE_string("profile_json", None, "Also profile the labeller on this machine "
                    "(per-network time and FLOPs, attainable GFLOP/s, floor) into this JSON.")


def main(argv):
    del argv
    runtime.configure()
    load_before = throughput.load_average()
    results, samplers = [], []
    models = {dtype: throughput.load_models(FLAGS.generator, FLAGS.extractors, dtype)
              for dtype in FLAGS.dtype}
    gen_flops = {}
    for dtype in FLAGS.dtype:
        gen = models[dtype][0]
        gen_flops[dtype] = throughput.generator_flops_per_image(gen)
        if gen_flops[dtype] is not None:
            print(f"{gen.name} ({dtype}): {gen_flops[dtype] / 1e9:.2f} GFLOP per image "
                  f"(XLA cost analysis of the generator alone, batch 1)", flush=True)
    for dtype in FLAGS.dtype:
        for batch in FLAGS.batch:
            sampler = Sampler(*models[dtype], batch_size=int(batch))
            compile_s = throughput.warm_up(sampler, FLAGS.num)
            r = throughput.measure(sampler, dtype, FLAGS.num, FLAGS.repeats, compile_s)
            results.append(r)
            samplers.append(sampler)
            tf = "" if r["tflops_per_second"] is None else f", {r['tflops_per_second']:.3f} TFLOP/s"
            print(f"{dtype} batch {r['batch']}: {r['samples_per_second']:.1f} labelled samples/s"
                  f"{tf}", flush=True)
    i_best = max(range(len(results)), key=lambda i: results[i]["samples_per_second"])
    report = {"machine": throughput.machine_info(), "load_average_before": load_before,
              "results": results,
              "samples_per_second": results[i_best]["samples_per_second"],
              "best": results[i_best], "generator_flops_per_image": gen_flops}
    if set(throughput.DTYPES) <= set(FLAGS.dtype) and FLAGS.agreement_samples > 0:
        agree = throughput.fast_path_agreement(models["float32"], models["bfloat16"],
                                               FLAGS.agreement_samples)
        report["fast_path_agreement"] = agree
        print(f"bf16 vs float32 (highest precision), {agree['num']} latents: attribute outputs "
              f"rms rel {agree['rms_rel']:.2e}, max rel {agree['max_rel']:.2e} "
              f"({'within' if agree['within_bf16_tolerance'] else 'NOT within'} bf16 tolerance "
              f"{agree['rms_tol']:g} / {agree['max_tol']:g})", flush=True)
    if FLAGS.peer_python:
        peer = throughput.peer_rounds(samplers[i_best], FLAGS.num, FLAGS.peer_rounds,
                                      FLAGS.peer_python, FLAGS.peer_script)
        report["peer_rounds"] = peer.pop("rounds")
        report["ratio_vs_peer"] = peer.pop("median_ratio")
        report["peer"] = peer
        print(f"median ratio vs peer: {report['ratio_vs_peer']:.2f}x")
    report["load_average_after"] = throughput.load_average()
    report["caveat"] = throughput.load_caveat(
        [report["load_average_before"], report["load_average_after"]]
        + [r[k] for r in report.get("peer_rounds", [])
           for k in ("load_average_before", "load_average_after")])
    if FLAGS.profile_json:
        profile = throughput.cpu_profile(models[FLAGS.dtype[0]], batch=int(FLAGS.batch[0]))
        Path(FLAGS.profile_json).parent.mkdir(parents=True, exist_ok=True)
        Path(FLAGS.profile_json).write_text(json.dumps(profile, indent=1))
        print(f"profile: labeller {profile['networks']['labeller (all)']['us_per_sample']:.0f} "
              f"us/sample, floor {profile['floor_ms_per_sample'] * 1e3:.0f} us/sample "
              f"({profile['fraction_of_floor']:.0%} of it reached)")
    if FLAGS.json:
        Path(FLAGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(FLAGS.json).write_text(json.dumps(report, indent=1))
    if FLAGS.csv:
        with open(FLAGS.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in results[0] if k != "extractors"])
            w.writeheader()
            for r in results:
                w.writerow({k: v for k, v in r.items() if k != "extractors"})


if __name__ == "__main__":
    app.run(main)
