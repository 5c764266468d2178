"""Reading NVIDIA's pg-GAN pickle without TensorFlow: config, lod, and refusal of bad files."""
import os
import pickle
import re
import sys
import types

import numpy as np
import pytest
from hostile import (
    Call,
    Global,
    Opcodes,
    SystemCall,
    dumps,
    np_array,
    np_dtype,
    np_of,
    run_isolated,
    tf_network,
)

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


def test_hostile_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(SystemCall(f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=r"refusing to load global '(os|posix|nt)\.system'"):
        parse_pggan_pickle(data)
    assert not marker.exists()


def test_hostile_nested_inside_network_state_is_refused(fake_tfutil, tmp_path):
    marker = tmp_path / "pwned"
    state = {"name": "Gs", "static_kwargs": {}, "build_func_name": "G_paper",
             "variables": [("lod", SystemCall(f"touch {marker}"))]}
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


# --- hostile files (issue 10): a named error, never a crash or a large allocation -------------
def _official(state: dict) -> bytes:
    """(G, D, Gs) with `state` for Gs, in the official pickle's form (protocol 3)."""
    net = tf_network(state)
    return dumps((net, net, net), protocol=3)


def _fixture_state(**changes) -> dict:
    net = load_pggan_pickle(fixtures_dir() / "tiny16fused_lod0.pkl")
    state = dict(version=2, name="Gs", static_kwargs=dict(net.static_kwargs),
                 build_module_src="# not included\n", build_func_name="G_paper",
                 variables=[(k, np_of(v)) for k, v in net.variables.items()])
    state.update(changes)
    return state


def test_crafted_round_trip_matches_the_fixture():
    """The hand-written official form (used by the hostile tests below) reads back exactly."""
    net = load_pggan_pickle(fixtures_dir() / "tiny16fused_lod0.pkl")
    again = parse_pggan_pickle(_official(_fixture_state()))
    assert config_of(again) == config_of(net)
    assert all(np.array_equal(again.variables[k], v) for k, v in net.variables.items())


def test_object_field_dtype_is_refused_not_a_segfault(tmp_path):
    """Issue 10 item 1: a V8 dtype BUILT with an object field, then raw bytes as its data, made
    CPython dereference a pointer from the file (SIGSEGV) when the config touched it."""
    obj = np_dtype("O8", (3, "|", None, None, None, -1, -1, 63))
    v8 = np_dtype("V8", (3, "|", None, ("a",), {"a": (obj, 0)}, 8, 1, 0))
    pointer = np_array((1,), v8, (0xDEADBEEF).to_bytes(8, "little"))
    path = tmp_path / "segv.pkl"
    path.write_bytes(_official({"name": "Gs", "static_kwargs": {"label_size": pointer},
                                "build_func_name": "G_paper", "variables": []}))
    assert path.stat().st_size < 500
    r = run_isolated(f"pggan.from_network(load_pggan_pickle({str(path)!r}))",
                     setup="from tlgan_jax.generators import pggan\n"
                           "from tlgan_jax.weights.pggan_pickle import load_pggan_pickle")
    assert r.returncode == 1, r    # an exception, not a signal (-11 before the fix)
    assert r.error.startswith("tlgan_jax.weights.safe_pickle.UnsafePickleError: "
                              f"{path}: refusing numpy dtype 'V8'"), r


@pytest.mark.parametrize("case", ["ndarray call", "shared array"])
def test_tiny_pickles_cannot_make_the_reader_allocate(tmp_path, case):
    """Issue 10 item 4: a 257-byte pickle calling ndarray((n,), f4) raised RSS by 1 GB; one
    1 MiB array named 500 times was converted 500 times."""
    if case == "ndarray call":
        big = Call(Global("numpy", "ndarray"), ((1 << 28,), np_dtype("f4")))
        data = _official({"name": "Gs", "static_kwargs": {}, "build_func_name": "G_paper",
                          "variables": [("lod", big)]})
        assert len(data) < 300
        error = ("UnsafePickleError", r"refusing to call numpy.ndarray\(...\)")
    else:
        shared = np_of(np.zeros(1 << 19, np.float16))
        data = _official({"name": "Gs", "static_kwargs": {}, "build_func_name": "G_paper",
                          "variables": [(f"v{i}", shared) for i in range(500)]})
        assert len(data) < 2 << 20
        error = ("PgganPickleError", "the Gs variables take more bytes than the file holds")
    path = tmp_path / "tiny.pkl"
    path.write_bytes(data)
    r = run_isolated(f"load_pggan_pickle({str(path)!r})",
                     setup="from tlgan_jax.weights.pggan_pickle import load_pggan_pickle")
    assert r.returncode == 1 and error[0] in r.error and str(path) in r.error, r
    assert re.search(error[1], r.error), r
    assert r.rss_growth_mib < 32, r


def _nested_lists(depth: int):
    return Opcodes(pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1))


