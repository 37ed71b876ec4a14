"""PiperTts with the real joe (en_US, medium) voice."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.engines import SENTENCE, TTS_MODEL, real_models
from xiaozhi_local.engines.base import Tts
from xiaozhi_local.engines.tts import PiperTts
from xiaozhi_local.errors import EngineError, TtsError

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def voice() -> PiperTts:
    return PiperTts(real_models().joinpath(*TTS_MODEL))


def test_speaks_a_sentence(voice: PiperTts) -> None:
    engine: Tts = voice
    assert engine.sample_rate == 22050
    chunks = list(engine.synthesize(SENTENCE))
    assert len(chunks) == 1  # one chunk per sentence
    audio = chunks[0]
    assert audio.dtype == np.int16
    assert audio.ndim == 1
    seconds = audio.size / engine.sample_rate
    assert 0.6 < seconds < 4.0  # five short words
    assert np.abs(audio.astype(np.int32)).max() > 3000  # not silence


def test_one_chunk_per_sentence(voice: PiperTts) -> None:
    chunks = list(voice.synthesize("Hello there. How are you today?"))
    assert len(chunks) == 2
    assert all(chunk.size > 0 and chunk.dtype == np.int16 for chunk in chunks)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_blank_text_yields_nothing(voice: PiperTts, text: str) -> None:
    assert list(voice.synthesize(text)) == []


def test_rejects_non_text(voice: PiperTts) -> None:
    with pytest.raises(TtsError, match="must be a str"):
        list(voice.synthesize(b"hello"))  # type: ignore[arg-type]


def test_concurrent_use_from_threads(voice: PiperTts) -> None:
    texts = ["Good morning.", "The kettle is on.", "See you later."]
    results: dict[str, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def run(text: str) -> None:
        try:
            results[text] = list(voice.synthesize(text))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for text in texts:
        assert len(results[text]) == 1
        assert 0.3 < results[text][0].size / voice.sample_rate < 4.0


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="model file not found"):
        PiperTts(tmp_path / "voice.onnx")
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"x")
    with pytest.raises(EngineError, match=r"config file not found: .*voice\.onnx\.json"):
        PiperTts(model)


def test_corrupt_config(tmp_path: Path) -> None:
    source = real_models().joinpath(*TTS_MODEL)
    model = tmp_path / source.name
    model.symlink_to(source)
    config = tmp_path / (source.name + ".json")
    shutil.copyfile(source.with_name(source.name + ".json"), config)
    with open(config, "r+b") as handle:
        handle.write(b"\0" * 64)
    with pytest.raises(EngineError, match="cannot load the Piper voice"):
        PiperTts(model, config)


def test_rejects_bad_length_scale() -> None:
    with pytest.raises(EngineError, match="length_scale"):
        PiperTts(real_models().joinpath(*TTS_MODEL), length_scale=0)
