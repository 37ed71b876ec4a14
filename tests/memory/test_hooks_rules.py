"""MemoryHooks' rules that do not depend on what a model says, with a scripted stand-in for the LLM:
distillation yields the LLM to users, memory stays bounded, utterance audio is kept only when asked
and only for its retention period."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from xiaozhi_local.config import MemorySettings
from xiaozhi_local.engines.base import ChatMessage, GenerationOptions
from xiaozhi_local.memory.audio import AudioKeeper
from xiaozhi_local.memory.hooks import MemoryHooks
from xiaozhi_local.pipeline.conversation import SessionInfo
from xiaozhi_local.pipeline.timing import TurnTimings
from xiaozhi_local.store.memory import MemoryStore, Owner


class ScriptedLlm:
    """Rewrites "I have X." as "- The user has X."; while ``hold`` is set it blocks until stopped."""

    context_size = 2048

    def __init__(self) -> None:
        self.hold = False
        self.holding = threading.Event()
        self.stopped = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(self, messages: Sequence[ChatMessage], options: GenerationOptions,
                    stop: threading.Event) -> Iterator[str]:
        if self.hold:
            self.holding.set()
            stop.wait(30)
            self.stopped += stop.is_set()
            return
        for line in messages[-1].content.splitlines():
            yield re.sub(r"^I have (.*)$", r"- The user has \1\n", line)


def info(session: str, device: str = "aa:bb:cc:00:00:01") -> SessionInfo:
    return SessionInfo(session_id=session, device_id=device, client_id=None, address="127.0.0.1", protocol_version=1)


def turn(session: SessionInfo, number: int, text: str, source: str = "text") -> TurnTimings:
    return TurnTimings(session.session_id, session.device_id, number, source=source, transcript=text, reply="Okay.")


async def test_a_turn_stops_a_running_distillation_which_is_retried_when_quiet(tmp_path: Path) -> None:
    llm = ScriptedLlm()
    hooks = MemoryHooks(MemoryStore.open(tmp_path / "x.db"), llm, MemorySettings())  # type: ignore[arg-type]
    first, second = info("s-1"), info("s-2", "aa:bb:cc:00:00:02")
    await hooks.turn_done(first, turn(first, 1, "I have a dog called Max."), None)
    llm.hold = True
    ending = asyncio.create_task(hooks.session_end(first, ()))
    assert await asyncio.to_thread(llm.holding.wait, 30)  # the distillation has the LLM …
    assert await hooks.handle(second, "What time is it?", None, []) is None  # … until a user needs it
    await asyncio.sleep(0.5)
    assert llm.stopped == 1 and not ending.done()
    (conversation,) = [c for c in hooks.store.conversations() if c.session_id == "s-1"]
    assert conversation.distilled_through is None  # nothing half-done was recorded
    llm.hold = False
    await hooks.turn_done(second, turn(second, 1, "What time is it?"), None)  # the turn is over: quiet again
    await asyncio.wait_for(ending, 30)
    assert [f.fact for f in hooks.store.facts(Owner("device", first.device_id))] == [
        "The user has a dog called Max."]
    assert hooks.store.conversation(conversation.id).distilled_through is not None  # type: ignore[union-attr]


async def test_memory_stays_bounded_and_the_context_shows_the_newest_facts(tmp_path: Path) -> None:
    settings = MemorySettings(max_facts_per_owner=3, context_facts=2)
    hooks = MemoryHooks(MemoryStore.open(tmp_path / "x.db"), ScriptedLlm(), settings)  # type: ignore[arg-type]
    for n in range(1, 7):
        session = info(f"s-{n}")
        await hooks.turn_done(session, turn(session, 1, f"I have pet number {n}."), "Sam")
        await hooks.turn_done(session, turn(session, 2, f"I have pet number {n}."), "Sam")  # said twice
        await hooks.session_end(session, ())
    facts = [f.fact for f in hooks.store.facts(Owner("speaker", "Sam"))]
    assert facts == ["The user has pet number 6.", "The user has pet number 5.", "The user has pet number 4."]
    context = hooks.system_context(info("s-7"), "Sam")
    assert "Sam has pet number 6." in context and "Sam has pet number 5." in context
    assert "number 4" not in context and context.startswith("The person speaking is Sam")
    assert hooks.system_context(info("s-7"), None) == ""  # the device itself has no facts


async def test_utterance_audio_is_kept_only_when_asked_and_only_for_its_retention(tmp_path: Path) -> None:
    pcm = (np.sin(np.arange(16000) / 5) * 3000).astype(np.int16)
    session = info("s-1")
    hooks = MemoryHooks(MemoryStore.open(tmp_path / "a.db"), ScriptedLlm(), MemorySettings())  # type: ignore[arg-type]
    await hooks.identify(session, pcm)
    await hooks.turn_done(session, turn(session, 1, "hello", source="voice"), None)
    assert [m.audio_file for m in hooks.store.messages(1)] == [None, None]

    now = [time.time()]
    keeper = AudioKeeper(tmp_path / "utterances", retention_days=2, clock=lambda: now[0])
    hooks = MemoryHooks(MemoryStore.open(tmp_path / "b.db"), ScriptedLlm(), MemorySettings(keep_audio=True),  # type: ignore[arg-type]
                        audio=keeper)
    await hooks.identify(session, pcm)
    await hooks.turn_done(session, turn(session, 1, "hello", source="voice"), None)
    await hooks.turn_done(session, turn(session, 2, "typed", source="text"), None)
    user = [m for m in hooks.store.messages(1) if m.role == "user"]
    assert user[0].audio_file is not None and user[1].audio_file is None
    kept = Path(user[0].audio_file)
    assert kept.is_file() and kept.is_relative_to(tmp_path / "utterances")
    now[0] += 86400
    assert keeper.sweep(hooks.store) == 0 and kept.is_file()
    now[0] = kept.stat().st_mtime + 3 * 86400  # past the retention period
    assert keeper.sweep(hooks.store) == 1 and not kept.exists()
    assert [m.audio_file for m in hooks.store.messages(1)] == [None] * 4


async def test_a_request_changes_nothing_until_its_turn_is_over_and_a_dropped_one_never(tmp_path: Path) -> None:
    hooks = MemoryHooks(MemoryStore.open(tmp_path / "x.db"), ScriptedLlm(), MemorySettings())  # type: ignore[arg-type]
    session = info("s-1")
    await hooks.turn_done(session, turn(session, 1, "I have a dog called Max."), None)
    await hooks.session_end(session, ())
    device = Owner("device", session.device_id)
    assert len(hooks.store.facts(device)) == 1

    session = info("s-2")
    request = "Forget what you know about me."
    answer = await hooks.handle(session, request, None, [])
    assert answer is not None and "forgotten" in answer
    assert len(hooks.store.facts(device)) == 1  # spoken, not done yet: the turn may be a speculative one …
    said = turn(session, 2, "Forget what you know about me and tell me a story.")  # … that the user talked over
    assert await hooks.handle(session, said.transcript, None, []) is None
    await hooks.turn_done(session, said, None)
    assert len(hooks.store.facts(device)) == 1  # the dropped request did nothing

    answer = await hooks.handle(session, request, None, [])
    done = turn(session, 3, request)
    done.extra["intent"] = True  # the assistant marks a turn a built-in request answered
    await hooks.turn_done(session, done, None)
    assert hooks.store.facts(device) == []
    stored = [(m.text, m.intent) for c in hooks.store.conversations() for m in hooks.store.messages(c.id)
              if m.role == "user"]
    assert stored == [(request, "forget_me")]  # the turns before it are forgotten too; the request is marked
