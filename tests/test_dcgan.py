"""DigiFace DCGAN generator: PyTorch parity, exact transposed-conv maths, batch independence,
jit/vmap, and clear errors on a wrong state dict."""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlgan_jax.generators import dcgan

from helpers import PARITY_TOL, pinned_file
from helpers import rel_error as _rel

GOLDEN = Path(__file__).parent / "golden" / "dcgan.npz"
TOL = PARITY_TOL


@pytest.fixture(scope="module")
def weights_path() -> Path:
    return pinned_file("gan-face-generate", "gan_face_generate/weights.tar")


@pytest.fixture(scope="module")
def params(weights_path):
    return dcgan.load(weights_path)


@pytest.fixture(scope="module")
def generate():
    return jax.jit(dcgan.apply)


def test_parity_with_pytorch(params, generate):
    golden = np.load(GOLDEN)
    with jax.default_matmul_precision("highest"):
        images = np.asarray(generate(params, jnp.asarray(golden["z"])))
    assert images.shape == (8, 64, 64, 3) and images.dtype == np.float32
    assert _rel(images, golden["images"]) <= TOL
    assert np.all(np.abs(images) <= 1.0)
    assert np.linalg.norm(golden["z"][7]) > 30  # the large-norm latent is part of the check


def _torch_conv_transpose_f64(x, weight, stride, pad):
    """PyTorch ConvTranspose2d by its definition (scatter), NHWC float64; weight [I, O, k, k]."""
    n, h, w, _ = x.shape
    k, cout = weight.shape[-1], weight.shape[1]
    full = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, cout))
    for iy in range(h):
        for ix in range(w):
            full[:, iy * stride:iy * stride + k, ix * stride:ix * stride + k] += np.einsum(
                "ni,iohw->nhwo", x[:, iy, ix], weight)
    return full[:, pad:full.shape[1] - pad, pad:full.shape[2] - pad]


@pytest.mark.parametrize("impl", ["subpixel", "dilated"])
def test_transposed_conv_matches_pytorch_definition(impl):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 5, 3, 6)
    weight = rng.randn(6, 4, 4, 4)                          # torch layout [Cin, Cout, kh, kw]
    kernel = jnp.asarray(weight.transpose(2, 3, 0, 1), jnp.float32)  # scatter order [kh, kw, I, O]
    with jax.default_matmul_precision("highest"):
        if impl == "subpixel":
            out = dcgan.conv_transpose_s2k4p1(jnp.asarray(x, jnp.float32), kernel)
        else:
            out = dcgan.conv_transpose_dilated(jnp.asarray(x, jnp.float32), kernel, 2, 1)
    expected = _torch_conv_transpose_f64(x, weight, 2, 1)
    assert out.shape == (2, 10, 6, 4)
    assert _rel(out, expected) <= 1e-6


def test_first_layer_matmul_matches_pytorch_definition():
    rng = np.random.RandomState(1)
    z, weight = rng.randn(3, 7), rng.randn(7, 5, 4, 4)
    kernel = jnp.asarray(weight.transpose(0, 2, 3, 1), jnp.float32)
    with jax.default_matmul_precision("highest"):
        out = dcgan.Project(5).apply({"params": {"kernel": kernel, "bias": jnp.zeros(5)}},
                                     jnp.asarray(z, jnp.float32))
    expected = _torch_conv_transpose_f64(z[:, None, None, :], weight, 1, 0)
    assert _rel(out, expected) <= 1e-6


def test_batch_size_independence(params, generate):
    z = jax.random.normal(jax.random.key(3), (8, dcgan.LATENT_DIM))
    batch = np.asarray(generate(params, z))
    other = np.asarray(generate(params, z.at[1:].multiply(-2.0)))   # same row 0, other company
    for i in (0, 5):
        single = np.asarray(generate(params, z[i:i + 1]))
        # XLA's CPU GEMM picks kernels by batch size: equal up to float32 rounding (~1e-6)
        np.testing.assert_allclose(single[0], batch[i], rtol=0, atol=TOL)
    np.testing.assert_allclose(other[0], batch[0], rtol=0, atol=TOL)


def test_jit_and_vmap(params, generate):
    z = jax.random.normal(jax.random.key(4), (2, 3, dcgan.LATENT_DIM))
    mapped = jax.jit(jax.vmap(dcgan.apply, in_axes=(None, 0)))(params, z)
    flat = generate(params, z.reshape(6, dcgan.LATENT_DIM))
    assert mapped.shape == (2, 3, 64, 64, 3)
    np.testing.assert_allclose(np.asarray(mapped).reshape(6, 64, 64, 3), np.asarray(flat),
                               rtol=0, atol=TOL)
    eager = dcgan.apply(params, z[0])
    np.testing.assert_allclose(np.asarray(eager), np.asarray(flat[:3]), rtol=0, atol=TOL)


def test_wrong_latent_shape_is_named(params):
    with pytest.raises(ValueError,
                       match=r"latents must have shape \[N, 100\], got \(2, 100, 1, 1\)"):
        dcgan.apply(params, jnp.zeros((2, 100, 1, 1)))
    with pytest.raises(ValueError, match=r"got \(2, 512\)"):
        jax.jit(dcgan.apply)(params, jnp.zeros((2, 512)))


def test_init_has_the_layout_of_converted_params(params):
    fresh = jax.eval_shape(dcgan.init, jax.random.key(0))
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    assert [a.shape for a in jax.tree.leaves(fresh)] == [a.shape for a in jax.tree.leaves(params)]


def test_bn_folding_is_the_eval_mode_batchnorm():
    rng = np.random.RandomState(2)
    state = {}
    for (conv, bn, _), cin, cout in zip(dcgan._LAYERS, dcgan._CHANNELS[:-1], dcgan._CHANNELS[1:]):
        state[f"{conv}.weight"] = rng.randn(cin, cout, 4, 4).astype(np.float32)
        if bn:
            state.update({f"{bn}.weight": rng.rand(cout) + 0.5, f"{bn}.bias": rng.randn(cout),
                          f"{bn}.running_mean": rng.randn(cout),
                          f"{bn}.running_var": rng.rand(cout),
                          f"{bn}.num_batches_tracked": np.array(5)})
    p = dcgan.convert_state_dict(state)
    g, b = state["main.7.weight"], state["main.7.bias"]
    m, v = state["main.7.running_mean"], state["main.7.running_var"]
    scale = g / np.sqrt(v + 1e-5)
    folded = state["main.6.weight"] * scale[None, :, None, None]
    np.testing.assert_allclose(p["up2"]["kernel"], folded.transpose(2, 3, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(p["up2"]["bias"], b - m * scale, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(p["to_rgb"]["bias"], np.zeros(3, np.float32))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(p))


def test_wrong_state_dict_is_named(params, weights_path):
    from tlgan_jax.weights.torch_zip import load_torch_zip
    state = load_torch_zip(weights_path)["netG_state_dict"]
    missing = {k: v for k, v in state.items() if k != "main.7.running_var"}
    with pytest.raises(ValueError, match="missing key 'main.7.running_var'"):
        dcgan.convert_state_dict(missing)
    wrong = dict(state, **{"main.12.weight": np.zeros((64, 1, 4, 4), np.float32)})
    with pytest.raises(ValueError, match=r"'main.12.weight' has shape \(64, 1, 4, 4\), expected "
                                         r"\(64, 3, 4, 4\)"):
        dcgan.convert_state_dict(wrong)
