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
Defaults: configs/benchmark_throughput.py.
"""
import functools

from tlgan_jax import cli, runtime
from tlgan_jax.bench import throughput
from tlgan_jax.files import write_json


def main(cfg):
    runtime.configure()
    models = {d: cli.load_models(cfg.generator, cfg.extractors, fast=d == "bfloat16")
              for d in cfg.dtype}
    log = functools.partial(print, flush=True)
    report, best = throughput.sweep(models, cfg.batch, cfg.num, cfg.repeats,
                                    cfg.agreement_samples, log=log)
    if cfg.peer_python:
        peer = throughput.peer_rounds(best, cfg.num, cfg.peer_rounds, cfg.peer_python,
                                      cfg.peer_script_path(), log=log)
        report["peer_rounds"] = peer.pop("rounds")
        report["ratio_vs_peer"] = peer.pop("median_ratio")
        report["peer"] = peer
        log(f"median ratio vs peer: {report['ratio_vs_peer']:.2f}x")
    throughput.finish_report(report)
    if cfg.profile_json:
        profile = throughput.cpu_profile(models[cfg.dtype[0]], batch=cfg.batch[0])
        write_json(cfg.profile_json, profile)
        log(f"profile: labeller {profile['networks']['labeller (all)']['us_per_sample']:.0f} "
            f"us/sample, floor {profile['floor_ms_per_sample'] * 1e3:.0f} us/sample "
            f"({profile['fraction_of_floor']:.0%} of it reached)")
    throughput.write_report(report, cfg.json, cfg.csv)


if __name__ == "__main__":
    cli.run(main, cli.repo_config(__file__), doc=__doc__)
