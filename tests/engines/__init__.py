"""Tests of the model engines with the real test models.

Shared helpers live here (this package has no conftest.py): the real model store and one
synthesized utterance, each made once per test process.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.conftest import models_test_home

SENTENCE = "What is two plus two?"
VAD_MODEL = ("silero-vad", "silero_vad.onnx")
ASR_MODEL = "whisper-base"
TTS_MODEL = ("piper-en-us-joe-medium", "en_US-joe-medium.onnx")


def real_models() -> Path:
    """The real test model store (what the `real_models_dir` fixture returns), usable at module scope."""
    models = models_test_home() / "models"
    if not models.is_dir():
        pytest.fail(f"the test model set is missing at {models}; run scripts/test "
                    "(or XIAOZHI_HOME=<dir> xiaozhi models pull --test and set XIAOZHI_TEST_HOME)")
    return models


@functools.cache
def speech_22k() -> NDArray[np.int16]:
    """SENTENCE spoken by the Piper test voice at 22050 Hz (read-only)."""
    from xiaozhi_local.engines.tts import PiperTts

    voice = PiperTts(real_models().joinpath(*TTS_MODEL))
    audio = np.concatenate(list(voice.synthesize(SENTENCE)))
    audio.setflags(write=False)
    return audio


@functools.cache
def speech_16k() -> NDArray[np.int16]:
    """speech_22k resampled to 16 kHz (read-only)."""
    from xiaozhi_local.audio.resample import resample

    audio = resample(speech_22k(), 22050, 16000)
    audio.setflags(write=False)
    return audio
