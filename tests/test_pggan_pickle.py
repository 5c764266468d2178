"""Reading NVIDIA's pg-GAN pickle without TensorFlow: config, lod, and refusal of bad files."""
import os
import pickle
import sys
import types

import numpy as np
import pytest

from tlgan_jax.generators import pggan
from tlgan_jax.weights.pggan_pickle import (
    CorruptPickleError,
    PgganPickleError,
    UnsafePickleError,
    load_pggan_pickle,
    parse_pggan_pickle,
)

from helpers import pggan_fixtures_dir as fixtures_dir


@pytest.fixture
def fake_tfutil(monkeypatch):
    """A stand-in `tfutil.Network` so tests can write pickles in the official layout."""
    mod = types.ModuleType("tfutil")

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    Network.__module__, Network.__qualname__ = "tfutil", "Network"
    mod.Network = Network
    monkeypatch.setitem(sys.modules, "tfutil", mod)
    return Network


def config_of(net):
    """The G_paper config the generator derives from a loaded network (all checks included)."""
    return pggan.from_network(net)[1]


def _state(net):
    return dict(version=2, name=net.name, static_kwargs=dict(net.static_kwargs),
                build_module_src="# not included\n", build_func_name="G_paper",
                variables=[(k, v) for k, v in net.variables.items()])


def test_fixture_config_and_variables():
    net = load_pggan_pickle(fixtures_dir() / "tiny32_lod0.pkl")
    c = config_of(net)
    assert net.name == "Gs" and net.build_func_name == "G_paper" and net.version == 2
    assert (c.resolution, c.num_channels, c.latent_size, c.fmap_base, c.fmap_max) == \
        (32, 3, 64, 256, 64)
    assert (c.fmap_decay, c.fused_scale, c.lod) == (1.0, False, 0.0)
    assert c.normalize_latents and c.use_wscale and c.use_pixelnorm and c.use_leakyrelu
    assert net.variables["4x4/Dense/weight"].shape == (64, 1024)
    assert net.variables["lod"].shape == ()
    assert all(v.dtype == np.float32 for v in net.variables.values())
    assert set(net.variables) == set(c.variable_shapes()) | {"lod"}


@pytest.mark.parametrize("name, lod, res, fused", [("tiny32_lod1", 1.0, 32, False),
                                                    ("tiny32_lod0p5", 0.5, 32, False),
                                                    ("tiny16fused_lod0", 0.0, 16, True)])
def test_lod_and_fused_scale_are_read(name, lod, res, fused):
    c = config_of(load_pggan_pickle(fixtures_dir() / f"{name}.pkl"))
    assert (c.lod, c.resolution, c.fused_scale) == (lod, res, fused)


def test_numpy2_spelling_of_array_reconstruction():
    data = (fixtures_dir() / "tiny32_lod0.pkl").read_bytes()
    assert b"numpy.core.multiarray" in data
    renamed = data.replace(b"numpy.core.multiarray", b"numpy._core.multiarray")
    a, b = parse_pggan_pickle(data), parse_pggan_pickle(renamed)
    assert all(np.array_equal(a.variables[k], b.variables[k]) for k in a.variables)


def test_roundtrip_written_with_numpy2(fake_tfutil):
    net = load_pggan_pickle(fixtures_dir() / "tiny16fused_lod0.pkl")
    data = pickle.dumps(tuple(fake_tfutil(_state(net)) for _ in range(3)), protocol=4)
    assert b"numpy._core.multiarray" in data
    again = parse_pggan_pickle(data)
    assert config_of(again) == config_of(net)


def test_build_module_src_is_never_executed(fake_tfutil, tmp_path):
    net = load_pggan_pickle(fixtures_dir() / "tiny16fused_lod0.pkl")
    marker = tmp_path / "executed"
    state = _state(net)
    state["build_module_src"] = f"open({str(marker)!r}, 'w').close()\n"
    out = parse_pggan_pickle(pickle.dumps((fake_tfutil(state),) * 3))
    assert config_of(out) == config_of(net)
    assert not marker.exists()


class _SystemCall:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


