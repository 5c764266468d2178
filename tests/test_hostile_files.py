"""Hostile files (issue 10, items 2, 3, 8, 9): photos, axes files and sample directories that
are damaged, crafted or of another run give one named error (or correct data), never a raw
exception, an allocation sized by the file, or another run's data."""
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tlgan_jax.generators as generators
from tlgan_jax.axes import Axes
from tlgan_jax.invert import PhotoError, frame_face, load_photo
from tlgan_jax.sampling import sample
from tlgan_jax.store import ShardStore, ShardStoreError, load_samples

from toy import toy_extractor, toy_generator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _peak_bytes(fn):
    """(result, peak bytes traced while fn runs); numpy's buffers are traced."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------- photos

def _old_frame(photo, resolution, box):
    """Reference: the framing of a box as main computed it (pad the whole photo by repeating
    its edges, then crop)."""
    h, w = photo.shape[:2]
    left, top, right, bottom = (int(round(v)) for v in box)
    pad = max(0, -left, -top, right - w, bottom - h)
    src = np.pad(photo, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else photo
    crop = src[top + pad:bottom + pad, left + pad:right + pad]
    out = np.asarray(Image.fromarray(crop).resize((resolution, resolution), Image.LANCZOS),
                     np.float32)
    return out / 127.5 - 1.0


def test_framing_a_box_equals_padding_the_photo_without_padding_it():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    boxes = [(0, 0, 53, 37), (5, 3, 30, 33), (-10, -4, 20, 26), (40, 30, 70, 60),
             (-7.4, 2.6, 60.2, 41.9), (-60, -60, -20, -20), (100, 10, 140, 50), (-3, -200, 9, -150)]
    for _ in range(30):                    # (left, top, right, bottom) around and inside
        (left, right), (top, bottom) = np.sort(rng.uniform(-80, 130, (2, 2)), axis=1)
        boxes.append((left, top, right, bottom))
    for box in boxes:
        if round(box[2]) <= round(box[0]) or round(box[3]) <= round(box[1]):
            continue
        got, info = frame_face(photo, 16, box=box)
        np.testing.assert_array_equal(got, _old_frame(photo, 16, box))
        assert info["framing"] == "box"


def test_framing_memory_does_not_depend_on_where_the_box_is():
    photo = np.zeros((500, 500, 3), np.uint8)
    # main padded the whole photo: (500 + 2·1900)² · 3 bytes = 55 MB for a 100×100 crop
    (target, _), peak = _peak_bytes(lambda: frame_face(photo, 16, box=(-1900, -1900, -1800,
                                                                        -1800)))
    assert target.shape == (16, 16, 3)
    assert peak < 2_000_000, peak                           # the 30 KB crop, not the padding
    with pytest.raises(PhotoError, match="megapixels") as e:  # the crop itself is bounded
        frame_face(photo, 16, box=(-900, -900, 1100, 1100), max_pixels=1_000_000)
    assert e.value.reason == "too_large"


def _png16(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_turned_white():
    v = (np.arange(40 * 30).reshape(30, 40) * 54).astype(np.uint16)       # 0 .. 64746
    data = _png16(v)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    photo = load_photo(data)
    want = np.round(v / 257.0).astype(np.uint8)
    assert photo.shape == (30, 40, 3)
    for c in range(3):
        np.testing.assert_array_equal(photo[..., c], want)
    buf = io.BytesIO()
    Image.fromarray(np.ones((9, 9), np.float32)).save(buf, "TIFF")
    with pytest.raises(PhotoError, match="floating-point") as e:
        load_photo(buf.getvalue())
    assert e.value.reason == "not_image"


# ----------------------------------------------------------------------------- axes files

def _axes(tmp_path, **metadata):
    ax = Axes.from_vectors(np.random.default_rng(0).normal(size=(100, 2)), ("male", "age"),
                           method="ols", metadata=metadata)
    return ax, ax.save(tmp_path / "axes.npz")


def _rewrite(src: Path, dst: Path, **changes) -> Path:
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(changes)
    with open(dst, "wb") as out:
        np.savez(out, **arrays)
    return dst


@pytest.mark.parametrize("key, value, message", [
    ("metadata", "[1, 2]", "metadata must be a JSON object"),
    ("metadata", "3", "metadata must be a JSON object"),
    ("diagnostics", '{"male": 1}', "'diagnostics' must map each axis name to an object"),
    ("diagnostics", '"x"', "diagnostics must be a JSON object"),
    ("method", None, "'method' must be a string"),
])
def test_malformed_axes_fields_are_named(tmp_path, key, value, message):
    _, path = _axes(tmp_path)
    bad = np.zeros(3) if value is None else np.array(value)
    p = _rewrite(path, tmp_path / "bad.npz", **{key: bad})
    with pytest.raises(ValueError, match=message) as e:
        Axes.load(p)
    assert str(p) in str(e.value)


def test_files_that_are_not_axes_files_are_named(tmp_path):
    _, path = _axes(tmp_path)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"truncated\.npz: not an axes file: .*truncated or "
                                         r"damaged"):
        Axes.load(truncated)
    npy = tmp_path / "directions.npy"
    np.save(npy, np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"directions\.npy: not an axes file: a single \.npy "
                                         r"array"):
        Axes.load(npy)
    text = tmp_path / "notes.txt"
    text.write_text("generator: digiface64\n")
    with pytest.raises(ValueError, match=r"notes\.txt: not an axes file") as e:
        Axes.load(text)
    assert "pickle" not in str(e.value)                      # main suggested allow_pickle
    with pytest.raises(ValueError, match=r"not an axes file: .*missing key"):
        Axes.load(_write_zip(tmp_path / "other.npz", {"x.npy": b"123"}))
    with pytest.raises(ValueError, match="not a regular file"):
        Axes.load(tmp_path)                                   # a directory
    with pytest.raises(FileNotFoundError):
        Axes.load(tmp_path / "missing.npz")


def _write_zip(path: Path, members: dict, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npy_header(shape, dtype="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_axes_load_reads_only_its_members_within_size_limits(tmp_path):
    _, path = _axes(tmp_path)
    # a 256 MiB extra member (compressed to ~0.3 MB) is never read
    bomb = tmp_path / "bomb.npz"
    bomb.write_bytes(path.read_bytes())
    n = 64 << 20
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as z:
        with z.open("extra.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((n,)))
            zeros = bytes(1 << 22)
            for _ in range(n * 4 // len(zeros)):
                f.write(zeros)
    assert bomb.stat().st_size < 2_000_000
    axes, peak = _peak_bytes(lambda: Axes.load(bomb))
    assert axes.names == ("male", "age")
    assert peak < 8_000_000, peak
    # a member larger than its limit is refused from the zip directory, before reading
    big = np.zeros((4096, 1100), np.float32)
    big[0] = 1.0
    huge = _rewrite(path, tmp_path / "huge.npz", directions=big,
                    names=np.array([f"a{i}" for i in range(1100)]))
    with pytest.raises(ValueError, match=r"directions\.npy holds \d+ bytes; at most \d+"):
        Axes.load(huge)
    # a member whose .npy header declares more data than it holds
    members = {k: v for k, v in _zip_members(path).items()}
    members["directions.npy"] = _npy_header((100, 2000)) + bytes(800)
    with pytest.raises(ValueError, match=r"declares shape \(100, 2000\)"):
        Axes.load(_write_zip(tmp_path / "short.npz", members))
    # a pickled member is refused, never unpickled
    members["directions.npy"] = _zip_members(_rewrite(
        path, tmp_path / "obj.npz", directions=np.array([{"x": 1}], dtype=object)))[
        "directions.npy"]
    with pytest.raises(ValueError, match="not a portable axes file: .*Python objects"):
        Axes.load(_write_zip(tmp_path / "pickled.npz", members))


def _zip_members(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_axes_save_is_atomic(tmp_path, monkeypatch):
    ax, path = _axes(tmp_path)
    before = path.read_bytes()
    other = Axes.from_vectors(np.eye(100, 3, dtype=np.float32), ("a", "b", "c"))

    def no_rename(*a, **k):
        raise OSError("simulated crash before the rename")
    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="simulated crash"):
        other.save(path)
    assert path.read_bytes() == before                     # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["axes.npz"]   # no debris
    monkeypatch.undo()
    other.save(path)
    assert Axes.load(path).names == ("a", "b", "c")


# ----------------------------------------------------------------------------- axes metadata

@pytest.mark.parametrize("metadata, message", [
    ({"generator": 123}, "metadata field 'generator' must be a generator name, got 123"),
    ({"extractors": "gender"}, "metadata field 'extractors' must be a list of extractor "
                               "names, got 'gender'"),
    ({"extractors": ["gender", 7]}, "must be a list of extractor names"),
    ({"generator": "pggan:/dev/zero"}, r"not one of the built-in .*pass --generator"),
    ({"extractors": ["celeba40:/tmp/ckpt"]}, r"not among the built-in .*pass --extractors"),
])
def test_an_axes_file_does_not_choose_which_files_are_opened(tmp_path, monkeypatch, capsys,
                                                             metadata, message):
    from tlgan_jax import extractors
    from tlgan_jax.serve import launch
    _, path = _axes(tmp_path, **metadata)
    opened = []

    def record(name, *a, **k):
        opened.append(name)
        raise RuntimeError(f"stop: would load {name}")
    monkeypatch.setattr(generators, "load_generator", record)    # as the editor loads them
    monkeypatch.setattr(extractors, "load_extractor", record)    # (through cli.load_models)
    with pytest.raises(ValueError, match=message) as e:
        launch.build_editor(str(path))
    assert str(path) in str(e.value) and opened == []
    # named by the user too, the model is used (here: recorded, not loaded)
    with pytest.raises(RuntimeError, match="stop: would load pggan:/x.pkl"):
        launch.build_editor(str(path), generator="pggan:/x.pkl", extractors=["gender"])
    # the command line says the same in one line (exit status 2), before anything loads
    opened.clear()
    with pytest.raises(SystemExit) as e:
        launch.main(["--axes", str(path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and opened == [] and err.count("\n") == 1
    assert re.match(r"python -m tlgan_jax.serve: --axes=.*axes\.npz: ", err)
    assert re.search(message, err)


def test_serve_with_a_text_file_as_axes_says_not_an_axes_file(tmp_path, capsys):
    from tlgan_jax.serve import launch
    text = tmp_path / "axes.txt"
    text.write_text("hello")
    with pytest.raises(SystemExit) as e:
        launch.main(["--axes", str(text)])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "axes.txt: not an axes file" in err and "pickle" not in err


def test_a_pggan_pickle_must_be_a_regular_file(tmp_path):
    with pytest.raises(ValueError, match=r"/dev/zero is not a regular file"):
        generators.load_generator("pggan:/dev/zero")
    with pytest.raises(ValueError, match="is not a regular file"):
        generators.load_generator(f"pggan:{tmp_path}")
    with pytest.raises(ValueError,
                       match=r"missing.pkl: cannot read the pg-GAN pickle \(No such file"):
        generators.load_generator(f"pggan:{tmp_path}/missing.pkl")


# ----------------------------------------------------------------------------- sample directories

def _run(tmp_path, seed=0, ext=None, num=100):
    return sample(toy_generator(), [ext or toy_extractor()], num=num, seed=seed,
                  out_dir=tmp_path, shard_size=50, progress=False)


def _other_extractor():
    import jax.numpy as jnp

    from tlgan_jax.extractors import custom_extractor

    def scores(images):        # same shapes as the toy extractor, other meaning
        return {"dark": -jnp.mean(images, axis=(1, 2, 3)),
                "bluer": jnp.mean(images[..., 2] - images[..., 0], axis=(1, 2))}
    return custom_extractor(scores, ("dark", "bluer"), binary=(False, True), name="other")


def test_shards_without_their_manifest_are_never_reused(tmp_path):
    first = _run(tmp_path, seed=0)
    (tmp_path / "manifest.json").unlink()
    for other in (dict(seed=1), dict(ext=_other_extractor()), dict(seed=0)):
        with pytest.raises(ShardStoreError, match="no manifest.json, so nothing says which run"):
            _run(tmp_path, **other)
    clean = _run(tmp_path / "clean", seed=1)
    assert not np.allclose(clean.z, first.z)


def test_a_shard_of_another_run_or_damaged_is_recomputed(tmp_path, caplog):
    a = tmp_path / "a"
    b = tmp_path / "b"
    _run(a, seed=0)
    clean_b = _run(tmp_path / "clean", seed=1)
    _run(b, seed=1)
    # another run's shard (same shapes) copied in, and a shard whose data were altered with
    # its format fields intact: neither is returned
    (b / "shard_000000.npz").write_bytes((a / "shard_000000.npz").read_bytes())
    with np.load(b / "shard_000001.npz") as f:
        fields = {k: f[k] for k in f.files}
    fields["y"] = fields["y"] + 1.0
    with open(b / "shard_000001.npz", "wb") as out:
        np.savez(out, **fields)
    caplog.clear()
    again = _run(b, seed=1)
    err = caplog.text
    assert "shard_000000.npz belongs to another run" in err
    assert "shard_000001.npz is damaged (its data do not match its checksum)" in err
    np.testing.assert_array_equal(again.z, clean_b.z)
    np.testing.assert_array_equal(again.y, clean_b.y)


def test_a_shard_of_the_old_format_is_not_trusted(tmp_path, caplog):
    clean = _run(tmp_path / "clean", seed=0)
    run = tmp_path / "run"
    _run(run, seed=0)
    with open(run / "shard_000001.npz", "wb") as out:        # old format: z and y only
        np.savez(out, z=np.zeros((50, 16), np.float32), y=np.zeros((50, 2), np.float32))
    caplog.clear()
    again = _run(run, seed=0)
    assert "shard_000001.npz was written by an older version" in caplog.text
    np.testing.assert_array_equal(again.y, clean.y)


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b"\xff\xfe",
                                     b'{"num": ' + b"9" * 5000 + b"}"])   # int over the limit
def test_a_damaged_manifest_is_a_named_error(tmp_path, content):
    _run(tmp_path, seed=0)
    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(ShardStoreError, match=r"manifest\.json is (empty or )?damaged"):
        _run(tmp_path, seed=0)
    with pytest.raises(ShardStoreError, match=r"manifest\.json is (empty or )?damaged"):
        load_samples(tmp_path)


def test_a_finished_manifest_with_missing_fields_is_a_named_error(tmp_path):
    _run(tmp_path, seed=0)
    m = json.loads((tmp_path / "manifest.json").read_text())
    del m["latent_dim"]
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ShardStoreError, match=r"manifest\.json is damaged \(fields "
                                              r"\['latent_dim'\]"):
        load_samples(tmp_path)


RACER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from tlgan_jax.store import ShardStore, ShardStoreError
    root, me, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    meta = {"generator": "toy", "latent_dim": 16, "generator_dtype": "float32",
            "extractors": ["toy"], "attributes": ["bright", "redder"], "binary": [0, 1],
            "seed": seed, "num": 100, "shard_size": 50, "num_shards": 2}
    def barrier(name):
        (root.parent / f"{name}-{me}").touch()
        while len(list(root.parent.glob(f"{name}-*"))) < 2:
            time.sleep(0.001)
    barrier("ready")
    try:
        store = ShardStore(root, meta)
        result = "ok"
    except ShardStoreError as e:
        result = "error: " + str(e)
    (root.parent / f"result-{me}").write_text(result)
    barrier("tried")                 # hold the store until both have tried
""")


