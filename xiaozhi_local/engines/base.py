"""The small interfaces every engine implements (VAD, ASR, LLM, TTS).

Engines are loaded once per server and shared by all sessions. Their methods are
*blocking* (they run model code); the pipeline calls them from worker threads, never from
the event loop. Per-session state (the VAD's recurrent state) lives in a stream object the
engine hands out. Audio is mono int16 numpy arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

PCM = NDArray[np.int16]


# ---- VAD ----------------------------------------------------------------------------------
class VadStream(Protocol):
    """One session's voice-activity state. Not thread-safe; one per session."""

    window_samples: int
    """Samples per decision (512 at 16 kHz for Silero = 32 ms)."""

    def accept(self, pcm: PCM) -> list[float]:
        """Speech probabilities (0..1), one per complete window; a remainder is kept for next time."""
        ...

    def reset(self) -> None: ...


class Vad(Protocol):
    sample_rate: int

    def stream(self) -> VadStream: ...


# ---- ASR ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    """Detected (or forced) language code, e.g. "en", "zh"."""
    audio_s: float
    """Seconds of audio transcribed."""


class Asr(Protocol):
    def transcribe(self, pcm: PCM, sample_rate: int = 16000, language: str | None = None) -> Transcript:
        """Blocking. ``language`` None = auto-detect."""
        ...


# ---- LLM ----------------------------------------------------------------------------------
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationOptions:
    max_tokens: int = 200
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int | None = None
    """Fixed seed (with temperature 0) makes replies deterministic for tests."""


class Llm(Protocol):
    context_size: int
    """Tokens the engine can attend to (prompt + reply)."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs (an estimate is fine for remote engines)."""
        ...

    def stream_chat(self, messages: Sequence[ChatMessage], options: GenerationOptions,
                    stop: threading.Event) -> Iterator[str]:
        """Blocking generator of text pieces as they are generated.

        Stops (returns) within one token once ``stop`` is set. Raises an
        :class:`~xiaozhi_local.errors.XiaozhiError` subclass (LlmError) on failure.
        """
        ...


# ---- TTS ----------------------------------------------------------------------------------
class Tts(Protocol):
    sample_rate: int
    """Native output rate (22050 for Piper medium voices); the session resamples."""

    def synthesize(self, text: str) -> Iterator[PCM]:
        """Blocking generator of audio chunks for ``text`` (one or more sentences)."""
        ...
