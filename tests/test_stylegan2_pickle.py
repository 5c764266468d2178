"""Reading NVIDIA's StyleGAN2 pickle without TensorFlow: Gs, its config, and refusal of bad
files."""
import pickle
import sys
import types

import numpy as np
import pytest
from hostile import SystemCall

from tlgan_jax.generators.stylegan2 import (
    CONFIG_F_1024,
    StyleGAN2Config,
    config_from_kwargs,
    from_network,
)
from tlgan_jax.weights.safe_pickle import as_array, restricted_loads
from tlgan_jax.weights.stylegan2_pickle import (
    _ALLOWED,
    CorruptPickleError,
    StyleGAN2PickleError,
    UnsafePickleError,
    load_stylegan2_pickle,
    parse_stylegan2_pickle,
)

from helpers import stylegan2_fixtures_dir as fixtures_dir


def read(data, what="StyleGAN2 pickle"):
    """What `load_generator` does with the bytes: structure, then config, names and shapes."""
    return from_network(parse_stylegan2_pickle(data, what=what))


@pytest.fixture
def fake_dnnlib(monkeypatch):
    """A stand-in `dnnlib.tflib.network.Network` so tests can write pickles in the official
    layout; `dump(states)` pickles (G, D, Gs) given as state dicts (components as states)."""
    mods = {n: types.ModuleType(n) for n in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods["dnnlib.tflib.network"].Network = Network
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)

    def network(state):
        if isinstance(state, dict) and isinstance(state.get("components"), dict):
            state = dict(state, components={k: network(v) for k, v in state["components"].items()})
        return Network(state)

    def dump(states):
        return pickle.dumps(tuple(network(s) for s in states), protocol=4)
    return dump


def fixture_states(name="tiny32"):
    """The fixture's (G, D, Gs) as plain state dicts (nested components as dicts too)."""
    holders = restricted_loads((fixtures_dir() / f"{name}.pkl").read_bytes(), _ALLOWED)

    def plain(h):   # arrays as plain ndarrays (fresh copies), so the states can be re-pickled
        st = dict(h.state)
        st["components"] = {k: plain(v) for k, v in st["components"].items()}
        st["variables"] = [(k, as_array(v)) for k, v in st["variables"]]
        return st
    return [plain(h) for h in holders]


def test_fixture_config_and_variables():
    net = load_stylegan2_pickle(fixtures_dir() / "tiny32.pkl")
    _, c = from_network(net)
    assert net.name == "Gs" and net.version == 4
    assert (c.resolution, c.num_channels, c.latent_size, c.dlatent_size) == (32, 3, 32, 32)
    assert (c.mapping_layers, c.mapping_fmaps, c.fmap_base, c.fmap_max, c.num_layers) == (
        4, 32, 256, 48, 8)
    assert (c.mapping_lrmul, c.fmap_decay, c.fmap_min, c.normalize_latents) == (0.01, 1.0, 1, True)
    assert [c.nf(r - 1) for r in range(2, 6)] == [48, 48, 32, 16]
    v = net.variables
    assert set(v) == set(c.variable_shapes())
    assert v["mapping/Dense0/weight"].shape == (32, 32) and v["synthesis/noise6"].shape == (
        1, 1, 32, 32)
    assert v["synthesis/32x32/Conv0_up/weight"].shape == (3, 3, 32, 16)
    assert v["synthesis/4x4/Conv/noise_strength"].shape == () and v["lod"].shape == ()
    assert all(a.dtype == np.float32 for a in v.values())
    # Gs (index 2), not G: the fixture's G holds other weights
    expected = np.load(fixtures_dir() / "tiny32_expected.npz")
    np.testing.assert_array_equal(v["dlatent_avg"], expected["dlatent_avg"])
    g_avg = dict(fixture_states()[0]["variables"])["dlatent_avg"]
    assert not np.allclose(g_avg, expected["dlatent_avg"])


