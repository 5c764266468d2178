"""What the PyTorch peer scripts (peer_pggan_torch.py, peer_stylegan2_torch.py) share: reading an
official tflib pickle through an allow-list, the timing modes and the command line.

Self-contained (torch + numpy + stdlib; never imports tlgan_jax), so the peers stay an
independent reading of the official code. A peer script provides its model class, its config
(with `latent_size`), `load_pickle(path) -> (variables, config)`, `random_variables(config,
seed)` and `check_fixtures(dir) -> exit status`, then calls `main(...)`.

Modes: fp32 (eager, TF32 off), bf16 (autocast + channels_last), bf16-compile (bf16 +
torch.compile in --compile_mode, default max-autotune-no-cudagraphs, falling back to
'default'). cudnn.benchmark is on. Prints `peer (torch NAME MODE, batch B, DEVICE): X images/s`.
"""
import argparse
import json
import math
import pickle
import sys
import time

import numpy as np
import torch

try:  # NumPy 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # NumPy 1
    from numpy.core import multiarray as _multiarray


class Network:
    """Inert stand-in for a tflib Network class: keeps the pickled state, runs nothing."""

    def __setstate__(self, state):
        self.state = state


def load_networks(path, network_class):
    """The pickle's top-level object with `network_class` = (module, name) mapped to `Network`
    and NumPy's array reconstruction allowed; any other global is refused before import."""
    allowed = {network_class: Network, ("numpy", "ndarray"): np.ndarray,
               ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        for fn in ("_reconstruct", "scalar"):
            allowed[(mod, fn)] = getattr(_multiarray, fn)

    class SafeUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in allowed:
                raise pickle.UnpicklingError(f"refusing global {module}.{name} "
                                             f"(not allow-listed)")
            return allowed[(module, name)]

    with open(path, "rb") as f:
        return SafeUnpickler(f, encoding="latin1").load()


def make_runner(model, mode, device):
    """z -> images for `mode` (uncompiled); bf16 modes use autocast and channels_last."""
    if mode == "fp32":
        return model
    model.to(memory_format=torch.channels_last)
    model.memory_format = torch.channels_last

    def forward(z):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return model(z)

    return forward


def compile_and_warm(fn, warm, first_mode):
    """torch.compile(first_mode), falling back to the default mode."""
    for mode in dict.fromkeys((first_mode, "default")):
        try:
            compiled = torch.compile(fn, mode=mode)
            warm(compiled)
            return compiled
        except Exception as e:  # any backend failure: try the next mode
            if mode == "default":
                raise
            print(f"torch.compile {mode} failed ({type(e).__name__}: {e}); trying default",
                  file=sys.stderr)
            torch._dynamo.reset()


def benchmark(args, model_class, variables, cfg, label):
    """Time `args.num` images (rounded up to batches) of `model_class(variables, cfg)`."""
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    model = model_class(variables, cfg).to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def draw():
        return torch.randn(args.batch, cfg.latent_size, device=device)

    def warm(fn):
        for _ in range(args.warmup):
            fn(draw())
        sync()

    run = make_runner(model, args.mode, device)
    with torch.no_grad():
        if args.mode == "bf16-compile":
            run = compile_and_warm(run, warm, args.compile_mode)
        else:
            warm(run)
        batches = max(1, math.ceil(args.num / args.batch))
        t0 = time.perf_counter()
        for _ in range(batches):
            run(draw())
        sync()
        seconds = time.perf_counter() - t0
    num = batches * args.batch
    ips = num / seconds
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mode": args.mode, "batch": args.batch, "device": str(device), "num": num,
                       "seconds": seconds, "images_per_second": ips,
                       "torch_version": torch.__version__, "device_name": name}, f, indent=1)
    print(f"peer (torch {label} {args.mode}, batch {args.batch}, {device}): {ips:.3f} images/s")


def main(doc, label, *, model_class, load_pickle, random_variables, default_config,
         check_fixtures, batch, num):
    """The peer's command line: --check_fixtures=DIR, or a timed run (module doc)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--check_fixtures", metavar="DIR")
    p.add_argument("--weights", metavar="PKL", help=f"official {label} pickle (default: random)")
    p.add_argument("--mode", choices=("fp32", "bf16", "bf16-compile"), default="fp32")
    p.add_argument("--compile_mode", default="max-autotune-no-cudagraphs",
                   help="torch.compile mode for bf16-compile (falls back to 'default')")
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--num", type=int, default=num, help="images timed (rounded up to batches)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches (incl. compile)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    if args.check_fixtures:
        sys.exit(check_fixtures(args.check_fixtures))
    variables, cfg = load_pickle(args.weights) if args.weights else (
        random_variables(default_config, args.seed), default_config)
    benchmark(args, model_class, variables, cfg, label)
