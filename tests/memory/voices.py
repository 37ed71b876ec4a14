"""Distinct test voices from espeak-ng (Debian's voice variants: different vocal tracts, not just pitch).

The Piper voice at other speeds is *not* another speaker; these are (see bench/speaker.py, which picked
them). Each clip is synthesized at 16 kHz int16 with a fixed rate and pitch, so tests are repeatable.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from xiaozhi_local.audio.wav import read_wav_16k, write_wav

VOICES = {"sam": "en-us+Alex", "ana": "en-gb-x-rp+Denis", "stranger": "en-gb-scotland+Andrea"}
"""Two people to enroll and one who never is."""

ENROLL_TEXTS = (
    "My name is on the list, and I would like the assistant to recognise my voice from now on.",
    "Yesterday we walked along the river until the rain started, then we went home for tea.",
    "Please add milk, bread, three apples and a bag of rice to the shopping list for tomorrow.",
    "On Saturdays I usually clean the kitchen, water the plants and phone my grandmother in the evening.",
    "The train to the city leaves at half past eight, so I need to be at the station a little earlier.",
)
TEST_TEXTS = (
    "What is the weather like this afternoon in the city?",
    "Remind me to call the dentist on Monday morning, please.",
)


def speak(voice: str, text: str, *, wpm: int = 165, pitch: int = 50) -> np.ndarray:
    """``text`` said by espeak-ng ``voice``, as 16 kHz mono int16."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(out), text],
                       check=True, capture_output=True)
        return read_wav_16k(out)


def speak_to(path: Path, voice: str, text: str, *, pad_s: float = 0.3) -> Path:
    """Write ``text`` by ``voice`` to ``path`` with a little silence around it; returns ``path``."""
    pad = np.zeros(int(16000 * pad_s), np.int16)
    write_wav(path, np.concatenate([pad, speak(voice, text), pad]), 16000)
    return path