@pytest.mark.parametrize("kwargs, message", [
    ({"resolution": float("inf")}, r"static_kwargs resolution=inf is not an int"),
    ({"latent_size": float("inf")}, r"static_kwargs latent_size=inf is not an int"),
    ({"resolution": 1 << 20}, r"resolution 1048576 is outside 4..8192"),
    ({"fmap_decay": 1e300}, r"tiny16fused.pkl: "),
    ({"dtype": _nested_lists(50_000)}, r"static_kwargs dtype=a list is not a str"),
    ({"label_size": "x" * 10_000_000}, r"label_size='xxxx.*\(10000000 long\) is not an int"),
])
def test_hostile_static_kwargs_give_the_named_error(tmp_path, kwargs, message):
    state = _fixture_state()
    state["static_kwargs"].update(kwargs)
    path = tmp_path / "tiny16fused.pkl"
    path.write_bytes(_official(state))
    with pytest.raises(PgganPickleError, match=f"{path}: .*{message}|{message}") as e:
        config_of(load_pggan_pickle(path))
    assert str(path) in str(e.value) and len(str(e.value)) < 400


@pytest.mark.parametrize("change, message", [
    (dict(variables=[("lod", np_of(np.float32(0))),
                     ("4x4/Dense/weight", np_of(np.float32(1)))]),
     r"'4x4/Dense/weight' must be 2-D, got shape \(\)"),
    (dict(name=_nested_lists(50_000)), "Gs's name is a list, not a string"),
    (dict(variables=[("lod", np_of(np.float32(0))), ("lod", np_of(np.float32(1)))]),
     "Gs variable 'lod' appears twice"),
    (dict(build_func_name=b"G" * 10_000_000), r"built by b'GGG.*\(10000000 long\)"),
])
def test_hostile_state_gives_the_named_error(tmp_path, change, message):
    path = tmp_path / "state.pkl"
    path.write_bytes(_official(_fixture_state(**change)))
    with pytest.raises(PgganPickleError, match=f"{path}: .*{message}") as e:
        config_of(load_pggan_pickle(path))
    assert len(str(e.value)) < 400


def test_state_with_mixed_key_types_gives_the_named_error():
    state = {1: "one", "name": "Gs"}
    with pytest.raises(PgganPickleError, match=r"x.pkl: Gs is not a tfutil.Network state .*"
                                               r"got \['name'\]"):
        parse_pggan_pickle(_official(state), what="x.pkl")


def test_not_a_regular_file(tmp_path):
    with pytest.raises(PgganPickleError, match=f"{tmp_path} is not a regular file"):
        load_pggan_pickle(tmp_path)
    fifo = tmp_path / "fifo.pkl"
    os.mkfifo(fifo)   # opening it would wait for a writer forever
    r = run_isolated(f"load_pggan_pickle({str(fifo)!r})", timeout=60,
                     setup="from tlgan_jax.weights.pggan_pickle import load_pggan_pickle")
    assert r.returncode == 1 and f"PgganPickleError: {fifo} is not a regular file" in r.error, r
