"""Load deepfilternet's own PyTorch ``DfNet`` of a model, with its config (:class:`ModelSpec`).

No PyTorch checkpoint of these models can be downloaded here, so the weights come from the official ONNX
releases (:mod:`dfnb.releases`: names, tarballs, sha256, where they are found), imported exactly by
:func:`import_onnx_release` (deepfilternet builds the model from the release's ``config.ini``,
:mod:`dfnb.onnx_import` fills every weight) and kept as a normal deepfilternet checkpoint folder
``<models_dir>/<name>/`` (``config.ini``, ``checkpoints/model_1.ckpt.best``, ``provenance.json``) that
``df.enhance.init_df`` reads too.

Where :func:`load_model` looks, in order (the first hit wins): an explicit path (a release tarball, a checkpoint
folder with ``config.ini`` + ``checkpoints/``, or a folder holding ``enc.onnx``, ``erb_dec.onnx``,
``df_dec.onnx`` and ``config.ini``); the release tarball in ``$DFNB_MIRROR``, then in ``../shared``
(:func:`dfnb.releases.search_release`, sha256 checked); deepfilternet's own cache; deepfilternet's own
download (:func:`dfnb.releases.download`).

An imported folder is reused only when its ``provenance.json`` names the sha256 of the source found now,
so a changed source is re-imported; an unreadable cached checkpoint is rebuilt. Only a folder with dfnb's
``provenance.json`` is ever replaced (:mod:`dfnb.placement`). A release *folder* given by path is cached in
``<models_dir>/imports/<basename>-<sha256 prefix>/`` (:func:`import_folder`), never in
``<models_dir>/<basename>``, so a path cannot collide with a model name, an export folder or another path.
``models_dir`` defaults to ``$DFNB_MODELS_DIR`` or ``<repo>/models`` (:func:`dfnb.assets.models_dir`). Nothing
is loaded at import time.

Notebook: 00_tour
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfnb import __version__, assets, releases
from dfnb.args import shown
from dfnb.assets import sha256_file
from dfnb.compat import CONFIG_LOCK, import_df
from dfnb.errors import AssetNotFoundError, ModelError
from dfnb.onnx_import import fill_from_onnx, poison_, read_release
from dfnb.placement import building_folder, check_target

__all__ = ["CHECKPOINT_FILE", "ModelSpec", "LoadedModel", "build_model", "load_model", "load_checkpoint_folder",
           "import_onnx_release", "import_folder"]

# Epoch 1, not 0: df.enhance.init_df treats a checkpoint of epoch 0 as "not found" and calls exit(1).
CHECKPOINT_FILE = "model_1.ckpt.best"
# an import replaces only an earlier import (provenance.json), never a folder dfnb did not write
_CACHE_RULES = dict(replace=True, kinds=("import",), error=ModelError, what="DFNB_MODELS_DIR (or models_dir=)")


@dataclass(frozen=True)
class ModelSpec:
    """Everything dfnb needs about a model, read from its config.ini through deepfilternet's ModelParams."""

    name: str
    family: str
    sr: int
    fft_size: int
    hop_size: int
    nb_erb: int
    nb_df: int
    df_order: int
    df_lookahead: int
    conv_lookahead: int
    min_nb_erb_freqs: int
    norm_alpha: float
    lsnr_min: float
    lsnr_max: float
    conv_ch: int
    emb_hidden_dim: int
    df_hidden_dim: int
    emb_num_layers: int
    df_num_layers: int
    conv_kernel: tuple[int, int]
    conv_kernel_inp: tuple[int, int]
    convt_kernel: tuple[int, int]
    df_pathway_kernel_size_t: int
    erb_widths: tuple[int, ...]

    @property
    def freq_bins(self) -> int:
        return self.fft_size // 2 + 1


