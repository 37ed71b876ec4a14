"""Piper voices (VITS ONNX + espeak-ng phonemes) through piper-tts 1.8.

Thread-safety: one :class:`PiperTts` may be used by several worker threads at once without a
lock of ours. piper-tts serializes espeak-ng (a process-global C library) behind its own
module lock, and onnxruntime's ``InferenceSession.run`` is thread-safe. Voices whose
phonemizer is not espeak-ng (pinyin, Hebrew, Japanese, Thai) are refused at load: those
phonemizers need extra packages or download models at run time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np
import onnxruntime as ort
from piper import PiperVoice, SynthesisConfig
from piper.config import PhonemeType, PiperConfig

from xiaozhi_local.errors import EngineError, TtsError

from .base import PCM

__all__ = ["PiperTts"]

_LOG = logging.getLogger(__name__)
_SUPPORTED_PHONEMES: Final = (PhonemeType.ESPEAK, PhonemeType.TEXT)


class PiperTts:
    """A Piper voice. ``synthesize`` yields one int16 chunk per sentence at :attr:`sample_rate`."""

    sample_rate: int

    def __init__(self, model_path: Path, config_path: Path | None = None, speaker_id: int | None = None,
                 length_scale: float | None = None, threads: int = 0) -> None:
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path is not None else model_path.with_name(model_path.name + ".json")
        for what, path in (("model", model_path), ("config", config_path)):
            if not path.is_file():
                raise EngineError(f"Piper voice {what} file not found: {path}")
        if length_scale is not None and not length_scale > 0:
            raise EngineError(f"Piper length_scale must be > 0 (1.0 = normal speed), got {length_scale}")
        try:
            voice = _load_voice(model_path, config_path, threads)
        except Exception as exc:  # json, KeyError for a bad config; onnxruntime's own types for the model
            raise EngineError(f"cannot load the Piper voice {model_path.name}: {type(exc).__name__}: {exc}") from exc
        config = voice.config
        if config.phoneme_type not in _SUPPORTED_PHONEMES:
            raise EngineError(f"Piper voice {model_path.name} uses {config.phoneme_type.value!r} phonemes; "
                              "only espeak-ng voices are supported")
        if speaker_id is not None and not 0 <= speaker_id < max(config.num_speakers, 1):
            raise EngineError(f"Piper voice {model_path.name} has {config.num_speakers} speaker(s); "
                              f"speaker_id {speaker_id} is out of range")
        self._voice = voice
        self._syn_config = SynthesisConfig(speaker_id=speaker_id, length_scale=length_scale)
        self.sample_rate = int(config.sample_rate)
        self.model_path = model_path

    def synthesize(self, text: str) -> Iterator[PCM]:
        """Blocking generator: one int16 array per sentence of ``text``; nothing for blank text."""
        if not isinstance(text, str):
            raise TtsError(f"text to speak must be a str, got {type(text).__name__}")
        if not text.strip():
            return
        try:
            for chunk in self._voice.synthesize(text, self._syn_config):
                audio = np.asarray(chunk.audio_int16_array, dtype=np.int16).reshape(-1)
                if audio.size:
                    yield audio
        except Exception as exc:
            _LOG.debug("piper failed on %r", text, exc_info=True)
            raise TtsError(f"the Piper voice failed to speak {_clip(text)!r}: {type(exc).__name__}: {exc}") from exc


def _load_voice(model_path: Path, config_path: Path, threads: int) -> PiperVoice:
    """``PiperVoice.load`` with our own onnxruntime options: a bounded thread pool that sleeps
    instead of spinning when idle, so synthesis and the LLM (which run at the same time, one
    sentence ahead) do not steal each other's cores on a small box."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads > 0 else min(2, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=config)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
