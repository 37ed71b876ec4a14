"""Memory and voiceprints in the real assistant, with the real test models (Whisper base, SmolLM2-135M at
temperature 0, GE2E) and espeak-ng voices, driven turn by turn without sockets.

A "restart" is a new MemoryStore + MemoryHooks + Assistant over the same database file. What the tiny
LLM distills is not fixed here: the tests check that whatever facts it produced from a statement are
grounded in it, stored, owned by the right person and put into the next session's prompt.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.memory.conftest import PIPELINE, RecordingLlm, Session, load_test_encoder, load_test_engines, make_assistant
from tests.memory.voices import ENROLL_TEXTS, TEST_TEXTS, VOICES, speak
from xiaozhi_local.config import MemorySettings
from xiaozhi_local.memory.facts import key_words
from xiaozhi_local.pipeline.assistant import Engines
from xiaozhi_local.speaker.encoder import SpeakerEncoder
from xiaozhi_local.store.memory import MemoryStore, Owner

pytestmark = pytest.mark.models

DEVICE = "aa:bb:cc:00:00:01"


@pytest.fixture(scope="module")
def engines() -> Engines:
    return load_test_engines()


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return load_test_encoder()


def said(voice: str, text: str) -> np.ndarray:
    """An utterance as the device sends it: a little room noise around the words."""
    room = np.zeros(4000, np.int16)
    return np.concatenate([room, speak(VOICES[voice], text), room, room])


def reply_prompts(llm: RecordingLlm) -> list[str]:
    """The system messages of the assistant's reply prompts (not the distillation prompts)."""
    return [p[0].content for p in llm.prompts if p[0].content.startswith(PIPELINE.system_prompt)]


def facts_of(db: Path, owner: Owner) -> list[str]:
    store = MemoryStore.open(db)
    try:
        return [f.fact for f in store.facts(owner)]
    finally:
        store.close()


async def test_a_fact_told_in_one_session_is_in_the_next_sessions_prompt_after_a_restart_and_forget_removes_it(
        engines: Engines, tmp_path: Path) -> None:
    db = tmp_path / "xiaozhi.db"
    first, hooks = make_assistant(engines, db)
    session = Session(first)
    assert await session.type("My dog is called Max.")
    await session.end()
    assert hooks.distillations == 1
    facts = facts_of(db, Owner("device", DEVICE))  # an unknown voice: the device's facts
    assert facts, "SmolLM2-135M distilled no usable fact from 'My dog is called Max.'"
    assert all({"dog", "max"} & key_words(f) for f in facts)  # grounded in what was said
    hooks.store.close()

    llm = RecordingLlm(engines.llm)
    second, hooks = make_assistant(engines, db, llm=llm)  # the restart
    session = Session(second, session_id="s-2")
    assert await session.type("What is my dog called?")
    (system,) = reply_prompts(llm)
    assert all(f in system for f in facts)

    answer = await session.type("Forget what you know about me.")
    assert "forgotten" in answer
    assert facts_of(db, Owner("device", DEVICE)) == []
    assert await session.type("What is my dog called?")
    assert not any(f in reply_prompts(llm)[-1] for f in facts)
    await session.end()  # the forgotten turn is not distilled again
    assert facts_of(db, Owner("device", DEVICE)) == []
    conversations = hooks.store.export()["conversations"]
    # the turns the facts came from are gone too; what came after the request is kept
    assert [m["text"] for c in conversations for m in c["messages"] if m["role"] == "user"] == [
        "Forget what you know about me.", "What is my dog called?"]
    hooks.store.close()


async def test_turns_are_stored_with_speaker_outcome_and_latency(engines: Engines, encoder: SpeakerEncoder,
                                                                 tmp_path: Path) -> None:
    db = tmp_path / "xiaozhi.db"
    assistant, hooks = make_assistant(engines, db, encoder=encoder)
    assert hooks.voiceprints is not None
    hooks.voiceprints.enroll("Sam", [(f"c{i}", speak(VOICES["sam"], t)) for i, t in enumerate(ENROLL_TEXTS)])
    session = Session(assistant)
    await session.speak(said("sam", TEST_TEXTS[0]))
    await session.speak(said("stranger", TEST_TEXTS[1]))
    await session.type("Thank you for your help today.")
    await session.end()
    (conversation,) = hooks.store.conversations()
    assert conversation.device_id == DEVICE and conversation.ended_at is not None and conversation.turns == 3
    messages = hooks.store.messages(conversation.id)
    users = [m for m in messages if m.role == "user"]
    replies = [m for m in messages if m.role == "assistant"]
    assert [(m.turn, m.speaker, m.source) for m in users] == [(1, "Sam", "voice"), (2, None, "voice"),
                                                              (3, None, "text")]
    assert all(m.text for m in users)
    assert [m.turn for m in replies] == [1, 2, 3] and all(m.outcome == "ok" and m.latency_ms for m in replies)
    assert all(r.text == t.reply for r, t in zip(replies, assistant.turn_log.recent(), strict=True))
    assert not (tmp_path / "utterances").exists()  # no audio is kept by default
    hooks.store.close()


