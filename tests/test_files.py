"""files.py: whole files or none, the lock, JSON-able data, .npz members read safely."""
import io
import json
import threading
import time
import zipfile

import numpy as np
import pytest

from tlgan_jax.files import (
    NpzError,
    atomic_open,
    atomic_write,
    file_lock,
    jsonable,
    read_npz,
    write_json,
    write_npz,
)


def test_atomic_writes_replace_whole_files_and_leave_nothing_on_error(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    assert atomic_write(path, "one") == path and path.read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "one"                        # untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]   # no temporary left
    write_npz(tmp_path / "x.npz", a=np.arange(3))
    with np.load(tmp_path / "x.npz") as f:
        np.testing.assert_array_equal(f["a"], [0, 1, 2])
    write_json(tmp_path / "x.json", {"v": np.float32(0.5), "bad": float("nan"),
                                     "arr": np.eye(2), "t": (1, 2)})
    assert json.loads((tmp_path / "x.json").read_text()) == {
        "v": 0.5, "bad": None, "arr": [[1.0, 0.0], [0.0, 1.0]], "t": [1, 2]}
    with pytest.raises(ValueError, match="write mode"):
        with atomic_open(path, "r"):
            pass


def test_file_lock_excludes_a_second_holder(tmp_path):
    order = []

    def other():
        with file_lock(tmp_path / "res"):
            order.append("other")

    with file_lock(tmp_path / "res"):
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.2)            # give the other thread the chance to (wrongly) get in
        order.append("first")
    t.join(5)
    assert order == ["first", "other"]


def test_jsonable_plain_data():
    import jax.numpy as jnp
    assert jsonable({1: jnp.arange(2), "p": [np.int64(3), float("inf")]}) == {
        "1": [0, 1], "p": [3, None]}


def _npz_with(path, member: bytes, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("x.npy", member)
    return path


def _npy(shape, descr="<f4", body=b"\0" * 24):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + body


def test_read_npz_refuses_members_it_cannot_bound(tmp_path):
    good = io.BytesIO()
    np.save(good, np.arange(6, dtype=np.float32))
    assert read_npz(_npz_with(tmp_path / "ok.npz", good.getvalue()), {"x": 1000})["x"][5] == 5
    # bz2 / lzma: zipfile inflates them without an output bound
    with pytest.raises(NpzError, match=r"bz2\.npz: member x\.npy is compressed with zip "
                                       r"method 12"):
        read_npz(_npz_with(tmp_path / "bz2.npz", good.getvalue(), zipfile.ZIP_BZIP2),
                 {"x": 1000})
    # a header whose negative sizes multiply to the right byte count, or an empty dtype
    for name, member in (("neg", _npy((-2, -3))), ("void", _npy((6,), "|V0", b""))):
        with pytest.raises(NpzError, match=rf"{name}\.npz: member x\.npy is not a valid "
                                           rf"\.npy array: its header declares shape"):
            read_npz(_npz_with(tmp_path / f"{name}.npz", member), {"x": 1000})
