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
