"""Ensemble targets (tlgan_jax.combine): known answers on hand-made scores and a linear toy."""
import dataclasses
import json

import jax
import numpy as np
import pytest

from tlgan_jax.axes import Axes
from tlgan_jax.combine import (
    Combination,
    combinations_from_metadata,
    combine_scores,
    combined_label,
    lock_exceptions,
    parse_combine,
)
from tlgan_jax.discover import DiscoverConfig, discover_axes
from tlgan_jax.extractors import custom_extractor
from tlgan_jax.store import Samples

from toy import toy_generator


def _samples():
    p = np.array([1.0, 2.0, 3.0, 4.0])                 # continuous
    q = np.array([-10.0, 0.0, 1.0, 10.0])              # a binary logit: clipped to ±3
    y = np.stack([p, q, np.zeros(4)], 1).astype(np.float32)
    return Samples(np.zeros((4, 2), np.float32), y, ("p", "q", "r"), (False, True, False), {})


def test_combined_score_is_the_mean_of_standardised_sources():
    s = combine_scores(_samples(), {"mix": ("p", "q")}, clip=3.0)
    assert s.names == ("p", "q", "r", "mix") and s.binary == (False, True, False, False)
    # by hand: p: mean 2.5, std sqrt(1.25); q clipped [-3, 0, 1, 3]: mean 0.25, std sqrt(4.6875)
    zp = (np.array([1, 2, 3, 4]) - 2.5) / np.sqrt(1.25)
    zq = (np.array([-3, 0, 1, 3]) - 0.25) / np.sqrt(4.6875)
    np.testing.assert_allclose(s.column("mix"), (zp + zq) / 2, rtol=1e-6)
    np.testing.assert_array_equal(s.y[:, :3], _samples().y)    # sources untouched
    (c,) = combinations_from_metadata(s.metadata)
    assert c == Combination("mix", ("p", "q"), (2.5, 0.25), (np.sqrt(1.25), np.sqrt(4.6875)),
                            (None, 3.0))
    # the stored statistics score new faces the same way (not re-standardised on them)
    new = np.array([[2.5, 100.0, 7.0]], np.float32)
    np.testing.assert_allclose(c.score(new, ("p", "q", "r")), [(3 - .25) / np.sqrt(4.6875) / 2],
                               rtol=1e-6)
    # the "name=src,src" strings give the same
    s2 = combine_scores(_samples(), ["mix=p, q"])
    np.testing.assert_array_equal(s2.y, s.y)


def test_combine_refuses_bad_specs_with_clear_errors():
    with pytest.raises(ValueError, match="name of a scored attribute.*p_mix=p,q"):
        combine_scores(_samples(), {"p": ("p", "q")})              # the name clash
    with pytest.raises(ValueError, match=r"\['x'\] are not scored attributes"):
        combine_scores(_samples(), {"mix": ("p", "x")})
    with pytest.raises(ValueError, match="two or more distinct sources"):
        combine_scores(_samples(), {"mix": ("p", "p")})
    with pytest.raises(ValueError, match="'r' of 'mix' is constant"):
        combine_scores(_samples(), {"mix": ("p", "r")})
    for bad in ("mix", "mix=p", "=p,q", "mix=p,,q"):
        with pytest.raises(ValueError, match=r"--combine: .* is not NAME=SOURCE1,SOURCE2"):
            parse_combine([bad])
    with pytest.raises(ValueError, match="given twice"):
        parse_combine(["m=p,q", "m=q,p"])
    assert parse_combine(["age_mix=age,fa_age"]) == {"age_mix": ("age", "fa_age")}


@pytest.mark.parametrize("entry,why", [
    ("x", "must be an object"),
    ({"name": "m", "sources": ["p"], "mean": [0.0], "std": [0.0], "clip": [None]},
     "'std' must be positive"),
    ({"name": "m", "sources": ["p", "q"], "mean": [0.0], "std": [1.0, 1.0], "clip": [None, None]},
     "'mean' must be a list of 2"),
    ({"name": "m", "sources": ["p"], "mean": ["0"], "std": [1.0], "clip": [None]},
     "not a finite number"),
    ({"name": "m", "sources": ["p"] * 100, "mean": [0.0], "std": [1.0], "clip": [None]},
     "'sources' must be"),
    ({"name": "m", "sources": ["p"], "mean": [10 ** 400], "std": [1.0], "clip": [None]},
     "not a finite number"),                   # a JSON integer too large for a float
])
def test_stored_combinations_are_checked(entry, why):
    with pytest.raises(ValueError, match=why):
        combinations_from_metadata({"combine": [entry]})


