"""Shared fixtures: where the shared assets live, and one real noisy clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``<repo>/../shared`` (models/onnx-official, data/voicebank-demand)."""
    d = (REPO.parent / "shared").resolve()
    if not d.is_dir():
        pytest.fail(f"shared assets not found at {d}: put the shared folder beside the checkout")
    return d


@pytest.fixture(scope="session")
def real_clip(shared_dir: Path) -> np.ndarray:
    """p232_013_noisy.wav as float32 mono at 48 kHz, shape [samples]."""
    import soundfile as sf

    audio, sr = sf.read(shared_dir / "data" / "voicebank-demand" / "p232_013_noisy.wav", dtype="float32")
    assert sr == 48000 and audio.ndim == 1
    return audio


@pytest.fixture(scope="session")
def load():
    """``load(name)``: each model loaded once per test session (imports come from the official ONNX releases)."""
    from dfnb.models import load_model

    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_model(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def offline_ref(load):
    """``offline_ref(model, clip)``: ``(noisy, OfflineResult with probes)``, computed once per session."""
    from dfnb import clips
    from dfnb.offline import enhance_offline

    cache: dict = {}

    def get(name: str, clip: str):
        if (name, clip) not in cache:
            x, _ = clips.load_clip(clip)
            cache[(name, clip)] = (x, enhance_offline(load(name), x, probes=True))
        return cache[(name, clip)]

    return get


@pytest.fixture(scope="session")
def exported(load, tmp_path_factory):
    """``exported(model, variant)``: a folder exported once per test session into a temp dir."""
    from dfnb.export import default_folder, export_model

    root = tmp_path_factory.mktemp("exports")
    cache: dict = {}

    def get(name: str, variant: str):
        key = (name, variant)
        if key not in cache:
            cache[key] = export_model(load(name), variant, default_folder(name, variant, root))
        return cache[key]

    return get


def pytest_configure(config):
    """One torch thread: per-hop work is tiny, and with 2 threads on a loaded 2-core CI box torch's spinning
    workers made streaming 5-25x slower (measured while writing the notebooks)."""
    import torch

    torch.set_num_threads(1)
