"""WhisperAsr with the real Whisper base model (CTranslate2 int8)."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel  # type: ignore[import-untyped, unused-ignore]

from tests.engines import ASR_MODEL, real_models, speech_16k, speech_22k
from xiaozhi_local.engines.asr import WhisperAsr
from xiaozhi_local.engines.base import Asr, Transcript
from xiaozhi_local.errors import EngineError

pytestmark = pytest.mark.models

# Whisper writes numbers as digits or words ("2 plus 2" / "two plus two").
TWO = re.compile(r"\b(two|2)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def asr() -> WhisperAsr:
    return WhisperAsr(real_models() / ASR_MODEL)


def _understood(transcript: Transcript) -> bool:
    return bool(TWO.search(transcript.text)) and "plus" in transcript.text.lower()


def test_transcribes_speech_detecting_english_with_one_encoder_pass(
        asr: WhisperAsr, monkeypatch: pytest.MonkeyPatch) -> None:
    encodes = 0
    real_encode = WhisperModel.encode

    def counting_encode(self: WhisperModel, features: np.ndarray) -> object:
        nonlocal encodes
        encodes += 1
        return real_encode(self, features)

    monkeypatch.setattr(WhisperModel, "encode", counting_encode)
    engine: Asr = asr
    audio = speech_16k()
    transcript = engine.transcribe(audio)
    assert _understood(transcript), transcript
    assert transcript.language == "en"
    assert transcript.text == transcript.text.strip()
    assert transcript.audio_s == pytest.approx(audio.size / 16000)
    assert encodes == 1  # language detection reused the decoder's encoder output


def test_resamples_other_rates_and_forces_the_language(asr: WhisperAsr) -> None:
    audio = speech_22k()
    transcript = asr.transcribe(audio, sample_rate=22050, language="en")
    assert _understood(transcript), transcript
    assert transcript.language == "en"
    assert transcript.audio_s == pytest.approx(audio.size / 22050)


def test_concurrent_calls_from_threads(asr: WhisperAsr) -> None:
    results: list[Transcript] = []
    errors: list[BaseException] = []

    def run(language: str | None) -> None:
        try:
            results.append(asr.transcribe(speech_16k(), language=language))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lang,)) for lang in (None, "en")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 2
    assert all(_understood(t) and t.language == "en" for t in results), results


@pytest.mark.parametrize("samples", [0, 1, 1599])
def test_too_short_audio_is_empty_without_running_the_model(
        asr: WhisperAsr, monkeypatch: pytest.MonkeyPatch, samples: int) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model must not run on too-short audio")

    monkeypatch.setattr(asr._model, "transcribe", boom)
    transcript = asr.transcribe(np.zeros(samples, dtype=np.int16), language="zh")
    assert transcript == Transcript("", "zh", samples / 16000)


@pytest.mark.parametrize(("audio", "rate", "message"), [
    (np.zeros(16000, dtype=np.float32), 16000, "int16"),
    (np.zeros((16000, 2), dtype=np.int16), 16000, "mono"),
    ([0] * 16000, 16000, "int16"),
    (np.zeros(16000, dtype=np.int16), 0, "sample_rate"),
    (np.zeros(16000, dtype=np.int16), 16000.0, "sample_rate"),
], ids=["float32", "stereo", "list", "zero-rate", "float-rate"])
def test_rejects_bad_input(asr: WhisperAsr, audio: object, rate: object, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        asr.transcribe(audio, sample_rate=rate)  # type: ignore[arg-type]


def test_rejects_unknown_language(asr: WhisperAsr) -> None:
    with pytest.raises(EngineError, match="does not know the language 'klingon'"):
        asr.transcribe(speech_16k(), language="klingon")


def test_missing_directory_or_files(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="directory not found"):
        WhisperAsr(tmp_path / "nowhere")
    # Without tokenizer.json faster-whisper would go to the network; we refuse first.
    model_dir = tmp_path / "whisper"
    model_dir.mkdir()
    (model_dir / "model.bin").symlink_to(real_models() / ASR_MODEL / "model.bin")
    shutil.copyfile(real_models() / ASR_MODEL / "config.json", model_dir / "config.json")
    with pytest.raises(EngineError, match=r"lacks tokenizer\.json"):
        WhisperAsr(model_dir)


def test_the_encoder_sees_the_utterance_plus_a_margin_only() -> None:
    from xiaozhi_local.engines.asr import MARGIN_S, encoder_frames

    assert encoder_frames(1.8) == (2 + MARGIN_S) * 100
    assert encoder_frames(0.2) == (1 + MARGIN_S) * 100
    assert encoder_frames(29.5) == 3000 and encoder_frames(90.0) == 3000


def test_a_looping_transcript_is_collapsed() -> None:
    from xiaozhi_local.engines.asr import collapse_repeats

    assert collapse_repeats("Set a timer for 10 minutes. Set a timer for 10 minutes.") == "Set a timer for 10 minutes."
    assert collapse_repeats("Turn it down a little. Turn it down a little. Turn it") == "Turn it down a little."
    assert collapse_repeats("我要喝水。我要喝水。") == "我要喝水。"
    assert collapse_repeats(" Hello. Hello there. ") == "Hello. Hello there."  # not a repeat
    assert collapse_repeats("Go. Go. Go!") == "Go. Go!"
