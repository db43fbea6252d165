"""Issue 9, folders: an edited config.ini (or another model's) is refused from what the graphs hold, or listed
as unverified — never silently wrong output with "complete and consistent".

Each edit below, applied to a DeepFilterNet3 folder without manifest.json (a dfnb ``step`` export and the
three-file ``full``, ``stateless`` and ``h0`` exports), gave -2.5 to 26 dB against the correct output before
(``dfnb inspect`` said "complete and consistent"). Now :func:`dfnb.folder.inspect_folder` either raises a
:class:`~dfnb.errors.ModelFolderError` naming the key, or lists the key in ``unverified`` (the value lives only in
the host's DSP, so no graph can confirm it) and ``dfnb inspect`` says so.
"""

from __future__ import annotations

import re
import shutil

import pytest

from dfnb import cli
from dfnb.errors import ModelFolderError
from dfnb.folder import inspect_folder
from dfnb.graphcheck import CONFIG_KEYS

VARIANTS = ["step", "full", "stateless", "h0"]
R = "refused"
# edit -> (config.ini change, {variant: (outcome, phrase or key)})
EDITS = {
    "hop_size=240": (("hop_size", "240"), {v: ("unverified", "hop_size") for v in VARIANTS}),
    "fft_size=1920": (("fft_size", "1920"), {"step": (R, "config.ini says fft_size = 1920 (961 bins), but step.onnx "
                                                          "takes 481 bins"),
                                             **{v: ("unverified", "fft_size") for v in VARIANTS[1:]}}),
    "df_lookahead=0": (("df_lookahead", "0"), {"step": (R, "config.ini says df_lookahead = 0, but step.onnx's "
                                                           "deep-filter buffer is that of df_lookahead = 2"),
                                               **{v: ("unverified", "df_lookahead") for v in VARIANTS[1:]}}),
    "sr=16000": (("sr", "16000"), {v: (R, "config.ini says sr = 16000, but every DeepFilterNet model")
                                   for v in VARIANTS}),
    "norm_tau=100": (("norm_tau", "100"), {v: ("unverified", "norm_tau") for v in VARIANTS}),
    "min_nb_erb_freqs=10": (("min_nb_erb_freqs", "10"), {"step": (R, "they are the bands of min_nb_erb_freqs = 2"),
                                                         **{v: ("unverified", "min_nb_erb_freqs")
                                                            for v in VARIANTS[1:]}}),
    "model=deepfilternet2": (("model", "deepfilternet2"), {"step": (R, "step.onnx is a deepfilternet3 model"),
                                                           **{v: (R, "config.ini says model = deepfilternet2, whose "
                                                                     "embedding") for v in VARIANTS[1:]}}),
    "empty config.ini": ("", {v: (R, "[train] model = (missing)") for v in VARIANTS}),
    "DFN2 graphs, DFN3 config.ini": ("swap", {"step": (R, "step.onnx is a deepfilternet2 model"),
                                             **{v: (R, "config.ini says model = deepfilternet3, whose embedding") for v
                                                in VARIANTS[1:]}}),
}


def _edited(exported, tmp_path, edit, variant):
    change = EDITS[edit][0]
    src = exported("DeepFilterNet2" if change == "swap" else "DeepFilterNet3", variant)
    dst = tmp_path / f"{variant}"
    shutil.copytree(src, dst)
    (dst / "manifest.json").unlink()
    ini = dst / "config.ini"
    if change == "swap":
        shutil.copyfile(exported("DeepFilterNet3", variant) / "config.ini", ini)
    elif change == "":
        ini.write_text("")
    else:
        key, value = change
        text, n = re.subn(rf"(?m)^({key}\s*=\s*).*$", rf"\g<1>{value}", ini.read_text(), count=1)
        assert n == 1
        ini.write_text(text)
    return dst


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_config_is_refused_or_listed(edit, variant, exported, tmp_path):
    outcome, what = EDITS[edit][1][variant]
    folder = _edited(exported, tmp_path, edit, variant)
    if outcome == R:
        with pytest.raises(ModelFolderError, match=re.escape(what)):
            inspect_folder(folder)
        return
    info = inspect_folder(folder)
    assert what in info.unverified_keys
    line = next(u for u in info.unverified if u.startswith(f"config.ini {what} = "))
    assert "no graph holds it" in line or "does not hold" in line


@pytest.mark.parametrize("variant", VARIANTS)
def test_what_stays_unverified_without_a_manifest(variant, exported, tmp_path):
    """Untouched folders without manifest.json: a step graph confirms everything but the host's STFT hop and
    norm time constant; a three-file graph also leaves the STFT size, the ERB bands and both lookaheads open.
    With the manifest (and the config.ini and graphs whose sha256 it records) everything is confirmed."""
    folder = exported("DeepFilterNet3", variant)
    assert inspect_folder(folder).unverified == []
    bare = tmp_path / variant
    shutil.copytree(folder, bare)
    (bare / "manifest.json").unlink()
    keys = inspect_folder(bare).unverified_keys
    want = ["hop_size", "norm_tau"] if variant == "step" else \
        ["fft_size", "hop_size", "min_nb_erb_freqs", "norm_tau", "df_lookahead", "conv_lookahead"]
    assert keys == [k for k in CONFIG_KEYS if k in want]


def test_inspect_no_longer_says_complete_when_something_is_unverified(exported, tmp_path, capsys):
    folder = _edited(exported, tmp_path, "hop_size=240", "full")
    assert cli.main(["inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "unverified: config.ini hop_size = 240: only the host's STFT uses it" in out
    assert "complete and consistent" not in out and "the 7 item(s) above are unverified" in out


def test_kernels_layers_and_lsnr_scaling_are_read_from_the_graphs(exported, tmp_path):
    """Architecture keys a three-file folder's graphs do hold: each edit is refused by name."""
    cases = {"conv_kernel": ("2,3", "config.ini says conv_kernel = 2,3, but enc.onnx has a 1,3 kernel there"),
             "df_pathway_kernel_size_t": ("3", "config.ini says df_pathway_kernel_size_t = 3, but df_dec.onnx has a 5"),
             "df_num_layers": ("3", "df_dec.onnx has 2 GRU layers but config.ini gives df_num_layers = 3"),
             "lsnr_max": ("40", "config.ini says lsnr_min = -15, lsnr_max = 40, but enc.onnx scales its local SNR "
                                "to [-15, 35] dB"),
             "df_order": ("3", "config.ini says df_order = 3, but the deep filter in the graphs has 5 taps"),
             "conv_ch": ("32", "config.ini says conv_ch = 32")}
    for key, (value, phrase) in cases.items():
        folder = tmp_path / key
        shutil.copytree(exported("DeepFilterNet3", "stateless"), folder)
        (folder / "manifest.json").unlink()
        ini = folder / "config.ini"
        text, n = re.subn(rf"(?m)^({key}\s*=\s*).*$", rf"\g<1>{value}", ini.read_text(), count=1)
        assert n == 1, key
        ini.write_text(text)
        with pytest.raises(ModelFolderError, match=re.escape(phrase)):
            inspect_folder(folder)
