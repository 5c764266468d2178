"""G_paper port: parity with the official-layout fixtures, the fast path, the 1024² network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlgan_jax.bench.throughput import BF16_MAX_TOL, BF16_RMS_TOL
from tlgan_jax.generators import pggan
from tlgan_jax.weights.pggan_pickle import load_pggan_pickle

from helpers import PARITY_TOL, rel_error
from helpers import pggan_fixtures_dir as fixtures_dir

FIXTURES = [("tiny32_lod0", "tiny32"), ("tiny32_lod1", "tiny32"),
            ("tiny32_lod0p5", "tiny32"), ("tiny16fused_lod0", "tiny16fused")]


def load(tag, npz):
    params, config = pggan.from_network(load_pggan_pickle(fixtures_dir() / f"{tag}.pkl"))
    expected = np.load(fixtures_dir() / f"{npz}_expected.npz")
    return config, params, expected["z"], expected[tag].transpose(0, 2, 3, 1)


def run(params, z, config, **kw):
    """pggan.apply, jitted (one compile is faster than op-by-op dispatch)."""
    return np.asarray(jax.jit(lambda p, z: pggan.apply(p, z, config=config, **kw))(params, z))


@pytest.mark.parametrize("tag, npz", FIXTURES)
def test_parity_with_official_graph(tag, npz):
    config, params, z, ref = load(tag, npz)
    with jax.default_matmul_precision("highest"):
        for conv0 in pggan.CONV0_MODES:  # faithful, and the three exact rewrites of Conv0
            out = run(params, z, config, conv0=conv0)
            assert out.shape == ref.shape and out.dtype == jnp.float32
            assert rel_error(out, ref) <= PARITY_TOL, (conv0, rel_error(out, ref))


@pytest.mark.parametrize("tag, npz", [FIXTURES[0], FIXTURES[2], FIXTURES[3]])
def test_fast_path_bf16_within_bf16_tolerance(tag, npz):
    config, params, z, ref = load(tag, npz)
    out = run(params, z, config, dtype=jnp.bfloat16, conv0="subpixel")
    assert out.dtype == np.float32 and out.shape == ref.shape
    rms = np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref ** 2))
    err = rel_error(out, ref)
    assert rms <= BF16_RMS_TOL and err <= BF16_MAX_TOL, (rms, err)


def test_latent_scale_does_not_matter_and_batch_independent():
    config, params, z, ref = load(*FIXTURES[0])
    assert np.sqrt(np.mean(z[0] ** 2)) > 5  # the fixture's first latent is scaled ×10
    zs = np.stack([z[0], z[0] / 10, z[0] / np.linalg.norm(z[0]), z[1]])
    with jax.default_matmul_precision("highest"):
        out = run(params, zs, config)
        single = run(params, zs[3:], config)
    for i in (1, 2):
        assert rel_error(out[i], out[0]) <= PARITY_TOL
    assert rel_error(out[0], ref[0]) <= PARITY_TOL
    assert rel_error(single[0], out[3]) <= PARITY_TOL


def test_lod_blending_uses_the_stored_lod():
    """lod 1: the 16² image upsampled; lod 0.5: halfway between it and the 32² image."""
    _, p0, z, ref0 = load(*FIXTURES[0])
    config1, _, _, ref1 = load(*FIXTURES[1])
    _, _, _, ref05 = load(*FIXTURES[2])
    with jax.default_matmul_precision("highest"):
        out1 = run(p0, z, config1)
    assert rel_error(out1, ref1) <= PARITY_TOL
    # blocky 16² content (to rounding: lerp_clip computes img + (up - img)·1)
    np.testing.assert_allclose(out1[:, ::2, ::2], out1[:, 1::2, 1::2], rtol=0, atol=1e-5)
    assert not np.allclose(ref0[:, ::2, ::2], ref0[:, 1::2, 1::2], atol=1e-2)  # lod 0 is not
    assert rel_error(0.5 * (ref0 + ref1), ref05) <= PARITY_TOL


@pytest.mark.slow
def test_subpixel_upsample_conv_equals_nearest_then_conv():
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 5, 7, 6))
    k3 = jax.random.normal(kw, (3, 3, 6, 4))
    @jax.jit
    def three_ways(x, k3):
        plain = pggan._conv(pggan._upscale2d(x), k3, ((1, 1), (1, 1)))
        sub = pggan.upsample_conv3x3_subpixel(x, k3)
        # the fused_scale identity: transposed stride-2 conv with the padded-summed kernel
        w_ooi = jnp.flip(k3, (0, 1)).transpose(0, 1, 3, 2)
        return plain, sub, pggan.conv_transpose_stride2(x, pggan.fused_kernel(w_ooi))

    with jax.default_matmul_precision("highest"):
        plain, sub, fused = three_ways(x, k3)
    assert sub.shape == plain.shape == (2, 10, 14, 4)
    assert rel_error(sub, np.asarray(plain)) <= 1e-6
    assert rel_error(fused, np.asarray(plain)) <= 1e-6


@pytest.mark.slow
def test_celebahq_1024_architecture_random_weights():
    cfg = pggan.CELEBAHQ_1024
    assert [cfg.nf(r - 1) for r in range(2, 11)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    params = pggan.random_params(jax.random.key(0), cfg)
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    assert n_params == 23_079_115
    z = jax.random.normal(jax.random.key(1), (1, cfg.latent_size))
    # the module builds exactly the stored variables' shapes (lod 0: only ToRGB_lod0 is live)
    built = jax.eval_shape(lambda: pggan.GPaper(cfg).init(jax.random.key(0), z))["params"]
    flat = {"/".join(k.key for k in path): leaf.shape
            for path, leaf in jax.tree_util.tree_leaves_with_path(built)}
    expected = cfg.variable_shapes()
    assert {k for k in expected if k.startswith("ToRGB") and k not in flat} == {
        f"ToRGB_lod{i}/{p}" for i in range(1, 9) for p in ("weight", "bias")}
    assert all(expected[k] == s for k, s in flat.items())
    out = run(params, z, cfg, conv0="subpixel")
    assert out.shape == (1, 1024, 1024, 3) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert 0.05 < out.std() < 5 and np.abs(out).max() < 50


def test_bad_inputs_and_configs():
    cfg = pggan.PgganConfig(resolution=8, latent_size=16, fmap_base=64, fmap_max=16)
    params = pggan.random_params(jax.random.key(0), cfg)
    with pytest.raises(ValueError, match=r"latents must have shape \[N, 16\], got shape \(2, 15\)"):
        pggan.apply(params, jnp.zeros((2, 15)), config=cfg)
    with pytest.raises(ValueError, match="conv0 must be one of"):
        pggan.apply(params, jnp.zeros((2, 16)), config=cfg, conv0="bilinear")
    with pytest.raises(ValueError, match="power of two >= 4, got 48"):
        pggan.PgganConfig(resolution=48)
    with pytest.raises(ValueError, match="lod must be finite"):
        pggan.PgganConfig(resolution=8, lod=float("nan"))
    with pytest.raises(ValueError, match=r"missing \['8x8/Conv1/bias'\]"):
        pggan.params_from_variables(
            {k: v for k, v in pggan.PgganConfig(resolution=8).variable_shapes().items()
             if k != "8x8/Conv1/bias"}, pggan.PgganConfig(resolution=8))


def test_as_generator():
    config, params, z, ref = load(*FIXTURES[3])
    gen = pggan.as_generator(params, config, name="tiny16")
    assert (gen.latent_dim, gen.resolution, gen.latent_prior) == (64, 16, "normal_pixelnorm")
    with jax.default_matmul_precision("highest"):
        assert rel_error(gen(z), ref) <= PARITY_TOL
    fast = pggan.as_generator(params, config, dtype=jnp.bfloat16, conv0="subpixel")
    assert fast.info["dtype"] == "bfloat16" and rel_error(fast(z), ref) <= BF16_MAX_TOL