def test_hostile_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_SystemCall(f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=r"refusing to load global '(os|posix|nt)\.system'"):
        parse_pggan_pickle(data)
    assert not marker.exists()


def test_hostile_nested_inside_network_state_is_refused(fake_tfutil, tmp_path):
    marker = tmp_path / "pwned"
    state = {"name": "Gs", "static_kwargs": {}, "build_func_name": "G_paper",
             "variables": [("lod", _SystemCall(f"touch {marker}"))]}
    with pytest.raises(UnsafePickleError, match="system"):
        parse_pggan_pickle(pickle.dumps((fake_tfutil(state),) * 3))
    assert not marker.exists()


def test_hostile_module_import_is_refused_before_import(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "tlgan_evil_probe.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef boom():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = b"\x80\x03ctlgan_evil_probe\nboom\n)R."
    with pytest.raises(UnsafePickleError, match="tlgan_evil_probe.boom"):
        parse_pggan_pickle(data)
    assert not marker.exists() and "tlgan_evil_probe" not in sys.modules
    # control: the stock unpickler would have imported (and so run) the module
    monkeypatch.delitem(sys.modules, "tlgan_evil_probe", raising=False)
    assert pickle.loads(data) == 1 and marker.exists()
    sys.modules.pop("tlgan_evil_probe", None)


@pytest.mark.parametrize("keep", [0, 2, 1000, -1])
def test_truncated_pickle(keep, tmp_path):
    data = (fixtures_dir() / "tiny32_lod0.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) // 2])
    with pytest.raises(CorruptPickleError, match="truncated or corrupt"):
        load_pggan_pickle(path)


def test_wrong_top_level_structure(fake_tfutil):
    net = load_pggan_pickle(fixtures_dir() / "tiny16fused_lod0.pkl")
    g = fake_tfutil(_state(net))
    with pytest.raises(PgganPickleError, match="expected a 3-tuple .* got a 2-tuple"):
        parse_pggan_pickle(pickle.dumps((g, g)))
    with pytest.raises(PgganPickleError, match="expected a 3-tuple .* got dict"):
        parse_pggan_pickle(pickle.dumps({"Gs": 1}))
    with pytest.raises(PgganPickleError, match="expected a 3-tuple .* got a 3-tuple"):
        parse_pggan_pickle(pickle.dumps((g, g, 3)))


def _mutated(fake_tfutil, change):
    net = load_pggan_pickle(fixtures_dir() / "tiny16fused_lod0.pkl")
    state = _state(net)
    change(state)
    return pickle.dumps((fake_tfutil(state),) * 3)


def test_bad_network_contents(fake_tfutil):
    def drop(name):
        return lambda s: s.update(variables=[(k, v) for k, v in s["variables"] if k != name])

    def kw(**kwargs):
        return lambda s: s["static_kwargs"].update(kwargs)

    cases = [
        (drop("16x16/Conv1/bias"), r"missing \['16x16/Conv1/bias'\]"),
        (drop("lod"), "missing the variable 'lod'"),
        (lambda s: s["variables"].append(("32x32/Conv1/bias", np.zeros(3, np.float32))),
         r"unexpected \['32x32/Conv1/bias'\]"),
        (lambda s: s.update(variables=[(k, v[:-1] if k == "8x8/Conv1/bias" else v)
                                       for k, v in s["variables"]]),
         r"8x8/Conv1/bias has shape \(63,\), expected \(64,\)"),
        (lambda s: s.update(build_func_name="D_paper"), "built by 'D_paper'"),
        (kw(label_size=4), r"conditional pg-GAN \(label_size=4\) is not supported"),
        (kw(fused_scale=False), "fused_scale=False but the variables have Conv0_up"),
        (kw(latent_size=32), "latent_size 32 does not match"),
        (lambda s: s.update(variables=[(k, v.astype(np.int32) if k == "lod" else v)
                                       for k, v in s["variables"]]),
         "'lod' is not a floating-point array"),
        (lambda s: s.pop("variables"), "not a tfutil.Network state"),
    ]
    for change, message in cases:
        with pytest.raises(PgganPickleError, match=message):
            config_of(parse_pggan_pickle(_mutated(fake_tfutil, change)))
