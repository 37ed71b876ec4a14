"""Enrollment checks: each refusal names the problem and what to do; good clips pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.speaker.conftest import clip
from xiaozhi_local.errors import XiaozhiError
from xiaozhi_local.speaker.checks import (
    EnrollmentError,
    EnrollmentLimits,
    Problem,
    check_clip,
    check_enrollment,
    trim_silence,
)
from xiaozhi_local.speaker.encoder import Embedding, SpeakerEncoder

SR = 16000


def _tone(seconds: float, amplitude: float = 8000.0, hz: float = 220.0) -> np.ndarray:
    """A stand-in for speech; amplitudes beyond int16 are clipped like an overdriven recording."""
    t = np.arange(int(SR * seconds)) / SR
    return np.clip(amplitude * np.sin(2 * np.pi * hz * t), -32768, 32767).astype(np.int16)


@dataclass
class FakeEncoder:
    """Returns fixed partial embeddings, so the consistency logic is tested without the model."""

    partials: list[np.ndarray]

    def embed_with_partials(self, pcm: np.ndarray) -> Embedding:
        parts = np.stack(self.partials).astype(np.float32)
        mean = parts.mean(axis=0)
        return Embedding(vector=(mean / np.linalg.norm(mean)).astype(np.float32), partials=parts)


ONE_VOICE = FakeEncoder([np.array([1.0, 0.0]), np.array([0.96, 0.28])])


def test_trim_silence_keeps_the_speech_and_a_little_around_it() -> None:
    pcm = np.concatenate([np.zeros(SR, np.int16), _tone(2.0), np.zeros(SR, np.int16), _tone(1.0)])
    trimmed = trim_silence(pcm)
    # + per edge of each run: a partly filled 30 ms frame and the 2-frame hangover
    assert 3.0 * SR <= len(trimmed) <= 3.0 * SR + 2 * 2 * 3 * 480
    assert len(trim_silence(np.zeros(SR, np.int16))) == 0


def test_trim_silence_with_background_noise() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(4 * SR) * 30).astype(np.int16)  # about −61 dBFS
    pcm = noise.copy()
    pcm[SR : 3 * SR] += _tone(2.0)
    assert 2 * SR <= len(trim_silence(pcm)) <= 2 * SR + 2 * 3 * 480


def test_too_short() -> None:
    with pytest.raises(EnrollmentError) as err:
        check_clip(np.concatenate([np.zeros(SR, np.int16), _tone(2.2)]), ONE_VOICE, label="a.wav")
    assert err.value.problem is Problem.TOO_SHORT and isinstance(err.value, XiaozhiError)
    message = str(err.value)
    assert message.startswith("a.wav:") and "2.2 s of speech" in message and "at least 3 s" in message


def test_too_quiet() -> None:
    with pytest.raises(EnrollmentError, match=r"too quiet.*microphone") as err:
        check_clip(_tone(4.0, amplitude=200), ONE_VOICE)  # about −47 dBFS
    assert err.value.problem is Problem.TOO_QUIET
    with pytest.raises(EnrollmentError, match="silence"):
        check_clip(np.zeros(5 * SR, np.int16), ONE_VOICE)


def test_clipped() -> None:
    loud = _tone(4.0, amplitude=60000)
    with pytest.raises(EnrollmentError, match=r"clipped.*gain") as err:
        check_clip(loud, ONE_VOICE)
    assert err.value.problem is Problem.CLIPPED


def test_loud_but_clean_audio_is_not_called_clipped() -> None:
    peaky = _tone(4.0, amplitude=32000)  # peaks at −0.2 dBFS, no flat tops
    assert check_clip(peaky, ONE_VOICE).clipped_fraction == 0.0


def test_partials_that_disagree_look_like_two_speakers() -> None:
    two = FakeEncoder([np.array([1.0, 0.0]), np.array([0.3, 0.954])])
    with pytest.raises(EnrollmentError, match="different voices") as err:
        check_clip(_tone(4.0), two, label="duo.wav")
    assert err.value.problem is Problem.MULTI_SPEAKER and "one person" in str(err.value)


def test_a_clip_from_someone_else_is_inconsistent() -> None:
    @dataclass
    class PerClip:
        vectors: list[np.ndarray]

        def embed_with_partials(self, pcm: np.ndarray) -> Embedding:
            v = self.vectors.pop(0).astype(np.float32)
            return Embedding(vector=v / np.linalg.norm(v), partials=v[None, :])

    same = [np.array([1.0, 0.1]), np.array([1.0, 0.15]), np.array([1.0, 0.05])]
    with pytest.raises(EnrollmentError, match="same person") as err:
        check_enrollment([(f"c{i}", _tone(4.0)) for i in range(4)], PerClip([*same, np.array([0.1, 1.0])]))
    assert err.value.label == "c3" and err.value.problem is Problem.INCONSISTENT
    with pytest.raises(EnrollmentError, match="two clips"):
        check_enrollment([("a", _tone(4.0)), ("b", _tone(4.0))], PerClip([same[0], np.array([0.1, 1.0])]))
    checked = check_enrollment([(f"c{i}", _tone(4.0)) for i in range(3)], PerClip(list(same)))
    assert [c.label for c in checked] == ["c0", "c1", "c2"]


def test_limits_are_configurable() -> None:
    lenient = EnrollmentLimits(min_speech_s=1.0)
    assert check_clip(_tone(1.5), ONE_VOICE, limits=lenient).speech_s == pytest.approx(1.5, abs=0.03)


@pytest.mark.models
def test_a_real_clip_passes_and_returns_its_embedding(encoder: SpeakerEncoder) -> None:
    checked = check_clip(clip("ge2e_en-gb-scotland_f2"), encoder, label="scot.wav")
    assert checked.speech_s >= 3.0 and checked.level_dbfs > -30
    assert checked.partial_agreement >= EnrollmentLimits().min_partial_agreement
    np.testing.assert_allclose(checked.embedding, encoder.embed(checked.speech), atol=1e-6)


@pytest.mark.models
def test_the_short_fixture_is_refused_as_too_short(encoder: SpeakerEncoder) -> None:
    with pytest.raises(EnrollmentError) as err:
        check_clip(clip("ge2e_de_m1_short"), encoder)
    assert err.value.problem is Problem.TOO_SHORT


@pytest.mark.models
def test_two_real_voices_in_one_clip_are_refused(encoder: SpeakerEncoder) -> None:
    # A natural (Piper) voice then a synthetic (espeak-ng) one: as different as two real people.
    mixed = np.concatenate([trim_silence(clip("ge2e_piper_joe"))[: 2 * SR],
                            trim_silence(clip("ge2e_en-gb-scotland_f2"))[: 2 * SR]])
    with pytest.raises(EnrollmentError) as err:
        check_clip(mixed, encoder)
    assert err.value.problem is Problem.MULTI_SPEAKER


@pytest.mark.models
def test_identification_of_enrolled_and_unknown_voices(encoder: SpeakerEncoder) -> None:
    from xiaozhi_local.speaker.identify import identify

    scot = clip("ge2e_en-gb-scotland_f2")
    joe = clip("ge2e_piper_joe")
    enrolled = {"scot": np.stack([encoder.embed(scot[: 3 * SR]), encoder.embed(scot[-3 * SR :])])}
    same = identify(encoder.embed(scot[SR : 4 * SR]), enrolled, threshold=0.8)
    other = identify(encoder.embed(joe), enrolled, threshold=0.8)
    assert same.name == "scot" and other.name is None
    assert same.score > other.score + 0.2