def test_tiny64_with_fused_modconv_false_is_accepted():
    net = load_stylegan2_pickle(fixtures_dir() / "tiny64.pkl")
    assert net.static_kwargs["fused_modconv"] is False
    assert net.synthesis_kwargs["fused_modconv"] is False
    _, c = from_network(net)
    assert (c.resolution, c.mapping_layers, c.fmap_max, c.num_layers) == (64, 2, 32, 10)


def test_config_f_defaults_from_minimal_kwargs():
    """config-f networks store only num_channels, resolution, label_size."""
    kw = {"num_channels": 3, "resolution": 1024, "label_size": 0}
    cfg = config_from_kwargs(kw, {"dlatent_broadcast": 18, **kw}, kw)
    assert cfg == CONFIG_F_1024 == StyleGAN2Config()
    assert (cfg.fmap_base, cfg.fmap_max, cfg.dlatent_size, cfg.mapping_layers, cfg.num_layers) == (
        16384, 512, 512, 8, 18)
    assert [cfg.nf(r - 1) for r in range(2, 11)] == [512] * 5 + [256, 128, 64, 32]
    # Gs's kwargs override the components' (G_main passes **kwargs on at run time)
    cfg = config_from_kwargs({**kw, "fmap_base": 8192}, {"dlatent_broadcast": 18, **kw}, kw)
    assert cfg.fmap_base == 8192


def test_roundtrip_through_the_official_layout(fake_dnnlib):
    states = fixture_states()
    data = fake_dnnlib(states)
    # the fixture spells NumPy 1's module, this NumPy-2-written copy numpy._core: both load
    assert b"numpy.core.multiarray" in (fixtures_dir() / "tiny32.pkl").read_bytes()
    assert b"dnnlib.tflib.network" in data and b"numpy._core.multiarray" in data
    again, orig = parse_stylegan2_pickle(data), load_stylegan2_pickle(fixtures_dir() / "tiny32.pkl")
    assert from_network(again)[1] == from_network(orig)[1]
    assert all(np.array_equal(again.variables[k], orig.variables[k]) for k in orig.variables)


def test_build_module_src_is_never_executed(fake_dnnlib, tmp_path):
    marker = tmp_path / "executed"
    states = fixture_states()
    code = f"open({str(marker)!r}, 'w').close()\n"
    states[2]["build_module_src"] = code
    for comp in states[2]["components"].values():
        comp["build_module_src"] = code
    assert read(fake_dnnlib(states))[1].resolution == 32
    assert not marker.exists()


def test_hostile_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickleError, match=r"refusing to load global '(os|posix|nt)\.system'"):
        parse_stylegan2_pickle(pickle.dumps(SystemCall(f"touch {marker}")))
    assert not marker.exists()


def test_hostile_call_nested_in_a_component_is_refused(fake_dnnlib, tmp_path):
    marker = tmp_path / "pwned"
    states = fixture_states()
    states[2]["components"]["synthesis"]["variables"].append(
        ("noise99", SystemCall(f"touch {marker}")))
    with pytest.raises(UnsafePickleError, match="system"):
        parse_stylegan2_pickle(fake_dnnlib(states))
    assert not marker.exists()


def test_pggan_network_class_is_not_on_this_list(tmp_path, monkeypatch):
    """Only dnnlib's Network class: pg-GAN's `tfutil.Network` is refused here."""
    mod = types.ModuleType("tfutil")

    class Network:
        def __getstate__(self):
            return {"name": "Gs"}
    Network.__module__, Network.__qualname__ = "tfutil", "Network"
    mod.Network = Network
    monkeypatch.setitem(sys.modules, "tfutil", mod)
    with pytest.raises(UnsafePickleError, match="tfutil.Network"):
        parse_stylegan2_pickle(pickle.dumps((Network(),) * 3))


