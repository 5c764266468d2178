"""NVIDIA's pg-GAN generator `G_paper` in PyTorch: the same-run peer for throughput benchmarks.

Self-contained (torch + numpy + stdlib); mirrors tlgan_jax/models/pggan.py in NCHW.

Usage:
  python scripts/peer_pggan_torch.py --check_fixtures=../shared/fixtures/pggan
  python scripts/peer_pggan_torch.py --device=cuda --mode=bf16-compile --batch=32 --num=1024 \
      [--weights=karras2018iclr-celebahq-1024x1024.pkl] [--json=out.json]
Without --weights: random weights for CelebA-HQ 1024² (N(0, 1) weights as wscale init, zero
biases). Modes: fp32 (eager, TF32 off), bf16 (autocast + channels_last), bf16-compile (bf16 +
torch.compile in --compile_mode, default max-autotune-no-cudagraphs, falling back to
'default'). cudnn.benchmark is on.
Prints one line `peer (torch pg-GAN MODE, batch B, DEVICE): X images/s`.

Maths (official networks.py, structure 'linear'):
  nf(s) = min(int(fmap_base / 2^(s·fmap_decay)), fmap_max);  PN(x) = x·rsqrt(mean_c(x²) + eps)
  w_used = w_stored · float32(gain / sqrt(fan_in)), fan_in = prod(shape[:-1]) (Conv0_up: 9·in);
  gain √2, Dense √2/4, ToRGB 1;  act = leaky ReLU 0.2
  4×4: x = PN(z); x = reshape(x @ W, [N, nf, 4, 4]) + b; x = PN(act(x)); x = PN(act(conv3×3 + b))
  2^r: x = PN(act(conv3×3(up2(x)) + b)); x = PN(act(conv3×3(x) + b))
       fused_scale: Conv0_up weight [3,3,out,in], pad by 1 and sum its 4 shifts -> 4×4 kernel,
       tf.nn.conv2d_transpose stride 2 SAME == torch conv_transpose2d(stride 2, padding 1)
  img_r = conv1×1(x) + b (ToRGB_lod{R-r})
  images = img_r + (up2(images) - img_r)·clip(lod - (R-r), 0, 1)   (lerp_clip)
  Levels below the last one whose clip weight is 0 are dead (img + (prev-img)·0 = img): skipped.
"""
import argparse
import dataclasses
import glob
import json
import math
import os
import pickle
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

try:  # NumPy 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # NumPy 1
    from numpy.core import multiarray as _multiarray


@dataclasses.dataclass(frozen=True)
class Config:
    resolution: int = 1024
    num_channels: int = 3
    latent_size: int = 512
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    fused_scale: bool = False
    lod: float = 0.0
    normalize_latents: bool = True
    use_wscale: bool = True
    use_pixelnorm: bool = True
    use_leakyrelu: bool = True
    pixelnorm_epsilon: float = 1e-8

    @property
    def log2(self):
        return round(math.log2(self.resolution))

    def nf(self, stage):
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    def lerp_t(self, res):
        """clip(lod - lod_level, 0, 1) in float32, as TF computes it."""
        t = np.float32(self.lod) - np.float32(self.log2 - res)
        return float(np.clip(t, np.float32(0), np.float32(1)))

    def variable_shapes(self):
        nf, r2, shapes = self.nf, self.log2, {}
        shapes["4x4/Dense"] = ((self.latent_size, nf(1) * 16), nf(1))
        shapes["4x4/Conv"] = ((3, 3, nf(1), nf(1)), nf(1))
        for res in range(3, r2 + 1):
            s, cin, cout = f"{2 ** res}x{2 ** res}", nf(res - 2), nf(res - 1)
            if self.fused_scale:
                shapes[f"{s}/Conv0_up"] = ((3, 3, cout, cin), cout)
            else:
                shapes[f"{s}/Conv0"] = ((3, 3, cin, cout), cout)
            shapes[f"{s}/Conv1"] = ((3, 3, cout, cout), cout)
        for res in range(2, r2 + 1):
            shapes[f"ToRGB_lod{r2 - res}"] = ((1, 1, nf(res - 1), self.num_channels),
                                              self.num_channels)
        return {f"{n}/{k}": s for n, (w, b) in shapes.items() for k, s in
                (("weight", w), ("bias", (b,)))}


