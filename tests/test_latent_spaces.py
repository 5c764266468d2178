"""Axes in z, W and W+ of a style-based generator: sampling records w, fitting per space,
editing, layer-wise edits and traversals, refusals across spaces.

A 'painter' generator (the tiny32 fixture's real mapping; a synthesis that paints w+ into the
image) and an extractor reading y = mean_l w+_l · n back from the pixels give a known direction
n in W; the tiny32 StyleGAN2 fixture itself runs the whole job and the CLI end to end."""
import functools
import io
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tlgan_jax.axes import Axes
from tlgan_jax.discover import DiscoverConfig, discover_axes
from tlgan_jax.editing import edit_latents, layer_direction, render_traversal, to_wplus
from tlgan_jax.fit import fit_axes_in
from tlgan_jax.generators import Generator, WSpace, load_generator
from tlgan_jax.generators import stylegan2 as sg
from tlgan_jax.sampling import Sampler
from tlgan_jax.weights.stylegan2_pickle import load_stylegan2_pickle

from helpers import require_module, stylegan2_fixtures_dir

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def painter():
    """(generator, extractor, n_true): images [N, 16, 16, 3] hold w+ [8, 32] row by row."""
    params, cfg = sg.from_network(load_stylegan2_pickle(stylegan2_fixtures_dir() / "tiny32.pkl"))
    num_ws, d = cfg.num_layers, cfg.dlatent_size            # 8 × 32 = 256 = 16²

    def synthesis(p, wp):
        img = wp.reshape(wp.shape[0], 16, 16, 1)
        return jnp.broadcast_to(img, (*img.shape[:3], 3))

    ws = WSpace(w_dim=d, num_ws=num_ws, mapping=lambda p, z: sg.mapping(p, z, config=cfg),
                synthesis=synthesis)
    gen = Generator(name="painter", latent_dim=cfg.latent_size, resolution=16, params=params,
                    apply=lambda p, z: synthesis(p, ws.broadcast(ws.mapping(p, z))),
                    latent_prior="normal_pixelnorm", w_space=ws)
    n_true = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    n_true /= np.linalg.norm(n_true)

    def score(images):
        rows = images[..., 0].reshape(images.shape[0], num_ws, d)
        return {"a": jnp.mean(rows @ jnp.asarray(n_true), axis=1)}
    return gen, score, n_true


