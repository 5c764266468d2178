"""Unsupervised baselines: SeFa (closed form from the first layer) and GANSpace (PCA of an
activation regressed back to z), the generator hooks, and their registry methods."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlgan_jax.fit import METHODS, fit_axes
from tlgan_jax.fit import unsupervised as un
from tlgan_jax.generators import Generator, dcgan, pggan


def abs_cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b))


def planted_first_layer(d=24, m=4096, scales=(6.0, 3.0, 1.5), noise=0.02, seed=0):
    """W = U diag(s) G + noise: the column space is dominated by the planted U [d, r]."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(d, len(scales))))
    w = u @ np.diag(scales) @ rng.normal(size=(len(scales), m)) + noise * rng.normal(size=(d, m))
    return w.astype(np.float32), u


def test_sefa_recovers_planted_directions_in_order():
    w, u = planted_first_layer()
    dirs, values = un.sefa_directions(w, num_directions=5)
    assert dirs.shape == (24, 5) and values.shape == (5,)
    assert np.all(np.diff(values) <= 0)                               # largest first
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=0), 1.0, atol=1e-6)
    for i in range(3):
        assert abs_cos(dirs[:, i], u[:, i]) > 0.995, i
    # the planted rank-3 part carries almost all of the normalised columns' energy
    assert values[:3].sum() > 0.99 * np.trace((w / np.linalg.norm(w, axis=0)) @
                                              (w / np.linalg.norm(w, axis=0)).T)


def test_sefa_matches_the_reference_recipe():
    # SeFa's own code: weight / norm(weight, axis=0); eig(weight @ weight.T); sort descending
    w, _ = planted_first_layer(d=16, m=300, scales=(3.0, 2.0, 1.2, 0.8), noise=0.3, seed=1)
    wn = w.astype(np.float64) / np.linalg.norm(w, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(wn @ wn.T)
    order = np.argsort(values.real)[::-1]
    dirs, ours = un.sefa_directions(w, num_directions=None)
    np.testing.assert_allclose(ours, values.real[order], rtol=1e-5)
    for i in range(16):
        assert abs_cos(dirs[:, i], vectors[:, order[i]].real) > 1 - 1e-6


def test_ganspace_pca_and_regression_recover_a_planted_principal_direction():
    d, m = 16, 512
    rng = np.random.default_rng(2)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    v = rng.normal(size=m)
    v /= np.linalg.norm(v)
    mix = jnp.asarray(0.3 * rng.normal(size=(d, m)) / np.sqrt(m), jnp.float32)
    u_j, v_j = jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32)

    def features(z):   # the top principal direction v of f is driven by z·u (plus a ReLU part)
        return 4.0 * (z @ u_j)[:, None] * v_j[None, :] + jax.nn.relu(z @ mix) + 1.0

    dirs, variances = un.ganspace_directions(features, d, jax.random.key(0), num_directions=3,
                                             num_samples=4000)
    assert dirs.shape == (d, 3) and np.all(np.diff(variances) <= 0)
    assert abs_cos(dirs[:, 0], u) > 0.995
    assert variances[0] == pytest.approx(16.0, rel=0.1)              # Var(4 z·u) = 16


