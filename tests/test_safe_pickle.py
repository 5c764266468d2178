"""safe_pickle: NumPy arrays through a pickle (official forms read, everything else refused),
inert allow-lists, and no allocation beyond the file's own size."""
import io
import pickle
import struct

import numpy as np
import pytest
from hostile import (
    Build,
    Call,
    Global,
    NewObj,
    dumps,
    np_array,
    np_dtype,
    np_of,
    np_scalar,
    run_isolated,
)

from tlgan_jax.weights.safe_pickle import (
    NUMPY_GLOBALS,
    CorruptPickleError,
    InertFunction,
    RestrictedUnpickler,
    StateHolder,
    UnsafePickleError,
    as_array,
    restricted_loads,
)

ALLOWED = {**NUMPY_GLOBALS, ("tfutil", "Network"): StateHolder}
PLAIN = ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"]


def load(obj, protocol=3):
    return restricted_loads(dumps(obj, protocol), ALLOWED, what="test.pkl")


def _sample(name: str, shape=(2, 3)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape) * 50).astype(name) if name != "b1" else \
        rng.standard_normal(shape) > 0


# --- what official pickles hold is read exactly ------------------------------------------------
@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("name", PLAIN)
def test_arrays_written_by_numpy_itself_are_read_exactly(name, protocol):
    a = _sample(name)
    data = pickle.dumps({"a": a, "t": a.T, "s": a.ravel()[1]}, protocol=protocol)
    if protocol == 5:   # NumPy writes protocol-5 arrays through _frombuffer: not an official form
        with pytest.raises(UnsafePickleError, match=r"test.pkl: refusing to load global "
                                                    r"'numpy.*_frombuffer'"):
            restricted_loads(data, ALLOWED, what="test.pkl")
        return
    out = restricted_loads(data, ALLOWED, what="test.pkl")
    for key, want in (("a", a), ("t", a.T), ("s", np.asarray(a.ravel()[1]))):
        got = as_array(out[key])
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert got.flags.owndata and got.flags.writeable and got.flags.c_contiguous


def test_big_endian_fortran_and_both_numpy_module_spellings():
    a = (np.arange(12.0).reshape(3, 4) * 0.25).astype(">f8")
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        fortran = np_array(a.shape, np_dtype("f8", (3, ">", None, None, None, -1, -1, 0)),
                           a.tobytes(order="F"), fortran=True, module=module)
        scalar = np_scalar(np_dtype("i2"), struct.pack("<h", -7), module=module)
        out = load([fortran, scalar])
        np.testing.assert_array_equal(as_array(out[0]), a)
        assert as_array(out[1]).shape == () and int(as_array(out[1])) == -7


def test_not_an_array_gives_none():
    assert as_array(np.zeros(3)) is None and as_array(b"abc") is None


# --- the SIGSEGV class: numpy is never asked to build what the file describes ------------------
OBJ = np_dtype("O8", (3, "|", None, None, None, -1, -1, 63))


@pytest.mark.parametrize("dtype, message", [
    (np_dtype("V8", (3, "|", None, ("a",), {"a": (OBJ, 0)}, 8, 1, 0)), "dtype 'V8'"),
    (OBJ, "dtype 'O8'"),
    (np_dtype("U4", (3, "<", None, None, None, 16, 4, 8)), "dtype 'U4'"),
    (np_dtype("f4", (3, "<", (np_dtype("f4"), (2,)), None, None, -1, -1, 0)), "'f4' with state"),
    (np_dtype("f4", (3, "<", None, ("a",), None, -1, -1, 0)), "'f4' with state"),
    (np_dtype("f4", (3, "<", None, None, None, -1, -1, 16)), "'f4' with state"),
    (np_dtype("f4", (3, "=", None, None, None, -1, -1, 0)), "'f4' with state"),
    (np_dtype("f4", (4, "<", None, None, None, -1, -1, 0, {"m": 1})), "'f4' with state"),
    (Build(np_dtype("f4"), (3, ">", None, None, None, -1, -1, 0)), r"\(set twice\)"),
    (Call(Global("numpy", "dtype"), ("f4", True, True)), "align=True"),
    (Call(Global("numpy", "dtype"), ([("a", "O")], False, True)), "dtype a list"),
])
def test_dtypes_other_than_plain_numbers_are_refused(dtype, message):
    arr = np_array((1,), dtype, (0xDEADBEEF).to_bytes(8, "little"))
    with pytest.raises((UnsafePickleError, CorruptPickleError), match=f"test.pkl: .*{message}"):
        load({"x": arr})


