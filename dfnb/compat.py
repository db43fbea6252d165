"""The one place that imports deepfilternet (``df``) — after making sure it can be imported.

deepfilternet 0.5.6 imports ``torchaudio.backend.common`` at import time (``df/io.py``). No current torchaudio
has that module, and no CPU torchaudio wheel exists on the registry these machines reach. So, before the
first ``import df``, :func:`import_df` checks for a working torchaudio and, only when there is none,
registers a minimal shim in ``sys.modules``: ``load``/``info``/``save`` backed by soundfile, and
``functional.resample`` backed by soxr. The shim is never written to site-packages, and a real torchaudio,
when importable, is always preferred.

Hand-written on purpose: no maintained package provides a torchaudio stand-in; it covers only what
deepfilternet's own import path and ``df.io`` touch.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any

__all__ = ["import_df", "torchaudio_status", "install_torchaudio_shim", "SHIM_MARK", "CONFIG_LOCK"]

SHIM_MARK = "__dfnb_torchaudio_shim__"
CONFIG_LOCK = threading.Lock()
"""deepfilternet keeps its config in one process-wide object (``df.config.config``) that ``ModelParams`` and
``df.modules.erb_fb`` read: hold this lock while loading a config.ini into it and building from it."""


def torchaudio_status() -> str:
    """Return ``"real"``, ``"shim"`` or ``"missing"`` for the torchaudio currently importable."""
    mod = sys.modules.get("torchaudio")
    if mod is not None and getattr(mod, SHIM_MARK, False):
        return "shim"
    try:
        importlib.import_module("torchaudio")
        importlib.import_module("torchaudio.backend.common")
    except Exception:  # noqa: BLE001 -- a broken torchaudio fails in many ways; all mean "use the shim"
        return "missing"
    return "real"


@dataclass
class AudioMetaData:
    """Same fields as torchaudio's ``AudioMetaData`` (what ``df.io.load_audio`` reads)."""

    sample_rate: int
    num_frames: int
    num_channels: int
    bits_per_sample: int = 0
    encoding: str = "UNKNOWN"


def _info(path: Any, **_: Any) -> AudioMetaData:
    import soundfile as sf

    i = sf.info(str(path))
    bits = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "PCM_U8": 8, "FLOAT": 32, "DOUBLE": 64}
    return AudioMetaData(i.samplerate, i.frames, i.channels, bits.get(i.subtype, 0), i.subtype)


def _load(path: Any, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
          channels_first: bool = True, **_: Any):
    import soundfile as sf
    import torch

    stop = None if num_frames is None or num_frames < 0 else frame_offset + num_frames
    data, sr = sf.read(str(path), start=frame_offset, stop=stop, dtype="float32", always_2d=True)
    t = torch.from_numpy(data.T.copy() if channels_first else data.copy())
    return t, sr


def _save(path: Any, src: Any, sample_rate: int, channels_first: bool = True, **_: Any) -> None:
    import numpy as np
    import soundfile as sf

    a = src.detach().cpu().numpy() if hasattr(src, "detach") else np.asarray(src)
    if a.ndim == 1:
        a = a[None]
    if channels_first:
        a = a.T
    if a.dtype == np.int16:
        sf.write(str(path), a, sample_rate, subtype="PCM_16")
    else:
        sf.write(str(path), a.astype(np.float32), sample_rate)


def _resample(waveform: Any, orig_freq: int, new_freq: int, **_: Any):
    """soxr's high-quality resampler over the last axis (the torchaudio kernel options are ignored)."""
    import numpy as np
    import soxr
    import torch

    if orig_freq == new_freq:
        return waveform
    x = waveform.detach().cpu().numpy().astype(np.float32)
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    y = soxr.resample(flat.T, orig_freq, new_freq, quality="HQ").T
    return torch.from_numpy(np.ascontiguousarray(y.reshape(*lead, -1)))


def _unavailable(name: str):
    def f(*_: Any, **__: Any):
        raise NotImplementedError(
            f"torchaudio.{name} is not provided by dfnb's torchaudio shim (only load/info/save/resample are). "
            "Install a real torchaudio matching torch 2.13 if you need it."
        )

    return f


def install_torchaudio_shim() -> types.ModuleType:
    """Register the shim modules in ``sys.modules`` and return the top-level ``torchaudio`` shim."""
    def mod(name: str, **attrs: Any) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        setattr(m, SHIM_MARK, True)
        sys.modules[name] = m
        return m

    common = mod("torchaudio.backend.common", AudioMetaData=AudioMetaData)
    backend = mod("torchaudio.backend", common=common)
    functional = mod("torchaudio.functional", resample=_resample,
                     highpass_biquad=_unavailable("functional.highpass_biquad"))
    kaldi = mod("torchaudio.compliance.kaldi", resample_waveform=_resample)
    compliance = mod("torchaudio.compliance", kaldi=kaldi)
    transforms = mod("torchaudio.transforms", Resample=_unavailable("transforms.Resample"))
    return mod("torchaudio", __version__="0.0.0+dfnb.shim", load=_load, info=_info, save=_save,
               backend=backend, functional=functional, compliance=compliance, transforms=transforms)


def import_df() -> types.ModuleType:
    """Import and return deepfilternet's ``df`` package, installing the torchaudio shim first if needed."""
    if "df.enhance" not in sys.modules and torchaudio_status() == "missing":
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]  # a half-imported real torchaudio would shadow the shim
        install_torchaudio_shim()
    import df
    import df.enhance  # noqa: F401  (pulls df.io, the module that needs torchaudio)
    import loguru

    _quiet_df_logging(loguru.logger)
    return sys.modules["df"]


def _quiet_df_logging(logger: Any) -> None:
    """deepfilternet logs every model init at INFO; dfnb reports what matters itself."""
    logger.disable("df")
