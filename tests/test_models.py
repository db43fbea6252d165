"""dfnb.models: names, specs from config.ini, where weights come from, the imported checkpoint folder."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import torch

from dfnb import models, releases
from dfnb.assets import sha256_file
from dfnb.compat import import_df
from dfnb.errors import AssetNotFoundError, ChecksumError, ModelError
from test_onnx_import import features, onnx_outputs, release, shifted, torch_outputs


def max_diff_to_onnx(lm: models.LoadedModel, audio: np.ndarray) -> float:
    _, fe, fs = features(lm, audio)
    fe, fs = shifted(lm.net, fe, fs)
    got, want = torch_outputs(lm.net, fe, fs), onnx_outputs(lm.name, fe, fs)
    return max(float(np.abs(got[k] - want[k]).max()) for k in want if k in got)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No mirror, no ../shared, an empty deepfilternet cache, no download."""
    monkeypatch.setenv("DFNB_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("DFNB_OFFLINE", "1")
    monkeypatch.setattr(releases, "SHARED_MODELS_DIR", tmp_path / "shared" / "models" / "onnx-official")
    monkeypatch.setattr(releases, "deepfilternet_cache", lambda name: tmp_path / "df-cache" / name)
    return tmp_path


@pytest.mark.parametrize("name", releases.MODEL_NAMES)
def test_spec_is_read_from_the_release_config(name, tmp_path):
    import_df()
    from df.utils import get_norm_alpha

    ini = configparser.ConfigParser()
    ini.read_string(release(name)["config.ini"].decode())
    (tmp_path / "config.ini").write_bytes(release(name)["config.ini"])
    net, spec = models.build_model(tmp_path / "config.ini", name=name)
    assert spec.name == name and spec.family == ini["train"]["model"]
    merged = {**ini["deepfilternet"], **ini["df"]}
    for field in ("sr", "fft_size", "hop_size", "nb_erb", "nb_df", "df_order", "df_lookahead", "conv_lookahead",
                  "conv_ch", "emb_hidden_dim", "df_hidden_dim", "emb_num_layers", "df_num_layers",
                  "df_pathway_kernel_size_t"):
        assert getattr(spec, field) == int(merged[field]), field
    assert spec.min_nb_erb_freqs == int(merged["min_nb_erb_freqs"])
    assert (spec.lsnr_min, spec.lsnr_max) == (float(merged["lsnr_min"]), float(merged["lsnr_max"]))
    assert spec.conv_kernel == tuple(int(x) for x in merged["conv_kernel"].split(","))
    # DFN3 default (1, 3) when absent; DFN2: conv_kernel
    assert spec.convt_kernel == tuple(net.erb_dec.convt2[0].kernel_size)
    assert spec.norm_alpha == get_norm_alpha(False) and spec.freq_bins == spec.fft_size // 2 + 1
    assert sum(spec.erb_widths) == spec.freq_bins and len(spec.erb_widths) == spec.nb_erb
    assert net.enc.emb_gru.gru.hidden_size == spec.emb_hidden_dim and not net.training


def test_two_families_in_one_process(tmp_path, real_clip):
    """Reloading deepfilternet's config for one model must not change a model built before."""
    order = ["DeepFilterNet3", "DeepFilterNet3_ll", "DeepFilterNet3", "DeepFilterNet2", "DeepFilterNet2_ll"]
    loaded = [models.load_model(n, models_dir=tmp_path) for n in order]
    assert loaded[2].source.startswith("DeepFilterNet3_onnx.tar.gz")  # second DFN3: from the imported folder
    for lm in loaded:
        assert max_diff_to_onnx(lm, real_clip) <= 1e-4, lm.name


def test_build_model_from_two_threads(tmp_path):
    cfgs = {}
    for n in ("DeepFilterNet3", "DeepFilterNet3_ll"):
        (tmp_path / n).mkdir()
        cfgs[n] = tmp_path / n / "config.ini"
        cfgs[n].write_bytes(release(n)["config.ini"])
    bad: list[str] = []

    def work(n: str) -> None:
        for _ in range(3):
            net, spec = models.build_model(cfgs[n], name=n)
            if net.enc.emb_gru.gru.hidden_size != spec.emb_hidden_dim or spec.name != n:
                bad.append(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def test_unknown_name():
    with pytest.raises(ModelError, match="Unknown model 'DeepFilterNet4'.*"
                                         "DeepFilterNet3, DeepFilterNet2, DeepFilterNet3_ll, DeepFilterNet2_ll"):
        models.load_model("DeepFilterNet4")
    with pytest.raises(AssetNotFoundError, match="does not exist"):
        models.load_model("/no/such/DeepFilterNet3_onnx.tar.gz")


def test_tarball_with_wrong_sha256(tmp_path):
    src, sha = releases.find_release_tarball("DeepFilterNet2")
    assert sha == releases.KNOWN_SHA256["DeepFilterNet2_onnx.tar.gz"]
    bad = tmp_path / src.name
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as e:
        models.load_model(bad, models_dir=tmp_path / "models")
    msg = str(e.value)
    assert str(bad) in msg and sha in msg and sha256_file(bad) in msg and "Copy it again" in msg


def test_nothing_found_lists_every_place(nowhere):
    with pytest.raises(AssetNotFoundError) as e:
        models.load_model("DeepFilterNet3", models_dir=nowhere / "models")
    msg = str(e.value)
    for place in ("mirror/models/onnx-official/DeepFilterNet3_onnx.tar.gz",
                  "shared/models/onnx-official/DeepFilterNet3_onnx.tar.gz",
                  "df-cache/DeepFilterNet3", "DFNB_OFFLINE", "set DFNB_MIRROR", "beside the checkout", "pass a path"):
        assert place in msg, place
    with pytest.raises(AssetNotFoundError, match="not offered for DeepFilterNet3_ll"):
        models.load_model("DeepFilterNet3_ll")


def test_mirror_comes_before_shared(nowhere, shared_dir):
    mirror = nowhere / "mirror" / "models" / "onnx-official"
    mirror.mkdir(parents=True)
    src = shared_dir / "models" / "onnx-official" / "DeepFilterNet2_onnx_ll.tar.gz"
    os.symlink(src, mirror / src.name)
    assert releases.find_release_tarball("DeepFilterNet2_ll")[0] == mirror / src.name
    lm = models.load_model("DeepFilterNet2_ll", models_dir=nowhere / "models")
    assert str(mirror) in lm.source and lm.source_sha256 == releases.KNOWN_SHA256[src.name]


def test_config_and_weights_that_disagree(tmp_path):
    lm = models.load_model("DeepFilterNet3", models_dir=tmp_path / "models")
    bad = tmp_path / "mixed"
    shutil.copytree(lm.folder, bad)
    (bad / "config.ini").write_bytes(release("DeepFilterNet3_ll")["config.ini"])
    with pytest.raises(ModelError,
                       match=r"disagree at enc\.erb_conv1\.1\.weight: .*expects \(64, 1, 2, 3\).*has \(64, 64, 1, 1\)"):
        models.load_checkpoint_folder(bad)


def test_imported_folder_is_reused_and_read_by_init_df(tmp_path, monkeypatch, real_clip):
    t0 = time.perf_counter()
    first = models.load_model("DeepFilterNet3_ll", models_dir=tmp_path)
    t1 = time.perf_counter()
    monkeypatch.setattr(models, "import_onnx_release", lambda *a, **k: pytest.fail("re-imported"))
    second = models.load_model("DeepFilterNet3_ll", models_dir=tmp_path)
    t2 = time.perf_counter()
    print(f"\nimport {t1 - t0:.2f} s, reuse {t2 - t1:.2f} s")
    assert t2 - t1 < t1 - t0
    assert second.folder == first.folder == tmp_path / "DeepFilterNet3_ll"
    prov = json.loads((first.folder / "provenance.json").read_text())
    assert prov["source_sha256"] == first.source_sha256 == second.source_sha256 and prov["dfnb_version"]
    a, b = first.net.state_dict(), second.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    import_df()
    from df.enhance import init_df

    net, df_state, _ = init_df(str(first.folder), log_level="none", log_file=None)
    net.eval()  # init_df returns the model in training mode (df.enhance.enhance calls eval() itself)
    x, fe, fs = features(first, real_clip[:48000])
    with torch.no_grad():
        mine, theirs = first.net(x.clone(), fe, fs), net(x.clone(), fe, fs)
    assert all(torch.equal(p, q) for p, q in zip(mine[:3], theirs[:3]))
    assert df_state.erb_widths().tolist() == list(first.spec.erb_widths)


def test_corrupt_or_stale_folder_is_rebuilt(tmp_path, monkeypatch):
    lm = models.load_model("DeepFilterNet2_ll", models_dir=tmp_path)
    cp = lm.folder / "checkpoints" / models.CHECKPOINT_FILE
    cp.write_bytes(cp.read_bytes()[:1000])
    with pytest.raises(ModelError, match="Unreadable checkpoint"):
        models.load_checkpoint_folder(lm.folder)
    again = models.load_model("DeepFilterNet2_ll", models_dir=tmp_path)
    assert all(torch.equal(v, again.net.state_dict()[k]) for k, v in lm.net.state_dict().items())
    prov = lm.folder / "provenance.json"
    prov.write_text(prov.read_text().replace(lm.source_sha256, "0" * 64))
    calls = []
    real = models.import_onnx_release
    monkeypatch.setattr(models, "import_onnx_release", lambda *a, **k: calls.append(1) or real(*a, **k))
    models.load_model("DeepFilterNet2_ll", models_dir=tmp_path)
    assert calls == [1] and json.loads(prov.read_text())["source_sha256"] == lm.source_sha256
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_explicit_paths(tmp_path):
    tarball, sha = releases.find_release_tarball("DeepFilterNet2")
    by_tarball = models.load_model(tarball, models_dir=tmp_path / "m")
    assert by_tarball.name == "DeepFilterNet2" and by_tarball.source_sha256 == sha
    shutil.unpack_archive(str(tarball), tmp_path / "unpacked")
    by_folder = models.load_model(tmp_path / "unpacked" / "tmp" / "export", models_dir=tmp_path / "m")
    by_cp = models.load_model(str(by_tarball.folder))
    for lm in (by_folder, by_cp):
        assert all(torch.equal(v, lm.net.state_dict()[k]) for k, v in by_tarball.net.state_dict().items())
    assert by_cp.source.startswith("checkpoint ") and by_cp.folder == by_tarball.folder
    with pytest.raises(ModelError, match="neither a release tarball"):
        models.load_model(tmp_path / "unpacked" / "tmp" / "export" / "config.ini")


def test_deepfilternet_cache_is_used_when_no_release(nowhere, shared_dir):
    imported = models.load_model(shared_dir / "models" / "onnx-official" / "DeepFilterNet3_onnx.tar.gz",
                                 models_dir=nowhere / "m")
    cache = nowhere / "df-cache" / "DeepFilterNet3"
    shutil.copytree(imported.folder, cache, ignore=shutil.ignore_patterns("provenance.json"))
    lm = models.load_model("DeepFilterNet3", models_dir=nowhere / "m")
    assert lm.folder == cache and lm.source.startswith("checkpoint ") and lm.name == "DeepFilterNet3"
    assert all(torch.equal(v, lm.net.state_dict()[k]) for k, v in imported.net.state_dict().items())


def test_environment_cannot_override_config(tmp_path, monkeypatch):
    (tmp_path / "config.ini").write_bytes(release("DeepFilterNet3")["config.ini"])
    monkeypatch.setenv("CONV_CH", "32")
    with pytest.raises(ModelError, match="CONV_CH"):
        models.build_model(tmp_path / "config.ini")