@pytest.mark.parametrize("obj, error, message", [
    (np_array((3,), np_dtype("f4"), bytes(8)), CorruptPickleError,
     r"shape \(3,\) and dtype <f4 needs 12 bytes, the pickle holds 8"),
    (np_array((1,), np_dtype("f4"), bytes(8)), CorruptPickleError, "needs 4 bytes"),
    (np_array((-1,), np_dtype("f4"), b""), CorruptPickleError, "sizes >= 0"),
    (np_array((2.0,), np_dtype("f4"), bytes(8)), CorruptPickleError, "sizes >= 0"),
    (np_array((2,), "f4", bytes(8)), UnsafePickleError, "dtype 'f4'"),
    (np_array((2,), np_dtype("f4"), [1, 2]), CorruptPickleError, "not bytes"),
    (Build(np_array((1,), np_dtype("f4"), bytes(4)), (1, (1,), np_dtype("f8"), False, bytes(8))),
     UnsafePickleError, "second BUILD"),
    (Call(Global("numpy.core.multiarray", "_reconstruct"),
          (Global("numpy", "ndarray"), (9,), b"b")),
     UnsafePickleError, r"_reconstruct\(numpy.ndarray, a tuple"),
    (Call(Global("numpy", "ndarray"), ((1 << 28,), np_dtype("f4"))), UnsafePickleError,
     r"refusing to call numpy.ndarray\(...\)"),
    (np_scalar(np_dtype("f8"), bytes(4)), CorruptPickleError, "needs 8 bytes"),
    (np_scalar("f8", bytes(8)), UnsafePickleError, "scalar of 'f8'"),
])
def test_arrays_not_in_numpys_own_form_are_refused(obj, error, message):
    with pytest.raises(error, match=f"test.pkl: .*{message}"):
        load([obj])


def test_one_buffer_behind_many_arrays_cannot_exceed_the_file():
    raw = bytes(1 << 16)
    arrays = [np_array((1 << 14,), np_dtype("f4"), raw) for _ in range(8)]  # raw written once
    data = dumps(arrays, 3)
    assert len(data) < 2 * len(raw)
    with pytest.raises(CorruptPickleError, match="more bytes than the file holds"):
        restricted_loads(data, ALLOWED, what="test.pkl")
    assert len(load(arrays[:1])) == 1   # one of them is fine


# --- inert allow-lists: a file cannot change what a later file decodes to ---------------------
@pytest.mark.parametrize("target, state", [
    (Global("numpy", "ndarray"), {"__call__": 1}),
    (Global("numpy", "dtype"), (None, {"_fn": None})),
    (Global("numpy.core.multiarray", "scalar"), {"x": 1}),
    (Global("tfutil", "Network"), (None, {"__init__": None, "state": 5})),
])
def test_build_on_allow_listed_objects_is_refused(target, state):
    with pytest.raises((UnsafePickleError, CorruptPickleError), match="test.pkl"):
        load(Build(target, state))
    net = load(Build(NewObj(Global("tfutil", "Network")), {"k": 1}))
    assert isinstance(net, StateHolder) and net.state == {"k": 1} and net.args == ()
    assert as_array(load(np_of(np.arange(3.0)))).tolist() == [0.0, 1.0, 2.0]


