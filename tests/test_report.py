"""dfnb report: provenance, path scrubbing, HTML rendering, and the fidelity report of a user's wav through a
user's folder, run end to end through the CLI in FAST mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from dfnb import provenance, report
from dfnb.assets import REPO_ROOT

DFNB = Path(sys.executable).parent / "dfnb"
ABSOLUTE = re.compile(r"(?<![\w.:/\[])/(?:tmp|work|home|root|usr|opt|var|mnt|srv|private|Users)/")


def _visible(html: str) -> str:
    """The page without its embedded base64 data (random base64 text could contain '/tmp/')."""
    return re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "DATA", html)


def test_scrubber_names_instead_of_paths(tmp_path):
    clip = tmp_path / "my recordings" / "take 1.wav"
    scrub = provenance.Scrubber({clip: "take 1.wav", tmp_path / "out": "."})
    text = f"read {clip}, wrote {tmp_path / 'out'}/a.html, code in {REPO_ROOT / 'dfnb'}, {tempfile.gettempdir()}/x"
    clean = scrub(text)
    assert clean == "read take 1.wav, wrote ./a.html, code in [repo]/dfnb, [tmp]/x"
    assert scrub(f"{tempfile.gettempdir()}foo") == f"{tempfile.gettempdir()}foo"  # only whole path components
    assert scrub(str(Path.home() / "x")) == "~/x"
    from dfnb.assets import shared_dir

    assert scrub(f"weights at {shared_dir() / 'models' / 'a.tar.gz'}") == "weights at [shared]/models/a.tar.gz"


def test_provenance_says_what_ran_where(tmp_path):
    scrub = provenance.Scrubber({tmp_path: "data"})
    p = provenance.collect(["/usr/bin/dfnb", "report", "--clip", str(tmp_path / "a.wav")], scrub=scrub, mode="FAST")
    assert p["command"] == "dfnb report --clip data/a.wav"
    assert re.fullmatch(r"[0-9a-f]{12}( \+ uncommitted changes)?|unknown", p["commit"])
    for k in ("dfnb", "torch", "onnxruntime", "onnx", "deepfilternet", "numpy"):
        assert p[k] and p[k] != "not installed"
    assert "UTC" in p["date"] and "cores" in p["machine"]
    md = provenance.markdown(p)
    assert "Provenance" in md and p["commit"] in md and "torch " + p["torch"] in md


def test_rendered_page_hides_code_and_leaks_no_path(tmp_path):
    import nbformat

    secret = tmp_path / "private" / "clip.wav"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell(f'CLIP = "{secret}"', metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(CLIP)", outputs=[nbformat.v4.new_output(
                    "stream", name="stdout", text=f"loaded {secret}\n")]),
                nbformat.v4.new_code_cell("summary", outputs=[nbformat.v4.new_output(
                    "display_data", data={report.SUMMARY_MIME: {"worst_db": 1.0}})])]
    summary = report._clean(nb, provenance.Scrubber({secret: "clip.wav"}), "**Provenance** here")
    assert summary == {"worst_db": 1.0}
    assert nb.cells[1].source == "**Provenance** here"  # right under the title
    assert nb.cells[-1].outputs == []  # nothing left to render of the summary
    page = report.render_html(nb)
    assert str(tmp_path) not in page and "loaded clip.wav" in page
    assert 'id="dfnb-code"' in page and ".jp-CodeCell .jp-Cell-inputWrapper{display:none}" in page
    assert "dfnb-show-code')" not in page.split("</button>")[1][:200]  # code starts hidden
    assert "classList.add('dfnb-show-code')" in report.render_html(nb, show_code=True)
    assert not ABSOLUTE.search(_visible(page))


def test_bad_inputs_fail_before_any_notebook_runs(tmp_path, exported):
    import soundfile as sf

    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((4800, 2), np.float32), 48000)
    folder = exported("DeepFilterNet3", "full")
    r = subprocess.run([str(DFNB), "report", "--clip", str(stereo), "--folder", str(folder), "--out",
                        str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "--downmix" in r.stderr
    r = subprocess.run([str(DFNB), "report", "--folder", str(folder), "--model", "DeepFilterNet2", "--out",
                        str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "exported from DeepFilterNet3" in r.stderr
    r = subprocess.run([str(DFNB), "report", "--folder", str(tmp_path / "nope"), "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 7 and "not a folder" in r.stderr
    assert not (tmp_path / "r").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "index.html").write_text("my own page")
    r = subprocess.run([str(DFNB), "report", "--folder", str(folder), "--out", str(tmp_path / "mine")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "did not write" in r.stderr
    assert (tmp_path / "mine" / "index.html").read_text() == "my own page"


@pytest.mark.slow
def test_fidelity_report_of_a_users_wav_and_folder(tmp_path, exported, shared_dir):
    """The issue's 'must show': `dfnb report --clip <wav> --folder <export>` renders a page with >= 6 figures,
    >= 4 players, a provenance header, no absolute paths; the verdict of an exact folder is EXACT."""
    import soundfile as sf
    import soxr

    x, sr = sf.read(shared_dir / "data" / "voicebank-demand" / "p232_028_noisy.wav", dtype="float32")
    y = soxr.resample(x, sr, 44100)
    wav = tmp_path / "user data" / "my take.wav"  # another rate, stereo, a space in the path
    wav.parent.mkdir()
    sf.write(wav, np.stack([y, 0.8 * y], 1), 44100)
    folder = exported("DeepFilterNet3", "full")
    out = tmp_path / "rep"
    env = {k: v for k, v in os.environ.items() if k != "DFNB_FAST"}
    r = subprocess.run([str(DFNB), "report", "--clip", str(wav), "--downmix", "--folder", str(folder), "--fast",
                        "--out", str(out)], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    pages = sorted(out.glob("fidelity_*.html"))
    assert [p.name for p in pages] == [f"fidelity_my_take__{folder.name}.html"]
    page = pages[0].read_text(encoding="utf-8")
    visible = _visible(page)
    n_fig, n_audio = page.count("data:image/png;base64"), page.count("<audio")
    print(f"{pages[0].name}: {len(page) / 1e6:.2f} MB, {n_fig} figures, {n_audio} players")
    assert n_fig >= 6 and n_audio >= 4
    assert "Provenance" in visible and provenance.git_commit()[:12] in visible and "torch" in visible
    assert "dfnb report --clip 'my take.wav' --downmix --folder " + folder.name + " --fast --out ." in visible
    # title, provenance, then the headline table with the verdict, then the figures
    assert visible.index("Provenance") < visible.index("EXACT: the streamed output equals the PyTorch reference") \
        < visible.index("1 · Error against chunk size")
    assert "resampled from 44100 Hz" in visible and "channels averaged" in visible
    for p in (wav, wav.parent, folder, tmp_path, REPO_ROOT, Path.home(), Path(sys.prefix)):
        assert str(p) not in visible, f"{p} leaked into the page"
    assert not ABSOLUTE.search(visible), ABSOLUTE.search(visible)
    assert len(page) < 4e6  # a page to mail around, not 10 MB
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "my take.wav" in index and "<b>exact</b>" in index and pages[0].name in index
    assert not ABSOLUTE.search(_visible(index))
