"""`MemoryHooks`: the assistant's memory and voiceprints, around each turn (the `TurnHooks` seam).

* **identify** (alongside ASR, in a worker thread): the enrolled speaker of the utterance. A session
  remembers the last decision, so a short reply ("yes", under a second of speech) keeps the speaker
  of the previous utterance, and the speaker recognised so far needs a little less evidence
  (:data:`CONTINUITY_MARGIN`) to stay named; an utterance that matches nobody makes it unknown.
* **handle**: the built-in requests. "Remember my voice, I am Sam" enrolls Sam from the session's
  recent utterances (joined into ~3.6 s clips; utterances identified as someone else are left out);
  with too little speech it says how much more is needed. "Forget what you know about me" forgets the
  speaker's facts and the turns they came from (the device's, for an unknown voice). The answer is
  spoken at once, but the change is made in ``turn_done``: a turn may be a speculative one that the
  user talks over and the assistant drops, and that must change nothing. For any other text it
  loads this turn's context (below) so that ``system_context`` has it ready.
* **system_context**: the speaker's name and their most recent facts (``[memory] context_facts``); an
  unknown voice gets the device's facts.
* **turn_done**: carries out an answered built-in request, then stores the turn (user text with the
  speaker, the reply with the outcome and latency figures; the utterance audio only with
  ``[memory] keep_audio``).
* **session_end**: closes the conversation and distills facts from it with the LLM.

The LLM is shared and serialized, so distillation never competes with a user: it runs after a session
(and, every ``distill_every_turns`` turns, once the session has been idle ``distill_idle_s``), only when
no turn is in progress anywhere, and is stopped (and retried later) as soon as a turn starts.
What has been distilled is recorded per conversation, so a server stopped before distilling catches
up after the next session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..config import MemorySettings
from ..engines.base import ChatMessage, Llm
from ..errors import EnrollmentError, VoiceprintError
from ..pipeline.conversation import PCM, SessionInfo
from ..pipeline.intents import match_builtin
from ..pipeline.timing import TurnTimings
from ..pipeline.workers import run_blocking
from ..speaker.checks import Problem
from ..store.memory import MemoryStore, Owner, TurnRecord
from .audio import AudioKeeper
from .context import render_context
from .distill import distill_messages
from .facts import plan_merge
from .voiceprints import CLIP_TARGET_S, Identification, VoiceprintService, clean_name

__all__ = ["MemoryHooks"]

log = logging.getLogger(__name__)

POLL_S: Final = 0.25
HEARD: Final = 16
"""Utterances per session whose identification is remembered (for enrolling by voice)."""
STALE_TURN_S: Final = 300.0
"""A turn that started this long ago and never ended (a dropped speculative one) no longer holds the LLM."""
CONTINUITY_MARGIN: Final = 0.05
"""Within a session, the speaker recognised so far stays named on a later utterance that scores them
best but up to this much below the threshold (short utterances score lower)."""

_SPOKEN_PROBLEMS: Final = {
    Problem.TOO_QUIET: "Your voice was too quiet for me. Come a little closer and ask me again.",
    Problem.CLIPPED: "Your voice was too loud and distorted. Step back a little and ask me again.",
    Problem.TOO_SHORT: "I need more of your voice. Say a few more sentences and ask again.",
    Problem.MULTI_SPEAKER: "I heard more than one voice. Talk to me alone for a few sentences and ask again.",
    Problem.INCONSISTENT: "It sounded like more than one person was talking to me. Talk to me alone for a few "
                          "sentences and ask again.",
}


@dataclass(frozen=True)
class _Action:
    text: str
    """The request it answers (the turn's transcript)."""
    run: Callable[[], object]
    """Blocking."""


@dataclass
class _Session:
    info: SessionInfo
    conversation_id: int | None = None
    speaker: str | None = None
    """The last identified speaker (sticky over utterances too short to judge)."""
    heard: deque[tuple[PCM, str | None]] = field(default_factory=lambda: deque(maxlen=HEARD))
    pending_audio: PCM | None = None
    """The utterance of the turn in progress, when audio is kept ([memory] keep_audio)."""
    contexts: dict[str | None, str] = field(default_factory=dict)
    action: _Action | None = None
    """What a built-in request will change once its turn is over (not while it may be speculative)."""
    undistilled_turns: int = 0
    last_activity: float = 0.0
    idle_task: asyncio.Task[None] | None = None


class MemoryHooks:
    """Implements :class:`xiaozhi_local.pipeline.assistant.TurnHooks` over a :class:`MemoryStore`."""

    def __init__(self, store: MemoryStore, llm: Llm, settings: MemorySettings, *,
                 voiceprints: VoiceprintService | None = None, audio: AudioKeeper | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.llm = llm
        self.settings = settings
        self.voiceprints = voiceprints
        self.audio = audio
        self.clock = clock
        self._sessions: dict[str, _Session] = {}
        self._turns_in_progress: dict[str, float] = {}
        """session id → when its turn started."""
        self._distill_lock: asyncio.Lock | None = None
        self._distill_stop: threading.Event | None = None
        self.distillations = 0
        """Completed distillation runs (for tests and /health)."""
        closed = store.close_stale_conversations()
        if closed:
            log.info("closed %d conversation(s) left open by an earlier run; their facts are distilled after "
                     "the next session", closed)
        if audio is not None:
            audio.sweep(store)

    # ---- the TurnHooks seam -------------------------------------------------------------------
    async def identify(self, info: SessionInfo, pcm: PCM) -> str | None:
        s = self._turn_started(info)
        if self.audio is not None:
            s.pending_audio = pcm
        if self.voiceprints is None:
            return None
        result: Identification = await run_blocking(self.voiceprints.identify, pcm)
        name = result.name
        if result.match is not None:
            ranking = result.match.ranking
            if (name is None and s.speaker and ranking and ranking[0][0] == s.speaker
                    and ranking[0][1] >= self.voiceprints.threshold - CONTINUITY_MARGIN):
                name = s.speaker  # the voice that has been talking, on a shorter or less clear utterance
            s.speaker = name
            log.info("session %s: voice %s (score %.2f, %.1f s of speech)", info.session_id[:8], name or "unknown",
                     result.match.score, result.speech_s)
        s.heard.append((pcm, name if result.decided else None))
        return s.speaker

    def system_context(self, info: SessionInfo, speaker: str | None) -> str:
        s = self._session(info)
        cached = s.contexts.pop(speaker, None)
        return cached if cached is not None else self._context(info, speaker)

    async def handle(self, info: SessionInfo, text: str, speaker: str | None,
                     utterances: Sequence[PCM]) -> str | None:
        s = self._turn_started(info)
        s.action = None
        intent = match_builtin(text)
        if intent is None:
            s.contexts = {speaker: await run_blocking(self._context, info, speaker)}
            return None
        if intent.name == "enroll_voice":
            return await self._enroll(s, text, intent.argument, speaker, utterances)
        if intent.name == "forget_me":
            return await self._forget(s, text, speaker)
        return None

    async def turn_done(self, info: SessionInfo, timings: TurnTimings, speaker: str | None) -> None:
        self._turns_in_progress.pop(info.session_id, None)
        s = self._session(info)
        s.last_activity = self.clock()
        audio, s.pending_audio = s.pending_audio, None
        action, s.action = s.action, None
        if not timings.transcript:
            return
        intent = None
        if timings.extra.get("intent"):  # a built-in request was answered in this turn
            match = match_builtin(timings.transcript)
            intent = match.name if match is not None else "builtin"
            if action is not None and action.text == timings.transcript:
                await run_blocking(action.run)
        if s.conversation_id is None:
            s.conversation_id = await run_blocking(self.store.start_conversation, info.device_id, info.session_id)
        audio_file = None
        if self.audio is not None and audio is not None and timings.source == "voice":
            audio_file = await run_blocking(self.audio.save, audio, info.session_id, timings.turn)
        record = TurnRecord(turn=timings.turn, user_text=timings.transcript, reply=timings.reply, speaker=speaker,
                            source=timings.source, outcome=timings.outcome, intent=intent, e2e_ms=timings.e2e_ms,
                            latency=_latency(timings), audio_file=audio_file)
        await run_blocking(self.store.add_turn, s.conversation_id, record)
        if intent is None:
            s.undistilled_turns += 1
        every = self.settings.distill_every_turns
        if every and s.undistilled_turns >= every and (s.idle_task is None or s.idle_task.done()):
            s.idle_task = asyncio.create_task(self._distill_when_idle(s), name=f"distill-{info.session_id[:8]}")

    async def session_end(self, info: SessionInfo, dialogue: Sequence[ChatMessage]) -> None:
        self._turns_in_progress.pop(info.session_id, None)
        s = self._sessions.pop(info.session_id, None)
        if s is None:
            return
        if s.idle_task is not None:
            s.idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await s.idle_task
        if s.conversation_id is not None:
            await run_blocking(self.store.end_conversation, s.conversation_id)
        for conversation_id in await run_blocking(self.store.undistilled):
            await self._distill(conversation_id, idle_s=0.0, session=None)
        if self.audio is not None:
            await run_blocking(self.audio.sweep, self.store)

    # ---- sessions and turns -------------------------------------------------------------------
    def _session(self, info: SessionInfo) -> _Session:
        s = self._sessions.get(info.session_id)
        if s is None:
            s = self._sessions[info.session_id] = _Session(info, last_activity=self.clock())
        return s

    def _turn_started(self, info: SessionInfo) -> _Session:
        """A user is waiting: the LLM is theirs (a running distillation stops and is retried later)."""
        s = self._session(info)
        s.last_activity = self.clock()
        self._turns_in_progress[info.session_id] = self.clock()
        if self._distill_stop is not None:
            self._distill_stop.set()
        return s

    def _context(self, info: SessionInfo, speaker: str | None) -> str:
        """Blocking (a small read): the system-prompt text for a turn of ``speaker`` on this device."""
        if self.settings.context_facts == 0:
            return render_context(speaker, [])
        owner = Owner("speaker", speaker) if speaker else Owner("device", info.device_id)
        facts = [f.fact for f in self.store.facts(owner, limit=self.settings.context_facts)]
        if facts:
            log.info("session %s: the prompt carries %d remembered fact(s) of %s", info.session_id[:8], len(facts),
                     owner)
        return render_context(speaker, facts)

    # ---- built-in requests --------------------------------------------------------------------
    async def _enroll(self, s: _Session, text: str, name: str, speaker: str | None,
                      utterances: Sequence[PCM]) -> str:
        voiceprints = self.voiceprints
        if voiceprints is None:
            return "Voice recognition is turned off on this server, so I cannot learn your voice."
        try:
            name = clean_name(name)
        except VoiceprintError:
            return "Sorry, I did not catch your name. Say: remember my voice, I am, and then your name."
        if speaker and speaker.casefold() != name.casefold():
            return f"You sound like {speaker} to me, so I will not save your voice as {name}."
        existing = await run_blocking(self.store.voiceprint, name)
        if existing is not None and speaker is None and voiceprints.is_current(existing):
            return (f"I already know someone called {existing.name}, and you do not sound like them. "
                    "Please choose another name.")
        labels = {id(pcm): who for pcm, who in s.heard}
        usable = [pcm for pcm in utterances if labels.get(id(pcm)) in (None, name)]
        clips, seconds = await run_blocking(voiceprints.clips_from_utterances, usable)
        need = voiceprints.min_clips
        if len(clips) < need and existing is None:
            return (f"I need more of your voice, {name}. I heard about {seconds:.0f} seconds of you speaking and need "
                    f"about {need * CLIP_TARGET_S:.0f}. Say a few more sentences and ask again.")
        try:
            adding = existing is not None
            enrollment = await run_blocking(lambda: voiceprints.prepare(name, clips, keep_previous=adding))
        except EnrollmentError as exc:
            log.info("session %s: voice enrollment of %s refused: %s", s.info.session_id[:8], name, exc)
            return _SPOKEN_PROBLEMS.get(exc.problem, "Sorry, I could not learn your voice. Please try again.")

        def save() -> None:
            s.speaker = voiceprints.save(enrollment, source="voice").name

        s.action = _Action(text, save)
        if enrollment.added:
            return f"Thanks, {enrollment.name}. I know your voice a little better now."
        return f"Nice to meet you, {enrollment.name}. I will recognise your voice from now on."

    async def _forget(self, s: _Session, text: str, speaker: str | None) -> str:
        owner = Owner("speaker", speaker) if speaker else Owner("device", s.info.device_id)
        facts, messages = await run_blocking(self.store.owner_counts, owner)

        def forget() -> None:
            facts, messages = self.store.forget_owner(owner)
            s.contexts.clear()
            log.info("session %s: forgot %s: %d fact(s), %d message(s)", s.info.session_id[:8], owner, facts,
                     messages)

        s.action = _Action(text, forget)
        if speaker:
            return (f"Done, {speaker}. I have forgotten what I knew about you." if facts or messages
                    else f"I did not remember anything about you, {speaker}.")
        return ("Done. I have forgotten what I learnt from conversations on this device." if facts or messages
                else "I did not remember anything from this device.")

    # ---- distillation -------------------------------------------------------------------------
    async def _distill_when_idle(self, s: _Session) -> None:
        if s.conversation_id is not None:
            await self._distill(s.conversation_id, idle_s=self.settings.distill_idle_s, session=s)

    def _quiet(self, idle_s: float, session: _Session | None) -> bool:
        now = self.clock()
        if any(now - started < STALE_TURN_S for started in self._turns_in_progress.values()):
            return False
        return session is None or now - session.last_activity >= idle_s

    async def _distill(self, conversation_id: int, *, idle_s: float, session: _Session | None) -> None:
        """Distill the conversation's new messages once it is quiet; retried when a turn interrupts it."""
        if self._distill_lock is None:
            self._distill_lock = asyncio.Lock()
        while True:
            while not self._quiet(idle_s, session):
                await asyncio.sleep(POLL_S)
            async with self._distill_lock:
                if not self._quiet(idle_s, session):
                    continue
                stop = threading.Event()
                self._distill_stop = stop
                work = asyncio.ensure_future(run_blocking(self._distill_blocking, conversation_id, stop))
                try:
                    done = await asyncio.shield(work)
                except asyncio.CancelledError:  # stop the LLM and let the thread finish before giving up the lock
                    stop.set()
                    with contextlib.suppress(Exception):
                        await work
                    raise
                finally:
                    self._distill_stop = None
            if done:
                if session is not None:
                    session.undistilled_turns = 0
                return
            log.info("conversation %d: distillation interrupted by a turn; it runs again later", conversation_id)

    def _distill_blocking(self, conversation_id: int, stop: threading.Event) -> bool:
        """Distill and store; False when ``stop`` interrupted it (then nothing is marked done)."""
        conversation = self.store.conversation(conversation_id)
        if conversation is None:
            return True
        messages = self.store.messages(conversation_id, after_id=conversation.distilled_through)
        if not messages:
            return True
        said: dict[Owner, list[str]] = {}
        for m in messages:
            if m.role == "user" and m.intent is None:
                owner = Owner("speaker", m.speaker) if m.speaker else Owner("device", conversation.device_id)
                said.setdefault(owner, []).append(m.text)
        for owner, texts in said.items():
            result = distill_messages(self.llm, texts, stop)
            if not result.complete:
                return False
            if result.facts:
                changes = plan_merge(result.facts, self.store.facts(owner))
                self.store.apply_facts(owner, changes, conversation_id, self.settings.max_facts_per_owner)
            log.info("conversation %d: %s: %d statement(s) → %d fact(s) %s", conversation_id, owner,
                     len(result.statements), len(result.facts), list(result.facts))
        self.store.mark_distilled(conversation_id, messages[-1].id)
        self.distillations += 1
        return True


def _latency(t: TurnTimings) -> dict[str, object]:
    stages = {k: v for k, v in t.stage_ms().items() if v is not None}
    compute = {"asr_compute_ms": round(1000 * t.asr_compute_s, 1), "llm_compute_ms": round(1000 * t.llm_compute_s, 1),
               "tts_compute_ms": round(1000 * t.tts_compute_s, 1)}
    return {**stages, **{k: v for k, v in compute.items() if v}, "llm_tokens": t.llm_tokens,
            "speech_s": round(t.speech_s, 2)}