def test_a_modifiable_allow_list_entry_is_a_programming_error():
    def rebuild(x):
        return x

    with pytest.raises(TypeError, match="could be modified by a pickle"):
        RestrictedUnpickler(io.BytesIO(), {("m", "f"): rebuild})
    RestrictedUnpickler(io.BytesIO(), {("m", "f"): InertFunction(rebuild, "m.f")})


# --- sizes declared by the file: a clear error, no allocation ----------------------------------
def test_a_truncated_text_line_is_corrupt_not_a_global():
    data = dumps(Call(Global("numpy", "dtype"), ("f4",)), 2)
    cut = data[: data.index(b"dtype") + 2]
    with pytest.raises(CorruptPickleError, match="test.pkl: .*truncated or corrupt"):
        restricted_loads(cut, ALLOWED, what="test.pkl")


def test_bytes_declared_beyond_memory_is_corrupt_not_memory_error():
    data = b"\x80\x04" + pickle.BINBYTES8 + struct.pack("<Q", 1 << 62) + b"abc"
    with pytest.raises(CorruptPickleError, match="test.pkl"):
        restricted_loads(data, ALLOWED, what="test.pkl")


@pytest.mark.parametrize("name, payload", [
    # the C unpickler zeroes a memo table of 2 x index pointers: 1 GiB from 9 bytes
    ("memo index", b"\x80\x02N" + pickle.LONG_BINPUT + struct.pack("<I", 1 << 26) + b"."),
    ("declared bytes", b"\x80\x04" + pickle.BINBYTES8 + struct.pack("<Q", 1 << 34) + b"x" * 64),
    ("declared string", b"\x80\x04" + pickle.BINUNICODE8 + struct.pack("<Q", 1 << 33) + b"x."),
])
def test_tiny_streams_cannot_make_the_unpickler_allocate(tmp_path, name, payload):
    path = tmp_path / "tiny.pkl"
    path.write_bytes(payload)
    r = run_isolated(f"""
        try:
            print("LOADED", restricted_loads(open({str(path)!r}, "rb").read(), NUMPY_GLOBALS))
        except CorruptPickleError as e:
            print("REFUSED", e)
    """, setup="from tlgan_jax.weights.safe_pickle import *")
    assert r.returncode == 0, r
    assert ("LOADED None" if name == "memo index" else "REFUSED") in r.stdout
    assert r.rss_growth_mib < 32, r


@pytest.mark.parametrize("name, payload", [
    # a million-deep tuple as a dict key / set member: hashing it recursed in C and the
    # interpreter died with SIGSEGV (1 MB of file)
    ("deep dict key", b"\x80\x02}N" + b"\x85" * 10 ** 6 + b"Ns."),
    ("deep set member", b"\x80\x04(N" + b"\x85" * 10 ** 6 + b"\x91."),
])
def test_deep_keys_are_refused_before_they_are_hashed(tmp_path, name, payload):
    path = tmp_path / "deep.pkl"
    path.write_bytes(payload)
    r = run_isolated(f"""
        try:
            restricted_loads(open({str(path)!r}, "rb").read(), NUMPY_GLOBALS, what="deep.pkl")
        except UnsafePickleError as e:
            print("REFUSED", e)
    """, setup="from tlgan_jax.weights.safe_pickle import *")
    assert r.returncode == 0, r
    assert "REFUSED deep.pkl: refusing a tuple as a dict key or set member" in r.stdout


def test_plain_keys_and_shallow_tuple_keys_are_read():
    obj = {"a": 1, 2: frozenset({3, "x"}), ("k", 1): None, b"b": 2.5}
    assert restricted_loads(pickle.dumps(obj, 4), {}) == obj


def test_a_stream_cut_inside_a_fixed_size_operand_is_corrupt():
    # BININT's 4-byte operand cut after one byte: struct.error, not a ValueError
    with pytest.raises(CorruptPickleError, match="cut.pkl: the pickle stream is truncated"):
        restricted_loads(b"\x80\x02J\x01", ALLOWED, what="cut.pkl")
