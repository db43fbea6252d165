"""Data safety and output paths (issue 9): dfnb replaces only what it wrote, places atomically, checks outputs first.

Each test reproduces one finding of a hostile-user run; each failed on the code before dfnb.placement existed.
Exports that must be refused are refused before any work, so these tests need no real export; the race tests
run two real processes whose export is cut down to the placement (a tiny file instead of the graphs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfnb import cli
from dfnb.audio import write_audio
from dfnb.errors import AudioError, ExportError, ModelError
from dfnb.export import export_model

SR = 48000


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my thesis notes\n")
    return path


def _wav(path: Path, seconds: float = 0.3, amp: float = 0.1) -> Path:
    x = (amp * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)
    sf.write(path, x, SR, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def m3(load):
    return load("DeepFilterNet3")


@pytest.fixture(scope="module")
def full(exported):
    return exported("DeepFilterNet3", "full")


@pytest.fixture
def no_processing(monkeypatch):
    """Fail the test if the CLI opens a runtime: output problems must be found before a model is loaded."""
    def never(*a, **k):
        raise AssertionError("processing started before the output path was checked")

    monkeypatch.setattr(cli, "_runtime_for", never)


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody can write to: a read-only tmpfs as root, mode 0555 otherwise."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("running as root without CAP_SYS_ADMIN: no read-only folder can be made here")
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=True)


# ==========================================================================================================
# export --force replaces only what dfnb wrote
# ==========================================================================================================
def test_force_does_not_replace_a_folder_of_the_user(m3, tmp_path):
    notes = _user_folder(tmp_path / "dfn3_full")
    before = _tree(notes)
    with pytest.raises(ExportError, match="was not written by dfnb"):
        export_model(m3, "full", notes, force=True)
    assert _tree(notes) == before


def test_force_does_not_replace_a_file(m3, tmp_path, capsys):
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("chapter 1\n")
    assert cli.main(["export", "--variant", "h0", "--out", str(thesis), "--force"]) == 8
    assert "a file, not a folder" in capsys.readouterr().err
    assert thesis.read_text() == "chapter 1\n"
    with pytest.raises(ExportError, match="a file, not a folder"):
        export_model(m3, "h0", thesis, force=True)
    assert thesis.read_text() == "chapter 1\n"


def test_force_does_not_replace_the_working_folder_or_its_parents(m3, tmp_path, monkeypatch, capsys):
    cwd = _user_folder(tmp_path / "work" / "project")
    (tmp_path / "work" / "other.txt").write_text("x")
    monkeypatch.chdir(cwd)
    assert cli.main(["export", "--variant", "h0", "--out", str(cwd), "--force"]) == 8
    assert "is the working folder" in capsys.readouterr().err
    for out in (Path("."), cwd.parent):
        with pytest.raises(ExportError, match="working folder"):
            export_model(m3, "h0", out, force=True)
    home = _user_folder(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(ExportError, match="your home folder"):
        export_model(m3, "h0", home, force=True)
    assert (cwd / "notes.txt").is_file() and (home / "notes.txt").is_file()
    assert (tmp_path / "work" / "other.txt").is_file()


def test_force_does_not_replace_the_weights_being_read(m3, tmp_path):
    before = _tree(m3.folder)
    with pytest.raises(ExportError, match="the source"):
        export_model(m3, "h0", m3.folder, force=True)
    assert _tree(m3.folder) == before


def test_force_replaces_a_dfnb_export_but_not_a_manifest_of_another_kind(full, m3, tmp_path):
    """A folder whose manifest.json is a JSON list (or lacks dfnb's format) is not dfnb's: refused, untouched."""
    odd = tmp_path / "odd"
    shutil.copytree(full, odd)
    (odd / "manifest.json").write_text("[1, 2]\n")
    before = _tree(odd)
    with pytest.raises(ExportError, match="was not written by dfnb"):
        export_model(m3, "h0", odd, force=True)
    assert _tree(odd) == before


# ==========================================================================================================
# Atomic placement: a folder that appears meanwhile is never replaced; of two exports, exactly one wins
# ==========================================================================================================
# export_model cut down to its placement: the graphs are one tiny file, and each run waits at the manifest (the
# last step before placement) until the test says go, so both runs are past their checks when they place.
_CUT_DOWN_EXPORT = r"""
import json, sys, time
from pathlib import Path
from types import SimpleNamespace
import dfnb.export as ex
import dfnb.step as st
from dfnb.errors import ExportError

work, out = Path(sys.argv[1]), Path(sys.argv[2])
st.StepModel = lambda net, spec: None
ex._real_features = lambda loaded: None
def write(loaded, step_model, variant, tmp, feats):
    (tmp / "enc.onnx").write_bytes(b"graph")
    return {"enc.onnx": 0.0}
ex._write_three_files = write
def manifest(*a, **k):
    (work / f"ready-{sys.argv[3]}").touch()
    t = time.monotonic()
    while not (work / "go").exists() and time.monotonic() - t < 120:
        time.sleep(0.02)
    return {"format": "dfnb-model-folder/1", "variant": "h0", "run": sys.argv[3]}
ex._manifest = manifest
loaded = SimpleNamespace(folder=work / "weights", net=None, spec=None, name="X", source_sha256="0")
try:
    ex.export_model(loaded, "h0", out)
except ExportError as e:
    print(f"ExportError: {e}")
    sys.exit(8)
"""


def _start(work: Path, out: Path, run: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CUT_DOWN_EXPORT, str(work), str(out), run],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _until_ready(work: Path, procs: list, runs: list) -> None:
    t = time.monotonic()
    while not all((work / f"ready-{r}").exists() for r in runs):
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"a run ended before placement: {p.communicate()}")
        if time.monotonic() - t > 120:
            pytest.fail("the runs never got to placement")
        time.sleep(0.02)


@pytest.fixture
def work(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.ini").write_text("[df]\n")
    return tmp_path


def test_two_concurrent_exports_to_one_target_one_wins(work):
    out = work / "exports" / "dfn3_h0"
    procs = [_start(work, out, r) for r in ("a", "b")]
    _until_ready(work, procs, ["a", "b"])
    (work / "go").touch()
    results = [(p.wait(120), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 8], results
    loser = next(r for r in results if r[0] == 8)
    assert "appeared while dfnb was writing it" in loser[1]
    winner = "ab"[[r[0] for r in results].index(0)]
    assert json.loads((out / "manifest.json").read_text())["run"] == winner
    assert sorted(p.name for p in out.parent.iterdir()) == ["dfn3_h0"]  # no temporaries left


def test_a_folder_made_while_the_export_runs_is_not_replaced(work):
    out = work / "dfn3_h0"
    p = _start(work, out, "a")
    _until_ready(work, [p], ["a"])
    _user_folder(out)
    (work / "go").touch()
    code, so, se = p.wait(120), *p.communicate()
    assert code == 8 and "appeared while dfnb was writing it" in so, (so, se)
    assert _tree(out) == {"notes.txt": hashlib.sha256(b"my thesis notes\n").hexdigest()}
    assert not [q for q in work.iterdir() if q.name.startswith(".dfn3_h0.")]


def test_a_folder_swapped_in_during_a_forced_placement_is_put_back(tmp_path, monkeypatch):
    """--force swaps atomically and checks what came out: a user's folder swapped in at the last moment
    (between the check and the swap) is put back, untouched."""
    from dfnb import placement

    target = tmp_path / "dfn3_h0"
    target.mkdir()
    (target / "manifest.json").write_text(json.dumps({"format": "dfnb-model-folder/1"}))
    real = placement.check_target

    def check_then_swap_in(t, **k):
        p = real(t, **k)
        if not k.get("make_parent", True):  # the check at placement: now a user's folder arrives
            shutil.rmtree(target)
            _user_folder(target)
        return p

    monkeypatch.setattr(placement, "check_target", check_then_swap_in)
    with pytest.raises(ExportError, match="replaced by something dfnb did not write"):
        with placement.building_folder(target, replace=True) as tmp:
            (tmp / "manifest.json").write_text(json.dumps({"format": "dfnb-model-folder/1"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dfn3_h0"] and (target / "notes.txt").is_file()


def test_stale_cleanup_leaves_unrecognised_folders_alone(full, m3, tmp_path):
    """Every export first removes the temporaries of dead runs beside its target: only those."""
    out = tmp_path / "dfn3_full"
    shutil.copytree(full, out)
    mine = _user_folder(tmp_path / ".dfn3_full.tmp-backup")  # the user's, no .pid: not a dfnb temporary
    dead = tmp_path / ".dfn3_full.tmp-999999999-ab12"  # a dead run's
    dead.mkdir()
    (dead / ".pid").write_text("999999999")
    (dead / "enc.onnx").write_bytes(b"partial")
    with pytest.raises(ExportError, match="already exists"):
        export_model(m3, "full", out)
    assert (mine / "notes.txt").is_file() and not dead.exists()


# ==========================================================================================================
# Model paths never collide with model names, export folders or each other
# ==========================================================================================================
def test_a_model_path_is_never_cached_by_its_basename(tmp_path, shared_dir):
    from dfnb import models

    with tarfile.open(shared_dir / "models" / "onnx-official" / "DeepFilterNet2_onnx.tar.gz") as tf:
        tf.extractall(tmp_path / "x", filter="data")
    release = tmp_path / "some" / "path" / "dfn3_full"
    release.parent.mkdir(parents=True)
    shutil.move(str(next((tmp_path / "x").rglob("enc.onnx")).parent), release)
    mdir = tmp_path / "models"
    victim = _user_folder(mdir / "dfn3_full")  # the user's export, named like the release folder
    (victim / "manifest.json").write_text(json.dumps({"format": "dfnb-model-folder/1", "variant": "full"}))
    named = _user_folder(mdir / "DeepFilterNet2")
    before = {p: _tree(p) for p in (victim, named)}
    lm = models.load_model(release, models_dir=mdir)
    assert {p: _tree(p) for p in (victim, named)} == before
    assert lm.folder.parent == mdir / "imports" and lm.folder.name.startswith("dfn3_full-")
    assert lm.folder.name.endswith(lm.source_sha256[:16]) and lm.source_path == release
    # a registry name whose cache folder is the user's: refused, not replaced
    with pytest.raises(ModelError, match="was not written by dfnb"):
        models.load_model(shared_dir / "models" / "onnx-official" / "DeepFilterNet2_onnx.tar.gz", models_dir=mdir)
    assert _tree(named) == before[named]


# ==========================================================================================================
# Bad output paths: a clear error with its exit code, before any processing (never exit 70)
# ==========================================================================================================
def test_enhance_into_a_read_only_folder(full, tmp_path, read_only, no_processing, capsys):
    code = cli.main(["enhance", str(_wav(tmp_path / "in.wav")), str(read_only / "out.wav"), "--model", str(full)])
    err = capsys.readouterr().err
    assert code == 3 and ("not writable" in err or "cannot write in" in err), err


def test_demo_into_a_file(tmp_path, capsys):
    f = tmp_path / "out"
    f.write_text("mine\n")
    assert cli.main(["demo", "--out", str(f)]) == 8
    assert "is a file, not a folder" in capsys.readouterr().err and f.read_text() == "mine\n"
    d = tmp_path / "results"
    d.mkdir()
    (d / "fidelity.json").write_text("[]\n")  # the user's table where the demo writes its own
    assert cli.main(["demo", "--out", str(d)]) == 8
    assert "fidelity.json was not written by dfnb" in capsys.readouterr().err
    assert (d / "fidelity.json").read_text() == "[]\n"


@pytest.mark.parametrize("name,phrase", [("no/out.wav", "does not exist; create it"),
                                         ("out.ogg", "holds neither float nor 24-bit PCM"),
                                         ("out.xyz", "unknown audio format"),
                                         ("folder.wav", "not a regular file")])
def test_output_problems_are_found_before_processing(name, phrase, full, tmp_path, no_processing, capsys):
    (tmp_path / "folder.wav").mkdir()
    argv = ["enhance", str(_wav(tmp_path / "in.wav")), str(tmp_path / name), "--model", str(full), "--force"]
    assert cli.main(argv) == 3
    assert phrase in capsys.readouterr().err


def test_output_is_the_input(full, tmp_path, no_processing, capsys):
    src = _wav(tmp_path / "in.wav")
    before = src.read_bytes()
    assert cli.main(["enhance", str(src), str(src), "--model", str(full), "--force"]) == 3
    assert "is the source" in capsys.readouterr().err and src.read_bytes() == before


def test_force_replaces_only_audio_dfnb_wrote(tmp_path):
    mine = _wav(tmp_path / "mine.wav")
    before = mine.read_bytes()
    with pytest.raises(AudioError, match="was not written by dfnb"):
        write_audio(mine, np.zeros(480, np.float32), SR, overwrite=True)
    assert mine.read_bytes() == before
    ours = write_audio(tmp_path / "ours.wav", np.zeros(480, np.float32), SR)
    write_audio(ours, np.full(480, 0.5, np.float32), SR, overwrite=True)
    assert sf.read(ours)[0][0] == 0.5


@pytest.mark.parametrize("suffix,subtype,want,tol", [(".flac", None, "PCM_24", 2.0**-23),
                                                     (".flac", "PCM_16", "PCM_16", 2.0**-15),
                                                     (".wav", "PCM_24", "PCM_24", 2.0**-23),
                                                     (".wav", None, "FLOAT", 0.0)])
def test_flac_and_subtypes(suffix, subtype, want, tol, full, tmp_path, capsys):
    src, out = _wav(tmp_path / "in.wav"), tmp_path / f"out{suffix}"
    argv = ["enhance", str(src), str(out), "--model", str(full)] + (["--subtype", subtype] if subtype else [])
    assert cli.main(argv) == 0
    assert f"Hz, {want};" in capsys.readouterr().out
    ref = tmp_path / "ref.wav"
    assert cli.main(["enhance", str(src), str(ref), "--model", str(full)]) == 0
    info = sf.info(str(out))
    assert info.subtype == want and info.format == suffix[1:].upper()
    y, r = sf.read(out, dtype="float64")[0], sf.read(ref, dtype="float64")[0]
    assert y.shape == r.shape and np.max(np.abs(y - r)) <= tol


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(mask, tmp_path):
    old = os.umask(mask)
    try:
        p = write_audio(tmp_path / "out.wav", np.zeros(480, np.float32), SR)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask


# ==========================================================================================================
# The placement rules pack_states needs (dfnb/fastpath.py is wired by the lead), and the fallback renames
# ==========================================================================================================
def test_pack_states_rules_keep_the_users_file_and_the_source(full, tmp_path):
    """pack_states(src, dir, force=True) deleted dir/keep.txt; pack_states(src, src, force=True) overwrote src."""
    from dfnb.placement import building_folder

    target = _user_folder(tmp_path / "packed")
    with pytest.raises(ExportError, match="was not written by dfnb"):
        with building_folder(target, replace=True, sources=[full]):
            pytest.fail("not refused before the work")
    src = tmp_path / "step"
    shutil.copytree(full, src)
    before = _tree(src)
    with pytest.raises(ExportError, match="is the source"):
        with building_folder(src, replace=True, sources=[src]):
            pytest.fail("not refused before the work")
    assert (target / "notes.txt").is_file() and _tree(src) == before


@pytest.mark.parametrize("renameat2", [True, False], ids=["renameat2", "fallback"])
def test_placement_without_and_with_replace(renameat2, tmp_path, monkeypatch):
    from dfnb import placement

    if not renameat2:
        monkeypatch.setattr(placement, "_renameat2", lambda *a: False)
    target, manifest = tmp_path / "dfn3_h0", json.dumps({"format": "dfnb-model-folder/1"})
    for n in (1, 2):
        if n == 2:
            with pytest.raises(ExportError, match="already exists"):
                with placement.building_folder(target):
                    pass
        with placement.building_folder(target, replace=n == 2) as tmp:
            (tmp / "manifest.json").write_text(manifest)
            (tmp / "run").write_text(str(n))
        assert (target / "run").read_text() == str(n) and not (target / ".pid").exists()
    out = write_audio(tmp_path / "a.flac", np.zeros(480, np.float32), SR)
    write_audio(out, np.full(480, 0.25, np.float32), SR, overwrite=True)
    assert sf.read(out)[0][0] == 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "dfn3_h0"]


def test_clipping_to_pcm_is_reported(full, tmp_path, capsys):
    """Overs cannot live in PCM: the count of clipped samples is printed, and FLOAT in a .wav keeps them."""
    src = tmp_path / "loud.wav"
    t = np.arange(SR // 2) / SR
    sf.write(src, (4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), SR, subtype="FLOAT")
    assert cli.main(["enhance", str(src), str(tmp_path / "out.wav"), "--model", str(full)]) == 0
    y = sf.read(tmp_path / "out.wav", dtype="float32")[0]
    n_over = int(np.count_nonzero(np.abs(y) > 1.0))
    assert n_over > 0 and "clipped" not in capsys.readouterr().out
    assert cli.main(["enhance", str(src), str(tmp_path / "out.flac"), "--model", str(full)]) == 0
    assert f"PCM_24, {n_over} samples clipped to full scale" in capsys.readouterr().out
    assert np.max(np.abs(sf.read(tmp_path / "out.flac", dtype="float32")[0])) <= 1.0
