"""The throughput benchmark's library: the fast path's fidelity check (known answers, the bf16
path of a fixture pg-GAN against float32) and its refusals."""
import numpy as np
import pytest

from tlgan_jax.bench import throughput

from helpers import pggan_fixtures_dir


def test_output_agreement_has_its_known_values():
    rng = np.random.default_rng(0)
    y_ref = rng.normal(size=(500, 3))
    agree = throughput.output_agreement(y_ref, y_ref * 1.01, ("a", "b", "c"), (True, True, False))
    assert agree["rms_rel"] == pytest.approx(0.01) and agree["max_rel"] == pytest.approx(0.01)
    assert agree["within_bf16_tolerance"]
    a = agree["attributes"]
    assert a["a"]["correlation"] == pytest.approx(1.0) and a["a"]["sign_agreement"] == 1.0
    assert a["c"]["sign_agreement"] is None                 # not a binary score
    assert a["b"]["max_abs"] == pytest.approx(0.01 * np.abs(y_ref[:, 1]).max())
    # noise of 5% of the scale: outside the tolerance, correlation and signs degrade
    noisy = throughput.output_agreement(y_ref, y_ref + 0.05 * rng.normal(size=y_ref.shape),
                                        ("a", "b", "c"), (True, True, False))
    assert noisy["rms_rel"] == pytest.approx(0.05, rel=0.1) and not noisy["within_bf16_tolerance"]
    assert 0.99 < noisy["attributes"]["a"]["correlation"] < 0.9995
    assert 0.9 < noisy["attributes"]["a"]["sign_agreement"] < 1.0
    with pytest.raises(ValueError, match=r"scores must both be \[N, 3\]"):
        throughput.output_agreement(y_ref, y_ref[:, :2], ("a", "b", "c"), (True,) * 3)


@pytest.mark.slow
def test_bf16_fast_path_reproduces_float32_attribute_outputs():
    pkl = pggan_fixtures_dir() / "tiny32_lod0.pkl"
    name, exts = f"pggan:{pkl}", ["celeba40-random"]
    agree = throughput.fast_path_agreement(throughput.load_models(name, exts, "float32"),
                                           throughput.load_models(name, exts, "bfloat16"),
                                           num=32, batch=16)
    assert agree["num"] == 32 and len(agree["attributes"]) == 40
    assert 1e-4 < agree["rms_rel"] <= throughput.BF16_RMS_TOL   # bf16 changed something, not much
    assert agree["max_rel"] <= throughput.BF16_MAX_TOL and agree["within_bf16_tolerance"]
    assert min(a["correlation"] for a in agree["attributes"].values()) > 0.99   # regr. floor


def test_bf16_is_refused_for_a_generator_without_a_fast_path():
    with pytest.raises(ValueError, match="'digiface64' has no bfloat16 fast path"):
        throughput.load_models("digiface64", ["gender"], "bfloat16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        throughput.load_models("digiface64", ["gender"], "float16")
