"""The host never imports torch: an exported folder runs with numpy, libdf and onnxruntime only.

A subprocess whose import system refuses ``torch``, ``torchaudio`` and deepfilternet (``df``) -- a
``sitecustomize`` on ``PYTHONPATH`` puts a finder first on ``sys.meta_path`` that raises ``ImportError`` for
them -- opens a ``full`` and a ``step`` folder with :func:`dfnb.hosts.open_host`, runs
:func:`dfnb.runtime.enhance` and ``dfnb inspect``, and must produce exactly what this process (where torch is
loaded) produces. A host path that imports torch, even lazily, fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfnb import cli
from dfnb.hosts import open_host
from dfnb.runtime import enhance

BLOCKED = ("torch", "torchaudio", "df")
CHUNK = 3

BLOCKER = f'''
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {BLOCKED!r}
ATTEMPTS = []


class NoTorch(MetaPathFinder):
    """Refuses the packages a torch-free host must not need (an optional import may still catch this)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            ATTEMPTS.append(name)
            raise ImportError(f"{{name}} is blocked: the torch-free host must not import it")
        return None


sys.meta_path.insert(0, NoTorch())
'''

RUN = '''
import json, sys
import numpy as np
import sitecustomize
from dfnb.hosts import open_host
from dfnb.runtime import enhance

x = np.load(sys.argv[1])
full, step, chunk, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
runs = {"full": open_host(full), "step": open_host(step), "step_onnx": open_host(step, host="onnx")}
np.savez(out, **{k: enhance(rt, x, chunk=chunk) for k, rt in runs.items()})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in sitecustomize.BLOCKED)
print(json.dumps({"labels": {k: rt.label for k, rt in runs.items()}, "loaded": loaded,
                  "attempts": sitecustomize.ATTEMPTS}))
'''


@pytest.fixture(scope="module")
def folders(exported):
    return {"full": exported("DeepFilterNet3", "full"), "step": exported("DeepFilterNet3", "step")}


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("no_torch")
    (d / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(d)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def test_the_blocker_blocks(no_torch_env):
    """The subprocess set-up really refuses torch and deepfilternet (else the tests below prove nothing)."""
    code = ("import importlib\nfor m in ('torch', 'df.enhance', 'torchaudio'):\n    try:\n"
            "        importlib.import_module(m)\n    except ImportError as e:\n        print('blocked', m)\n")
    p = subprocess.run([sys.executable, "-c", code], env=no_torch_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:3] == ["blocked torch", "blocked df.enhance", "blocked torchaudio"]


def test_host_runs_folders_without_torch_and_matches_this_process(folders, real_clip, no_torch_env, tmp_path):
    x = real_clip[24000 : 24000 + 48000].copy()  # 1 s of speech
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npz"
    p = subprocess.run([sys.executable, "-c", RUN, str(tmp_path / "x.npy"), str(folders["full"]),
                        str(folders["step"]), str(CHUNK), str(out)],
                       env=no_torch_env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"the host needed a blocked package:\n{p.stderr[-3000:]}"
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [] and report["attempts"] == [], report
    assert report["labels"] == {"full": "host (full)", "step": "fast step host", "step_onnx": "host (step)"}
    here = {"full": enhance(open_host(folders["full"]), x, chunk=CHUNK),
            "step": enhance(open_host(folders["step"]), x, chunk=CHUNK),
            "step_onnx": enhance(open_host(folders["step"], host="onnx"), x, chunk=CHUNK)}
    there = np.load(out)
    for k, y in here.items():
        assert there[k].shape == x.shape and np.abs(y).max() > 1e-3, k
        np.testing.assert_array_equal(there[k], y, err_msg=f"{k}: torch-free subprocess differs from this process")


@pytest.mark.parametrize("variant", ["full", "step"])
def test_dfnb_inspect_without_torch(folders, no_torch_env, variant, capsys):
    exe = Path(sys.executable).parent / "dfnb"  # the console script, as a user runs it
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "dfnb.cli"]
    p = subprocess.run(cmd + ["inspect", str(folders[variant])], env=no_torch_env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert cli.main(["inspect", str(folders[variant])]) == 0
    assert p.stdout == capsys.readouterr().out
    assert f"variant:  {variant}" in p.stdout and "status:   complete and consistent" in p.stdout
