"""load_torch_zip: round trip on hand-made checkpoints (no torch), and refusal of bad files."""
import os
import pickle
import re
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hostile import Build, Call, Global, Storage, dumps, run_isolated

from tlgan_jax.weights.safe_pickle import CorruptPickleError, UnsafePickleError
from tlgan_jax.weights.torch_zip import TorchCheckpointError, load_torch_zip

from helpers import PARITY_TOL, pinned_file


# --- torch-style pickles, written without torch (tests/hostile.py) ------------------------------
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


# --- hostile checkpoints (issue 10): bounded by the file, and no effect on later loads ---------
def _load_isolated(path, timeout=300):
    return run_isolated(f"out = load_torch_zip({str(path)!r})\nprint('LOADED', type(out).__name__)",
                        setup="from tlgan_jax.weights.torch_zip import load_torch_zip",
                        timeout=timeout)


def _one_float_storage_views(n_tensors, size, stride, numel=1):
    s = Storage("FloatStorage", "0", numel)
    return dumps({f"t{i}": tensor(s, 0, size, stride) for i in range(n_tensors)})


@pytest.mark.parametrize("case, message", [
    ("stride 0", r"repeats storage elements \(stride 0, an expanded tensor\)"),
    ("overlapping", r"repeats storage elements \(overlapping axes\)"),
    ("many views", r"would bring the tensor bytes read to more than the file's \d+ bytes"),
    ("deflated record", r"would bring the storage bytes read to more than the file's"),
])
def test_tiny_checkpoints_cannot_make_the_reader_allocate(tmp_path, case, message):
    """Issue 10 item 4: a 519-byte checkpoint with a stride-0 tensor materialised 1 GiB."""
    path = tmp_path / "tiny.pt"
    if case == "stride 0":
        write_zip(path, _one_float_storage_views(1, (1 << 28,), (0,)), {"0": bytes(4)})
        assert path.stat().st_size < 1024
    elif case == "overlapping":   # 2^28 elements from a 2^15-element storage
        write_zip(path, _one_float_storage_views(1, (1 << 14, 1 << 14), (1, 1), 1 << 15),
                  {"0": bytes(4 << 15)})
    elif case == "many views":    # 4096 tensors, each the whole 256 KiB storage
        write_zip(path, _one_float_storage_views(4096, (1 << 16,), (1,), 1 << 16),
                  {"0": bytes(4 << 16)})
    else:                         # a 256 MiB storage record deflated to a few hundred KiB
        pkl = _one_float_storage_views(1, (1 << 26,), (1,), 1 << 26)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("archive/data.pkl", pkl)
            with zf.open("archive/data/0", "w", force_zip64=True) as f:
                for _ in range(256):
                    f.write(bytes(1 << 20))
        assert path.stat().st_size < 1 << 20
    r = _load_isolated(path)
    assert r.returncode == 1 and r.error.startswith(
        "tlgan_jax.weights.torch_zip.TorchCheckpointError: " + str(path)), r
    assert re.search(message, r.error), r
    assert r.rss_growth_mib < 32, r


def test_contiguous_views_sharing_a_storage_are_still_read(tmp_path):
    """The limits refuse only what no torch.save of real tensors holds: the weight and its
    transpose share one storage (within the file-size budget) and read back exactly."""
    s = Storage("FloatStorage", "0", 6)
    path = write_zip(tmp_path / "ok.pt", dumps({"w": tensor(s, 0, (2, 3), (3, 1)),
                                                "t": tensor(s, 0, (3, 2), (1, 3)),
                                                "row": tensor(s, 3, (1, 3), (99, 1))}),
                     {"0": S0.tobytes()})
    out = load_torch_zip(path)
    np.testing.assert_array_equal(out["t"], S0.reshape(2, 3).T)
    np.testing.assert_array_equal(out["row"], S0[3:].reshape(1, 3))


def test_storage_record_longer_than_declared(tmp_path):
    storages = sample_storages()
    storages["0"] += bytes(8)
    path = write_zip(tmp_path / "ckpt.pt", dumps(sample_tree()), storages)
    with pytest.raises(TorchCheckpointError, match=r"has 32 bytes, the pickle declares 6 x "
                                                   r"torch.FloatStorage = 24 bytes"):
        load_torch_zip(path)


def test_one_storage_key_declared_with_two_types(tmp_path):
    tree = {"a": tensor(Storage("FloatStorage", "0", 2), 0, (2,), (1,)),
            "b": tensor(Storage("HalfStorage", "0", 4), 0, (4,), (1,))}
    path = write_zip(tmp_path / "ckpt.pt", dumps(tree), {"0": bytes(8)})
    with pytest.raises(CorruptPickleError, match=r"storage '0' is declared twice, as 2 x "
                                                 r"torch.FloatStorage and as 4 x "
                                                 r"torch.HalfStorage"):
        load_torch_zip(path)


def test_deep_nesting_is_a_named_error(tmp_path):
    depth = 50_000
    path = write_zip(tmp_path / "deep.pt", b"\x80\x02" + pickle.EMPTY_LIST * depth
                     + pickle.APPEND * (depth - 1) + pickle.STOP, {})
    with pytest.raises(TorchCheckpointError, match=f"{path}: the checkpoint's objects nest too "
                                                   f"deeply"):
        load_torch_zip(path)