def _linear_setup():
    gen = toy_generator(latent_dim=12, linear=True)
    # two "nets" with exactly linear scores of z: red and blue mean (on different scales)
    red = custom_extractor(lambda im: {"red": im[..., 0].mean(axis=(1, 2))}, ("red",), name="r")
    blue = custom_extractor(lambda im: {"blue": 7.0 * im[..., 2].mean(axis=(1, 2))}, ("blue",),
                            name="b")
    w = np.asarray(gen.params["w"]).reshape(12, 8, 8, 3)
    a, b = w[..., 0].mean(axis=(1, 2)), 7.0 * w[..., 2].mean(axis=(1, 2))   # red = z·a, blue = z·b
    return gen, red, blue, a, b


def test_discover_fits_judges_and_stores_a_combined_attribute(tmp_path):
    gen, red, blue, a, b = _linear_setup()
    cfg = DiscoverConfig(num_samples=4096, shard_size=4096, eval_faces=64, traversal_faces=1,
                         progress=False, combine=("purple=red,blue",))
    axes, summary = discover_axes(gen, [red, blue], tmp_path, cfg)
    assert axes.names == ("red", "blue", "purple")
    # OLS on (z·a/σ_a + z·b/σ_b)/2 with σ = ‖·‖ for z ~ N(0, I): axis ∝ a/‖a‖ + b/‖b‖
    truth = a / np.linalg.norm(a) + b / np.linalg.norm(b)
    cos = float(np.dot(axes["purple"], truth) / np.linalg.norm(truth))
    assert cos > 0.999, cos
    # judged by the combination (own) and by each source net (independent), all linear: 100%
    e = summary["edits"]
    assert e["success_up"]["purple"] == 1.0 and e["success_down"]["purple"] == 1.0
    assert e["judges"]["purple"] == {"red": {"success_up": 1.0, "success_down": 1.0},
                                     "blue": {"success_up": 1.0, "success_down": 1.0}}
    assert summary["combine"] == {"purple": ["red", "blue"]}
    # with the others locked, a combination is not locked against its own sources (the lock
    # would remove the edit), nor they against it; they are still locked against each other
    assert lock_exceptions([Combination("purple", ("red", "blue"), (0, 0), (1, 1), (None, None))]
                           ) == {"purple": ("blue", "red"), "red": ("purple",),
                                 "blue": ("purple",)}
    lk = summary["edits_locked"]
    assert lk["success_up"]["purple"] == 1.0 and lk["judges"]["purple"]["red"]["success_up"] == 1.0
    # red locked against blue: blue's mean change along the locked red edit is ~0
    assert abs(lk["entanglement"]["red"]["blue"]) < 1e-3
    md = (tmp_path / "summary.md").read_text()
    assert "| purple |" in md and "red: 100.0% / 100.0%; blue: 100.0% / 100.0%" in md
    # the saved axes carry the statistics: the same combined score after reloading
    (c,) = combinations_from_metadata(Axes.load(tmp_path / "axes.npz").metadata)
    assert c.sources == ("red", "blue") and c.clip == (None, None)
    np.testing.assert_allclose(c.std, [np.linalg.norm(a), np.linalg.norm(b)], rtol=0.05)
    z = np.asarray(gen.sample_latents(jax.random.key(5), 8))
    label, scored = combined_label(lambda zz: np.stack([zz @ a, zz @ b], 1), ("red", "blue"), [c])
    assert scored == ("red", "blue", "purple")
    np.testing.assert_allclose(label(z)[:, 2], ((z @ a - c.mean[0]) / c.std[0]
                                                + (z @ b - c.mean[1]) / c.std[1]) / 2, rtol=1e-5)
    json.dumps(summary)


def test_discover_refuses_a_clashing_name_before_sampling(tmp_path):
    gen, red, blue, _, _ = _linear_setup()
    cfg = DiscoverConfig(num_samples=256, progress=False)
    with pytest.raises(ValueError, match="combined attribute 'red' has the name of a scored"):
        discover_axes(gen, [red, blue], tmp_path, cfg, combine={"red": ("red", "blue")})
    assert not (tmp_path / "samples").exists()
    with pytest.raises(ValueError, match="given twice"):
        discover_axes(gen, [red, blue], tmp_path, dataclasses.replace(cfg, combine=("m=red,blue",)),
                      combine={"m": ("red", "blue")})