@dataclass
class LoadedModel:
    """A filled ``DfNet`` (eval, float32, CPU), its spec, and the checkpoint folder it can be re-read from."""

    name: str
    spec: ModelSpec
    net: Any
    folder: Path
    source: str
    source_sha256: str | None
    source_path: Path | None = None  # the path it was loaded from, if given one (exports never go over it)

    def new_df_state(self) -> Any:
        """A fresh libdf ``DF`` (STFT/ERB state) for this model."""
        import_df()
        from libdf import DF

        s = self.spec
        return DF(sr=s.sr, fft_size=s.fft_size, hop_size=s.hop_size, nb_bands=s.nb_erb,
                  min_nb_erb_freqs=s.min_nb_erb_freqs)

    def activate(self) -> None:
        """Load this model's config.ini into deepfilternet's process-wide config, for ``df`` functions that
        read it (``df.enhance.df_features`` via ``get_norm_alpha``). DfNet.forward itself never reads it."""
        with CONFIG_LOCK:
            _load_config(self.folder / "config.ini")


def _load_config(path: Path) -> None:
    """Load config.ini into deepfilternet's singleton. Caller holds CONFIG_LOCK."""
    import_df()
    from df.config import config

    ini = configparser.ConfigParser()
    try:
        ini.read(path)
        keys = {"model"} | {k for sec in ("df", "deepfilternet") if ini.has_section(sec) for k in ini[sec]}
        config.load(str(path), config_must_exist=True, allow_defaults=True, allow_reload=True)
    except (configparser.Error, ValueError, OSError) as e:
        raise ModelError(f"Cannot read model config {path}: {e}. Use the config.ini that came with the weights.") from e
    clash = sorted(k.upper() for k in keys if k.upper() in os.environ)
    if clash:  # deepfilternet's config() prefers an environment variable of the same name over config.ini
        raise ModelError(f"Environment variable(s) {', '.join(clash)} would override {path} inside deepfilternet and "
                         "build a different model. Unset them before loading a model.")


def build_model(config_ini: Path, name: str = "") -> tuple[Any, ModelSpec]:
    """Build deepfilternet's own DfNet from ``config_ini`` (random weights) and snapshot its :class:`ModelSpec`."""
    import torch

    config_ini = Path(config_ini)
    if not config_ini.is_file():
        raise AssetNotFoundError(f"Model config not found: {config_ini}. A model folder needs its config.ini.")
    import_df()
    from df.config import config
    from df.model import ModelParams, init_model
    from df.utils import get_norm_alpha
    from libdf import DF

    with CONFIG_LOCK:
        _load_config(config_ini)
        family = config("MODEL", default="deepfilternet3", section="train")
        if family not in ("deepfilternet3", "deepfilternet2"):
            raise ModelError(f"{config_ini} describes a '{family}' model; dfnb handles deepfilternet3 and "
                             "deepfilternet2.")
        p = ModelParams()
        state = DF(sr=p.sr, fft_size=p.fft_size, hop_size=p.hop_size, nb_bands=p.nb_erb,
                   min_nb_erb_freqs=p.min_nb_freqs)
        spec = ModelSpec(
            name=name or config_ini.parent.name, family=family, sr=p.sr, fft_size=p.fft_size, hop_size=p.hop_size,
            nb_erb=p.nb_erb, nb_df=p.nb_df, df_order=p.df_order, df_lookahead=p.df_lookahead,
            conv_lookahead=p.conv_lookahead, min_nb_erb_freqs=p.min_nb_freqs, norm_alpha=get_norm_alpha(False),
            lsnr_min=float(p.lsnr_min), lsnr_max=float(p.lsnr_max), conv_ch=p.conv_ch, emb_hidden_dim=p.emb_hidden_dim,
            df_hidden_dim=p.df_hidden_dim, emb_num_layers=p.emb_num_layers, df_num_layers=p.df_num_layers,
            conv_kernel=tuple(p.conv_kernel), conv_kernel_inp=tuple(p.conv_kernel_inp),
            convt_kernel=tuple(getattr(p, "convt_kernel", p.conv_kernel)),  # DFN2 uses conv_kernel for its tconvs
            df_pathway_kernel_size_t=p.df_pathway_kernel_size_t, erb_widths=tuple(int(w) for w in state.erb_widths()))
        mask_only = config("mask_only", cast=bool, section="train", default=False, save=False)
        try:
            net = init_model(state, run_df=not mask_only, train_mask=True)
        except (AssertionError, ValueError, NotImplementedError, RuntimeError) as e:
            raise ModelError(f"deepfilternet cannot build a model from {config_ini}: {e!r}.") from e
    return net.to("cpu", torch.float32).eval(), spec