def test_hostile_module_import_is_refused_before_import(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "tlgan_evil_probe2.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef boom():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnsafePickleError, match="tlgan_evil_probe2.boom"):
        parse_stylegan2_pickle(b"\x80\x03ctlgan_evil_probe2\nboom\n)R.")
    assert not marker.exists() and "tlgan_evil_probe2" not in sys.modules


@pytest.mark.parametrize("keep", [0, 2, 1000, -1])
def test_truncated_pickle(keep, tmp_path):
    data = (fixtures_dir() / "tiny32.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) // 2])
    with pytest.raises(CorruptPickleError, match="truncated or corrupt"):
        load_stylegan2_pickle(path)


def test_wrong_top_level_structure(fake_dnnlib):
    states = fixture_states()
    with pytest.raises(StyleGAN2PickleError, match=r"expected a 3-tuple \(G, D, Gs\) of "
                                                   r"dnnlib.tflib.network.Network, got a 2-tuple"):
        parse_stylegan2_pickle(fake_dnnlib(states[:2]))
    with pytest.raises(StyleGAN2PickleError, match="got dict"):
        parse_stylegan2_pickle(pickle.dumps({"Gs": 1}))
    with pytest.raises(StyleGAN2PickleError, match="got a 3-tuple"):
        parse_stylegan2_pickle(pickle.dumps((1, 2, 3)))




def _drop(where, name):
    def change(gs):
        st = gs if where == "Gs" else gs["components"][where]
        st["variables"] = [(k, v) for k, v in st["variables"] if k != name]
    return change


def _edit_var(where, name, fn):
    def change(gs):
        st = gs if where == "Gs" else gs["components"][where]
        st["variables"] = [(k, fn(v) if k == name else v) for k, v in st["variables"]]
    return change


def _kw(where="Gs", **kwargs):
    def change(gs):
        targets = [gs, *gs["components"].values()] if where == "all" else \
            [gs if where == "Gs" else gs["components"][where]]
        for st in targets:
            st["static_kwargs"].update(kwargs)
    return change


def _set(where, **fields):
    def change(gs):
        (gs if where == "Gs" else gs["components"][where]).update(fields)
    return change


BAD = [
    (_drop("synthesis", "16x16/Conv1/bias"), r"missing \['synthesis/16x16/Conv1/bias'\]"),
    (_drop("mapping", "Dense3/weight"), r"missing \['mapping/Dense3/weight'\]"),
    (_drop("Gs", "dlatent_avg"), r"missing \['dlatent_avg'\]"),
    (_drop("synthesis", "noise6"), r"missing \['synthesis/noise6'\]"),
    (lambda gs: gs["components"]["synthesis"]["variables"].append(
        ("64x64/Conv1/bias", np.zeros(3, np.float32))),
     r"unexpected \['synthesis/64x64/Conv1/bias'\]"),
    (_edit_var("synthesis", "8x8/Conv1/mod_bias", lambda v: v[:-1]),
     r"synthesis/8x8/Conv1/mod_bias has shape \(47,\), expected \(48,\)"),
    (_edit_var("synthesis", "noise3", lambda v: v[..., :8]),
     r"synthesis/noise3 has shape \(1, 1, 16, 8\), expected \(1, 1, 16, 16\)"),
    (_edit_var("synthesis", "32x32/Conv0_up/weight", lambda v: v.transpose(0, 1, 3, 2)),
     r"Conv0_up/weight has shape \(3, 3, 16, 32\), expected \(3, 3, 32, 16\)"),
    (_edit_var("mapping", "Dense0/weight", lambda v: v.astype(np.int32)),
     "'Dense0/weight' is not a floating-point array"),
    (_edit_var("synthesis", "4x4/Conv/noise_strength", lambda v: float(v)),
     "'4x4/Conv/noise_strength' is not a floating-point array"),
    (lambda gs: gs["components"]["mapping"]["variables"].append(
        gs["components"]["mapping"]["variables"][0]), "'Dense0/weight' appears twice"),
    (_set("Gs", variables={"lod": 0}), "Gs variables must be a list"),
    (_set("Gs", build_func_name="G_style"), "Gs is built by 'G_style', expected 'G_main'"),
    (_set("synthesis", build_func_name="G_synthesis_stylegan_revised"),
     "Gs synthesis is built by 'G_synthesis_stylegan_revised'"),
    (_set("mapping", name="G_map"), "Gs mapping is named 'G_map', expected 'G_mapping'"),
    (_set("Gs", name="G"), "Gs is named 'G', expected 'Gs'"),
    (_set("Gs", version=3), "state version 3; StyleGAN2 pickles have version 4"),
    (_set("Gs", version=np.array([4, 4])), "state version"),
    (lambda gs: gs["components"].pop("mapping"), r"components must be 'mapping' and 'synthesis', "
                                                 r"got \['synthesis'\]"),
    (lambda gs: gs.pop("components"), "Gs is not a dnnlib.tflib Network state"),
    (_kw("all", architecture="resnet"), "architecture 'resnet' is not supported; only 'skip'"),
    (_kw("Gs", architecture="orig"), "architecture 'orig' is not supported"),
    (_kw("all", label_size=10), r"conditional StyleGAN2 \(label_size=10\) is not supported"),
    (_kw("all", dtype="float16"), "dtype 'float16' is not supported"),
    (_kw("synthesis", nonlinearity="relu"), "nonlinearity='relu' is not supported"),
    (_kw("all", resample_kernel=[1, 1]), r"resample_kernel \[1, 1\] is not supported"),
    (_kw("mapping", dlatent_broadcast=7), "dlatent_broadcast 7 != the synthesis network's 8"),
    (_kw("Gs", synthesis_func="G_synthesis_stylegan_revised"), "synthesis_func="),
    (_kw("Gs", is_training=True), "is_training=True; only inference networks"),
    (_kw("all", num_fp16_res=4), r"unknown Gs static_kwargs \['num_fp16_res'\]"),
    (_kw("all", resolution=48), "resolution must be a power of two"),
    (_kw("all", resolution="32"), "resolution='32' is not an integer"),
    (_kw("all", fmap_max=64), r"synthesis/4x4/Const/const has shape \(1, 48, 4, 4\), "
                              r"expected \(1, 64, 4, 4\)"),
    (_kw("Gs", mapping_layers=3), r"unexpected \['mapping/Dense3/bias'"),
    # sizes from the file bound before they size anything (a million mapping layers built
    # two million expected-variable entries before the file was refused)
    (_kw("Gs", mapping_layers=10 ** 6), r"mapping_layers must be an integer in \[1, 64\]"),
    (lambda gs: gs["components"].update({1: None}),
     r"components must be 'mapping' and 'synthesis', got \['mapping', 'synthesis'\]"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m[:40] for _, m in BAD])
def test_malformed_networks_are_refused_with_a_named_error(fake_dnnlib, change, message):
    states = fixture_states()
    change(states[2])
    with pytest.raises(StyleGAN2PickleError, match=message):
        read(fake_dnnlib(states), what="x.pkl")


def test_errors_name_the_file(tmp_path, fake_dnnlib):
    states = fixture_states()
    _kw("all", architecture="resnet")(states[2])
    path = tmp_path / "resnet.pkl"
    path.write_bytes(fake_dnnlib(states))
    with pytest.raises(StyleGAN2PickleError, match=f"^{path}: architecture"):
        from_network(load_stylegan2_pickle(path))


def test_values_from_the_file_are_described_not_copied_into_messages(fake_dnnlib):
    states = fixture_states()
    _set("Gs", version="v" * 10 ** 6)(states[2])
    with pytest.raises(StyleGAN2PickleError, match=r"version 'vvv.*\(1000000 long\)") as e:
        read(fake_dnnlib(states), what="x.pkl")
    assert len(str(e.value)) < 300
    states = fixture_states()
    _kw("all", architecture="r" * 10 ** 6)(states[2])
    with pytest.raises(StyleGAN2PickleError, match="architecture 'rrr") as e:
        read(fake_dnnlib(states), what="x.pkl")
    assert len(str(e.value)) < 300


def test_ignored_runtime_kwargs_are_accepted(fake_dnnlib):
    states = fixture_states()
    _kw("all", randomize_noise=True, fused_modconv=True, structure="fixed")(states[2])
    _kw("Gs", truncation_psi=0.5, truncation_cutoff=8, style_mixing_prob=0.9)(states[2])
    assert read(fake_dnnlib(states))[1].resolution == 32