CELEBAHQ_1024 = Config()  # NVIDIA's karras2018iclr-celebahq-1024x1024.pkl


class GPaper(torch.nn.Module):
    """G_paper from {TF variable name: float32 array}; weights pre-scaled by wscale."""

    def __init__(self, variables, cfg):
        super().__init__()
        expected = cfg.variable_shapes()
        got = {n: tuple(np.shape(v)) for n, v in variables.items() if n != "lod"}
        if got != expected:
            raise ValueError(f"variables do not match G_paper {cfg}: "
                             f"{sorted(set(got.items()) ^ set(expected.items()))[:6]}")
        self.cfg, self.memory_format = cfg, torch.contiguous_format
        for name in sorted({n.rsplit("/", 1)[0] for n in expected}):
            w = np.asarray(variables[name + "/weight"], np.float32)
            gain = (1.0 if name.startswith("ToRGB")
                    else np.sqrt(2) / 4 if "Dense" in name else np.sqrt(2))
            fan_in = 9 * w.shape[3] if name.endswith("Conv0_up") else int(np.prod(w.shape[:-1]))
            if cfg.use_wscale:
                w = w * np.float32(gain / np.sqrt(fan_in))
            if name.endswith("Conv0_up"):  # [3,3,out,in] -> fused 4×4 -> torch [in,out,4,4]
                w = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
                w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]
            if w.ndim == 4:  # HWIO (or HWOI for Conv0_up) -> OIHW (IOHW)
                w = w.transpose(3, 2, 0, 1)
            key = name.replace("/", "_")
            self.register_buffer(key + "_w", torch.from_numpy(np.ascontiguousarray(w)))
            self.register_buffer(key + "_b", torch.from_numpy(
                np.asarray(variables[name + "/bias"], np.float32)))

    def _wb(self, name):
        key = name.replace("/", "_")
        return getattr(self, key + "_w"), getattr(self, key + "_b")

    def _pn_act(self, x):
        cfg = self.cfg
        x = F.leaky_relu(x, 0.2) if cfg.use_leakyrelu else F.relu(x)
        if cfg.use_pixelnorm:
            x = x * torch.rsqrt(x.square().mean(1, keepdim=True) + cfg.pixelnorm_epsilon)
        return x

    def forward(self, z):
        cfg, r2 = self.cfg, self.cfg.log2
        x = z.float()
        if cfg.normalize_latents:
            x = x * torch.rsqrt(x.square().mean(1, keepdim=True) + cfg.pixelnorm_epsilon)
        w, b = self._wb("4x4/Dense")
        x = (x @ w).view(-1, b.shape[0], 4, 4).contiguous(memory_format=self.memory_format)
        x = self._pn_act(x + b[:, None, None])
        x = self._pn_act(F.conv2d(x, *self._wb("4x4/Conv"), padding=1))
        start = max([r for r in range(3, r2 + 1) if cfg.lerp_t(r) == 0.0], default=2)
        images = None
        for res in range(2, r2 + 1):
            s = f"{2 ** res}x{2 ** res}"
            if res > 2:
                if cfg.fused_scale:
                    y = F.conv_transpose2d(x, *self._wb(s + "/Conv0_up"), stride=2, padding=1)
                else:
                    y = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"),
                                 *self._wb(s + "/Conv0"), padding=1)
                x = self._pn_act(y)
                x = self._pn_act(F.conv2d(x, *self._wb(s + "/Conv1"), padding=1))
            if res >= start:
                img = F.conv2d(x, *self._wb(f"ToRGB_lod{r2 - res}")).float()
                if images is not None:
                    up = F.interpolate(images, scale_factor=2, mode="nearest")
                    img = img + (up - img) * cfg.lerp_t(res)
                images = img
        return images


class _Network:
    """Inert stand-in for tfutil.Network: keeps the pickled state, runs nothing."""

    def __setstate__(self, state):
        self.state = state


