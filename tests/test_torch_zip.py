"""load_torch_zip: round trip on hand-made checkpoints (no torch), and refusal of bad files."""
import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from tlgan_jax.weights.safe_pickle import CorruptPickleError, UnsafePickleError
from tlgan_jax.weights.torch_zip import TorchCheckpointError, load_torch_zip


# --- crafting torch-style pickles without torch --------------------------------------------
class Global:
    """Written as GLOBAL 'module name' (pickle never imports it while writing)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    """Written as func, args, REDUCE: unpickling calls func(*args)."""

    def __init__(self, func, args):
        self.func, self.args = func, tuple(args)


class Storage:
    """Written as the persistent id ('storage', torch.<type>, key, location, numel)."""

    def __init__(self, type_name, key, numel):
        self.pid = ("storage", Global("torch", type_name), key, "cpu", numel)


class CraftPickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    def _save_call(self, obj):
        self.save(obj.func)
        self.save(obj.args)
        self.write(pickle.REDUCE)

    dispatch[Global] = _save_global
    dispatch[Call] = _save_call

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def dumps(obj) -> bytes:
    buf = io.BytesIO()
    CraftPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def ordered_dict(pairs=()):
    return Call(Global("collections", "OrderedDict"), (list(pairs),))


def tensor(storage, offset, size, stride):
    return Call(Global("torch._utils", "_rebuild_tensor_v2"),
                (storage, offset, tuple(size), tuple(stride), False, ordered_dict()))


def write_zip(path, pkl: bytes, storages: dict, byteorder=b"little", prefix="archive"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", pkl)
        zf.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in storages.items():
            zf.writestr(f"{prefix}/data/{key}", raw)
        zf.writestr(f"{prefix}/version", b"3\n")
    return path


# --- a small checkpoint exercising views, offsets, dtypes and nesting ------------------------
S0 = np.arange(6, dtype=np.float32) * 1.5 - 2.0            # float32 [2, 3] and its transpose
S1 = np.linspace(-1, 1, 10)                                  # float64, strided slice at offset 1
S2 = np.array([30070], np.int64)                             # scalar
S3 = np.array([0.5, -3.25, 1e-3], ml_dtypes.bfloat16)
S4 = np.array([True, False, True])


def sample_tree():
    s0, s1 = Storage("FloatStorage", "0", 6), Storage("DoubleStorage", "1", 10)
    s2, s3 = Storage("LongStorage", "2", 1), Storage("BFloat16Storage", "3", 3)
    s4 = Storage("BoolStorage", "4", 3)
    weight = tensor(s0, 0, (2, 3), (3, 1))
    param = Call(Global("torch._utils", "_rebuild_parameter"), (weight, True, ordered_dict()))
    state = ordered_dict([("layer.weight", param),
                          ("layer.weight_t", tensor(s0, 0, (3, 2), (1, 3))),
                          ("every_other", tensor(s1, 1, (4,), (2,))),
                          ("steps", tensor(s2, 0, (), ())), ("half", tensor(s3, 0, (3,), (1,))),
                          ("mask", tensor(s4, 0, (3,), (1,))),
                          ("empty", tensor(s0, 0, (0, 3), (3, 1)))])
    return {"model": state, "epoch": 7, "name": "tiny", "history": [tensor(s0, 4, (2,), (1,))]}


def sample_storages(dtype_order="<"):
    arrays = {"0": S0, "1": S1, "2": S2, "3": S3, "4": S4}
    out = {}
    for key, a in arrays.items():
        if dtype_order == ">" and a.dtype.itemsize > 1:
            a = a.byteswap()
        out[key] = a.tobytes()
    return out


@pytest.mark.parametrize("order", ["<", ">"])
def test_round_trip_views_dtypes_and_nesting(tmp_path, order):
    path = write_zip(tmp_path / "ckpt.pt", dumps(sample_tree()), sample_storages(order),
                     byteorder=b"little" if order == "<" else b"big")
    out = load_torch_zip(path)
    assert set(out) == {"model", "epoch", "name", "history"}
    assert type(out["model"]) is dict and out["epoch"] == 7 and out["name"] == "tiny"
    m = out["model"]
    np.testing.assert_array_equal(m["layer.weight"], S0.reshape(2, 3))
    np.testing.assert_array_equal(m["layer.weight_t"], S0.reshape(2, 3).T)
    assert m["layer.weight_t"].flags.c_contiguous and m["layer.weight_t"].flags.writeable
    np.testing.assert_array_equal(m["every_other"], S1[1:9:2])
    assert m["every_other"].dtype == np.float64
    assert m["steps"].shape == () and m["steps"].dtype == np.int64 and int(m["steps"]) == 30070
    assert m["half"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(m["half"].astype(np.float32),
                                  [0.5, -3.25, S3[2].astype(np.float32)])
    np.testing.assert_array_equal(m["mask"], S4)
    assert m["empty"].shape == (0, 3) and m["empty"].dtype == np.float32
    np.testing.assert_array_equal(out["history"][0], S0[4:6])
    assert m["layer.weight"].dtype.byteorder in "=|"   # native, whatever the file's byteorder


def test_tensors_do_not_alias_each_other(tmp_path):
    path = write_zip(tmp_path / "ckpt.pt", dumps(sample_tree()), sample_storages())
    m = load_torch_zip(path)["model"]
    m["layer.weight"][0, 0] = 99.0
    assert m["layer.weight_t"][0, 0] == S0[0]


def test_not_a_zip(tmp_path):
    path = tmp_path / "weights.tar"
    path.write_bytes(b"\x80\x02}q\x00." + os.urandom(64))  # a legacy raw pickle, say
    with pytest.raises(TorchCheckpointError, match="is truncated or not a PyTorch zip checkpoint"):
        load_torch_zip(path)


def test_truncated_zip(tmp_path):
    whole = write_zip(tmp_path / "whole.pt", dumps(sample_tree()), sample_storages()).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(TorchCheckpointError, match="is truncated or not a PyTorch zip checkpoint"):
        load_torch_zip(cut)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/readme.txt", "hello")
    with pytest.raises(TorchCheckpointError, match="no data.pkl record"):
        load_torch_zip(path)


def test_missing_storage_record(tmp_path):
    storages = sample_storages()
    del storages["1"]
    path = write_zip(tmp_path / "ckpt.pt", dumps(sample_tree()), storages)
    with pytest.raises(TorchCheckpointError, match=r"storage record 'archive/data/1' is missing"):
        load_torch_zip(path)


def test_storage_record_shorter_than_declared(tmp_path):
    storages = sample_storages()
    storages["0"] = storages["0"][:8]
    path = write_zip(tmp_path / "ckpt.pt", dumps(sample_tree()), storages)
    with pytest.raises(TorchCheckpointError, match=r"has 8 bytes, the pickle declares 6 x "
                                                   r"torch.FloatStorage = 24 bytes"):
        load_torch_zip(path)


def test_tensor_larger_than_its_storage(tmp_path):
    tree = {"w": tensor(Storage("FloatStorage", "0", 6), 0, (3, 3), (3, 1))}
    path = write_zip(tmp_path / "ckpt.pt", dumps(tree), {"0": S0.tobytes()})
    with pytest.raises(TorchCheckpointError, match="holds 6 elements but a tensor of size "
                                                   r"\(3, 3\).* needs 9"):
        load_torch_zip(path)


def test_truncated_data_pkl(tmp_path):
    pkl = dumps(sample_tree())
    path = write_zip(tmp_path / "ckpt.pt", pkl[: len(pkl) // 2], sample_storages())
    with pytest.raises(CorruptPickleError, match="truncated or corrupt"):
        load_torch_zip(path)


def test_unknown_storage_type_is_refused(tmp_path):
    tree = {"w": tensor(Storage("QInt8Storage", "0", 6), 0, (6,), (1,))}
    path = write_zip(tmp_path / "ckpt.pt", dumps(tree), {"0": bytes(6)})
    with pytest.raises(UnsafePickleError, match="torch.QInt8Storage"):
        load_torch_zip(path)


@pytest.mark.parametrize("func", [Global("builtins", "eval"), Global("posix", "system"),
                                  Global("os", "system")])
def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, func):
    marker = tmp_path / "pwned"
    if func.name == "eval":
        payload = Call(func, (f"open({str(marker)!r}, 'w').write('x')",))
    else:
        payload = Call(func, (f"touch '{marker}'",))
    pkl = dumps({"model": ordered_dict([("w", payload)])})
    if func.module != "posix" or os.name == "posix":
        pickle.loads(pkl)   # the payload is live: plain pickle runs it
        assert marker.exists()
        marker.unlink()
    path = write_zip(tmp_path / "evil.pt", pkl, {})
    with pytest.raises(UnsafePickleError,
                       match=rf"refusing to load global '{func.module}\.{func.name}'"):
        load_torch_zip(path)
    assert not marker.exists()
