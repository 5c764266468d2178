"""NVIDIA's pg-GAN generator `G_paper` in PyTorch: the same-run peer for throughput benchmarks.

Self-contained (torch + numpy + stdlib and scripts/torch_peer.py, the peers' shared pickle
reading, timing modes and command line); mirrors tlgan_jax/generators/pggan.py in NCHW.

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
import dataclasses
import glob
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import torch_peer  # noqa: E402  (scripts/torch_peer.py beside this file)


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


def load_pickle(path):
    """Official (G, D, Gs) pickle -> (Gs variables, Config); build_module_src is never run."""
    state = torch_peer.load_networks(path, ("tfutil", "Network"))[2].state
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


if __name__ == "__main__":
    torch_peer.main(__doc__, "pg-GAN", model_class=GPaper, load_pickle=load_pickle,
                    random_variables=random_variables, default_config=CELEBAHQ_1024,
                    check_fixtures=check_fixtures, batch=32, num=256)
