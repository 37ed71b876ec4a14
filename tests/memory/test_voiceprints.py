"""Enrollment and identification over the store, with the real GE2E encoder and espeak-ng voices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.memory.conftest import load_test_encoder
from tests.memory.voices import ENROLL_TEXTS, TEST_TEXTS, VOICES, speak
from xiaozhi_local.errors import EnrollmentError, VoiceprintError
from xiaozhi_local.memory.voiceprints import MIN_IDENTIFY_SPEECH_S, PREPROCESSING, VoiceprintService, clean_name
from xiaozhi_local.speaker.checks import Problem
from xiaozhi_local.speaker.encoder import SpeakerEncoder
from xiaozhi_local.store.memory import MemoryStore

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return load_test_encoder()


@pytest.fixture(scope="module")
def clips() -> dict[str, list[tuple[str, np.ndarray]]]:
    return {who: [(f"{who}{i}.wav", speak(voice, text)) for i, text in enumerate(ENROLL_TEXTS)]
            for who, voice in VOICES.items()}


@pytest.fixture
def service(tmp_path: Path, encoder: SpeakerEncoder) -> VoiceprintService:
    return VoiceprintService(MemoryStore.open(tmp_path / "xiaozhi.db"), encoder, model_id="ge2e-resemblyzer")


def test_enrolled_voices_are_named_and_a_stranger_is_unknown(service: VoiceprintService,
                                                             clips: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    service.enroll("sam", clips["sam"])
    service.enroll("Ana", clips["ana"][:3])
    assert sorted(service.gallery()) == ["Ana", "Sam"]  # names are stored capitalised
    for who, name in (("sam", "Sam"), ("ana", "Ana"), ("stranger", None)):
        for text in TEST_TEXTS:
            result = service.identify(speak(VOICES[who], text))
            assert result.decided and result.name == name, (who, text, result.match)
    short = service.identify(speak(VOICES["sam"], "Yes."))
    assert not short.decided and short.speech_s < MIN_IDENTIFY_SPEECH_S


def test_enrollment_errors_say_what_is_wrong(service: VoiceprintService,
                                             clips: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    sam = clips["sam"]
    with pytest.raises(EnrollmentError, match="2 clips given; enrolling needs at least 3") as err:
        service.enroll("Sam", sam[:2])
    assert err.value.problem == Problem.TOO_SHORT
    short = ("hi.wav", speak(VOICES["sam"], "Hello there."))
    with pytest.raises(EnrollmentError, match=r"^hi.wav: only .* s of speech") as err:
        service.enroll("Sam", [*sam[:2], short])
    assert err.value.problem == Problem.TOO_SHORT
    quiet = ("quiet.wav", (sam[2][1] // 300).astype(np.int16))
    with pytest.raises(EnrollmentError, match="too quiet") as err:
        service.enroll("Sam", [*sam[:2], quiet])
    assert err.value.problem == Problem.TOO_QUIET
    loud = ("loud.wav", np.clip(sam[2][1].astype(np.int32) * 40, -32768, 32767).astype(np.int16))
    with pytest.raises(EnrollmentError, match="clipped") as err:
        service.enroll("Sam", [*sam[:2], loud])
    assert err.value.problem == Problem.CLIPPED
    for bad in ("", "  ", "42", "x" * 41):
        with pytest.raises(VoiceprintError):
            service.enroll(bad, sam)
    assert service.store.voiceprints() == []  # nothing half-enrolled


def test_adding_clips_needs_the_same_voice(service: VoiceprintService,
                                           clips: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    service.enroll("Sam", clips["sam"][:3])
    with pytest.raises(EnrollmentError, match="does not sound like Sam's enrolled voice") as err:
        service.enroll("Sam", clips["stranger"][:1], keep_previous=True)
    assert err.value.problem == Problem.INCONSISTENT
    added = service.enroll("Sam", clips["sam"][3:], keep_previous=True)
    assert added.embeddings.shape == (5, 256)
    replaced = service.enroll("Sam", clips["sam"][:3])
    assert replaced.embeddings.shape == (3, 256)


def test_voiceprints_of_another_model_are_not_compared(service: VoiceprintService,
                                                       clips: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    service.enroll("Sam", clips["sam"][:3])
    embeddings = service.store.voiceprint("Sam").embeddings  # type: ignore[union-attr]
    service.store.save_voiceprint("Old", embeddings, model_id="another-encoder", preprocessing=PREPROCESSING,
                                  source="cli")
    service.store.save_voiceprint("Older", embeddings, model_id="ge2e-resemblyzer", preprocessing="v0",
                                  source="cli")
    assert list(service.gallery()) == ["Sam"]
    assert service.identify(speak(VOICES["sam"], TEST_TEXTS[0])).match.ranking[0][0] == "Sam"  # type: ignore[union-attr]


def test_a_voice_enrolled_by_another_process_is_used_at_once(service: VoiceprintService, tmp_path: Path,
                                                             clips: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    assert service.identify(speak(VOICES["sam"], TEST_TEXTS[0])).match is None  # nobody enrolled
    cli = VoiceprintService(MemoryStore.open(tmp_path / "xiaozhi.db"), service.encoder, model_id="ge2e-resemblyzer")
    cli.enroll("Sam", clips["sam"][:3])
    assert service.identify(speak(VOICES["sam"], TEST_TEXTS[0])).name == "Sam"
    cli.store.remove_voiceprint("Sam")
    assert service.identify(speak(VOICES["sam"], TEST_TEXTS[0])).match is None


def test_clips_are_built_from_consecutive_utterances(service: VoiceprintService,
                                                     clips: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    short = [speak(VOICES["sam"], t) for t in ("Good morning.", "How are you today?", "I am fine, thank you.",
                                                 "It is a lovely day.")]
    built, seconds = service.clips_from_utterances([*short, clips["sam"][0][1]])
    assert seconds > 6 and len(built) >= 2
    assert built[0][0].startswith("utterances 1-") and all(len(pcm) >= 3.6 * 16000 for _, pcm in built)
    assert service.clips_from_utterances(short[:1])[0] == []  # under 3.6 s of speech: no clip


def test_names_are_cleaned() -> None:
    assert clean_name("  sam  ") == "Sam" and clean_name("Mary Ann.") == "Mary Ann" and clean_name("小明") == "小明"
