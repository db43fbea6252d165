"""The ``dfnb`` command line: every bad input of docs/errors.md gives its exit code and ONE stderr line.

The cases live in ``benchmarks/error_table.py`` (which writes docs/errors.md from real runs), so the table and
these tests cannot disagree. Cases that need no PyTorch model run the installed console script in a
subprocess (what a shell sees, warnings included); the few that load a model run through ``cli.main`` in
this process (same code, no 4 s torch start-up each), and one of them also runs as a subprocess.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfnb import cli, errors

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import error_table as et

COMMANDS = [[], ["models"], ["enhance"], ["export"], ["inspect"], ["diagnose"], ["report"], ["demo"]]


@pytest.fixture(scope="session")
def ctx(exported, tmp_path_factory):
    folders = {v: exported("DeepFilterNet3", v) for v in ("full", "h0", "step")}
    return et.Ctx(tmp_path_factory.mktemp("error-cases"), folders)


def _check_output(case: et.Case, code: int, out: str, err: str) -> None:
    assert "Traceback" not in err and "Traceback" not in out
    assert code == case.code, f"exit {code}, expected {case.code}; stderr: {err!r}"
    if code == 0:
        assert case.phrase in out and err == ""
        return
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr must be exactly one line, got {len(lines)}: {err!r}"
    assert re.match(r"^dfnb( \w+)?: error: ", lines[0]), lines[0]
    assert case.phrase in lines[0]
    assert lines[0].rstrip().endswith((".", ")")), "a message is a sentence that says what to do"


@pytest.mark.parametrize("case", [c for c in et.CASES if not c.slow], ids=lambda c: f"{c.group}:{c.what}")
def test_case_in_a_real_process(case, ctx):
    r = et.run_case(case, ctx, timeout=120)
    _check_output(case, r.code, r.stdout, r.stderr)


@pytest.mark.parametrize("case", [c for c in et.CASES if c.slow], ids=lambda c: f"{c.group}:{c.what}")
def test_case_that_loads_a_model(case, ctx, capsys, monkeypatch):
    argv, env = et.split_argv(case.build(ctx))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DFNB_OFFLINE", "1")
    code = cli.main(argv)
    out, err = capsys.readouterr()
    _check_output(case, code, out, err)


def test_a_model_loading_error_is_one_line_in_a_real_process(ctx):
    """torch/deepfilternet imports must not add warnings to the one stderr line."""
    case = next(c for c in et.CASES if c.slow and c.group == "export")
    r = et.run_case(case, ctx, timeout=300)
    _check_output(case, r.code, r.stdout, r.stderr)


def test_cases_cover_every_documented_exit_code():
    codes = {c.code for c in et.CASES}
    assert {0, 1, 2, 3, 4, 5, 6, 7, 8, 9} <= codes
    documented = {int(m) for m in re.findall(r"^(\d+)\s{2,}", cli.__doc__, flags=re.M)}
    assert codes <= documented


def test_error_classes_have_distinct_documented_codes():
    classes = [getattr(errors, n) for n in errors.__all__]
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes), dict(zip(errors.__all__, codes))
    documented = {int(m) for m in re.findall(r"^(\d+)\s{2,}", cli.__doc__, flags=re.M)}
    assert set(codes) <= documented and not {0, 2, 70, 130} & set(codes)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "dfnb")
def test_every_command_has_help(cmd):
    p = subprocess.run(et.dfnb_command() + cmd + ["--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.startswith("usage: dfnb") and "--help" in p.stdout


def test_version():
    p = subprocess.run(et.dfnb_command() + ["--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("dfnb ")


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("usage: dfnb") and err == ""


def test_interrupted_is_130_one_line(monkeypatch, capsys, tmp_path):
    def boom(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_inspect", boom)
    assert cli.main(["inspect", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == ["dfnb inspect: interrupted"]


def test_unexpected_error_is_70_one_line_and_debug_shows_it(monkeypatch, capsys, tmp_path):
    def bug(args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(cli, "cmd_inspect", bug)
    assert cli.main(["inspect", str(tmp_path)]) == 70
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "dfnb bug" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "inspect", str(tmp_path)])


def test_multi_line_error_becomes_one_line(monkeypatch, capsys, tmp_path):
    """e.g. AssetNotFoundError lists every place tried, one per line; the CLI prints it on one line."""
    def missing(args):
        raise errors.AssetNotFoundError("No weights found for X. Tried, in order:\n  1. a\n  2. b\nTo fix: c.")

    monkeypatch.setattr(cli, "cmd_inspect", missing)
    assert cli.main(["inspect", str(tmp_path)]) == 4
    err = capsys.readouterr().err
    assert err == "dfnb inspect: error: No weights found for X. Tried, in order: 1. a 2. b To fix: c.\n"


def test_inspect_lists_the_state_inputs(ctx, capsys):
    """What a host must feed on every call: each state input, the output it comes back as, and its shape."""
    assert cli.main(["inspect", str(ctx.folders["full"])]) == 0
    out = capsys.readouterr().out
    states = next(line for line in out.splitlines() if line.startswith("states:"))
    for s in ("h0->h1 [1, 1, 256]", "erb_h0->erb_h1 [2, 1, 256]", "df_h0->df_h1 [2, 1, 256]",
              "enc_erb_conv0->enc_erb_conv0_next [1, 1, 2, 32]"):
        assert s in states
    assert "status:   complete and consistent" in out


@pytest.mark.parametrize("variant", ["step", "full"])
def test_inspect_reads_the_model_sizes_from_every_variants_graphs(ctx, capsys, variant):
    """The model line names the sizes the graphs hold; a step graph mixes the parts in its outputs, so its GRUs
    and convs are given to their part by node name (it used to print an empty "from the graphs:")."""
    assert cli.main(["inspect", str(ctx.folders[variant])]) == 0
    model = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model:"))
    for size in ("emb_hidden_dim=256", "df_hidden_dim=256", "df_num_layers=2", "emb_num_layers=3",
                 "conv_kernel_inp_t=3", "df_pathway_kernel_size_t=5"):
        assert size in model, model


def test_error_table_doc_is_current():
    """docs/errors.md lists every case (regenerate with `benchmarks/error_table.py --write`)."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text()
    for c in et.CASES:
        assert c.what.replace("|", "\\|") in doc, f"docs/errors.md lacks {c.what!r}; rerun error_table.py --write"


