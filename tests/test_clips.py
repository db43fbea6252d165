"""dfnb.clips and data/manifest.json: the manifest matches the files; lookup order, checksums, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfnb import clips
from dfnb.errors import AssetNotFoundError, ChecksumError

FIELDS = {"name", "file", "sha256", "source", "licence", "clean", "kind", "duration_s", "sr"}
SHARED = clips._shared_data()
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present (no shared data)")


@pytest.fixture
def no_roots(monkeypatch, tmp_path):
    """No mirror, and a ../shared that does not exist."""
    monkeypatch.delenv(clips.MIRROR_ENV, raising=False)
    monkeypatch.setattr(clips, "_shared_data", lambda: tmp_path / "absent" / "shared" / "data")


@pytest.fixture
def mirror(monkeypatch, tmp_path):
    """An empty mirror folder ($DFNB_MIRROR) whose data/ you fill with ``put(name, bytes=None)``."""
    root = tmp_path / "mirror"
    monkeypatch.setenv(clips.MIRROR_ENV, str(root))

    def put(name: str, data: bytes | None = None) -> Path:
        info = clips.clip_info(name)
        p = root / "data" / info["file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            shutil.copyfile(SHARED / info["file"], p)
        else:
            p.write_bytes(data)
        return p

    return put


# --- the manifest itself ---------------------------------------------------------------------------------

def test_manifest_schema():
    names = clips.clip_names()
    assert len(names) == len(set(names)) == 21
    files = [clips.clip_info(n)["file"] for n in names]
    assert len(files) == len(set(files))
    for n in names:
        e = clips.clip_info(n)
        assert FIELDS <= set(e), n
        assert e["kind"] in clips.KINDS
        assert len(e["sha256"]) == 64 and int(e["sha256"], 16) >= 0
        assert e["sr"] == 48000 and e["duration_s"] > 0
        assert e["source"] and e["licence"]
        assert not Path(e["file"]).is_absolute() and ".." not in Path(e["file"]).parts
        if e["clean"] is not None:
            assert e["kind"] == "noisy" and clips.clip_info(e["clean"])["kind"] == "clean"
    assert set(clips.clip_names("noisy")) >= {"vb_p232_013", "dfn_noisy_snr0", "dns4_aircon"}
    assert sum(len(clips.clip_names(k)) for k in clips.KINDS) == 21
    assert all(clips.clip_info(n)["clean"] for n in names if n.startswith("vb_") and n.endswith(tuple("0123456789")))


def test_clip_info_is_a_copy():
    clips.clip_info("vb_p232_013")["file"] = "elsewhere.wav"
    assert clips.clip_info("vb_p232_013")["file"] == "voicebank-demand/p232_013_noisy.wav"


@needs_shared
def test_manifest_matches_shared_sha256sums():
    listed = {}
    for sums in SHARED.glob("*/SHA256SUMS"):
        for line in sums.read_text().splitlines():
            digest, fname = line.split()
            listed[f"{sums.parent.name}/{fname}"] = digest
    manifest = {clips.clip_info(n)["file"]: clips.clip_info(n)["sha256"] for n in clips.clip_names()}
    assert manifest == listed


@needs_shared
@pytest.mark.parametrize("name", clips.clip_names())
def test_every_clip_resolves_and_matches(name):
    info = clips.clip_info(name)
    p = clips.clip_path(name)
    assert p == SHARED / info["file"]
    i = sf.info(str(p))
    assert (i.samplerate, i.channels) == (info["sr"], 1)
    assert round(i.frames / i.samplerate, 3) == info["duration_s"]


@needs_shared
def test_load_clip_and_pairs():
    x, sr = clips.load_clip("dfn_rir_rt60_0p79")
    assert sr == 48000 and x.dtype == np.float32 and x.ndim == 1
    for name in clips.clip_names("noisy"):
        noisy, clean, sr = clips.load_pair(name)
        assert noisy.dtype == np.float32 and sr == 48000
        if clips.clip_info(name)["clean"]:
            assert clean is not None and clean.shape == noisy.shape and clean.dtype == np.float32
        else:
            assert clean is None


# --- lookup order and errors -----------------------------------------------------------------------------

def test_unknown_names_and_kinds():
    with pytest.raises(AssetNotFoundError, match="unknown clip 'nope'.*vb_p232_013"):
        clips.clip_info("nope")
    with pytest.raises(AssetNotFoundError, match="no clip kind 'speech'.*noisy"):
        clips.clip_names("speech")


def test_roots_order(monkeypatch, tmp_path):
    monkeypatch.setenv(clips.MIRROR_ENV, str(tmp_path))
    monkeypatch.setattr(clips, "_shared_data", lambda: tmp_path)
    assert clips.data_roots() == [("$DFNB_MIRROR", tmp_path / "data"), ("../shared", tmp_path)]
    monkeypatch.delenv(clips.MIRROR_ENV)
    assert clips.data_roots() == [("../shared", tmp_path)]


def test_not_found_lists_every_place_and_the_fix(no_roots):
    assert clips.data_roots() == []
    with pytest.raises(AssetNotFoundError) as e:
        clips.clip_path("vb_p232_013")
    msg = str(e.value)
    assert "$DFNB_MIRROR: not set" in msg and "folder does not exist" in msg
    assert "set DFNB_MIRROR to a folder laid out like ../shared" in msg and "beside the checkout" in msg


def test_mirror_missing_file_is_listed(no_roots, mirror):
    with pytest.raises(AssetNotFoundError, match=r"\$DFNB_MIRROR: .*p232_013_noisy.wav \(no such file\)"):
        clips.clip_path("vb_p232_013")


@needs_shared
def test_mirror_wins_over_shared(mirror):
    p = mirror("vb_p232_013")
    assert clips.clip_path("vb_p232_013") == p
    assert clips.clip_path("vb_p232_019") == SHARED / clips.clip_info("vb_p232_019")["file"]  # falls through


@needs_shared
def test_corrupt_file_raises_checksum_error(mirror):
    info = clips.clip_info("vb_p232_013")
    good = (SHARED / info["file"]).read_bytes()
    p = mirror("vb_p232_013", good[:-100])  # truncated
    with pytest.raises(ChecksumError) as e:
        clips.clip_path("vb_p232_013")
    msg = str(e.value)
    assert str(p) in msg and info["sha256"] in msg and "restore it" in msg.lower()
    import hashlib

    assert hashlib.sha256(good[:-100]).hexdigest() in msg


@needs_shared
def test_verification_is_cached_per_file(mirror, monkeypatch):
    p = mirror("vb_p257_212")
    calls = []
    real = clips.sha256_file
    monkeypatch.setattr(clips, "sha256_file", lambda path: calls.append(path) or real(path))
    clips.clip_path("vb_p257_212")
    clips.clip_path("vb_p257_212")
    assert calls == [p]
    p.write_bytes(p.read_bytes()[:-2])  # the file changes: verified again, and refused
    with pytest.raises(ChecksumError):
        clips.clip_path("vb_p257_212")
    assert len(calls) == 2
