"""dfnb.plot: every helper returns a Figure, honours ax=, shares dB limits and renders to PNG."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # tests never open windows
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dfnb import plot as P  # noqa: E402
from dfnb.errors import AudioError, DfnbError, StateError  # noqa: E402
from dfnb.metrics import snr_of_difference  # noqa: E402

SR = 48000


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def sig():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    clean = 0.5 * np.sin(2 * np.pi * 440 * t) * (t > 0.2)
    return clean, clean + 0.01 * rng.standard_normal(SR)


def _png_ok(fig, tmp_path, name):
    p = P.save_figure(fig, tmp_path / "sub" / name)
    assert p.exists() and p.suffix == ".png" and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return p


def test_import_makes_no_figures():
    assert plt.get_fignums() == []
    assert set(P.__all__) <= set(dir(P))


def test_spectrogram_db_shape_floor_and_scale():
    x = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)   # full-scale sine on bin 20
    s = P.spectrogram_db(x)
    assert s.shape == (481, 1 + SR // 480)
    assert s.min() >= P.DB_FLOOR
    assert s[20, 50] == pytest.approx(0.0, abs=0.1)       # 0 dB = full-scale sine
    assert P.spectrogram_db(np.zeros(1000)).max() == P.DB_FLOOR
    assert P.spectrogram_db(np.ones(100), n_fft=961).shape[1] == 1


def test_shared_db_limits():
    a, b = np.full((3, 4), -50.0), np.full((3, 4), -10.4)
    assert P.shared_db_limits(a, b, dynamic_range=60) == (-70.0, -10.0)
    assert P.shared_db_limits([a, b]) == (-90.0, -10.0)
    with pytest.raises(DfnbError):
        P.shared_db_limits()


def test_plot_spectrogram_own_and_given_ax(sig, tmp_path):
    fig = P.plot_spectrogram(sig[0], title="DeepFilterNet3 stateless", vmin=-100, vmax=0)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (-100, 0)
    assert "DeepFilterNet3 stateless" in ax.get_title() and "hop 480" in ax.get_title()
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "frequency (kHz)"
    assert fig.axes[1].get_ylabel() == "power (dB)"   # colorbar
    _png_ok(fig, tmp_path, "spec.png")
    fig2, ax2 = plt.subplots()
    assert P.plot_spectrogram(sig[0], ax=ax2, colorbar=False) is ax2.figure
    assert len(fig2.axes) == 1


def test_plot_spectrograms_share_one_scale(sig, tmp_path):
    clean, noisy = sig
    fig = P.plot_spectrograms({"clean": clean, "noisy": noisy, "quiet": 0.01 * clean}, title="p232_013",
                              dynamic_range=70, ncols=2)
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 3
    clims = {im.get_clim() for im in images}
    assert len(clims) == 1
    vmin, vmax = clims.pop()
    assert vmax - vmin == pytest.approx(70)
    assert (vmin, vmax) == P.shared_db_limits(*(P.spectrogram_db(x) for x in (clean, noisy)), dynamic_range=70)
    assert "p232_013" in fig._suptitle.get_text()
    assert sum(ax.get_ylabel() == "power (dB)" for ax in fig.axes) == 1   # one shared colorbar
    _png_ok(fig, tmp_path, "specs")
    fig2, axes = plt.subplots(1, 2)
    assert P.plot_spectrograms({"a": clean, "b": noisy}, axes=axes) is fig2
    with pytest.raises(DfnbError, match="axes"):
        P.plot_spectrograms({"a": clean, "b": noisy}, axes=axes[:1])


def test_plot_difference_spectrogram_uses_the_signals_scale(sig, tmp_path):
    clean, noisy = sig
    fig = P.plot_difference_spectrogram(clean, noisy, title="gru variant")
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == P.shared_db_limits(P.spectrogram_db(clean))  # the reference's scale
    snr = snr_of_difference(clean, noisy)
    assert "gru variant" in ax.get_title() and f"{snr:.1f} dB" in ax.get_title()
    note = [t.get_text() for t in ax.texts if t.get_gid() == "floor-note"]
    assert len(note) == 1 and f"{snr:.1f} dB" in note[0] and "below this scale's floor" not in note[0]
    _png_ok(fig, tmp_path, "diff.png")
    with pytest.raises(AudioError):
        P.plot_difference_spectrogram(clean, noisy[:-1])


def test_an_exact_difference_is_visibly_below_the_floor(sig):
    """A round-off difference is drawn in the 'under' grey and the panel says so: never a black panel that looks
    like a broken (all-zero) output."""
    clean, _ = sig
    tiny = clean + 1e-7 * np.sin(np.arange(clean.size))
    ax = P.plot_difference_spectrogram(clean, tiny).axes[0]
    im = ax.images[0]
    assert np.all(np.asarray(im.get_array()) < im.get_clim()[0])  # every bin under the floor...
    under = im.get_cmap().get_under()
    assert np.allclose(under[:3], matplotlib.colors.to_rgb(P.UNDER_COLOR))  # ...shown grey, not black
    assert min(under[:3]) > 0.5
    note = next(t.get_text() for t in ax.texts if t.get_gid() == "floor-note")
    assert "below this scale's floor" in note and "dB below the signal's loudest bin" in note
    assert "inf dB" in P.plot_difference_spectrogram(clean, clean).axes[0].get_title()


def test_plot_differences_one_scale_one_colorbar_boundary_ticks(sig, tmp_path):
    clean, noisy = sig
    tests = {"a": noisy, "b": clean + 1e-7}
    ticks = P.boundary_times(clean.size, SR, chunk_hops=10, delay_samples=1440)
    fig = P.plot_differences(clean, tests, SR, with_outputs=True, boundaries=ticks, zoom=(0.2, 0.7), title="zoom")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 1 + 2 * len(tests)  # reference, then output + difference per test
    assert len({im.get_clim() for ax in panels for im in ax.images}) == 1  # ONE scale for signals and differences
    assert sum(ax.get_ylabel().startswith("power (dB)") for ax in fig.axes) == 1  # one shared colorbar
    assert all(ax.get_xlim() == (0.2, 0.7) for ax in panels)
    ticked = [ax for ax in panels if any(c.get_gid() == "chunk-boundary" for c in ax.collections)]
    assert len(ticked) == 2 * len(tests)  # outputs and differences, not the reference
    assert "one scale" in fig._suptitle.get_text()
    _png_ok(fig, tmp_path, "diffs")
    fig = P.plot_differences(clean, tests, SR, ncols=2)
    assert len([ax for ax in fig.axes if ax.images]) == 2


def test_boundary_times_are_in_output_time():
    assert np.allclose(P.boundary_times(48000, SR, chunk_hops=10), np.arange(1, 10) * 0.1)
    shifted = P.boundary_times(48000, SR, chunk_hops=10, delay_samples=1440)  # 30 ms delay
    assert np.allclose(shifted, np.arange(1, 11) * 0.1 - 0.03)
    with pytest.raises(DfnbError, match="positive"):
        P.boundary_times(48000, SR, chunk_hops=0)


@pytest.mark.parametrize("chunk_hops, n_boundaries", [(None, 0), (10, 9), (7, 14), (100, 0), (1, 99)])
def test_plot_error_vs_time_chunk_boundaries(sig, chunk_hops, n_boundaries):
    clean, noisy = sig                                  # 48000 samples = 100 hops
    fig = P.plot_error_vs_time(clean, {"stateless": noisy, "exact": clean}, chunk_hops=chunk_hops, title="DFN3",
                               exact_db=90)
    ax = fig.axes[0]
    lines = [ln for ln in ax.lines if ln.get_gid() == "chunk-boundary"]
    assert len(lines) == n_boundaries
    assert "DFN3" in ax.get_title() and "hop 480" in ax.get_title()
    if chunk_hops:
        assert f"chunk {chunk_hops} hops" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["stateless", "exact"]
    assert any("chunk boundary" in t for t in labels) == bool(n_boundaries)
    curves = {ln.get_gid().split(":", 1)[1]: ln.get_ydata() for ln in ax.lines
              if (ln.get_gid() or "").startswith("series:")}
    assert len(curves["stateless"]) == 100
    top = ax.get_ylim()[1] - 3
    assert np.nanmax(curves["exact"]) == top < 200  # identical hops drawn at the top of a sensible axis
    assert top >= np.nanmax(curves["stateless"]) + 10
    assert any("identical" in t.get_text() for t in ax.texts)
    assert ax.get_xlabel() == "time (s)"


def test_overlapping_lines_are_named_and_styled():
    a = np.linspace(0, 10, 20)
    labels = P.coincident_labels({"full": a, "step": a + 0.1, "gru": a + 5})
    assert labels == {"full": "full (hidden under step)", "step": "step", "gru": "gru"}
    assert P.coincident_labels({"x": [np.inf, 1.0], "y": [1.0, 1.0]})["x"] == "x"  # inf only matches inf
    same_y = {"full": [133.0, 133.1], "step": [133.0, 133.1]}
    assert P.coincident_labels(same_y, x={"full": [60, 120], "step": [65, 140]})["full"] == "full"  # elsewhere in x
    fig = P.plot_lsnr({"offline": a, "full": a, "stateless": a + 3})
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "offline (hidden under full)"
    styles = {ln.get_gid(): (ln.get_linestyle(), ln.get_linewidth()) for ln in ax.lines}
    assert styles["series:offline"][1] > styles["series:full"][1]  # the hidden line shows as a wider rim
    assert styles["series:full"][0] != styles["series:stateless"][0]


def test_plot_error_vs_time_uses_ax(sig, tmp_path):
    fig, ax = plt.subplots()
    assert P.plot_error_vs_time(sig[0], {"x": sig[1]}, ax=ax, chunk_hops=20) is fig
    _png_ok(fig, tmp_path, "err.png")


def test_plot_lsnr_and_state_norm(tmp_path):
    lsnr = {"torch": np.linspace(-15, 35, 200), "onnx": np.linspace(-15, 30, 200)}
    fig = P.plot_lsnr(lsnr, title="DeepFilterNet3")
    ax = fig.axes[0]
    assert "DeepFilterNet3" in ax.get_title()
    assert ax.lines[0].get_xdata()[-1] == pytest.approx(1.99)
    _png_ok(fig, tmp_path, "lsnr.png")
    h = np.random.default_rng(1).uniform(-1, 1, (50, 16))
    fig = P.plot_state_norm({"enc": h, "zeros": np.zeros((50, 16))}, title="enc GRU")
    ys = fig.axes[0].lines[0].get_ydata()
    assert np.allclose(ys, np.linalg.norm(h, axis=1))
    assert "enc GRU" in fig.axes[0].get_title()
    fig2, ax2 = plt.subplots()
    assert P.plot_lsnr(lsnr, ax=ax2) is fig2 and P.plot_state_norm({"h": h}, ax=ax2) is fig2


def test_plot_hidden_heatmap(tmp_path):
    h = np.random.default_rng(2).uniform(-1, 1, (120, 32))
    fig = P.plot_hidden_heatmap(h, title="erb GRU layer 0")
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (-1, 1)
    assert ax.images[0].get_array().shape == (32, 120)
    assert "erb GRU layer 0" in ax.get_title()
    _png_ok(fig, tmp_path, "heat.png")
    fig2, ax2 = plt.subplots()
    assert P.plot_hidden_heatmap(h, ax=ax2, vmin=-0.5, vmax=0.5) is fig2
    assert ax2.images[0].get_clim() == (-0.5, 0.5)
    with pytest.raises(StateError, match="T, H"):
        P.plot_hidden_heatmap(np.zeros(10))


def test_plot_pca_path_recovers_known_plane(tmp_path):
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    xy = np.stack([3 * np.cos(t), np.sin(t)], axis=1)          # centred, uncorrelated, var 4.5 vs 0.5
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((8, 8)))
    h = xy @ q[:, :2].T + 0.7                                    # embedded in 8-D with an offset
    fig = P.plot_pca_path({"a": h[:200], "b": h[200:]}, title="stateless vs stateful")
    ax = fig.axes[0]
    paths = {ln.get_gid().split(":", 1)[1]: np.stack([ln.get_xdata(), ln.get_ydata()], 1)
             for ln in ax.lines if (ln.get_gid() or "").startswith("pca-path:")}
    got = np.concatenate([paths["a"], paths["b"]])
    for k in range(2):
        sign = np.sign(got[:, k] @ xy[:, k])
        assert np.allclose(sign * got[:, k], xy[:, k], atol=1e-9)
    assert len(ax.lines) == 6                                  # 2 paths + start/end markers each
    assert "90.0%" in ax.get_xlabel() and "10.0%" in ax.get_ylabel()
    assert "stateless vs stateful" in ax.get_title()
    _png_ok(fig, tmp_path, "pca.png")
    fig2, ax2 = plt.subplots()
    assert P.plot_pca_path({"h": h}, ax=ax2) is fig2
    with pytest.raises(StateError, match="hidden size"):
        P.plot_pca_path({"a": h, "b": h[:, :4]})


def test_plot_error_vs_chunk(tmp_path):
    chunks = [1, 2, 4, 8, 16]
    fig = P.plot_error_vs_chunk(chunks, {"stateless": [5, 10, 15, 20, 25], "gru": [np.inf] * 5,
                                         "full": [133.0] * 5, "step": [133.2] * 5},
                                title="DeepFilterNet3, p232_013", exact_db=90)
    ax = fig.axes[0]
    series = {ln.get_gid().split(":", 1)[1]: ln for ln in ax.lines if (ln.get_gid() or "").startswith("series:")}
    top = ax.get_ylim()[1] - 3
    assert list(series["gru"].get_ydata()) == [top] * 5 and top == 150  # 10 dB over 133, not 200
    assert "DeepFilterNet3, p232_013" in ax.get_title()
    assert ax.get_xlabel() == "chunk size (hops)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "full (hidden under step)" in labels and any("exact" in t for t in labels)
    assert not np.allclose(series["full"].get_xdata(), series["step"].get_xdata())  # offset: both markers show
    _png_ok(fig, tmp_path, "chunks.png")
    fig2, ax2 = plt.subplots()
    assert P.plot_error_vs_chunk(chunks, {"a": chunks}, ax=ax2) is fig2
    n_open = len(plt.get_fignums())
    with pytest.raises(DfnbError, match="one SNR per chunk"):
        P.plot_error_vs_chunk(chunks, {"a": [1, 2]})
    with pytest.raises(AudioError):
        P.plot_error_vs_time(np.ones(960), {"short": np.ones(480)})
    assert len(plt.get_fignums()) == n_open          # bad input leaves no half-drawn figure behind


def test_plot_latency(tmp_path):
    rng = np.random.default_rng(4)
    lat = {"torch step": rng.lognormal(8, 0.3, 500), "onnx gru": rng.lognormal(6.5, 0.3, 500)}
    fig = P.plot_latency(lat, budget_us=10000, title="DeepFilterNet3 on CPU")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert "DeepFilterNet3 on CPU" in ax.get_title() and "budget 10 ms" in ax.get_title()
    budget = [ln for ln in ax.lines if ln.get_label() == "budget 10 ms"]
    assert len(budget) == 1 and budget[0].get_ydata()[0] == 10000
    assert [t.get_text() for t in ax.get_xticklabels()] == ["torch step", "onnx gru"]
    _png_ok(fig, tmp_path, "latency.png")
    fig2, ax2 = plt.subplots()
    assert P.plot_latency(lat, ax=ax2) is fig2
    with pytest.raises(DfnbError, match="positive"):
        P.plot_latency({"bad": [0.0, 1.0]})


def test_save_figure_forces_png_and_creates_dirs(tmp_path):
    fig = P.plot_lsnr({"x": np.arange(10.0)})
    p = P.save_figure(fig, tmp_path / "a" / "b" / "fig.svg")
    assert p == tmp_path / "a" / "b" / "fig.png" and p.exists()