def test_interrupt_wrapped_by_a_c_extension_is_still_130(monkeypatch, capsys, tmp_path):
    """Ctrl-C while onnxruntime's pybind11 module initialises surfaces as "ImportError: initialization failed"
    caused by the KeyboardInterrupt (seen when interrupting `dfnb export`); that is an interrupt, not a bug."""
    def importing(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as k:
            raise ImportError("initialization failed") from k

    monkeypatch.setattr(cli, "cmd_inspect", importing)
    assert cli.main(["inspect", str(tmp_path)]) == 130
    assert capsys.readouterr().err.splitlines() == ["dfnb inspect: interrupted"]


def test_enhance_runs_a_folder_with_the_fastest_exact_host(ctx, real_clip, tmp_path, capsys):
    """`dfnb enhance --model FOLDER` runs a step folder with the fast host and says so in its one-line report;
    `--host onnx` forces the general host, which gives the same file; a three-file folder gets the general host."""
    import soundfile as sf

    src = tmp_path / "in.wav"
    sf.write(src, real_clip[:48000], 48000, subtype="FLOAT")
    runs = {"fast": (["--model", str(ctx.folders["step"])], "; fast step host, chunk 1;"),
            "onnx": (["--model", str(ctx.folders["step"]), "--host", "onnx"], "; host (step), chunk 1;"),
            "full": (["--model", str(ctx.folders["full"])], "; host (full), chunk 1;")}
    out = {}
    for name, (args, said) in runs.items():
        dst = tmp_path / f"{name}.wav"
        assert cli.main(["enhance", str(src), str(dst), "--quiet", "--subtype", "FLOAT", *args]) == 0
        assert said in capsys.readouterr().out
        out[name] = sf.read(dst, dtype="float32")[0]
    assert np.max(np.abs(out["fast"] - out["onnx"])) < 1e-6  # same audio from either host