_ALLOWED = {("tfutil", "Network"): _Network, ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _fn in ("_reconstruct", "scalar"):
        _ALLOWED[(_mod, _fn)] = getattr(_multiarray, _fn)


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} (not allow-listed)")
        return _ALLOWED[(module, name)]


def load_pickle(path):
    """Official (G, D, Gs) pickle -> (Gs variables, Config); build_module_src is never run."""
    with open(path, "rb") as f:
        state = _SafeUnpickler(f, encoding="latin1").load()[2].state
    if state["build_func_name"] != "G_paper":
        raise ValueError(f"{path}: Gs is {state['build_func_name']!r}, not G_paper")
    variables = {n: np.asarray(v, np.float32) for n, v in state["variables"]}
    kw = state["static_kwargs"]
    if kw.get("label_size", 0):
        raise ValueError(f"{path}: conditional networks are not supported")
    torgb = [int(n[len("ToRGB_lod"):].split("/")[0]) for n in variables if n.startswith("ToRGB")]
    defaults = Config()
    cfg = Config(resolution=4 * 2 ** max(torgb),
                 num_channels=variables["ToRGB_lod0/bias"].shape[0],
                 latent_size=variables["4x4/Dense/weight"].shape[0],
                 fused_scale=any(n.endswith("Conv0_up/weight") for n in variables),
                 lod=float(variables["lod"]),
                 **{k: type(getattr(defaults, k))(kw.get(k, getattr(defaults, k))) for k in
                    ("fmap_base", "fmap_decay", "fmap_max", "normalize_latents", "use_wscale",
                     "use_pixelnorm", "use_leakyrelu", "pixelnorm_epsilon")})
    return variables, cfg


def random_variables(cfg, seed=0):
    """N(0, 1) weights (G_paper's wscale init), zero biases, from a seeded torch generator."""
    g = torch.Generator().manual_seed(seed)
    return {n: (torch.randn(s, generator=g).numpy() if n.endswith("weight")
                else np.zeros(s, np.float32)) for n, s in sorted(cfg.variable_shapes().items())}


def check_fixtures(directory):
    """fp32 CPU forward on each fixture's z vs the expected images; 0 iff all rel err <= 1e-5."""
    expected = {}
    for f in sorted(glob.glob(os.path.join(directory, "*_expected.npz"))):
        with np.load(f) as d:
            expected.update({k: (d["z"], d[k]) for k in d.files if k != "z"})
    worst, pkls = 0.0, sorted(glob.glob(os.path.join(directory, "*.pkl")))
    if not pkls:
        raise SystemExit(f"no *.pkl in {directory}")
    for path in pkls:
        tag = os.path.splitext(os.path.basename(path))[0]
        z, want = expected[tag]
        model = GPaper(*load_pickle(path))
        with torch.no_grad():
            got = model(torch.from_numpy(z)).numpy()
        err = float(np.abs(got - want).max() / np.abs(want).max())
        worst = max(worst, err)
        print(f"{tag}: max|ours-expected|/max|expected| = {err:.3e}")
    print(f"worst {worst:.3e} ({'PASS' if worst <= 1e-5 else 'FAIL'} at 1e-5)")
    return 0 if worst <= 1e-5 else 1


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


def benchmark(args):
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    variables, cfg = load_pickle(args.weights) if args.weights else (
        random_variables(CELEBAHQ_1024, args.seed), CELEBAHQ_1024)
    model = GPaper(variables, cfg).to(device).eval()
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
    print(f"peer (torch pg-GAN {args.mode}, batch {args.batch}, {device}): {ips:.3f} images/s")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check_fixtures", metavar="DIR")
    p.add_argument("--weights", metavar="PKL", help="official pg-GAN pickle (default: random)")
    p.add_argument("--mode", choices=("fp32", "bf16", "bf16-compile"), default="fp32")
    p.add_argument("--compile_mode", default="max-autotune-no-cudagraphs",
                   help="torch.compile mode for bf16-compile (falls back to 'default')")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--num", type=int, default=256, help="images timed (rounded up to batches)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches (incl. compile)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    if args.check_fixtures:
        sys.exit(check_fixtures(args.check_fixtures))
    benchmark(args)


if __name__ == "__main__":
    main()
