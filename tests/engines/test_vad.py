"""SileroVad with the real Silero v6 model."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from tests.engines import VAD_MODEL, real_models, speech_16k
from xiaozhi_local.engines.base import Vad, VadStream
from xiaozhi_local.engines.vad import SileroVad
from xiaozhi_local.errors import EngineError

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad(real_models().joinpath(*VAD_MODEL))


@pytest.fixture(scope="module")
def padded_speech() -> np.ndarray:
    """Half a second of silence, the sentence, half a second of silence, at 16 kHz."""
    gap = np.zeros(8000, dtype=np.int16)
    return np.concatenate([gap, speech_16k(), gap])


def test_rate_and_window(vad: SileroVad) -> None:
    engine: Vad = vad  # the Protocols are not runtime-checkable; this is checked by type checkers
    stream: VadStream = engine.stream()
    assert engine.sample_rate == 16000
    assert stream.window_samples == 512


def test_silence_and_low_noise_score_low(vad: SileroVad) -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 100, 16000).astype(np.int16)  # about -50 dBFS
    for audio in (np.zeros(16000, dtype=np.int16), noise):
        probs = vad.stream().accept(audio)
        assert len(probs) == 16000 // 512
        assert max(probs) < 0.3  # well under the usual 0.5 speech threshold


def test_speech_scores_high(vad: SileroVad, padded_speech: np.ndarray) -> None:
    probs = np.array(vad.stream().accept(padded_speech))
    assert probs.max() > 0.9
    voiced = probs > 0.5
    # Most of the speech windows are voiced; the leading silence is not.
    assert voiced.sum() >= 0.5 * speech_16k().size / 512
    assert not voiced[: 8000 // 512 - 2].any()
    assert np.all((probs >= 0) & (probs <= 1))


def test_chunking_does_not_change_the_probabilities(vad: SileroVad, padded_speech: np.ndarray) -> None:
    whole = vad.stream().accept(padded_speech)
    stream = vad.stream()
    chunked: list[float] = []
    for start in range(0, padded_speech.size, 960):  # 60 ms uplink frames
        chunked.extend(stream.accept(padded_speech[start:start + 960]))
    assert len(whole) == padded_speech.size // 512
    assert len(chunked) == len(whole)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


def test_remainder_is_kept_until_a_window_completes(vad: SileroVad) -> None:
    stream = vad.stream()
    audio = speech_16k()[:1024]
    assert stream.accept(audio[:500]) == []
    assert stream.accept(np.zeros(0, dtype=np.int16)) == []
    assert len(stream.accept(audio[500:1000])) == 1
    assert len(stream.accept(audio[1000:])) == 1


def test_reset_forgets_state(vad: SileroVad, padded_speech: np.ndarray) -> None:
    fresh = vad.stream().accept(padded_speech)
    stream = vad.stream()
    stream.accept(padded_speech[:-100])  # leaves a remainder and a speech state
    stream.reset()
    np.testing.assert_allclose(stream.accept(padded_speech), fresh, rtol=0, atol=1e-6)


def test_streams_are_independent_across_threads(vad: SileroVad, padded_speech: np.ndarray) -> None:
    expected = vad.stream().accept(padded_speech)
    silence = np.zeros(padded_speech.size, dtype=np.int16)
    expected_silence = vad.stream().accept(silence)
    results: dict[str, list[float]] = {}

    def run(name: str, audio: np.ndarray) -> None:
        stream = vad.stream()
        out: list[float] = []
        for start in range(0, audio.size, 960):
            out.extend(stream.accept(audio[start:start + 960]))
        results[name] = out

    threads = [threading.Thread(target=run, args=("speech", padded_speech)),
               threading.Thread(target=run, args=("silence", silence))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(results["speech"], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(results["silence"], expected_silence, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bad", [
    np.zeros(512, dtype=np.float32),
    np.zeros(512, dtype=np.int32),
    np.zeros((512, 2), dtype=np.int16),
    [0] * 512,
], ids=["float32", "int32", "stereo", "list"])
def test_rejects_wrong_samples(vad: SileroVad, bad: object) -> None:
    with pytest.raises(EngineError, match="VAD takes"):
        vad.stream().accept(bad)  # type: ignore[arg-type]


def test_missing_or_corrupt_model_file(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="not found"):
        SileroVad(tmp_path / "silero_vad.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\0" * 4096)
    with pytest.raises(EngineError, match="cannot load the Silero VAD model"):
        SileroVad(broken)


def test_rejects_zero_threads() -> None:
    with pytest.raises(EngineError, match="threads"):
        SileroVad(real_models().joinpath(*VAD_MODEL), threads=0)
