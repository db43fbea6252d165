"""dfnb.quality and dfnb.study: the perceptual scores on real clips, one study cell, the tidy table."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from dfnb import clips, metrics, quality, study
from dfnb import quality_table as qt
from dfnb.errors import DfnbError

CLIP = "vb_p232_028"  # the shortest VoiceBank pair (2.1 s)
MODEL = "DeepFilterNet3"


@pytest.fixture(scope="module")
def pair():
    noisy, clean, sr = clips.load_pair(CLIP)
    assert clean is not None and sr == 48000
    return noisy, clean, sr


@pytest.fixture(scope="module")
def mos(pair):
    noisy, clean, sr = pair
    return {"noisy": quality.dnsmos(noisy, sr), "clean": quality.dnsmos(clean, sr)}


def test_dnsmos_rates_clean_speech_above_its_noisy_version(mos):
    for name in ("noisy", "clean"):
        assert set(mos[name]) == {"sig", "bak", "ovrl", "p808"}
        assert all(1.0 <= v <= 5.0 for v in mos[name].values()), mos[name]
    assert mos["clean"]["ovrl"] > mos["noisy"]["ovrl"] + 0.4
    assert mos["clean"]["bak"] > mos["noisy"]["bak"] + 1.0  # the noise is what BAK rates
    assert abs(mos["clean"]["sig"] - mos["noisy"]["sig"]) < 0.5  # same speech, SIG barely moves


def test_dnsmos_is_deterministic_and_takes_any_rate(pair, mos):
    noisy, _, sr = pair
    assert quality.dnsmos(noisy, sr) == mos["noisy"]
    x16 = quality.mos_input(noisy, sr)  # already at the models' rate: used as it is
    assert quality.dnsmos(x16, quality.MOS_SR)["ovrl"] == pytest.approx(mos["noisy"]["ovrl"], abs=1e-6)


def test_mos_input_resamples_to_16k_and_clips_to_full_scale(pair):
    noisy, _, sr = pair
    x = quality.mos_input(noisy, sr)
    assert x.dtype == np.float32 and abs(len(x) - len(noisy) // 3) <= 1
    loud = quality.mos_input(4.0 * noisy, sr)
    assert float(np.max(np.abs(loud))) == 1.0  # clipped like a 16-bit wav, not rejected


def test_pesq_of_clean_against_itself_is_near_the_top_of_the_scale(pair):
    _, clean, sr = pair
    assert metrics.pesq_wb(clean, clean, sr) > 4.4


def test_plcmos_is_reproducible_leaves_numpy_random_alone_and_hears_gaps(pair):
    _, clean, sr = pair
    state = np.random.get_state()
    a = quality.plcmos(clean, sr)
    after = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(state[1:2], after[1:2])) and state[2] == after[2]
    assert quality.plcmos(clean, sr) == a and 1.0 <= a <= 5.0
    gappy = clean.copy()
    hop = sr // 100
    for start in range(0, len(gappy), 7 * hop):  # 20 ms of silence every 70 ms
        gappy[start : start + 2 * hop] = 0.0
    assert quality.plcmos(gappy, sr) < a - 1.0


def test_a_missing_speechmos_is_a_dfnb_error_saying_what_to_install(monkeypatch, pair):
    noisy, _, sr = pair
    monkeypatch.setitem(sys.modules, "speechmos.plcmos", None)  # import raises ImportError
    quality._plcmos_model.cache_clear()
    try:
        with pytest.raises(quality.QualityDependencyError, match=r"pip install 'dfnb\[quality\]'") as e:
            quality.plcmos(noisy, sr)
        assert isinstance(e.value, DfnbError)
    finally:
        quality._plcmos_model.cache_clear()


def test_score_output_fills_every_score_and_nan_without_references(pair):
    noisy, clean, sr = pair
    full = quality.score_output(noisy, sr, clean=clean, reference=noisy, plc=False)
    assert tuple(full) == quality.SCORES
    assert full["snr_diff_db"] == math.inf and math.isnan(full["plcmos"])
    assert full["pesq"] == pytest.approx(metrics.pesq_wb(clean, noisy, sr))
    blind = quality.score_output(noisy, sr, plc=False)
    assert all(math.isnan(blind[k]) for k in ("pesq", "stoi", "si_sdr_db", "snr_diff_db"))
    assert blind["dnsmos_ovrl"] == full["dnsmos_ovrl"]


@pytest.fixture(scope="module")
def cells(exported):
    """Three cells of DeepFilterNet3 at chunk 7 on the short clip: offline, stateless and full."""
    out = {"offline": study.run_cell(MODEL, "offline", None, CLIP, plc=True)}
    for v in ("stateless", "full"):
        out[v] = study.run_cell(MODEL, v, 7, CLIP, folder=exported(MODEL, v), plc=True)
    return out


def test_a_cell_gives_its_audio_and_one_row_of_every_column(cells, pair):
    noisy, _, _ = pair
    for variant, (row, y) in cells.items():
        assert tuple(row) == qt.COLUMNS
        assert (row["model"], row["variant"], row["clip"], row["has_clean"]) == (MODEL, variant, CLIP, True)
        assert row["chunk"] == (None if variant == "offline" else 7)
        assert y.shape == noisy.shape and y.dtype == np.float32
        assert row["enhance_s"] >= 0 and row["score_s"] > 0


def test_stateless_costs_quality_and_the_exact_host_costs_none(cells):
    off, sl, full = (cells[v][0] for v in ("offline", "stateless", "full"))
    assert off["snr_diff_db"] == math.inf and full["snr_diff_db"] > 90 and sl["snr_diff_db"] < 15
    for s in ("pesq", "dnsmos_ovrl", "plcmos", "stoi"):
        assert full[s] == pytest.approx(off[s], abs=0.01), s  # exact streaming: same scores as offline
    assert sl["dnsmos_ovrl"] < off["dnsmos_ovrl"] - 0.3
    assert sl["pesq"] < off["pesq"] - 0.5
    assert sl["plcmos"] < off["plcmos"] - 0.5  # PLCMOS hears the chunk seams


def test_cell_arguments_are_checked():
    with pytest.raises(DfnbError, match="takes a chunk size"):
        study.run_cell(MODEL, "stateless", None, CLIP)
    with pytest.raises(DfnbError, match="no chunk"):
        study.run_cell(MODEL, "offline", 7, CLIP)
    with pytest.raises(DfnbError, match="unknown variant"):
        study.study_cells([MODEL], [CLIP], [7], ["fast"])
    with pytest.raises(DfnbError, match="positive"):
        study.study_cells([MODEL], [CLIP], [0])


def test_study_cells_cross_everything_with_one_cell_per_reference():
    assert study.VARIANTS == qt.VARIANT_ORDER  # the summaries order rows like the study
    cells = study.study_cells(["A", "B"], ["c1", "c2", "c3"], [1, 7, 20])
    assert len(cells) == 2 * 3 * (2 + 6 * 3)
    assert ("A", "noisy", None, "c1") in cells and ("B", "step", 20, "c3") in cells
    assert not any(c[1] in study.REFERENCES and c[2] is not None for c in cells)


def _row(model, variant, chunk, clip, **scores):
    r = {k: math.nan for k in qt.COLUMNS}
    r.update(model=model, variant=variant, chunk=chunk, clip=clip, has_clean=clip != "blind", enhance_s=0.5,
             score_s=1.0, **scores)
    return r


@pytest.fixture
def table():
    rows = []
    for clip, base in (("a", 3.0), ("b", 2.0), ("blind", 2.5)):
        pesq = {} if clip == "blind" else {"pesq": base - 1.0}
        rows.append(_row("M", "noisy", None, clip, dnsmos_ovrl=base, **pesq))
        rows.append(_row("M", "offline", None, clip, dnsmos_ovrl=base + 1.0, snr_diff_db=math.inf, **pesq))
        rows.append(_row("M", "stateless", 7, clip, dnsmos_ovrl=base - 0.5, snr_diff_db=6.0,
                         **({} if clip == "blind" else {"pesq": base - 1.5})))
    return rows


def test_the_tidy_table_round_trips_through_csv(table, tmp_path):
    paths = qt.write_table(table, tmp_path)
    assert paths[0] == tmp_path / "quality.csv"
    header = paths[0].read_text(encoding="utf-8").splitlines()[0].split(",")
    assert tuple(header) == qt.COLUMNS
    back = qt.read_table(paths[0])
    assert len(back) == len(table)
    for a, b in zip(table, back):
        for k in qt.COLUMNS:
            assert (a[k] == b[k]) or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])), k
    (tmp_path / "other.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DfnbError, match="not a quality table"):
        qt.read_table(tmp_path / "other.csv")


def test_medians_gaps_and_worse_than_nothing(table):
    med = {r["variant"]: r for r in qt.median_table(table)}
    assert list(med) == ["noisy", "offline", "stateless"]
    assert med["noisy"]["dnsmos_ovrl"] == 2.5 and med["noisy"]["clips"] == 3 and med["noisy"]["clean_clips"] == 2
    assert med["noisy"]["pesq"] == pytest.approx(1.5)  # the blind clip's nan is left out
    assert med["stateless"]["chunk"] == 7 and med["offline"]["snr_diff_db"] == math.inf
    gap = qt.paired_gap(table, "dnsmos_ovrl", "stateless", "offline")
    assert gap == [{"model": "M", "chunk": 7, "clips": 3, "dnsmos_ovrl stateless-offline": -1.5,
                    "worst": -1.5, "best": -1.5}]
    worse = qt.below_noisy(list(med.values()), scores=("pesq", "dnsmos_ovrl"))
    assert [(w["variant"], w["score"]) for w in worse] == [("stateless", "pesq"), ("stateless", "dnsmos_ovrl")]
    assert worse[0]["value"] == pytest.approx(1.0) and worse[0]["noisy"] == pytest.approx(1.5)


def test_run_study_in_process_resumes_and_runs_through_a_dask_scheduler(exported, tmp_path):
    distributed = pytest.importorskip("distributed")
    root = exported(MODEL, "stateless").parent  # already exported there: reused, not exported again
    args = ([MODEL], [CLIP], [20])
    kw = dict(variants=["noisy", "stateless"], export_root=root, plc=False, progress=False, say=lambda s: None)
    ckpt = tmp_path / "partial.csv"
    local = study.run_study(*args, workers=1, checkpoint=ckpt, **kw)
    assert [(r["variant"], r["chunk"]) for r in local] == [("noisy", None), ("stateless", 20)]
    said = []
    resumed = study.run_study(*args, workers=1, checkpoint=ckpt, **{**kw, "say": said.append})
    assert any("2 of 2 cells already done" in s for s in said)  # nothing run again...
    assert [r["score_s"] for r in resumed] == [r["score_s"] for r in local]  # ...the rows come from the file
    assert len(qt.read_table(ckpt)) == 2
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        remote = study.run_study(*args, scheduler=cluster.scheduler_address, **kw)
    for a, b in zip(local, remote):
        assert a["dnsmos_ovrl"] == b["dnsmos_ovrl"] and a["snr_diff_db"] == b["snr_diff_db"]


def test_quality_figures_honour_ax_and_name_bad_input(table):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfnb import quality_plot

    med = qt.median_table(table)
    fig, ax = plt.subplots()
    assert quality_plot.plot_quality(med, "dnsmos_ovrl", "M", ax=ax) is fig
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "stateless" in labels and "noisy (2.50)" in labels and "offline (3.50)" in labels
    assert ax.lines[0].get_ydata()[0] == pytest.approx(2.0)  # the stateless median at chunk 7
    assert "median over 2 clips with clean speech" in quality_plot.plot_quality(med, "pesq", "M").axes[0].get_title()
    grid = quality_plot.plot_quality_grid(med, ("dnsmos_ovrl", "pesq"))
    assert len(grid.axes) == 2
    with pytest.raises(DfnbError, match="no rows of model 'X'"):
        quality_plot.plot_quality(med, "pesq", "X")
    with pytest.raises(DfnbError, match="no column 'mos'"):
        quality_plot.plot_quality(med, "mos", "M")
    plt.close("all")