def load_checkpoint_folder(folder: Path) -> LoadedModel:
    """Load a deepfilternet checkpoint folder (config.ini + checkpoints/), picking the file like ``init_df``
    does (best, highest epoch), but strictly: every parameter must be present, finite and of the right shape."""
    import torch

    folder = Path(folder)
    if not folder.is_dir():
        raise AssetNotFoundError(f"Checkpoint folder not found: {folder}.")
    found = [(int(f.name.split(".")[0].rsplit("_", 1)[-1]), f) for f in (folder / "checkpoints").glob("model*.ckpt*")
             if f.name.split(".")[0].rsplit("_", 1)[-1].isdigit() and f.name.endswith((".ckpt", ".ckpt.best"))]
    best = [x for x in found if x[1].name.endswith(".best")] or found
    if not (folder / "config.ini").is_file() or not best:
        raise ModelError(f"{folder} is not a checkpoint folder: it needs config.ini and "
                         "checkpoints/model_<epoch>.ckpt[.best]. "
                         "Pass a release tarball instead, or delete the folder so it is rebuilt.")
    cp = max(best)[1]
    net, spec = build_model(folder / "config.ini", name=folder.name)
    try:
        sd = torch.load(cp, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"Unreadable checkpoint {cp} ({e.__class__.__name__}: {e}). Delete {folder} so it is "
                         "re-imported.") from e
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if not isinstance(sd, dict):
        raise ModelError(f"Checkpoint {cp} holds a {type(sd).__name__}, not a state_dict. Delete {folder} so it is "
                         "re-imported.")
    sd = {k.replace("clc", "df"): v for k, v in sd.items()}  # as df.checkpoint.read_cp does
    own = net.state_dict()
    for k, v in own.items():
        if k not in sd:
            raise ModelError(f"Checkpoint {cp} lacks parameter {k} that the config.ini model has. Config and "
                             "weights disagree.")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise ModelError(f"config.ini and weights disagree at {k}: the model built from {folder / 'config.ini'} "
                             f"expects {tuple(v.shape)}, {cp.name} has {tuple(sd[k].shape)}. Use the config.ini saved "
                             "with these weights.")
        if sd[k].is_floating_point() and not torch.isfinite(sd[k]).all():
            raise ModelError(f"Checkpoint {cp} has non-finite values in {k}. Delete {folder} so it is re-imported.")
    net.load_state_dict({k: sd[k] for k in own}, strict=True)
    return LoadedModel(spec.name, spec, net.eval(), folder, f"checkpoint {cp}", sha256_file(cp))


