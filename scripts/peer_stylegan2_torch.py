"""NVIDIA's StyleGAN2 generator `G_main` (config-f, skip) in PyTorch: the same-run peer for
throughput benchmarks and a second, independent reading of the official pickle.

Self-contained (torch + numpy + stdlib and scripts/torch_peer.py; does not import tlgan_jax);
NCHW as the official code.

Usage:
  python scripts/peer_stylegan2_torch.py --check_fixtures=../shared/fixtures/stylegan2
  python scripts/peer_stylegan2_torch.py --device=cuda --mode=bf16-compile --batch=16 --num=512 \
      [--weights=stylegan2-ffhq-config-f.pkl] [--json=out.json]
Without --weights: random weights for config-f 1024² as TF initialises them (weights N(0, 1),
mapping N(0, 100²), const and noise N(0, 1), biases/noise strengths/avg 0). Modes: fp32 (eager,
TF32 off), bf16 (autocast + channels_last), bf16-compile (bf16 + torch.compile in
--compile_mode, default max-autotune-no-cudagraphs, falling back to 'default').
cudnn.benchmark is on. Prints one line `peer (torch StyleGAN2 MODE, batch B, DEVICE): X images/s`.

The pickle is read with its own allow-list unpickler (the same rule as tlgan_jax's reader: only
dnnlib.tflib.network.Network -> an inert holder, and NumPy's array reconstruction; nothing else
is imported, build_module_src is never executed); Gs (index 2) and its components are used.

Maths (networks_stylegan2.py, upfirdn_2d.py; psi 1 and stored noise unless asked):
  coef(fan_in, lrmul) = float32(lrmul / sqrt(fan_in));  lrelu(x) = leaky_relu(x, 0.2)·√2
  mapping: x = z·rsqrt(mean(z²) + 1e-8); x = lrelu(x @ W·coef(in, 0.01) + b·0.01) per Dense
  w+[:, l] = avg + (w − avg)·psi for l < cutoff (all if None)
  modconv: s = w_l @ A·coef(D) + a + 1; x·s -> conv(W·coef(k²I)) -> ·d,
           d = rsqrt(Σ_{i,kh,kw} (W·coef·s_i)² + 1e-8) (not for ToRGB)
  Conv0_up: conv_transpose2d(stride 2) with weight W[::-1, ::-1] (torch [I, O, kh, kw]: out[2i+k]
           += x[i]·weight[k]), size 2H+1, then FIR 4K with pad (1, 1)
  layer: lrelu(modconv + noise·strength + b); ToRGB: modconv(1×1, no demod) + b
  skip: y = up2(y) + ToRGB(x), up2 = zero-stuff, pad (2, 1), FIR 4K;
        K = outer(k, k)/64, k = [1,3,3,1]
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
    dlatent_size: int = 512
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    fmap_base: int = 16384
    fmap_decay: float = 1.0
    fmap_min: int = 1
    fmap_max: int = 512

    @property
    def log2(self):
        return round(math.log2(self.resolution))

    @property
    def num_layers(self):
        return 2 * self.log2 - 2

    def nf(self, stage):
        return int(np.clip(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))),
                           self.fmap_min, self.fmap_max))

    def variable_shapes(self):
        d, c, nf, shapes = self.dlatent_size, self.num_channels, self.nf, {}
        shapes["dlatent_avg"] = (d,)
        for i in range(self.mapping_layers):
            fin = self.latent_size if i == 0 else self.mapping_fmaps
            fout = d if i == self.mapping_layers - 1 else self.mapping_fmaps
            shapes[f"mapping/Dense{i}/weight"] = (fin, fout)
            shapes[f"mapping/Dense{i}/bias"] = (fout,)
        for j in range(self.num_layers - 1):
            r = 2 ** ((j + 5) // 2)
            shapes[f"synthesis/noise{j}"] = (1, 1, r, r)
        shapes["synthesis/4x4/Const/const"] = (1, nf(1), 4, 4)
        layers = [("4x4/Conv", 3, nf(1), nf(1)), ("4x4/ToRGB", 1, nf(1), c)]
        for r in range(3, self.log2 + 1):
            s = f"{2 ** r}x{2 ** r}"
            layers += [(f"{s}/Conv0_up", 3, nf(r - 2), nf(r - 1)),
                       (f"{s}/Conv1", 3, nf(r - 1), nf(r - 1)), (f"{s}/ToRGB", 1, nf(r - 1), c)]
        for name, k, fin, fout in layers:
            p = f"synthesis/{name}/"
            shapes[p + "weight"], shapes[p + "mod_weight"] = (k, k, fin, fout), (d, fin)
            shapes[p + "mod_bias"], shapes[p + "bias"] = (fin,), (fout,)
            if not name.endswith("ToRGB"):
                shapes[p + "noise_strength"] = ()
        return shapes


CONFIG_F_1024 = Config()


def _coef(fan_in, lrmul=1.0):
    return float(np.float32(lrmul / np.sqrt(fan_in)))


def _lrelu(x):
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


class G(torch.nn.Module):
    """G_main from {'dlatent_avg', 'mapping/...', 'synthesis/...': float32 array}; weights
    pre-scaled (equalised lr), conv weights in torch layouts, the +1 folded into mod_bias."""

    def __init__(self, variables, cfg):
        super().__init__()
        expected = cfg.variable_shapes()
        got = {n: tuple(np.shape(v)) for n, v in variables.items() if n != "lod"}
        if got != expected:
            raise ValueError(f"variables do not match G_main {cfg}: "
                             f"{sorted(set(got.items()) ^ set(expected.items()))[:6]}")
        self.cfg, self.memory_format = cfg, torch.contiguous_format
        t = lambda a: torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32)))
        self.register_buffer("avg", t(variables["dlatent_avg"]))
        for i in range(cfg.mapping_layers):
            w = np.asarray(variables[f"mapping/Dense{i}/weight"], np.float32)
            coef = np.float32(_coef(w.shape[0], cfg.mapping_lrmul))
            self.register_buffer(f"map{i}_w", t(w * coef))
            self.register_buffer(f"map{i}_b", t(variables[f"mapping/Dense{i}/bias"]) * float(
                np.float32(cfg.mapping_lrmul)))
        for j in range(cfg.num_layers - 1):
            self.register_buffer(f"noise{j}", t(variables[f"synthesis/noise{j}"]))
        self.register_buffer("const", t(variables["synthesis/4x4/Const/const"]))
        self.layers = [n[len("synthesis/"):-len("/weight")] for n in expected
                       if n.startswith("synthesis/") and n.endswith("/weight")
                       and not n.endswith("mod_weight")]
        for name in self.layers:
            p, key = f"synthesis/{name}/", name.replace("/", "_")
            w = np.asarray(variables[p + "weight"], np.float32)
            k, _, cin, _ = w.shape
            w = w * np.float32(_coef(k * k * cin))
            if name.endswith("Conv0_up"):        # TF flips inside upsample_conv_2d; [I, O, k, k]
                w_t = w[::-1, ::-1].transpose(2, 3, 0, 1)
            else:                                # HWIO -> OIHW
                w_t = w.transpose(3, 2, 0, 1)
            self.register_buffer(key + "_w", t(w_t))
            self.register_buffer(key + "_wsq", t((w ** 2).sum(axis=(0, 1))))      # [I, O]
            self.register_buffer(key + "_a",
                                 t(variables[p + "mod_weight"]) * _coef(cfg.dlatent_size))
            self.register_buffer(key + "_a_b", t(variables[p + "mod_bias"]) + 1.0)
            self.register_buffer(key + "_b", t(variables[p + "bias"]))
            if p + "noise_strength" in variables:
                self.register_buffer(key + "_ns", t(variables[p + "noise_strength"]))
        k = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64 * 4
        self.register_buffer("fir", t(k[::-1, ::-1].copy()))

    def mapping(self, z):
        x = z.float()
        x = x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)
        for i in range(self.cfg.mapping_layers):
            x = _lrelu(x @ getattr(self, f"map{i}_w") + getattr(self, f"map{i}_b"))
        return x

    def _fir(self, x, up, pad0, pad1):
        """upfirdn2d: zero-stuff by `up`, pad, true convolution with 4K, per channel."""
        n, c, h, w = x.shape
        if up > 1:
            z = x.new_zeros(n, c, h * up, w * up)
            z[:, :, ::up, ::up] = x
            x = z
        x = F.pad(x, (pad0, pad1, pad0, pad1))
        k = self.fir.to(x.dtype)[None, None].expand(c, 1, 4, 4)
        return F.conv2d(x, k, groups=c)

    def _modconv(self, x, w_l, name, demodulate=True, up=False):
        key = name.replace("/", "_")
        s = w_l @ getattr(self, key + "_a") + getattr(self, key + "_a_b")        # [N, I]
        x = x * s[:, :, None, None].to(x.dtype)
        wt = getattr(self, key + "_w").to(x.dtype)
        if up:
            x = self._fir(F.conv_transpose2d(x, wt, stride=2), 1, 1, 1)
        else:
            x = F.conv2d(x, wt, padding=wt.shape[-1] // 2)
        if demodulate:
            d = torch.rsqrt(s.square() @ getattr(self, key + "_wsq") + 1e-8)   # [N, O]
            x = x * d[:, :, None, None].to(x.dtype)
        return x

    def synthesis(self, wp):
        cfg = self.cfg
        x = self.const.expand(wp.shape[0], -1, -1, -1).contiguous(memory_format=self.memory_format)

        def layer(x, idx, name, up=False):
            key = name.replace("/", "_")
            x = self._modconv(x, wp[:, idx], name, up=up)
            noise = getattr(self, f"noise{idx}").to(x.dtype)
            x = x + noise * getattr(self, key + "_ns").to(x.dtype)
            return _lrelu(x + getattr(self, key + "_b").to(x.dtype)[:, None, None])

        def torgb(x, idx, name):
            key = name.replace("/", "_")
            t = self._modconv(x, wp[:, idx], name, demodulate=False).float()
            return t + getattr(self, key + "_b")[:, None, None]

        x = layer(x, 0, "4x4/Conv")
        y = torgb(x, 1, "4x4/ToRGB")
        for r in range(3, cfg.log2 + 1):
            s = f"{2 ** r}x{2 ** r}"
            x = layer(x, 2 * r - 5, f"{s}/Conv0_up", up=True)
            x = layer(x, 2 * r - 4, f"{s}/Conv1")
            y = self._fir(y, 2, 2, 1) + torgb(x, 2 * r - 3, f"{s}/ToRGB")
        return y

    def forward(self, z, psi=1.0, cutoff=None):
        w = self.mapping(z)
        wp = w[:, None, :].expand(-1, self.cfg.num_layers, -1)
        if psi is not None and psi != 1:
            layer_psi = np.ones((1, self.cfg.num_layers, 1), np.float32)
            layer_psi[:, :cutoff] *= np.float32(psi)
            wp = self.avg + (wp - self.avg) * torch.from_numpy(layer_psi).to(wp.device)
        return self.synthesis(wp)


_MAPPING_KEYS = ("latent_size", "dlatent_size", "mapping_layers", "mapping_fmaps",
                 "mapping_lrmul")
_SYNTHESIS_KEYS = ("resolution", "num_channels", "fmap_base", "fmap_decay", "fmap_min",
                   "fmap_max")


def load_pickle(path):
    """Official (G, D, Gs) pickle -> (Gs variables, Config); build_module_src is never run."""
    gs = torch_peer.load_networks(path, ("dnnlib.tflib.network", "Network"))[2].state
    if gs["build_func_name"] != "G_main":
        raise ValueError(f"{path}: Gs is {gs['build_func_name']!r}, not G_main")
    comps = {k: v.state for k, v in gs["components"].items()}
    if comps["synthesis"]["build_func_name"] != "G_synthesis_stylegan2":
        raise ValueError(f"{path}: synthesis is {comps['synthesis']['build_func_name']!r}")
    passed = {k: v for k, v in gs["static_kwargs"].items()
              if not k.startswith(("truncation", "mapping_func", "synthesis_func"))}
    kw_m = {**comps["mapping"]["static_kwargs"], **passed}
    kw_s = {**comps["synthesis"]["static_kwargs"], **passed}
    if kw_s.get("architecture", "skip") != "skip" or kw_m.get("label_size", 0):
        raise ValueError(f"{path}: only unconditional 'skip' networks are supported")
    defaults = Config()
    cfg = Config(**{k: type(getattr(defaults, k))(kw_m.get(k, getattr(defaults, k)))
                    for k in _MAPPING_KEYS},
                 **{k: type(getattr(defaults, k))(kw_s.get(k, getattr(defaults, k)))
                    for k in _SYNTHESIS_KEYS})
    variables = {n: np.asarray(v, np.float32) for n, v in gs["variables"]}
    for prefix, st in comps.items():
        variables.update({f"{prefix}/{n}": np.asarray(v, np.float32) for n, v in st["variables"]})
    return variables, cfg


def random_variables(cfg, seed=0):
    """TF's initialisation from a seeded torch generator (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, s in sorted(cfg.variable_shapes().items()):
        if n.endswith(("weight", "const")) or n.startswith("synthesis/noise"):
            std = 1.0 / cfg.mapping_lrmul if n.startswith("mapping/") else 1.0
            out[n] = (torch.randn(s, generator=g) * std).numpy()
        else:
            out[n] = np.zeros(s, np.float32)
    return out


