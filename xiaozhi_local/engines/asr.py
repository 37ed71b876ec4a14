"""Whisper speech recognition with faster-whisper (CTranslate2, int8 on the CPU).

The encoder sees the utterance plus :data:`MARGIN_S` of padding instead of Whisper's fixed
30 s window (see :class:`_ReusingWhisperModel`), which makes a short command about four times
cheaper. Decoding is greedy (``beam_size=1``): on short voice commands it gave the same text as
beam 5, which costs up to a quarter more time. With no language given, the first 30 s
window is encoded once and used both to detect the language and to decode (faster-whisper
alone would run the encoder twice). faster-whisper's own VAD is off (the pipeline endpoints
the utterance itself) and each call is independent (``condition_on_previous_text=False``).

Thread-safety: calls are serialized by a lock. faster-whisper keeps no per-call state on
the model and CTranslate2 would queue concurrent calls anyway (one worker); the lock keeps
feature extraction and decoding of one utterance together so two sessions never split the
few CPU cores between them and both finish late.
"""

from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path
from typing import Any, Final

import numpy as np
from faster_whisper import WhisperModel  # type: ignore[import-untyped, unused-ignore]

from xiaozhi_local.audio.resample import resample
from xiaozhi_local.errors import EngineError, XiaozhiError

from .base import PCM, Transcript

__all__ = ["MIN_AUDIO_S", "SAMPLE_RATE", "WhisperAsr"]

SAMPLE_RATE: Final = 16000
MIN_AUDIO_S: Final = 0.1
"""Shorter input is returned as an empty transcript without running the model."""
_REQUIRED_FILES: Final = ("model.bin", "config.json", "tokenizer.json")
MARGIN_S: Final = 5
"""Padding the encoder sees after the utterance. faster-whisper pads every input to 30 s of
features; encoding only ``ceil(audio) + 5 s`` of them cost 0.38 s instead of 1.64 s per
command here (whisper base, 2 threads, with language detection) and gave the same text on
9 test commands. With only 2-3 s of margin, Whisper sometimes repeats a short command until
its token budget runs out (it no longer sees where the speech ends); 5 s never did, and
:func:`collapse_repeats` plus a token budget proportional to the audio guard against it."""
MAX_NEW_TOKENS: Final = 200
"""Tokens a transcript may have (about 10 per second of speech is plenty)."""
_TEMPERATURES: Final = (0.0, 0.4, 0.8)
"""Greedy first; re-decode with sampling only if the output looks like a loop or is very unlikely."""


class _ReusingWhisperModel(WhisperModel):  # type: ignore[misc, unused-ignore]
    """A WhisperModel that runs the encoder once, not twice, when it detects the language.

    faster-whisper 1.2 encodes the first 30 s window for language detection and then again
    for decoding. While :attr:`reuse` is set, the encoder output of a window is kept and
    handed back when the next call asks for the same window (the two differ at most in the
    one padding frame faster-whisper drops for decoding); any other window is encoded
    normally, so a different call order only costs time, never correctness. Guarded by the
    caller's lock.
    """

    reuse = False
    frames: int | None = None
    """Encode only this many feature frames (10 ms each) of the padded 30 s window."""
    _kept: tuple[np.ndarray, Any] | None = None

    def encode(self, features: np.ndarray) -> Any:
        if self.frames is not None and features.shape[-1] > self.frames:
            features = features[..., : self.frames]
        if not self.reuse:
            return super().encode(features)
        kept = self._kept
        if kept is not None and _same_window(kept[0], features):
            self._kept = None
            return kept[1]
        output = super().encode(features)
        self._kept = (features, output)
        return output

    def forget(self) -> None:
        self.reuse = False
        self.frames = None
        self._kept = None


def _same_window(a: np.ndarray, b: np.ndarray) -> bool:
    """Same mel window, allowing one differing frame (the padding frame)."""
    if a.shape != b.shape or a.ndim < 2:
        return False
    differing_frames = np.any(a != b, axis=tuple(range(a.ndim - 1)))
    return int(np.count_nonzero(differing_frames)) <= 1


def _default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def encoder_frames(audio_s: float) -> int:
    """Feature frames to encode for ``audio_s`` seconds: the audio plus the margin, at most 30 s."""
    return int(min(3000, (math.ceil(audio_s) + MARGIN_S) * 100))