@pytest.mark.parametrize("seeds", [(0, 0), (0, 1)], ids=["same_config", "other_config"])
def test_two_samplers_racing_on_one_directory_exactly_one_proceeds(tmp_path, seeds):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), JAX_PLATFORMS="cpu")
    for attempt in range(3):
        base = tmp_path / f"race{attempt}"
        base.mkdir()
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(base / "run"), str(i),
                                   str(s)], env=env) for i, s in enumerate(seeds)]
        assert all(p.wait(timeout=120) == 0 for p in procs)
        results = [(base / f"result-{i}").read_text() for i in range(2)]
        assert sorted(r == "ok" for r in results) == [False, True], results
        loser = next(r for r in results if r != "ok")
        assert ("being written by another sampler" in loser
                or "holds samples of another run" in loser), loser
        manifest = json.loads((base / "run" / "manifest.json").read_text())
        winner = results.index("ok")
        assert manifest["seed"] == seeds[winner]


def test_a_second_sampler_on_a_directory_in_use_is_refused(tmp_path):
    meta = {"generator": "toy", "latent_dim": 16, "generator_dtype": "float32",
            "extractors": ["toy"], "attributes": ["bright", "redder"], "seed": 0, "num": 100,
            "shard_size": 50, "num_shards": 2}
    first = ShardStore(tmp_path, meta)
    with pytest.raises(ShardStoreError, match="being written by another sampler"):
        ShardStore(tmp_path, meta)
    # other processes of one jax.distributed run hold their own locks
    ShardStore(tmp_path, meta, process=1, processes=2).close()
    first.close()
    ShardStore(tmp_path, meta).close()                      # free again once closed