def cos(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_sampling_records_w_and_axes_in_each_space():
    gen, score, n_true = painter()
    samples = Sampler(gen, [score], batch_size=64).run(seed=0, num=512, progress=False)
    assert samples.w.shape == (512, 32)
    np.testing.assert_allclose(samples.w, np.asarray(gen.encode(samples.z, "w")), rtol=0, atol=0)
    key = jax.random.key(1)
    axes_w = fit_axes_in(gen, samples.z, samples.y, "w", w=samples.w, names=samples.names,
                         key=key)
    assert axes_w.latent_space == "w" and axes_w.latent_dim == 32
    assert cos(axes_w["a"], n_true) >= 0.99
    assert axes_w.metadata["num_ws"] == 8 and axes_w.diagnostics["a"]["r2"] > 0.999
    axes_wp = fit_axes_in(gen, samples.z, samples.y, "w+", names=samples.names, key=key)
    assert axes_wp.latent_space == "w+" and axes_wp.latent_dim == 256
    assert cos(axes_wp["a"], np.tile(n_true, 8)) >= 0.99
    assert np.linalg.norm(np.asarray(axes_wp["a"])) == pytest.approx(1, abs=1e-5)
    axes_z = fit_axes_in(gen, samples.z, samples.y, "z", names=samples.names, key=key)
    assert axes_z.latent_space == "z" and axes_z.latent_dim == 32


def test_axes_file_keeps_the_space(tmp_path):
    gen, score, _ = painter()
    samples = Sampler(gen, [score], batch_size=64).run(seed=0, num=256, progress=False)
    axes = fit_axes_in(gen, samples.z, samples.y, "w", names=samples.names, key=jax.random.key(0))
    again = Axes.load(axes.save(tmp_path / "axes.npz"))
    assert again.latent_space == "w" and again.metadata["w_dim"] == 32


def test_edits_in_w_and_layer_wise():
    gen, score, n_true = painter()
    axes = Axes(n_true[:, None], ("a",), metadata={"latent_space": "w"})
    gw = gen.in_space("w")
    assert (gw.latent_dim, gw.latent_space, gw.z_generator is gen) == (32, "w", True)
    w = gw.sample_latents(jax.random.key(0), 4)
    np.testing.assert_allclose(w, gen.encode(gen.sample_latents(jax.random.key(0), 4), "w"))
    y = lambda g, x: np.asarray(score(g(x))["a"])
    base = y(gw, w)
    moved = edit_latents(gw, w, axes, {"a": 2.0})
    np.testing.assert_allclose(y(gw, moved) - base, 2.0, atol=1e-5)
    # layer-wise: only the first 4 of 8 style inputs move: y (a mean over inputs) moves by 1
    wp = edit_latents(gw, w, axes, {"a": 2.0}, layers=range(0, 4))
    gwp = gen.in_space("w+")
    assert wp.shape == (4, 256)
    np.testing.assert_allclose(y(gwp, wp) - base, 1.0, atol=1e-5)
    rows = np.asarray(wp).reshape(4, 8, 32) - np.asarray(w)[:, None, :]
    np.testing.assert_allclose(rows[:, :4], np.broadcast_to(2 * n_true, (4, 4, 32)), atol=1e-5)
    assert np.all(rows[:, 4:] == 0)
    # a w+ axis edits its own rows; restricted to layers 6, 7 only those move
    axes_wp = Axes(np.tile(n_true, 8)[:, None] / np.sqrt(8), ("a",),
                   metadata={"latent_space": "w+"})
    wp0 = to_wplus(gw, w)
    out = edit_latents(gwp, wp0, axes_wp, {"a": np.sqrt(8)}, layers=[6, 7])
    diff = np.asarray(out - wp0).reshape(4, 8, 32)
    assert np.all(diff[:, :6] == 0) and np.allclose(diff[:, 6:], n_true, atol=1e-6)
    # the same on the direction itself, and traversal images
    d = np.asarray(layer_direction(gw, n_true, range(4, 8))).reshape(8, 32)
    assert np.all(d[:4] == 0) and np.allclose(d[4:], n_true)
    imgs = render_traversal(gw, w[:2], n_true, [-1.0, 0.0, 1.0], layers=range(0, 4))
    assert imgs.shape == (2, 3, 16, 16, 3)
    ys = np.asarray(score(jnp.asarray(imgs.reshape(6, 16, 16, 3)))["a"]).reshape(2, 3)
    np.testing.assert_allclose(ys[:, 2] - ys[:, 1], 0.5, atol=1e-5)


def test_spaces_are_not_mixed():
    gen, _, n_true = painter()
    axes_w = Axes(n_true[:, None], ("a",), metadata={"latent_space": "w"})
    axes_z = Axes(n_true[:, None], ("a",))               # z axes: no latent_space recorded
    z = gen.sample_latents(jax.random.key(0), 2)
    # latent sizes agree (32): only the recorded space tells them apart
    with pytest.raises(ValueError, match=r"axes are in w space but generator painter takes z "
                                         r"latents; use gen.in_space\('w'\)"):
        edit_latents(gen, z, axes_w, {"a": 1.0})
    with pytest.raises(ValueError, match="axes are in z space but generator painter@w takes w"):
        edit_latents(gen.in_space("w"), gen.encode(z, "w"), axes_z, {"a": 1.0})
    with pytest.raises(ValueError, match="layer-wise edits need W or W\\+"):
        edit_latents(gen, z, axes_z, {"a": 1.0}, layers=[0])
    with pytest.raises(ValueError, match=r"layers must be a non-empty subset of 0..7"):
        edit_latents(gen.in_space("w"), gen.encode(z, "w"), axes_w, {"a": 1.0}, layers=[8])
    with pytest.raises(ValueError, match="sample with the z generator"):
        Sampler(gen.in_space("w"), [lambda im: {"a": im.mean((1, 2, 3))}]).run(0, 4)
    only_z = Generator("toy", 4, 8, {}, lambda p, z: jnp.zeros((z.shape[0], 8, 8, 3)))
    with pytest.raises(ValueError, match="toy has no w space, only z"):
        only_z.in_space("w")
    with pytest.raises(ValueError, match="toy has no w space"):
        Axes(np.eye(4)[:, :1], ("a",), metadata={"latent_space": "w"}).check_generator(only_z)
    with pytest.raises(ValueError, match="latent space must be one of"):
        gen.in_space("s")


def test_tiny32_stylegan2_job_in_w_and_the_traverse_cli(tmp_path):
    """The real fixture end to end: sample (z, w), fit in W, evaluate edits and write
    traversals; then traverse.py renders layer-wise traversals from the axes file."""
    pkl = stylegan2_fixtures_dir() / "tiny32.pkl"
    gen = load_generator(f"stylegan2:{pkl}")

    def brightness(images):
        return {"bright": jnp.mean(images, axis=(1, 2, 3))}

    cfg = DiscoverConfig(num_samples=256, shard_size=128, batch_size=64, eval_faces=16,
                         traversal_faces=2, traversal_steps=(-1.0, 0.0, 1.0), progress=False,
                         latent_space="w")
    axes, summary = discover_axes(gen, [brightness], tmp_path / "run", cfg)
    assert axes.latent_space == "w" and axes.latent_dim == 32
    assert axes.diagnostics["bright"]["r2"] > 0.5
    assert summary["latent_space"] == "w" and summary["edits"]["success_up"]["bright"] > 0.9
    saved = Axes.load(tmp_path / "run" / "axes.npz")
    assert saved.latent_space == "w" and saved.metadata["generator"] == f"stylegan2:{pkl}"
    assert (tmp_path / "run" / "traversal_bright.png").is_file()
    json.loads((tmp_path / "run" / "summary.json").read_text())
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "traverse.py"),
                          f"--axes={tmp_path / 'run' / 'axes.npz'}", f"--out={tmp_path / 'tr'}",
                          f"--generator=stylegan2:{pkl}",   # a file is opened only when named
                          "--layers=0:4", "--faces=2", "--steps=-1,1"],
                         capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "tr" / "traversal_bright.png").is_file()
    bad = subprocess.run([sys.executable, str(ROOT / "experiments" / "traverse.py"),
                          f"--axes={tmp_path / 'run' / 'axes.npz'}", "--layers=4",
                          f"--generator=stylegan2:{pkl}",
                          f"--out={tmp_path / 'tr2'}"],
                         capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "--layers=4: must be START:STOP" in bad.stderr


def test_editor_serves_w_axes(tmp_path):
    """The editor built on W axes of the tiny32 StyleGAN2 works on w latents."""
    from tlgan_jax.serve.launch import build_editor
    pkl = stylegan2_fixtures_dir() / "tiny32.pkl"
    gen = load_generator(f"stylegan2:{pkl}")
    v = np.random.default_rng(0).standard_normal((32, 1))
    Axes.from_vectors(v, ("a",), metadata={"latent_space": "w", "generator": gen.name,
                                            "extractors": []}).save(tmp_path / "axes.npz")
    editor = build_editor(str(tmp_path / "axes.npz"), generator=gen.name, extractors=["gender"])
    assert editor.gen.latent_space == "w" and editor.gen.latent_dim == 32
    w, _ = editor.random_latent(3)
    np.testing.assert_allclose(w, np.asarray(gen.encode(gen.sample_latents(
        jax.random.key(3), 1), "w"))[0], rtol=1e-6)
    out = editor.render(w, {"a": 1.5}, [])
    np.testing.assert_allclose(out["z_edited"], np.asarray(w) + 1.5 * v[:, 0] / np.linalg.norm(v),
                               atol=1e-5)
    assert out["png"][:4] == b"\x89PNG" and "male" in out["scores"]


def test_views_are_made_once_so_their_jit_compiles_once():
    """`in_space` gives the same view object every time (its jitted apply is cached), from
    the z generator and from another view alike."""
    gen = load_generator(f"stylegan2:{stylegan2_fixtures_dir() / 'tiny32.pkl'}")
    assert gen.in_space("w+") is gen.in_space("w+") is gen.in_space("w").in_space("w+")
    assert gen.in_space("w").in_space("z") is gen and gen.in_space("z") is gen
    gw = gen.in_space("w")
    gw(gw.sample_latents(jax.random.key(0), 2))
    assert gen.in_space("w")._jitted is gw._jitted


def test_parse_layers_ranges_and_presets():
    """START:STOP is a Python slice of the style inputs; GANSpace's names are coarse 0:4,
    middle 4:8, fine 8:; a choice of no input or another form is refused."""
    from tlgan_jax.editing import layer_presets, parse_layers
    assert parse_layers("coarse", 18) == [0, 1, 2, 3]
    assert parse_layers("middle", 18) == [4, 5, 6, 7]
    assert parse_layers("fine", 18) == list(range(8, 18))
    assert parse_layers("-2:", 18) == [16, 17] and parse_layers(":3", 8) == [0, 1, 2]
    assert parse_layers(None, 18) is None and parse_layers("fine") == []   # form only
    assert layer_presets(18) == {"coarse": [0, 1, 2, 3], "middle": [4, 5, 6, 7],
                                 "fine": list(range(8, 18))}
    assert layer_presets(6) == {"coarse": [0, 1, 2, 3], "middle": [4, 5]}
    for bad, what in (("fine", "selects no style input"), ("3:3", "selects no style input"),
                      ("1:2:3", "must be START:STOP"), ("coarse2", "must be START:STOP")):
        with pytest.raises(ValueError, match=what):
            parse_layers(bad, 8)


def test_editor_layer_wise_edits(tmp_path):
    """The editor's layer-wise edits (W axes of tiny32, 8 style inputs): each attribute moves
    only its style inputs; image and w+ latent equal the library's `edit_latents(layers=)`
    rendered in W+, over HTTP too; bad layer choices get 400 naming the field."""
    require_module("fastapi")                   # the `ui` extra
    from fastapi.testclient import TestClient

    from tlgan_jax.generators import to_uint8
    from tlgan_jax.serve import Editor, EditorError, create_app
    pkl = stylegan2_fixtures_dir() / "tiny32.pkl"
    gen = load_generator(f"stylegan2:{pkl}")
    gw, gp = gen.in_space("w"), gen.in_space("w+")
    v = np.random.default_rng(1).standard_normal((32, 2))
    axes = Axes.from_vectors(v, ("a", "b"), metadata={"latent_space": "w",
                                                       "generator": gen.name})
    editor = Editor(gw, [], axes)
    assert editor.layer_info() == {"num_ws": 8, "presets": {"coarse": [0, 1, 2, 3],
                                                            "middle": [4, 5, 6, 7]}}
    w = np.asarray(editor.random_latent(5)[0], np.float32)

    def image(png):
        return np.asarray(Image.open(io.BytesIO(png)), np.int16)

    def expected(latents, g):
        return np.asarray(to_uint8(g(latents)))[0].astype(np.int16)

    amounts = {"a": 2.0, "b": -1.5}
    whole = editor.render(w, amounts, [])
    assert whole["z_edited_space"] == "w"
    want_w = edit_latents(gw, w[None], axes, amounts)
    np.testing.assert_allclose(whole["z_edited"], np.asarray(want_w)[0], atol=1e-5)
    assert np.abs(image(whole["png"]) - expected(want_w, gw)).max() <= 1

    layered = editor.render(w, amounts, [], layers={"a": "coarse", "b": "5:7"})
    want = (to_wplus(gw, w[None]) + layer_direction(gw, 2.0 * axes["a"], range(0, 4))
            + layer_direction(gw, -1.5 * axes["b"], [5, 6]))
    assert layered["z_edited_space"] == "w+"
    np.testing.assert_allclose(layered["z_edited"], np.asarray(want)[0], atol=1e-5)
    rows = np.asarray(layered["z_edited"]).reshape(8, 32) - w
    np.testing.assert_allclose(rows[7], 0, atol=1e-6)        # style input 7: neither moved
    got = image(layered["png"])
    assert np.abs(got - expected(want, gp)).max() <= 1
    assert np.abs(got - image(whole["png"])).max() > 10       # a different face than all-layer
    # one attribute locked, the other on its layers: as edit_latents(lock=, layers=)
    locked = editor.edit(w, {"a": 2.0}, ["b"], layers={"a": "4:"})
    want = edit_latents(gw, w[None], axes, {"a": 2.0}, lock=["b"], layers=range(4, 8))
    assert locked[1] == "w+"
    np.testing.assert_allclose(locked[0], np.asarray(want)[0], atol=1e-5)
    for layers, what in (({"a": "fine"}, "selects no style input"),
                         ({"a": "9:"}, "selects no style input"),
                         ({"a": "x"}, "must be START:STOP"),
                         ({"c": "0:4"}, "unknown attribute")):
        with pytest.raises(EditorError, match=what) as e:
            editor.render(w, amounts, [], layers=layers)
        assert e.value.status == 400 and str(e.value).startswith("layers")
    # z axes have no style inputs
    zed = Editor(gen, [], Axes.from_vectors(np.ones((gen.latent_dim, 1)), ("a",),
                                            metadata={"generator": gen.name}))
    assert zed.layer_info() is None
    with pytest.raises(EditorError, match="layer-wise edits need W or W\\+ axes"):
        zed.render(np.zeros(gen.latent_dim), {"a": 1.0}, [], layers={"a": "0:4"})

    # over HTTP: the same state, the same w+ latent; /api/info lists the layers
    client = TestClient(create_app(editor), base_url="http://127.0.0.1")
    info = client.get("/api/info").json()
    assert info["layers"]["num_ws"] == 8 and info["generator"]["latent_space"] == "w"
    r = client.post("/api/render", json={"z": w.tolist(), "amounts": amounts,
                                         "layers": {"a": "coarse", "b": "5:7"}})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["z_edited"], layered["z_edited"], atol=1e-6)
    r = client.post("/api/edit", json={"z": w.tolist(), "amounts": amounts,
                                       "layers": {"a": "0:99999"}})
    assert r.status_code == 422                       # the schema's pattern
    r = client.post("/api/edit", json={"z": w.tolist(), "amounts": amounts,
                                       "layers": {"a": "fine"}})   # 8: no preset "fine" here
    assert r.status_code == 422
    r = client.post("/api/edit", json={"z": w.tolist(), "amounts": amounts,
                                       "layers": {"a": "5:2"}})
    assert r.status_code == 400 and "selects no style input" in r.json()["detail"]