def load_model(name_or_path: str | Path, *, models_dir: Path | None = None) -> LoadedModel:
    """Load deepfilternet's ``DfNet`` of a model, by name or from a path, with every weight of its release.

    Parameters
    ----------
    name_or_path : str or path
        A model name (:data:`dfnb.releases.MODEL_NAMES`, searched as the module docstring says), or the path
        of a release tarball, a checkpoint folder (``config.ini`` + ``checkpoints/``) or an unpacked release
        folder (``enc.onnx``, ``erb_dec.onnx``, ``df_dec.onnx``, ``config.ini``).
    models_dir : path, optional
        Where imported checkpoints are cached (default :func:`dfnb.assets.models_dir`).

    Returns
    -------
    LoadedModel
        ``net`` (eval, float32, CPU), ``spec``, the checkpoint ``folder``, ``source`` and ``source_sha256``.

    Raises
    ------
    AssetNotFoundError
        Found nowhere (the message lists every place tried); ``ChecksumError`` for a tarball that is not the
        pinned release; ``ModelError`` for an unknown name or weights that do not fit their config.ini.

    Examples
    --------
    >>> lm = load_model("DeepFilterNet3")  # doctest: +SKIP
    >>> lm.spec.family, lm.spec.conv_lookahead  # doctest: +SKIP
    ('deepfilternet3', 2)

    Notebook: 00_tour
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or isinstance(name_or_path, bytes) or not str(name_or_path):
        raise ModelError(f"load_model() takes a model name ({', '.join(releases.MODEL_NAMES)}) or the path of a "
                         "release "
                         f"tarball or checkpoint folder, got {shown(name_or_path)}.")
    if models_dir is not None and (not isinstance(models_dir, (str, os.PathLike)) or isinstance(models_dir, bytes)):
        raise ModelError(f"models_dir must be a folder path or None, got {shown(models_dir)}.")
    mdir = assets.models_dir(models_dir)
    if isinstance(name_or_path, os.PathLike):
        name_or_path = Path(name_or_path)
    if isinstance(name_or_path, Path) or name_or_path not in releases.MODEL_NAMES:
        p = Path(name_or_path).expanduser()
        if p.exists():
            return _load_path(p, mdir)
        if isinstance(name_or_path, Path) or os.sep in name_or_path or name_or_path.endswith((".tar.gz", ".tgz",
                                                                                              ".ini")):
            raise AssetNotFoundError(f"{p} does not exist. Pass an existing release tarball or model folder, or a "
                                     f"name: {', '.join(releases.MODEL_NAMES)}.")
        releases.check_name(str(name_or_path))
    name = str(name_or_path)
    tried: list[str] = []
    path = releases.search_release(name, tried)
    if path is not None:
        return _from_release(name, path, releases.verify_tarball(path, name)[1], mdir / name)
    cache = releases.deepfilternet_cache(name)
    if (cache / "config.ini").is_file() and (cache / "checkpoints").is_dir():
        try:
            return load_checkpoint_folder(cache)
        except ModelError as e:
            tried.append(f"deepfilternet cache {cache}: found but unusable ({e})")
    else:
        tried.append(f"deepfilternet cache {cache}: no config.ini + checkpoints/")
    folder = releases.download(name, tried)
    if folder is not None:
        return load_checkpoint_folder(folder)
    if (mdir / name / "provenance.json").is_file():
        tried.append(f"(an earlier import exists at {mdir / name}; pass that path to use it without its source)")
    raise AssetNotFoundError(releases.not_found(name, tried))


def _load_path(p: Path, mdir: Path) -> LoadedModel:
    if p.is_file() and p.name.endswith((".tar.gz", ".tgz", ".tar")):
        name, sha = releases.verify_tarball(p)  # an official release: the same weights as the name, so its folder
        return _from_release(name, p, sha, mdir / name)
    if p.is_dir() and (p / "checkpoints").is_dir():
        lm = load_checkpoint_folder(p)
        lm.source_path = p
        return lm
    if p.is_dir():
        files = read_release(p)  # raises ModelError when the folder is not a release either
        listing = "".join(f"{k}:{hashlib.sha256(v).hexdigest()}\n" for k, v in sorted(files.items()))
        sha = hashlib.sha256(listing.encode()).hexdigest()
        return _from_release(p.name, p, sha, import_folder(p, sha, mdir))
    raise ModelError(f"{p} is neither a release tarball (.tar.gz), a checkpoint folder (config.ini + checkpoints/) "
                     "nor a folder with enc.onnx, erb_dec.onnx, df_dec.onnx and config.ini.")


def import_folder(source: Path | str, sha256: str, models_dir: Path | None = None) -> Path:
    """Where the import of a release folder given by path is cached: ``<models_dir>/imports/<name>-<sha>``.

    Keyed by the sha256 of the release's files, so two paths with the same basename (or a path named like a
    model or an export folder) never share or replace a cache folder; the basename only helps a reader.

    Examples
    --------
    >>> import_folder("/data/dfn3_full", "ab" * 32, Path("models"))
    PosixPath('models/imports/dfn3_full-abababababababab')

    Notebook: 00_tour
    """
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).name).lstrip(".") or "release"
    return assets.models_dir(models_dir) / "imports" / f"{label}-{sha256[:16]}"


def import_onnx_release(tarball_or_dir: Path | str, name: str = "") -> tuple[Any, ModelSpec, dict]:
    """Build ``DfNet`` from a release's own config.ini and fill every parameter and buffer from its graphs.

    Parameters
    ----------
    tarball_or_dir : path
        An official ``*_onnx.tar.gz`` or its unpacked folder (:func:`dfnb.onnx_import.read_release`).
    name : str
        The model's name (default: the release's, from the tarball's name, else the file's name).

    Returns
    -------
    (torch.nn.Module, ModelSpec, dict)
        The filled net (eval, float32), its spec, and :func:`dfnb.onnx_import.fill_from_onnx`'s report (which
        ONNX tensor filled which parameter, what was ignored and why) with ``source`` and ``config_ini``.

    Examples
    --------
    >>> net, spec, report = import_onnx_release("DeepFilterNet3_onnx.tar.gz")  # doctest: +SKIP

    Notebook: 00_tour
    """
    files = read_release(Path(tarball_or_dir))
    base = Path(tarball_or_dir).name
    name = name or {t: n for n, t in releases.RELEASE_TARBALLS.items()}.get(base, base)
    with tempfile.TemporaryDirectory(prefix="dfnb-release-") as tmp:
        cfg = Path(tmp) / "config.ini"
        cfg.write_bytes(files["config.ini"])
        net, spec = build_model(cfg, name=name)
    poison_(net)
    report = fill_from_onnx(net, spec, files)
    report["source"] = str(tarball_or_dir)
    report["config_ini"] = files["config.ini"].decode()
    return net, spec, report


def _from_release(name: str, source: Path, sha: str, target: Path) -> LoadedModel:
    label = f"{source.name} (sha256 {sha[:12]}…) at {source}, imported by dfnb {__version__} into {target}"
    try:
        meta = json.loads((target / "provenance.json").read_text())
        if meta.get("source_sha256") == sha:
            lm = load_checkpoint_folder(target)
            lm.name, lm.source, lm.source_sha256, lm.source_path = name, label, sha, source
            return lm
    except Exception:  # noqa: BLE001 -- missing, stale or corrupt cache: rebuild it
        pass
    check_target(target, folder=True, sources=[source], **_CACHE_RULES)  # before the import's work
    net, spec, report = import_onnx_release(source, name=name)
    import_df()
    from df.version import version as df_version

    prov = {"name": name, "source": str(source), "source_sha256": sha, "dfnb_version": __version__,
            "deepfilternet_version": df_version, "checkpoint": f"checkpoints/{CHECKPOINT_FILE}",
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "onnx_tensors_used": len(report["used"]), "ignored": report["ignored"],
            "zero_filled": report["zero_filled"]}
    _write_folder(target, net, report["config_ini"], prov, source)
    return LoadedModel(name, spec, net, target, label, sha, source)


def _write_folder(target: Path, net: Any, config_text: str, prov: dict, source: Path) -> None:
    """Write config.ini + checkpoints/ + provenance.json beside ``target`` and put it in place
    (:mod:`dfnb.placement`): only an earlier import (provenance.json) is ever replaced, never anything else."""
    import torch

    try:
        with building_folder(target, sources=[source], **_CACHE_RULES) as tmp:
            (tmp / "config.ini").write_text(config_text)
            (tmp / "checkpoints").mkdir()
            torch.save(net.state_dict(), tmp / "checkpoints" / CHECKPOINT_FILE)
            (tmp / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
    except OSError as e:
        raise ModelError(f"Cannot write imported weights to {target} ({e}). Check permissions, or set "
                         "DFNB_MODELS_DIR.") from e