def test_pca_top_matches_the_full_eigendecomposition():
    rng = np.random.default_rng(3)
    basis = jnp.asarray(rng.normal(size=(8, 40)) * np.linspace(3, 0.2, 8)[:, None], jnp.float32)

    def features(z):
        return jnp.tanh(z @ basis)

    z = rng.normal(size=(3000, 8)).astype(np.float32)
    mean, top, variances = un.pca_top(features, z, 4, jax.random.key(1), chunk_size=700)
    h = np.tanh(z.astype(np.float64) @ np.asarray(basis, np.float64))
    cov = np.cov(h, rowvar=False)
    ref_values, ref_vectors = np.linalg.eigh(cov)
    np.testing.assert_allclose(mean, h.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(variances, ref_values[::-1][:4], rtol=1e-3)
    for i in range(4):
        assert abs_cos(top[:, i], ref_vectors[:, -1 - i]) > 0.999


def dcgan_first_layer_only(seed=0):
    """A DCGAN generator whose params hold only the first layer (all the hooks read)."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {"project": {"kernel": 0.02 * jax.random.normal(k1, (100, 4, 4, 512)),
                          "bias": 0.1 * jax.random.normal(k2, (512,))}}
    return dcgan.as_generator(params, name="dcgan-random")


def test_dcgan_hooks_read_the_first_layer():
    gen = dcgan_first_layer_only()
    params = gen.params
    w = un.first_layer_weight(gen)
    assert w.shape == (100, 16 * 512)
    np.testing.assert_array_equal(w, np.asarray(params["project"]["kernel"]).reshape(100, -1))
    z = jax.random.normal(jax.random.key(1), (3, 100))
    # the generator's own first layer (DCGANGenerator: relu(Project(512, name="project")(z)))
    project = dcgan.Project(512).apply({"params": params["project"]}, z)      # [3, 4, 4, 512]
    np.testing.assert_allclose(un.first_layer_features(gen)(z),
                               jax.nn.relu(project).reshape(3, -1), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_pggan_hooks_read_the_first_layer():
    cfg = pggan.PgganConfig(resolution=8, latent_size=16, fmap_base=64, fmap_max=32)
    params = pggan.random_params(jax.random.key(0), cfg)
    gen = pggan.as_generator(params, cfg)
    w = un.first_layer_weight(gen)
    np.testing.assert_array_equal(w, np.asarray(params["4x4"]["Dense"]["weight"]))
    z = jax.random.normal(jax.random.key(1), (3, 16))
    _, state = pggan.GPaper(cfg).apply({"params": params}, z, capture_intermediates=True)
    dense = state["intermediates"]["4x4"]["Dense"]["__call__"][0]       # [3, 4, 4, 32] NHWC
    act = jnp.maximum(0.2 * dense, dense)
    expected = act * jax.lax.rsqrt(jnp.mean(act ** 2, axis=-1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(un.first_layer_features(gen)(z), expected.reshape(3, -1),
                               rtol=1e-5, atol=1e-6)


def test_unknown_generator_layout_and_bad_inputs_raise_clear_errors():
    gen = Generator("toy", 4, 8, {"w": jnp.zeros((4, 8))}, lambda p, z: z)
    with pytest.raises(ValueError, match="'toy' has no 'first_layer' hook.*pass weight="):
        un.first_layer_weight(gen)
    with pytest.raises(ValueError, match="'toy' has no 'features' hook.*pass features="):
        un.first_layer_features(gen)
    z = np.zeros((10, 4), np.float32)
    y = np.zeros((10, 1), np.float32)
    masks = np.ones((1, 10))
    with pytest.raises(ValueError, match="exactly one of generator=, weight=, directions="):
        un.fit_sefa(z, y, masks)
    with pytest.raises(ValueError, match="exactly one"):
        un.fit_sefa(z, y, masks, weight=np.ones((4, 3)), directions=np.eye(4))
    with pytest.raises(ValueError, match="weight has 5 rows but the latents have size 4"):
        un.fit_sefa(z, y, masks, weight=np.ones((5, 3)))
    with pytest.raises(ValueError, match="column\\(s\\) of the first-layer weight are zero"):
        un.sefa_directions(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="num_directions must be in \\[1, 4\\]"):
        un.sefa_directions(np.ones((4, 3)), num_directions=5)
    with pytest.raises(ValueError, match="candidate directions must have shape"):
        un.match_candidates(z, y, masks, np.ones((3, 2)))
    with pytest.raises(ValueError, match="num_samples must be at least"):
        un.ganspace_directions(lambda q: q, 4, jax.random.key(0), num_directions=3, num_samples=5)


@pytest.mark.slow
def test_registry_methods_pick_the_best_candidate_with_the_right_sign():
    assert METHODS["sefa"] is un.fit_sefa and METHODS["ganspace"] is un.fit_ganspace
    w, u = planted_first_layer(d=24, seed=4)
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4000, 24)).astype(np.float32)
    # attribute "x" rises along −u_1, "w" is mostly along u_0: both are planted SeFa directions
    y = np.stack([-(z @ u[:, 1]) + 0.5 * rng.normal(size=4000),
                  2 * (z @ u[:, 0]) + 3.0 + rng.normal(size=4000)], axis=1).astype(np.float32)
    axes = fit_axes(z, y, "sefa", names=("x", "w"), key=jax.random.key(0), weight=w,
                    num_directions=5)
    assert axes.method == "sefa"
    assert float(np.asarray(axes["x"]) @ -u[:, 1]) > 0.99                # sign: x increases
    assert float(np.asarray(axes["w"]) @ u[:, 0]) > 0.99
    dx, dw = axes.diagnostics["x"], axes.diagnostics["w"]
    assert (dx["candidate"], dw["candidate"]) == (1, 0)
    assert dx["split_half_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert dx["candidate_corr"] == pytest.approx(1 / np.sqrt(1.25), abs=0.02)
    assert dw["coef_norm"] == pytest.approx(2.0, rel=0.05)              # slope per unit step
    assert dw["intercept"] == pytest.approx(3.0, abs=0.1)
    assert axes.metadata["fit"]["opts"]["candidates_from"] == "weight"
    # the same from precomputed candidates, and GANSpace from a DCGAN generator end to end
    same = fit_axes(z, y, "sefa", names=("x", "w"), key=jax.random.key(0),
                    directions=un.sefa_directions(w, 5)[0])
    np.testing.assert_allclose(same.directions, axes.directions, atol=1e-6)
    gen = dcgan_first_layer_only()
    zg = rng.normal(size=(600, 100)).astype(np.float32)
    gs = fit_axes(zg, zg[:, :2] @ np.array([[1.0], [0.5]]), "ganspace", key=jax.random.key(1),
                  generator=gen, num_directions=8, num_samples=1000)
    assert gs.directions.shape == (100, 1) and 0 <= gs.diagnostics["attr0"]["candidate"] < 8