VARIANTS = (("images_psi1", 1.0, None), ("images_psi0p7", 0.7, None),
            ("images_psi0p7_cutoff4", 0.7, 4))


def check_fixtures(directory):
    """fp32 CPU forward on each fixture's z (psi 1, 0.7, 0.7 with cutoff 4) vs the expected
    images; exit status 0 iff every rel. error <= 1e-5."""
    worst, pkls = 0.0, sorted(glob.glob(os.path.join(directory, "*.pkl")))
    if not pkls:
        raise SystemExit(f"no *.pkl in {directory}")
    for path in pkls:
        tag = os.path.splitext(os.path.basename(path))[0]
        with np.load(os.path.join(directory, f"{tag}_expected.npz")) as d:
            expected = {k: d[k] for k in d.files}
        model = G(*load_pickle(path))
        for key, psi, cutoff in VARIANTS:
            with torch.no_grad():
                got = model(torch.from_numpy(expected["z"]), psi, cutoff).numpy()
            want = expected[key]
            err = float(np.abs(got - want).max() / np.abs(want).max())
            worst = max(worst, err)
            print(f"{tag} {key}: max|ours-expected|/max|expected| = {err:.3e}")
    print(f"worst {worst:.3e} ({'PASS' if worst <= 1e-5 else 'FAIL'} at 1e-5)")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    torch_peer.main(__doc__, "StyleGAN2", model_class=G, load_pickle=load_pickle,
                    random_variables=random_variables, default_config=CONFIG_F_1024,
                    check_fixtures=check_fixtures, batch=16, num=128)