async def test_enrolling_by_voice_needs_enough_speech_then_the_speaker_is_named(
        engines: Engines, encoder: SpeakerEncoder, tmp_path: Path) -> None:
    db = tmp_path / "xiaozhi.db"
    llm = RecordingLlm(engines.llm)
    assistant, hooks = make_assistant(engines, db, encoder=encoder, llm=llm)
    session = Session(assistant)
    await session.speak(said("sam", ENROLL_TEXTS[0]))
    answer = await session.type("Remember my voice, I am Sam.")
    assert "say a few more sentences" in answer.lower()
    assert hooks.store.voiceprint("Sam") is None
    for text in ENROLL_TEXTS[1:4]:
        await session.speak(said("sam", text))
    answer = await session.type("Remember my voice, I am Sam.")
    assert "Sam" in answer and hooks.store.voiceprint("Sam") is not None
    assert hooks.store.voiceprint("Sam").source == "voice"  # type: ignore[union-attr]

    await session.speak(said("sam", TEST_TEXTS[0]))
    assert assistant.turn_log.recent()[-1].extra.get("speaker") == "Sam"
    assert "The person speaking is Sam" in reply_prompts(llm)[-1]
    await session.speak(said("stranger", TEST_TEXTS[1]))
    assert assistant.turn_log.recent()[-1].extra.get("speaker") is None
    assert "The person speaking" not in reply_prompts(llm)[-1]
    answer = await session.type("Remember my voice, I am Sam.")  # a voice that is not Sam's cannot take the name
    assert "already know someone called Sam" in answer
    await session.end()
    hooks.store.close()


async def test_two_speakers_each_get_their_own_facts_after_a_restart(engines: Engines, encoder: SpeakerEncoder,
                                                                     tmp_path: Path) -> None:
    db = tmp_path / "xiaozhi.db"
    assistant, hooks = make_assistant(engines, db, encoder=encoder)
    assert hooks.voiceprints is not None
    for name, voice in (("Sam", "sam"), ("Ana", "ana")):
        hooks.voiceprints.enroll(name, [(f"c{i}", speak(VOICES[voice], t)) for i, t in enumerate(ENROLL_TEXTS)])
    session = Session(assistant)
    await session.speak(said("sam", "By the way, my dog is called Max."))
    await session.speak(said("ana", "By the way, I work as a nurse at the hospital."))
    await session.end()
    sam, ana = facts_of(db, Owner("speaker", "Sam")), facts_of(db, Owner("speaker", "Ana"))
    assert sam and ana, f"the tiny LLM distilled nothing usable: Sam {sam}, Ana {ana}"
    assert all({"dog", "max"} & key_words(f) for f in sam) and all("nurse" in key_words(f) for f in ana)
    hooks.store.close()

    llm = RecordingLlm(engines.llm)
    assistant, hooks = make_assistant(engines, db, encoder=encoder, llm=llm)
    session = Session(assistant, session_id="s-2")
    await session.speak(said("ana", TEST_TEXTS[0]))
    await session.speak(said("sam", TEST_TEXTS[1]))
    await session.end()
    for_ana, for_sam = reply_prompts(llm)
    assert "The person speaking is Ana" in for_ana and "The person speaking is Sam" in for_sam
    assert "nurse" in for_ana and "Max" not in for_ana
    assert "Max" in for_sam and "nurse" not in for_sam
    hooks.store.close()


async def test_facts_are_distilled_mid_session_once_it_is_idle(engines: Engines, tmp_path: Path) -> None:
    db = tmp_path / "xiaozhi.db"
    assistant, hooks = make_assistant(engines, db, memory=MemorySettings(distill_every_turns=1, distill_idle_s=0.5))
    session = Session(assistant)
    await session.type("My dog is called Max.")
    for _ in range(600):
        if hooks.distillations:
            break
        await asyncio.sleep(0.1)
    (conversation,) = hooks.store.conversations()
    assert hooks.distillations == 1 and conversation.ended_at is None  # the session is still open
    assert conversation.distilled_through == max(m.id for m in hooks.store.messages(conversation.id))
    assert facts_of(db, Owner("device", DEVICE))
    await session.end()
    assert hooks.distillations == 1  # nothing new to distill at the end
    hooks.store.close()
