"""Editing, edit evaluation and the discover pipeline on a toy generator with known structure."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlgan_jax.axes import Axes, orthogonal_to_others
from tlgan_jax.discover import DiscoverConfig, default_axes, discover_axes
from tlgan_jax.editing import (
    edit_directions,
    edit_latents,
    edit_report,
    judges_for,
    render_traversal,
    traversal_latents,
)
from tlgan_jax.extractors import FaceDescriptor, custom_extractor
from tlgan_jax.fit import fit_axes
from tlgan_jax.generators import Generator
from tlgan_jax.sampling import Sampler

from toy import toy_extractor, toy_generator


def _axes(d=16):
    rng = np.random.default_rng(0)
    return Axes.from_vectors(rng.normal(size=(d, 3)), ("a", "b", "c"), method="ols",
                             metadata={"generator": "toy", "latent_dim": d})


def test_edit_moves_along_unit_axes_and_lock_keeps_locked_scores():
    gen, axes = toy_generator(), _axes()
    z = np.asarray(gen.sample_latents(jax.random.key(0), 5))
    z2 = np.asarray(edit_latents(gen, z, axes, {"a": 2.0}))
    np.testing.assert_allclose(z2 - z, 2.0 * np.broadcast_to(np.asarray(axes["a"]), z.shape),
                               atol=1e-6)
    z3 = np.asarray(edit_latents(gen, z, axes, {"a": 2.0}, lock=["b", "c"]))
    delta = z3 - z
    # locked: the move is orthogonal to the locked axes, so their linear scores do not change
    np.testing.assert_allclose(delta @ np.asarray(axes.directions[:, 1:]), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(delta, axis=1), 2.0, rtol=1e-5)


def test_pixelnorm_generators_edit_on_the_sphere():
    base = toy_generator()
    gen = Generator("toy-pn", base.latent_dim, base.resolution, base.params, base.apply,
                    latent_prior="normal_pixelnorm")
    z = 10.0 * np.asarray(gen.sample_latents(jax.random.key(1), 4))
    c = np.asarray(gen.canonical_latents(z))
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), np.sqrt(gen.latent_dim), rtol=1e-5)
    z2 = np.asarray(edit_latents(gen, z, _axes(), {"a": 1.0}))
    np.testing.assert_allclose(z2 - c, np.broadcast_to(np.asarray(_axes()["a"]), c.shape),
                               atol=1e-5)


def test_bad_edits_give_clear_errors():
    gen, axes = toy_generator(), _axes()
    z = np.zeros((2, 16), np.float32)
    with pytest.raises(ValueError, match="unknown attribute"):
        edit_latents(gen, z, axes, {"smile": 1.0})
    with pytest.raises(ValueError, match="finite"):
        edit_latents(gen, z, axes, {"a": float("nan")})
    with pytest.raises(ValueError, match="both move and lock"):
        edit_latents(gen, z, axes, {"a": 1.0}, lock=["a"])
    with pytest.raises(ValueError, match="NaN"):
        edit_latents(gen, np.full((2, 16), np.nan, np.float32), axes, {"a": 1.0})
    with pytest.raises(ValueError, match="latent size"):
        edit_latents(toy_generator(latent_dim=8), np.zeros((2, 8), np.float32), axes, {"a": 1.0})


def test_traversal_shapes_and_centre_column_is_the_face():
    gen, axes = toy_generator(), _axes()
    z = np.asarray(gen.sample_latents(jax.random.key(2), 3))
    zz = np.asarray(traversal_latents(gen, z, axes["a"], [-1, 0, 1]))
    assert zz.shape == (3, 3, 16)
    np.testing.assert_allclose(zz[:, 1], z)
    imgs = render_traversal(gen, z, axes["a"], [-1, 0, 1])
    assert imgs.shape == (3, 3, 8, 8, 3)
    np.testing.assert_allclose(imgs[:, 1], np.asarray(gen(z)), atol=1e-6)


def test_edit_report_success_and_entanglement_before_and_after_locking():
    # linear generator, two strongly entangled linear scores: b contains a
    gen = toy_generator(linear=True)
    ext = custom_extractor(
        lambda im: {"a": im.mean(axis=(1, 2, 3)),
                    "b": im.mean(axis=(1, 2, 3))
                    + 0.3 * (im[..., 0] - im[..., 2]).mean(axis=(1, 2))},
        ("a", "b"), name="entangled")
    sampler = Sampler(gen, [ext], batch_size=256)
    s = sampler.run(seed=0, num=4096, progress=False, shard_size=4096)
    axes = fit_axes(s.z, s.y, names=s.names, key=jax.random.key(0))
    assert min(d["r2"] for d in axes.diagnostics.values()) > 0.999
    z = np.asarray(gen.sample_latents(jax.random.key(9), 256))
    free = edit_report(sampler.label, sampler.names, z, axes, step=1.0)
    assert free.success_up.min() == 1.0 and free.success_down.min() == 1.0
    np.testing.assert_allclose(np.diag(free.entanglement), 1.0, rtol=1e-6)
    assert free.entanglement[0, 1] > 0.5            # editing a drags b along
    locked = edit_report(sampler.label, sampler.names, z, axes, step=1.0, lock_others=True)
    assert abs(locked.entanglement[0, 1]) < 0.01    # ... unless b is locked
    assert locked.success_up[0] == 1.0
    # the report's numbers are what a direct re-score gives
    n_a = np.asarray(axes["a"])
    direct = np.mean(sampler.label(z + n_a)[:, 1] - sampler.label(z - n_a)[:, 1]) / np.mean(
        sampler.label(z + n_a)[:, 0] - sampler.label(z - n_a)[:, 0])
    np.testing.assert_allclose(free.entanglement[0, 1], direct, rtol=1e-4)


def test_discover_axes_end_to_end_writes_everything(tmp_path):
    gen = toy_generator()
    cfg = DiscoverConfig(num_samples=2048, shard_size=1024, eval_faces=64, traversal_faces=3,
                         progress=False)
    axes, summary = discover_axes(gen, [toy_extractor()], tmp_path, cfg)
    for f in ("axes.npz", "summary.md", "summary.json", "traversal_bright.png",
              "traversal_redder.png", "samples/manifest.json"):
        assert (tmp_path / f).exists(), f
    loaded = Axes.load(tmp_path / "axes.npz")
    np.testing.assert_allclose(np.asarray(loaded.directions), np.asarray(axes.directions))
    assert loaded.metadata["generator"] == "toy" and loaded.metadata["num_samples"] == 2048
    # regression floor (toy generator, from runs of this code)
    assert json.loads((tmp_path / "summary.json").read_text())["edits"]["success_up"]["bright"] > .9
    assert "| bright |" in (tmp_path / "summary.md").read_text()
    # a rerun resumes from the finished shards and gives the same axes
    axes2, _ = discover_axes(gen, [toy_extractor()], tmp_path, cfg)
    np.testing.assert_allclose(np.asarray(axes2.directions), np.asarray(axes.directions),
                               atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["logistic", "svm"])
def test_discover_axes_fits_continuous_attributes_with_every_method(tmp_path, method):
    # `bright` is continuous: logistic splits it at its median, svm takes its extremes
    gen = toy_generator()
    cfg = DiscoverConfig(num_samples=2048, shard_size=1024, eval_faces=64, traversal_faces=2,
                         method=method, progress=False)
    axes, summary = discover_axes(gen, [toy_extractor()], tmp_path, cfg)
    ols, _ = discover_axes(gen, [toy_extractor()], tmp_path / "ols",
                           dataclasses.replace(cfg, method="ols"))
    # regression floors below (toy generator, from runs of this code)
    for name in ("bright", "redder"):     # the same attribute directions, up to the method
        assert float(np.dot(axes[name], ols[name])) > 0.9, (method, name)
    summary = json.loads((tmp_path / "summary.json").read_text(),   # strict JSON: no NaN tokens
                         parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert summary["edits"]["success_up"]["bright"] > .9


def test_locks_ignore_dependent_axes_that_take_no_part():
    # c repeats b: locking b still leaves a well defined, and "a against all others" too
    rng = np.random.default_rng(0)
    v = rng.normal(size=(8, 3))
    axes = Axes.from_vectors(np.concatenate([v, v[:, 1:2]], 1), ("a", "b", "x", "c"))
    a_lock_b = np.asarray(edit_directions(axes, ["a"], ["b"]))[:, 0]
    np.testing.assert_allclose(a_lock_b, np.asarray(
        axes.disentangle(lock=["b"], target=["a"])["a"]), atol=1e-6)
    others = orthogonal_to_others(axes, strict=False)
    assert np.all(np.isfinite(others[:, [0, 2]]))            # a and x: orthogonal to the rest
    span = np.asarray(axes.directions)[:, 1:]
    assert np.abs(span.T @ others[:, 0]).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(others[:, [0, 2]], axis=0), 1.0, rtol=1e-6)
    # b and c lie in each other's span: nothing is left of them
    assert np.all(np.isnan(others[:, [1, 3]]))
    with pytest.raises(ValueError, match="'b' lies in the span of the other axes"):
        orthogonal_to_others(axes, ["b"])


def _judged_setup():
    gen = toy_generator()
    own = custom_extractor(lambda im: {"a": im.mean(axis=(1, 2, 3))}, ("a",), name="own")
    # an independent net that scores the same concept backwards: it must disagree
    judge = custom_extractor(lambda im: {"a_judge": -im.mean(axis=(1, 2, 3))}, ("a_judge",),
                             name="judge")
    desc = FaceDescriptor(name="toydesc", dim=3, threshold=0.05, input_shape=(3, 8, 8),
                          params=None, raw_apply=lambda p, x: x.mean(axis=(2, 3)),
                          preprocess=lambda im: jnp.transpose(im, (0, 3, 1, 2)))
    return gen, own, judge, desc


def test_edit_report_per_judge_and_identity_figures_match_a_direct_rescore():
    gen, own, judge, desc = _judged_setup()
    s = Sampler(gen, [own], batch_size=256).run(seed=0, num=2048, progress=False)
    axes = fit_axes(s.z, s.y, names=s.names, key=jax.random.key(0))
    z = np.asarray(gen.sample_latents(jax.random.key(3), 128))
    n = np.asarray(axes["a"])
    d0, dp, dm = (np.asarray(desc(gen(z + t * n))) for t in (0.0, 1.0, -1.0))
    dist_p, dist_m = np.linalg.norm(dp - d0, axis=1), np.linalg.norm(dm - d0, axis=1)
    thr = float(np.median(dist_p))                   # a threshold that splits these faces
    desc = dataclasses.replace(desc, threshold=thr)
    ev = Sampler(gen, [own, judge, desc.as_extractor()], batch_size=256)
    rep = edit_report(ev.label, ev.names, z, axes, step=1.0,
                      judges=judges_for(axes.names, ev.names, [("a", "a_judge")]),
                      descriptor=(desc.columns, desc.threshold))
    assert rep.scored == ("a", "a_judge")            # descriptor columns are not attributes
    assert rep.success_up[0] == 1.0                  # own judge
    assert rep.judged == {"a": {"a_judge": (0.0, 0.0)}}   # the backwards judge disagrees
    assert 0.3 < np.mean(dist_p < thr) < 0.7
    np.testing.assert_allclose(rep.identity_kept_up, [np.mean(dist_p < thr)], atol=0.02)
    np.testing.assert_allclose(rep.identity_kept_down, [np.mean(dist_m < thr)], atol=0.02)
    np.testing.assert_allclose(rep.identity_distance, [np.mean(dist_p + dist_m) / 2], rtol=1e-4)
    d = rep.as_dict()
    assert d["judges"]["a"]["a_judge"]["success_up"] == 0.0 and d["identity"]["threshold"] == thr


def test_discover_summary_shows_own_and_independent_judges_and_identity(tmp_path):
    gen, own, judge, desc = _judged_setup()
    cfg = DiscoverConfig(num_samples=1024, shard_size=1024, eval_faces=64, traversal_faces=2,
                         progress=False)
    _, summary = discover_axes(gen, [own], tmp_path, cfg, judges=[judge], descriptor=desc,
                               groups=[("a", "a_judge")])
    assert summary["judges"] == ["judge"] and summary["descriptor"] == "toydesc"
    assert summary["edits"]["judges"]["a"]["a_judge"]["success_up"] == 0.0
    assert "a_judge" not in summary["diagnostics"]    # judges define no axis
    md = (tmp_path / "summary.md").read_text()
    assert "own judge +λ / −λ" in md and "independent judge +λ / −λ" in md
    assert "a_judge: 0.0% / 0.0%" in md and "identity kept" in md


def test_default_axes_are_the_main_jobs_fit_cached(tmp_path, monkeypatch):
    gen, ext = toy_generator(), toy_extractor()
    cfg = DiscoverConfig(num_samples=2048, eval_faces=8, traversal_faces=1, progress=False)
    job, _ = discover_axes(gen, [ext], tmp_path / "job", cfg)
    cached = default_axes(gen, [ext], num_samples=2048, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(np.asarray(cached.directions), np.asarray(job.directions))
    assert cached.metadata["logit_clip"] == cfg.logit_clip == 3.0
    (path,) = (tmp_path / "cache").glob("*.npz")
    assert cached.metadata["default_axes"]["num_samples"] == 2048
    # the second call reads the file: no sampling
    monkeypatch.setattr(Sampler, "run", lambda *a, **k: pytest.fail("sampled again"))
    again = default_axes(gen, [ext], num_samples=2048, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(np.asarray(again.directions), np.asarray(job.directions))
    # another sample count is another cache entry
    with pytest.raises(pytest.fail.Exception, match="sampled again"):
        default_axes(gen, [ext], num_samples=1024, cache_dir=tmp_path / "cache")