def test_shared_containers_are_converted_once(tmp_path):
    """A tuple holding the same object twice, 40 levels deep, names 2^40 paths: converted once
    per object (shared, as torch.load shares them), not once per path."""
    put, get = pickle.BINPUT + b"\x00", pickle.BINGET + b"\x00"
    ops = pickle.EMPTY_LIST + put + pickle.POP
    ops += (get + get + pickle.TUPLE2 + put + pickle.POP) * 40
    path = write_zip(tmp_path / "dag.pt", b"\x80\x02" + ops + get + pickle.STOP, {})
    r = run_isolated(f"""
        out = load_torch_zip({str(path)!r})
        depth = 0
        while isinstance(out, tuple) and out:
            assert out[0] is out[1]
            out, depth = out[0], depth + 1
        print("DEPTH", depth)
    """, setup="from tlgan_jax.weights.torch_zip import load_torch_zip", timeout=60)
    assert r.returncode == 0 and "DEPTH 40" in r.stdout, r
    assert r.rss_growth_mib < 32, r


def test_a_hostile_checkpoint_cannot_change_how_later_files_decode(tmp_path):
    """Issue 10 item 5: BUILD on the shared torch.HalfStorage / torch.FloatStorage stand-ins
    (itemsize 4; FloatStorage's dtype := HalfStorage) made the pinned DCGAN load as float16
    garbage with no error. Now the BUILD is refused, and the real weights still give the
    golden images."""
    half, flt = Global("torch", "HalfStorage"), Global("torch", "FloatStorage")
    poison = dumps([Build(half, (None, {"itemsize": 4})), Build(flt, (None, {"dtype": half})),
                    Build(half, {"itemsize": 4}), Build(flt, {"dtype": half})])
    hostile = write_zip(tmp_path / "poison.pt", poison, {})
    weights = pinned_file("gan-face-generate", "gan_face_generate/weights.tar")
    golden = Path(__file__).parent / "golden" / "dcgan.npz"
    r = run_isolated(f"""
        try:
            load_torch_zip({str(hostile)!r})
        except Exception as e:
            print("HOSTILE", type(e).__name__, e)
        g = np.load({str(golden)!r})
        with jax.default_matmul_precision("highest"):
            images = dcgan.apply(dcgan.load({str(weights)!r}), jnp.asarray(g["z"]))
        print("REL_ERROR", rel_error(images, g["images"]))
    """, setup="import jax, jax.numpy as jnp, numpy as np\n"
               "from helpers import rel_error\n"
               "from tlgan_jax.generators import dcgan\n"
               "from tlgan_jax.weights.torch_zip import load_torch_zip")
    assert r.returncode == 0, r.stderr[-3000:]
    expect = f"HOSTILE UnsafePickleError PyTorch checkpoint {hostile}: refusing "
    assert expect in r.stdout, r.stdout
    err = float(r.stdout.split("REL_ERROR")[1].split()[0])
    assert err <= PARITY_TOL, r.stdout


def test_storage_stand_ins_are_fresh_and_read_only_per_load(tmp_path):
    """Even a BUILD that got through could not reach the next load: each load has its own."""
    from tlgan_jax.weights import torch_zip
    a, b = torch_zip._allowed(), torch_zip._allowed()
    assert a[("torch", "FloatStorage")] is not b[("torch", "FloatStorage")]
    with pytest.raises(UnsafePickleError, match="read-only"):
        a[("torch", "FloatStorage")].dtype = np.dtype("f2")
    assert a[("torch", "FloatStorage")].dtype == np.float32


def test_records_zipfile_would_inflate_without_bound_are_refused(tmp_path):
    """bz2 / lzma members are inflated by zipfile with no output limit (a 372-byte .pt took
    601 MiB): only stored and deflate records, which torch.save writes, are read."""
    path = tmp_path / "bz2.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("archive/data.pkl", dumps(sample_tree()))
        zf.writestr("archive/byteorder", b"little")
    with pytest.raises(TorchCheckpointError, match=r"record 'archive/\w+' is compressed with "
                                                   r"zip method 12; only stored and deflate"):
        load_torch_zip(path)


def test_a_record_claiming_more_compressed_bytes_than_the_file_is_refused(tmp_path):
    """zipfile reads a stored record's compress_size in one call: a 2 GiB claim in a tiny
    file was a 1 GiB allocation."""
    raw = bytearray(write_zip(tmp_path / "ok.pt", dumps(sample_tree()),
                              sample_storages()).read_bytes())
    central = raw.index(b"PK\x01\x02")                  # the first record's central entry
    raw[central + 20:central + 24] = (0x7FFFFFFF).to_bytes(4, "little")
    path = tmp_path / "claim.pt"
    path.write_bytes(bytes(raw))
    with pytest.raises(TorchCheckpointError, match="claims 2147483647 compressed bytes, more "
                                                   "than the whole archive"):
        load_torch_zip(path)
