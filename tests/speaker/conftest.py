"""Fixtures for the speaker tests: the committed reference clips and the real GE2E encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import models_test_home
from xiaozhi_local.audio.wav import read_wav_16k
from xiaozhi_local.speaker.encoder import SpeakerEncoder

FIXTURES = Path(__file__).parent / "fixtures"


def reference() -> dict[str, Any]:
    """ge2e_reference.json, written by scripts/dev/make_ge2e_fixture.py from Resemblyzer + torch."""
    return json.loads((FIXTURES / "ge2e_reference.json").read_text())


def clip(stem: str) -> np.ndarray:
    return read_wav_16k(FIXTURES / f"{stem}.wav")


@pytest.fixture(scope="session")
def ge2e_path() -> Path:
    path = models_test_home() / "models" / "ge2e-resemblyzer" / "pretrained.pt"
    if not path.is_file():
        pytest.fail(f"the GE2E model is missing at {path}; run scripts/test (it pulls the test model set)")
    return path


@pytest.fixture(scope="session")
def encoder(ge2e_path: Path) -> SpeakerEncoder:
    return SpeakerEncoder.load(ge2e_path)


@pytest.fixture(scope="session")
def numpy_encoder(ge2e_path: Path) -> SpeakerEncoder:
    return SpeakerEncoder.load(ge2e_path, backend="numpy")