def collapse_repeats(text: str) -> str:
    """``"Set a timer. Set a timer. Set a"`` → ``"Set a timer."``: drop a sentence repeated back to
    back (and a cut-off copy at the end), the way Whisper loops when it loses track of the end."""
    parts = [p for p in re.split(r"(?<=[.!?。！？])\s*", text.strip()) if p]
    out: list[str] = []
    for part in parts:
        if out and (part == out[-1] or (part is parts[-1] and len(part) > 3 and out[-1].startswith(part))):
            continue
        out.append(part)
    return " ".join(out)


class WhisperAsr:
    """A CTranslate2 Whisper model directory (model.bin, config.json, tokenizer.json, vocabulary.*)."""

    def __init__(self, model_dir: Path, threads: int = 0, language: str | None = None) -> None:
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise EngineError(f"Whisper model directory not found: {model_dir}")
        missing = [name for name in _REQUIRED_FILES if not (model_dir / name).is_file()]
        if missing:
            # Without tokenizer.json faster-whisper would try to download one; never let it.
            raise EngineError(f"Whisper model directory {model_dir} lacks {', '.join(missing)}")
        if threads < 0:
            raise EngineError(f"ASR threads must be >= 0 (0 = automatic), got {threads}")
        self.threads = threads or _default_threads()
        try:
            self._model = _ReusingWhisperModel(str(model_dir), device="cpu", compute_type="int8",
                                               cpu_threads=self.threads, local_files_only=True)
        except Exception as exc:  # ctranslate2 raises RuntimeError/ValueError; tokenizers its own
            raise EngineError(f"cannot load the Whisper model in {model_dir}: {type(exc).__name__}: {exc}") from exc
        self.multilingual = bool(self._model.model.is_multilingual)
        self.supported_languages: tuple[str, ...] = tuple(self._model.supported_languages)
        self.language = self._check_language(language)
        self.model_dir = model_dir
        self.beam_size = 1
        """Greedy: beam 5 gave the same transcripts on short commands, at up to 25% more time."""
        self._lock = threading.Lock()

    def _check_language(self, language: str | None) -> str | None:
        if language is None or language == "":
            return None
        code = language.strip().lower()
        if code not in self.supported_languages:
            hint = "this model is English-only" if not self.multilingual else "use an ISO 639-1 code such as en or zh"
            raise EngineError(f"Whisper does not know the language {language!r} ({hint})")
        return code

    def transcribe(self, pcm: PCM, sample_rate: int = SAMPLE_RATE, language: str | None = None) -> Transcript:
        """Blocking. ``language`` None = the constructor's language, or auto-detect if that is None."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            kind = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
            raise EngineError(f"the ASR takes mono int16 samples, got {kind}")
        if pcm.ndim != 1:
            raise EngineError(f"the ASR takes mono samples shaped (n,), got shape {pcm.shape}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise EngineError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        forced = self._check_language(language) or self.language
        if not self.multilingual:
            forced = "en"
        audio_s = pcm.size / int(sample_rate)
        if audio_s < MIN_AUDIO_S:
            return Transcript("", forced or "", audio_s)
        if sample_rate != SAMPLE_RATE:
            try:
                pcm = resample(pcm, int(sample_rate), SAMPLE_RATE)
            except XiaozhiError as exc:
                raise EngineError(f"cannot resample the ASR input: {exc}") from exc
        audio = pcm.astype(np.float32) / 32768.0
        try:
            with self._lock:
                self._model.reuse = forced is None
                self._model.frames = encoder_frames(audio_s)
                try:
                    segments, info = self._model.transcribe(
                        audio, language=forced, beam_size=self.beam_size, temperature=list(_TEMPERATURES),
                        condition_on_previous_text=False, vad_filter=False, without_timestamps=True,
                        max_new_tokens=min(MAX_NEW_TOKENS, int(audio_s * 10) + 10))
                    text = "".join(segment.text for segment in segments)
                finally:
                    self._model.forget()
        except Exception as exc:
            raise EngineError(f"Whisper failed on {audio_s:.2f} s of audio: {type(exc).__name__}: {exc}") from exc
        return Transcript(collapse_repeats(text), info.language or forced or "", audio_s)
