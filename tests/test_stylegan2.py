"""StyleGAN2 G_main port: parity with the official-layout fixtures (every variant of their npz),
the exact rewrites, noise modes, the bf16 fast path, and the config-f 1024² network."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlgan_jax.bench.throughput import BF16_MAX_TOL, BF16_RMS_TOL
from tlgan_jax.generators import WSpace, load_generator
from tlgan_jax.generators import stylegan2 as sg
from tlgan_jax.weights.stylegan2_pickle import load_stylegan2_pickle

from helpers import PARITY_TOL, rel_error
from helpers import stylegan2_fixtures_dir as fixtures_dir

FIXTURES = ("tiny32", "tiny64")
# (psi, cutoff, dlatents key, images key)
VARIANTS = [(1.0, None, "dlatents", "images_psi1"),
            (0.7, None, "dlatents_psi0p7", "images_psi0p7"),
            (0.7, 4, "dlatents_psi0p7_cutoff4", "images_psi0p7_cutoff4")]
FORMS = [(m, u) for m in sg.MODULATIONS for u in sg.UPSAMPLES]


@functools.cache
def load(name):
    params, config = sg.from_network(load_stylegan2_pickle(fixtures_dir() / f"{name}.pkl"))
    return config, params, dict(np.load(fixtures_dir() / f"{name}_expected.npz"))


def nchw(images):
    return np.asarray(images).transpose(0, 3, 1, 2)


def test_fixture_metadata():
    for name in FIXTURES:
        _, _, e = load(name)
        assert float(e["truncation_psi"]) == np.float32(0.7) and int(e["truncation_cutoff"]) == 4


@pytest.mark.parametrize("name", FIXTURES)
def test_dlatents_parity(name):
    cfg, params, e = load(name)
    assert np.sqrt(np.mean(e["z"][0] ** 2)) > 5      # z[0] is scaled ×10: must not matter
    with jax.default_matmul_precision("highest"):
        w = jax.jit(functools.partial(sg.mapping, config=cfg))(params, e["z"])
        wp = sg.broadcast(w, config=cfg)
        for psi, cutoff, dkey, _ in VARIANTS:
            out = sg.truncate(wp, params["dlatent_avg"], psi, cutoff)
            assert out.shape == e[dkey].shape == (6, cfg.num_layers, cfg.dlatent_size)
            assert rel_error(out, e[dkey]) <= PARITY_TOL, (dkey, rel_error(out, e[dkey]))
    # only the cut-off variant has rows that differ
    d = e["dlatents_psi0p7_cutoff4"]
    assert not np.allclose(d[:, 3], d[:, 4]) and np.array_equal(d[:, 4], d[:, -1])


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("modulation, upsample", FORMS)
def test_images_parity_every_variant_and_form(name, modulation, upsample):
    """Faithful (per-sample weights, upfirdn2d then VALID conv) and the exact rewrites."""
    cfg, params, e = load(name)
    synth = jax.jit(functools.partial(sg.synthesis, config=cfg, modulation=modulation,
                                      upsample=upsample))
    with jax.default_matmul_precision("highest"):
        wp = sg.broadcast(jax.jit(functools.partial(sg.mapping, config=cfg))(params, e["z"]),
                          config=cfg)
        for psi, cutoff, _, ikey in VARIANTS:
            out = synth(params, sg.truncate(wp, params["dlatent_avg"], psi, cutoff))
            assert out.dtype == jnp.float32 and nchw(out).shape == e[ikey].shape
            err = rel_error(nchw(out), e[ikey])
            assert err <= PARITY_TOL, (ikey, err)


@pytest.mark.parametrize("name", FIXTURES)
def test_apply_end_to_end(name):
    cfg, params, e = load(name)
    for psi, cutoff, _, ikey in VARIANTS[1:]:
        f = jax.jit(functools.partial(sg.apply, config=cfg, truncation_psi=psi,
                                      truncation_cutoff=cutoff))
        with jax.default_matmul_precision("highest"):
            assert rel_error(nchw(f(params, e["z"])), e[ikey]) <= PARITY_TOL


@pytest.mark.parametrize("name", FIXTURES)
def test_fast_path_bf16_within_bf16_tolerance(name):
    cfg, params, e = load(name)
    for psi, cutoff, _, ikey in VARIANTS:
        out = nchw(jax.jit(functools.partial(sg.apply_fast, config=cfg, truncation_psi=psi,
                                             truncation_cutoff=cutoff))(params, e["z"]))
        ref = e[ikey]
        rms = np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref ** 2))
        err = rel_error(out, ref)
        assert out.dtype == np.float32
        assert rms <= BF16_RMS_TOL and err <= BF16_MAX_TOL, (ikey, rms, err)
        assert err > 1e-4   # it is really computed in bf16


def test_typical_mistakes_are_caught_by_the_fixtures(monkeypatch):
    """The parity tests can fail: a port without the unstored +1, or with nearest upsampling
    of the skip images, is far outside the tolerance."""
    cfg, params, e = load("tiny32")
    no_plus_one = jax.tree_util.tree_map(lambda x: x, params)
    for blk in no_plus_one["synthesis"].values():
        for p in (blk.values() if isinstance(blk, dict) else ()):
            if "mod_bias" in p:
                p["mod_bias"] = p["mod_bias"] - 1.0
    f = jax.jit(functools.partial(sg.apply, config=cfg))
    assert rel_error(nchw(f(no_plus_one, e["z"])), e["images_psi1"]) > 0.1
    monkeypatch.setattr(sg, "upsample_2d", lambda y: jnp.repeat(jnp.repeat(y, 2, 1), 2, 2))
    out = nchw(jax.jit(functools.partial(sg.apply, config=cfg))(params, e["z"]))
    assert rel_error(out, e["images_psi1"]) > 0.1


def _upfirdn2d_reference(x, k, up, pad0, pad1):
    """float64 loops: zero-stuff, pad, true convolution (VALID), per channel; x [H, W]."""
    h, w = x.shape
    z = np.zeros((h * up, w * up))
    z[::up, ::up] = x
    z = np.pad(z, ((pad0, pad1), (pad0, pad1)))
    kh, kw = k.shape
    out = np.zeros((z.shape[0] - kh + 1, z.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(z[i:i + kh, j:j + kw] * k[::-1, ::-1])
    return out


def test_upfirdn2d_and_upsample_conv_forms():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    k = rng.standard_normal(4)      # asymmetric: checks the flip
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(sg.upfirdn2d(jnp.asarray(x), k, 2, 2, 1))
    ref = np.stack([np.stack([_upfirdn2d_reference(x[n, :, :, c], np.outer(k, k), 2, 2, 1)
                              for c in range(3)], -1) for n in range(2)])
    assert ours.shape == ref.shape == (2, 10, 12, 3) and rel_error(ours, ref) <= 1e-6
    # Conv0_up as TF computes it: conv2d_transpose(stride 2, VALID) with the flipped kernel,
    # i.e. out[2i+a, 2j+b] += x[i, j]·W[2−a, 2−b] (size 2H+1), then upfirdn2d(4K, pad (1, 1))
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    n, h, wd, _ = x.shape
    t = np.zeros((n, 2 * h + 1, 2 * wd + 1, 4))
    for a in range(3):
        for b in range(3):
            t[:, a:a + 2 * h:2, b:b + 2 * wd:2] += np.einsum("nhwi,io->nhwo", x, w[2 - a, 2 - b])
    k4 = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64 * 4
    tf_form = np.stack([np.stack([_upfirdn2d_reference(t[i, :, :, c], k4, 1, 1, 1)
                                  for c in range(4)], -1) for i in range(n)])
    with jax.default_matmul_precision("highest"):
        for form in sg.UPSAMPLES:
            ours = np.asarray(sg._conv_any(jnp.asarray(x), jnp.asarray(w), True, form,
                                           jnp.float32, jnp.float32))
            assert ours.shape == tf_form.shape == (2, 10, 12, 4)
            assert rel_error(ours, tf_form) <= 1e-6, form


def test_noise_modes():
    cfg, params, e = load("tiny32")
    z = e["z"][:2]
    forms = dict(config=cfg, modulation="activations", upsample="transposed")
    f = jax.jit(functools.partial(sg.apply, noise="random", **forms))
    stored = np.asarray(jax.jit(functools.partial(sg.apply, **forms))(params, z))
    a = np.asarray(f(params, z, key=jax.random.key(1)))
    b = np.asarray(f(params, z, key=jax.random.key(1)))
    c = np.asarray(f(params, z, key=jax.random.key(2)))
    assert np.array_equal(a, b) and not np.allclose(a, c, atol=1e-3)
    assert not np.allclose(a, stored, atol=1e-3)
    # fresh noise per sample: the same z twice gives two images
    twice = np.asarray(f(params, np.stack([z[0], z[0]]), key=jax.random.key(1)))
    assert not np.allclose(twice[0], twice[1], atol=1e-3)
    # wiring: the random draws of a batch of one, stored as the noise inputs, give the same image
    noises = sg.noise_inputs(params, 1, config=cfg, noise="random", key=jax.random.key(3))
    swapped = jax.tree_util.tree_map(lambda x: x, params)
    for j, nz in enumerate(noises):
        swapped["synthesis"][f"noise{j}"] = jnp.transpose(nz, (0, 3, 1, 2))
    with jax.default_matmul_precision("highest"):
        r = f(params, z[:1], key=jax.random.key(3))
        s = jax.jit(functools.partial(sg.apply, **forms))(swapped, z[:1])
    assert rel_error(r, s) <= 1e-6
    with pytest.raises(ValueError, match="noise='random' needs an explicit PRNG key"):
        sg.apply(params, z, config=cfg, noise="random")
    with pytest.raises(ValueError, match="noise must be one of"):
        sg.apply(params, z, config=cfg, noise="none")


def test_bad_inputs():
    cfg, params, e = load("tiny32")
    with pytest.raises(ValueError,
                       match=r"latents z must have shape \[N, 32\], got shape \(2, 31\)"):
        sg.apply(params, jnp.zeros((2, 31)), config=cfg)
    with pytest.raises(ValueError, match=r"dlatents w\+ must have shape \[N, 8, 32\]"):
        sg.synthesis(params, jnp.zeros((2, 7, 32)), config=cfg)
    with pytest.raises(ValueError, match="modulation must be one of"):
        sg.synthesis(params, jnp.zeros((1, 8, 32)), config=cfg, modulation="fused")
    with pytest.raises(ValueError, match="truncation_psi must be a finite number"):
        sg.truncate(jnp.zeros((1, 8, 32)), params["dlatent_avg"], float("nan"))
    with pytest.raises(ValueError, match="truncation_cutoff must be an integer >= 0"):
        sg.truncate(jnp.zeros((1, 8, 32)), params["dlatent_avg"], 0.7, -1)
    with pytest.raises(ValueError, match="power of two"):
        sg.StyleGAN2Config(resolution=48)


def test_config_f_1024_architecture_random_weights():
    cfg = sg.CONFIG_F_1024
    assert (cfg.num_layers, [cfg.nf(r - 1) for r in range(2, 11)]) == (
        18, [512, 512, 512, 512, 512, 256, 128, 64, 32])
    shapes = cfg.variable_shapes()
    trainable = sum(int(np.prod(s)) for n, s in shapes.items()
                    if not n.startswith("synthesis/noise") and n not in ("lod", "dlatent_avg"))
    assert trainable == 30_370_060     # NVIDIA's printed summary of config-f G (Total params)
    params = sg.random_params(jax.random.key(0), cfg)
    assert float(jnp.std(params["mapping"]["Dense0"]["weight"])) == pytest.approx(100, rel=0.01)
    z = jax.random.normal(jax.random.key(1), (1, 512))
    f = jax.jit(functools.partial(sg.apply, config=cfg, modulation="activations",
                                  upsample="transposed"))
    out = np.asarray(f(params, z))
    assert out.shape == (1, 1024, 1024, 3) and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.std() > 1e-3


# ----------------------------------------------------------------------------- by name

def test_load_generator_by_name_psi1_stored_noise():
    _, _, e = load("tiny32")
    path = fixtures_dir() / "tiny32.pkl"
    gen = load_generator(f"stylegan2:{path}")
    assert (gen.latent_dim, gen.resolution, gen.latent_prior) == (32, 32, "normal_pixelnorm")
    assert gen.info["truncation_psi"] == 1.0 and gen.info["noise"] == "stored"
    with jax.default_matmul_precision("highest"):
        a, b = np.asarray(gen(e["z"])), np.asarray(gen(e["z"]))
        assert np.array_equal(a, b)      # deterministic: stored noise
        assert rel_error(nchw(a), e["images_psi1"]) <= PARITY_TOL
        ws = gen.w_space
        assert isinstance(ws, WSpace) and (ws.w_dim, ws.num_ws) == (32, 8)
        w = jax.jit(ws.mapping)(gen.params, e["z"])
        assert w.shape == (6, 32) and rel_error(w, e["dlatents"][:, 0]) <= PARITY_TOL
        again = jax.jit(ws.synthesis)(gen.params, ws.broadcast(w))
        assert rel_error(again, a) <= 1e-6


def test_load_generator_truncation_options():
    _, _, e = load("tiny64")
    path = fixtures_dir() / "tiny64.pkl"
    for psi, cutoff, _, ikey in VARIANTS[1:]:
        gen = load_generator(f"stylegan2:{path}", truncation_psi=psi, truncation_cutoff=cutoff)
        assert (gen.info["truncation_psi"], gen.info["truncation_cutoff"]) == (psi, cutoff)
        with jax.default_matmul_precision("highest"):
            assert rel_error(nchw(gen(e["z"])), e[ikey]) <= PARITY_TOL
            # the synthesis stage truncates the untruncated w+ the same way
            out = jax.jit(gen.w_space.synthesis)(gen.params, e["dlatents"])
            assert rel_error(nchw(out), e[ikey]) <= PARITY_TOL
    fast = load_generator(f"stylegan2:{path}", fast=True, truncation_psi=0.7)
    assert fast.info["dtype"] == "bfloat16"
    assert rel_error(nchw(fast(e["z"])), e["images_psi0p7"]) <= BF16_MAX_TOL


def test_load_generator_errors(tmp_path):
    missing = tmp_path / "nope.pkl"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: no such StyleGAN2 pickle"):
        load_generator(f"stylegan2:{missing}")
    with pytest.raises(OSError, match=f"^{tmp_path}: not a regular file"):
        load_generator(f"stylegan2:{tmp_path}")
    with pytest.raises(OSError, match="^/dev/zero: not a regular file"):
        load_generator("stylegan2:/dev/zero")
    path = fixtures_dir() / "tiny32.pkl"
    with pytest.raises(ValueError,
                       match=r"takes no option\(s\) \['psi'\]; it takes \['truncation_psi'"):
        load_generator(f"stylegan2:{path}", psi=0.7)
    with pytest.raises(ValueError, match="truncation_psi must be a finite number"):
        load_generator(f"stylegan2:{path}", truncation_psi="0.7")
    with pytest.raises(ValueError, match=r"'digiface64' takes no option\(s\) \['truncation_psi'\]"):
        load_generator("digiface64", truncation_psi=0.7)
    with pytest.raises(ValueError, match="'stylegan2:PATH.pkl' or 'stylegan2-1024'"):
        load_generator("stylegan3:x.pkl")


def _conv_macs(cfg, upsample):
    """Multiply-adds of the convolutions per image: 3×3 layers and ToRGB at their resolution;
    Conv0_up as 4 phases of 2×2 taps over the (R/2+1)² grid ('transposed') or 9·I·O per
    output pixel ('subpixel')."""
    nf, c, m = cfg.nf, cfg.num_channels, 9 * cfg.nf(1) ** 2 * 16 + cfg.nf(1) * cfg.num_channels * 16
    for r in range(3, cfg.resolution_log2 + 1):
        res, cin, cout = 2 ** r, nf(r - 2), nf(r - 1)
        m += (16 * cin * cout * (res // 2 + 1) ** 2 if upsample == "transposed"
              else 9 * cin * cout * res * res)
        m += 9 * cout * cout * res * res + cout * c * res * res
    return m


def test_flops_per_image_from_xla_match_the_conv_count():
    from tlgan_jax.bench.throughput import generator_flops_per_image
    cfg, params, _ = load("tiny64")
    for upsample in ("transposed", "subpixel"):
        gen = sg.as_generator(params, cfg, upsample=upsample)
        flops = generator_flops_per_image(gen, batch=2)
        assert 0.85 <= flops / (2 * _conv_macs(cfg, upsample)) <= 1.15, (upsample, flops)
    # at 1024² the phase-split transposed conv needs 2/3 of the sub-pixel form's work
    f = sg.CONFIG_F_1024
    assert _conv_macs(f, "transposed") / _conv_macs(f, "subpixel") == pytest.approx(0.654, abs=0.01)