def test_sefa_and_ganspace_baselines_in_w():
    """SeFa on StyleGAN2's style weights and GANSpace's PCA of w, on the tiny32 fixture."""
    from tlgan_jax.fit.unsupervised import (
        first_layer_features,
        first_layer_weight,
        ganspace_directions,
        sefa_directions,
    )
    pkl = stylegan2_fixtures_dir() / "tiny32.pkl"
    gen = load_generator(f"stylegan2:{pkl}")
    gw = gen.in_space("w")
    v = load_stylegan2_pickle(pkl).variables
    names = ["4x4/Conv", "8x8/Conv0_up", "8x8/Conv1", "16x16/Conv0_up", "16x16/Conv1",
             "32x32/Conv0_up", "32x32/Conv1", "32x32/ToRGB"]        # one per style input
    a = np.concatenate([v[f"synthesis/{n}/mod_weight"] for n in names], 1).astype(np.float64)
    a /= np.linalg.norm(a, axis=0)
    values, vectors = np.linalg.eigh(a @ a.T)
    ours, _ = sefa_directions(first_layer_weight(gw), 3)
    for j in range(3):
        assert abs(cos(ours[:, j], vectors[:, -1 - j])) >= 0.999
    # GANSpace in W: the principal directions of w
    w = np.asarray(gen.encode(gen.sample_latents(jax.random.key(5), 4000), "w"), np.float64)
    _, _, vt = np.linalg.svd(w - w.mean(0), full_matrices=False)
    dirs, _ = ganspace_directions(first_layer_features(gw), 32, jax.random.key(0), 2, 4000,
                                  sample_latents=lambda k, n: gw.sample_latents(k, n))
    assert abs(cos(dirs[:, 0], vt[0])) >= 0.99
    # as registry methods, in W, through fit_axes_in
    z = gen.sample_latents(jax.random.key(6), 256)
    y = np.asarray(gen.encode(z, "w")) @ vectors[:, -1:]          # a score along SeFa's top
    axes = fit_axes_in(gen, z, y, "w", method="sefa", generator=gw, names=("a",),
                       key=jax.random.key(0))
    assert axes.latent_space == "w" and abs(cos(axes["a"], vectors[:, -1])) >= 0.999
    assert fit_axes_in(gen, z, y, "w", method="ganspace", generator=gw, names=("a",),
                       key=jax.random.key(0), num_samples=1000).latent_dim == 32
    with pytest.raises(ValueError, match="has no 'first_layer' hook"):   # none in W+
        first_layer_weight(gen.in_space("w+"))
