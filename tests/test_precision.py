"""dfnb.precision: fp16 / int8-dynamic / int8-static step exports load and run in both hosts, and report their
measured fidelity in manifest.json (re-measured here); the GRU unrolling is exact; bad requests are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfnb import clips, metrics
from dfnb.errors import ExportError
from dfnb.hosts.fast import FastStepHost
from dfnb.precision import FIDELITY_CLIP, export_precision, regate, unroll_gru
from dfnb.runtime import enhance
from dfnb.surgery import lean_step_model

# SNR of the difference to offline float32 PyTorch on CLIP, DeepFilterNet3, calibrated on CALIBRATION (measured:
# fp16 69.9 dB, int8-dynamic 41.4 dB, int8-static 35.4 dB); floors a few dB below, so a regression in the
# reduction (not the rounding noise of one more calibration clip) fails.
FLOOR_DB = {"fp16": 65.0, "int8-dynamic": 37.0, "int8-static": 30.0}
CLIP = "vb_p232_028"  # 2 s (the default fidelity clip is 4 s): the manifest's number is measured on it
CALIBRATION = ("dns4_aircon", "dfn_noisy_snr0")  # two clips keep the test short; the default uses four


@pytest.fixture(scope="module")
def step(exported):
    return exported("DeepFilterNet3", "step")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return clips.load_clip(CLIP)[0]


@pytest.mark.parametrize("precision", ["fp16", "int8-dynamic", "int8-static"])
def test_reduced_export_loads_runs_and_reports_fidelity(step, clip, load, offline_ref, tmp_path, capsys, precision):
    out = export_precision(step, tmp_path / precision, precision, calibration=CALIBRATION, fidelity_clip=CLIP)
    man = json.loads((out / "manifest.json").read_text())
    assert man["precision"] == precision and man["exact"] is False and man["variant"] == "step"
    fid = man["fidelity"]
    assert fid["clip"] == CLIP and fid["host"] == "FastStepHost"
    print(f"{precision}: {fid['snr_db_vs_offline_fp32']} dB vs offline fp32, {man['precision_detail']}")
    assert FLOOR_DB[precision] <= fid["snr_db_vs_offline_fp32"] < 90.0  # reduced: no longer exact, but close
    if precision == "int8-static":
        assert man["precision_detail"]["calibration"]["clips"] == list(CALIBRATION)
    # the reported number is what the folder does: re-measured against offline PyTorch
    host = FastStepHost(out)
    assert host.lean_report["gates_removed"] > 0  # the warm-up gating survived the reduction
    y = enhance(host, clip)
    off = offline_ref("DeepFilterNet3", CLIP)[1].audio
    assert metrics.snr_of_difference(off, y) == pytest.approx(fid["snr_db_vs_offline_fp32"], abs=0.01)
    # the general host runs the same folder (warm-up inside the graph) to the same numbers
    from dfnb.hosts.onnx import Host

    assert metrics.snr_of_difference(y, enhance(Host(out), clip)) >= 90.0
    # `dfnb inspect` reads the model's sizes from the reduced graph too (int8 unrolls the GRUs into MatMuls)
    from dfnb import cli

    capsys.readouterr()
    assert cli.main(["inspect", str(out)]) == 0
    model = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model:"))
    for size in ("emb_hidden_dim=256", "df_hidden_dim=256", "df_num_layers=2", "emb_num_layers=3",
                 "conv_kernel_inp_t=3", "df_pathway_kernel_size_t=5"):
        assert size in model, model


def test_unrolled_gru_and_regated_graph_are_exact(step, clip, tmp_path):
    import shutil

    import onnx

    model, _ = lean_step_model(step / "step.onnx")
    mms = unroll_gru(model)
    assert len(mms) == 10 and not [n for n in model.graph.node if n.op_type == "GRU"]  # 5 GRU layers, 2 MatMuls each
    assert regate(model, 2) == 6  # every state but spec_buf gated again (DeepFilterNet3: conv_lookahead 2)
    shutil.copytree(step, tmp_path / "u")
    onnx.save(model, str(tmp_path / "u" / "step.onnx"))
    man = json.loads((tmp_path / "u" / "manifest.json").read_text())
    man.pop("files")  # a hand-made folder: no per-file checksums to compare
    (tmp_path / "u" / "manifest.json").write_text(json.dumps(man))
    x = clip[: 2 * 48000]
    host = FastStepHost(tmp_path / "u")
    assert host.lean_report["gates_removed"] == 6
    assert metrics.snr_of_difference(enhance(FastStepHost(step), x), enhance(host, x)) >= 120.0


def test_refusals(step, tmp_path):
    with pytest.raises(ExportError, match="precision must be one of"):
        export_precision(step, tmp_path / "x", "int4")
    with pytest.raises(ExportError, match="calibration clip"):
        export_precision(step, tmp_path / "x", "int8-static", calibration=(FIDELITY_CLIP,))
    (tmp_path / "x").mkdir()
    with pytest.raises(ExportError, match="already exists"):
        export_precision(step, tmp_path / "x", "fp16")
