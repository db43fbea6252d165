"""dfnb.listen (players at one gain), dfnb.diagram, the denser-figure options of dfnb.plot_states, the fidelity
report's numbers (dfnb.fidelity, metrics.error_by_position)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import soundfile as sf

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dfnb import diagram, fidelity, listen, metrics, plot_states  # noqa: E402
from dfnb.errors import AssetNotFoundError, AudioError, DfnbError, StateError  # noqa: E402

SR = 48000


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _decoded(html: str) -> list[tuple[str, np.ndarray]]:
    """(mimetype, int16 samples) of every embedded player."""
    out = []
    for mime, b64 in re.findall(r'src="data:(audio/[a-z]+);base64,([^"]+)"', html):
        x, sr = sf.read(io.BytesIO(base64.b64decode(b64)), dtype="int16")
        assert sr == SR
        out.append((mime, x))
    return out


def test_players_share_one_gain_and_do_not_normalise():
    t = np.arange(SR) / SR
    loud = 0.5 * np.sin(2 * np.pi * 220 * t)
    quiet = 0.05 * np.sin(2 * np.pi * 220 * t)
    page = listen.players({"loud": loud, "quiet": quiet}, SR, residuals=[("loud", "quiet")], boost_db=20).data
    clips = _decoded(page)
    assert len(clips) == 4 and page.count("<audio") == 4  # 2 signals, 1 residual, 1 boosted residual
    assert {m for m, _ in clips} <= {"audio/flac", "audio/wav"}
    peaks = [np.abs(x).max() / 32767 for _, x in clips]
    assert peaks[0] == pytest.approx(0.5, abs=1e-3) and peaks[1] == pytest.approx(0.05, abs=1e-3)  # levels kept
    assert peaks[2] == pytest.approx(0.45, abs=1e-3)  # the residual, at the same gain
    assert peaks[3] == pytest.approx(1.0, abs=1e-3) and "clipped" in page  # +20 dB of 0.45 clips, and says so
    assert "peak -6.0 dBFS" in page and "+0.0 dB" in page


def test_common_gain_keeps_quiet_groups_and_tames_loud_ones():
    assert listen.common_gain({"a": np.full(10, 0.3)}) == 1.0
    assert listen.common_gain([np.full(10, 2.0), np.full(10, 0.1)]) == pytest.approx(10 ** (-1 / 20) / 2.0)
    assert listen.common_gain([np.zeros(10)]) == 1.0
    page = listen.players({"a": np.full(100, 2.0), "b": np.full(100, 1.0)}, SR).data
    peaks = [np.abs(x).max() / 32767 for _, x in _decoded(page)]
    assert peaks[0] == pytest.approx(10 ** (-1 / 20), abs=1e-3) and peaks[1] == pytest.approx(peaks[0] / 2, abs=1e-3)


def test_players_refuse_what_cannot_be_played():
    with pytest.raises(AudioError, match="not among"):
        listen.players({"a": np.zeros(10)}, SR, residuals=[("a", "b")])
    with pytest.raises(AudioError, match="equal length"):
        listen.residual(np.zeros(10), np.zeros(11))


def test_pipeline_diagram_marks_every_state_group():
    from dfnb.layout import STATE_GROUPS

    fig = diagram.plot_pipeline(None)
    ax = fig.axes[0]
    groups = {t.get_gid().split(":", 1)[1] for t in ax.texts if (t.get_gid() or "").startswith("state:")}
    assert groups == set(STATE_GROUPS)
    host = {t.get_text(): t.get_bbox_patch().get_facecolor() for t in ax.texts
            if (t.get_gid() or "").startswith("state:")}
    assert host["stft"] == host["df_buffer"] != host["gru_enc"]  # host-kept vs graph-carried colours
    assert any("lookahead" in t.get_text() for t in ax.texts if not t.get_gid())


def test_state_figures_can_be_made_readable():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(300, 64)) * np.r_[np.full(8, 3.0), np.full(56, 0.1)]
    units = plot_states.top_units(h, k=8)
    assert list(units) == list(range(8))
    fig = plot_states.plot_hidden_heatmap(h, 0.01, units=units, window=(0.5, 1.2), boundaries=[0.7, 1.4, 2.1])
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (8, 70)
    assert "8 of 64 units" in ax.get_title() and "70 of 300 hops" in ax.get_title()
    assert len([ln for ln in ax.lines if ln.get_gid() == "chunk-boundary"]) == 1  # only 0.7 is inside the window
    fig = plot_states.plot_pca_path({"a": h, "b": h[::-1]}, marks=range(0, 300, 7))
    marks = [c for c in fig.axes[0].collections if (c.get_gid() or "").startswith("pca-marks:")]
    assert len(marks) == 2 and len(marks[0].get_offsets()) == 43
    with pytest.raises(StateError, match="window"):
        plot_states.plot_hidden_heatmap(h, window=(1.0, 0.5))


def test_error_by_position_counts_from_the_output_boundary():
    hop, chunk = 480, 7
    ref = np.random.default_rng(1).normal(size=70 * hop)
    test = ref.copy()
    bad = [k * chunk - 3 for k in range(1, 10)]  # output hops right after a boundary, with a 3-hop delay
    for b in bad:
        test[b * hop:(b + 1) * hop] += 0.5 * ref[b * hop:(b + 1) * hop]
    prof = metrics.error_by_position(ref, test, chunk, hop=hop, delay_samples=3 * hop)
    assert np.argmin(prof) == 0 and prof[0] < 10 and np.all(prof[1:] == metrics.SNR_CAP_DB)
    prof0 = metrics.error_by_position(ref, test, chunk, hop=hop)  # forgetting the delay blames position 4
    assert np.argmin(prof0) == chunk - 3
    mask = np.zeros(70, bool)
    assert np.isnan(metrics.error_by_position(ref, test, chunk, hop=hop, mask=mask)).all()
    with pytest.raises(DfnbError):
        metrics.error_by_position(ref, test, 0)


def test_user_clip_any_rate_stereo_refused_unless_downmixed(tmp_path):
    t = np.arange(22050) / 22050
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.1 * np.sin(2 * np.pi * 300 * t)], 1)
    path = tmp_path / "two channels.wav"
    sf.write(path, stereo, 22050)
    with pytest.raises(AudioError, match="downmix"):
        fidelity.load_user_clip(path)
    c = fidelity.load_user_clip(path, downmix=True, max_seconds=0.5)
    assert c.sr == SR and c.name == "two channels.wav" and c.clean is None
    assert len(c.audio) == SR // 2 and np.abs(c.audio).max() == pytest.approx(0.2, abs=0.01)
    assert any("22050" in n for n in c.notes) and any("first 0.5 s" in n for n in c.notes)
    with pytest.raises(AssetNotFoundError, match="neither an audio file nor a clip name"):
        fidelity.load_user_clip(tmp_path / "missing.wav")


def test_folder_model_and_verdict(tmp_path):
    assert fidelity.folder_model(None) == ("DeepFilterNet3", "no folder given")
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "DeepFilterNet2"}))
    assert fidelity.folder_model(tmp_path)[0] == "DeepFilterNet2"
    with pytest.raises(DfnbError, match="exported from DeepFilterNet2"):
        fidelity.folder_model(tmp_path, "DeepFilterNet3")
    exact, text = fidelity.verdict({1: 133.0, 7: 131.2})
    assert exact and text.startswith("EXACT") and "131.2" in text
    exact, text = fidelity.verdict({1: 0.2, 7: 6.7, 32: 14.4})
    assert not exact and "worst 0.2 dB at chunk 1" in text and "audibly" in text
    assert fidelity.display_name("/some/where/dfn3_full") == "dfn3_full"
