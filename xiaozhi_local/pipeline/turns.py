"""One device session's turns: from uplink audio to spoken reply (see :mod:`.assistant`).

A turn:

1. the utterance ends (``listen stop`` in manual mode; Silero VAD + the endpointer in auto
   and realtime mode; or a typed ``listen detect`` text). After ``speculate_ms`` of silence
   the turn already starts, its output held back until the endpoint confirms it;
2. ASR in a worker thread (speaker identification alongside, with hooks) → ``stt``; an
   empty transcript ends the turn there;
3. a spoken goodbye gets the farewell and closes the session; a wake word gets the cached
   greeting; a built-in request (hooks) gets its answer;
4. otherwise the LLM's reply is streamed to the device clause by clause
   (:class:`~.reply.StreamedReply`).

``abort`` (or, in realtime mode, the user speaking over the reply) cancels the turn task:
the LLM stops within one token (its stop event), queued audio is dropped and ``tts stop``
goes out. An LLM or TTS failure is logged and answered with a short spoken apology.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..errors import EngineError
from ..protocol.types import ListenMode
from .capture import Utterance, UtteranceCapture
from .conversation import PCM, UPLINK_RATE, DeviceTools, ReplySink, SessionInfo
from .endpoint import EndReason
from .held import HeldSink
from .intents import is_goodbye, is_wake_word
from .prompt import Dialogue, build_messages
from .reply import DEFAULT_EMOTION, StreamedReply
from .timing import TurnTimings
from .workers import run_blocking

if TYPE_CHECKING:
    from .assistant import Assistant

log = logging.getLogger(__name__)
T = TypeVar("T")

RECENT_UTTERANCES = 12
"""Utterances a session keeps for the hooks (enrolling a voice from what was said)."""
HYSTERESIS = 0.15
"""A speech decision flips back to silence only below threshold − this (Silero hovers near it)."""


class AssistantConversation:
    def __init__(self, assistant: Assistant, info: SessionInfo, sink: ReplySink, tools: DeviceTools):
        self.a = assistant
        self.settings = assistant.settings
        self.info = info
        self.sink = sink
        self.tools = tools
        self.clock = assistant.clock
        self.mode: ListenMode | None = None
        self.capture = UtteranceCapture(assistant.endpoint_config)
        self.vad = assistant.engines.vad.stream()
        self._speech = False  # the hysteresis state of the VAD decision
        self._manual: list[PCM] = []
        self._manual_samples = 0
        self._manual_cut = False
        self.dialogue = Dialogue()
        self.turns = 0
        self._turn: asyncio.Task[None] | None = None
        self._timings: TurnTimings | None = None
        self._closed = False
        self._utterances: list[PCM] = []
        self.out: ReplySink = sink
        """Where the current turn's output goes: the session, or a HeldSink while speculative."""
        self._held: HeldSink | None = None
        self._spec_pcm: PCM | None = None
        self._last_hook: asyncio.Task[Any] | None = None

    # ---- events from the session -------------------------------------------------------
    async def on_listen_start(self, mode: ListenMode) -> None:
        self.mode = mode
        self._manual, self._manual_samples, self._manual_cut = [], 0, False
        if mode is ListenMode.MANUAL or not self.capture.in_utterance:
            self.capture.reset()
            self.vad.reset()
            self._speech = False

    async def on_listen_stop(self) -> None:
        if self.mode is ListenMode.MANUAL and self._manual and not self._manual_cut:
            pcm = np.concatenate(self._manual)
            self._start_turn(self._timing("voice", speech_end=self.clock.now(), speech_s=pcm.size / UPLINK_RATE),
                             pcm=pcm)
        self._manual, self._manual_samples = [], 0
        self.mode = None

    async def on_audio(self, pcm: PCM) -> None:
        if self.mode is None or self._closed:
            return
        if self.mode is ListenMode.MANUAL:
            await self._manual_audio(pcm)
            return
        if self.mode is ListenMode.AUTO and self._busy():
            return  # the device is about to speak; in auto mode it stops listening (§2.7)
        probabilities = self.vad.accept(pcm)
        decisions = [self._decide(p) for p in probabilities]
        window_ms = 1000 * self.vad.window_samples / UPLINK_RATE
        update = self.capture.feed(pcm, decisions, window_ms)
        if self._held is not None:  # a speculative turn waits for the endpoint
            if update.utterance is not None:
                await self._confirm()
            elif not self.capture.in_utterance or self.capture.silence_ms < self.settings.speculate_ms:
                await self._drop_speculation()  # the user went on speaking
            return
        if (self.mode is ListenMode.REALTIME and self._busy() and self.capture.in_utterance
                and self.capture.speech_ms >= self.settings.barge_in_ms):
            await self._barge_in()
        if update.utterance is not None:
            self._utterance_done(update.utterance)
        elif self._may_speculate():
            self._speculate()

    async def on_detect(self, text: str) -> None:
        text = text.strip()
        if not text or self._closed:
            return
        if is_wake_word(text, self.settings.wake_words):
            self._start_turn(self._timing("wake", speech_end=self.clock.now()), wake=text)
        else:
            self._start_turn(self._timing("text", speech_end=self.clock.now()), text=text)

    async def on_abort(self, reason: str | None) -> None:
        log.info("session %s: abort from the device (%s)", self.info.session_id[:8], reason or "no reason")
        await self._cancel_turn("aborted")
        self.capture.reset()
        self.vad.reset()

    async def on_idle(self) -> None:
        await self._cancel_turn("aborted")
        with contextlib.suppress(EngineError):
            await self.sink.say(self.settings.farewell, await self.a.phrase(self.settings.farewell),
                                self.a.engines.tts.sample_rate)
        await self.sink.end_reply()

    async def close(self) -> None:
        self._closed = True
        await self._cancel_turn("aborted")
        if self.a.hooks is not None:
            self._after_hooks("session_end", self.a.hooks.session_end(self.info, self.dialogue.messages))

    # ---- audio intake ------------------------------------------------------------------
    def _decide(self, probability: float) -> bool:
        threshold = self.settings.vad_threshold
        if probability >= threshold:
            self._speech = True
        elif probability < threshold - HYSTERESIS:
            self._speech = False
        return self._speech

    async def _manual_audio(self, pcm: PCM) -> None:
        if self._manual_cut:
            return
        self._manual.append(pcm)
        self._manual_samples += pcm.size
        if self._manual_samples >= self.settings.max_utterance_s * UPLINK_RATE:
            self._manual_cut = True
            audio = np.concatenate(self._manual)
            self._manual = []
            log.info("session %s: utterance cut at the maximum length (%.0f s)", self.info.session_id[:8],
                     self.settings.max_utterance_s)
            self._start_turn(self._timing("voice", speech_end=self.clock.now(), speech_s=audio.size / UPLINK_RATE),
                             pcm=audio)

    def _utterance_done(self, utterance: Utterance) -> None:
        now = self.clock.now()
        if utterance.reason is EndReason.MAX_LENGTH:
            log.info("session %s: utterance cut at the maximum length (%.0f s)", self.info.session_id[:8],
                     self.settings.max_utterance_s)
        if self._busy():
            log.debug("session %s: utterance during the reply ignored (%.0f ms of speech)",
                      self.info.session_id[:8], utterance.speech_ms)
            return
        timings = self._timing("voice", speech_end=now - utterance.trailing_ms / 1000,
                               speech_s=utterance.speech_ms / 1000)
        timings.vad_endpoint = now
        self._start_turn(timings, pcm=utterance.pcm)

    # ---- speculation: answer during the last part of the end-of-speech silence ---------
    def _may_speculate(self) -> bool:
        spec = self.settings.speculate_ms
        return (0 < spec < self.settings.end_silence_ms and self.capture.in_utterance
                and self.capture.silence_ms >= spec and self.capture.speech_ms >= self.settings.min_speech_ms
                and not self._busy())

    def _speculate(self) -> None:
        now = self.clock.now()
        self._spec_pcm = self.capture.snapshot()
        timings = self._timing("voice", speech_end=now - self.capture.silence_ms / 1000,
                               speech_s=self.capture.speech_ms / 1000)
        timings.extra["speculative"] = True
        self._held = HeldSink(self.sink)
        self._start_turn(timings, pcm=self._spec_pcm, out=self._held)

    async def _confirm(self) -> None:
        held, self._held = self._held, None
        if self._timings is not None:
            self._timings.vad_endpoint = self.clock.now()
        if self._spec_pcm is not None:
            self._remember(self._spec_pcm)
        if held is not None:
            await held.release()

    async def _drop_speculation(self) -> None:
        log.debug("session %s: the user went on speaking; speculative answer dropped", self.info.session_id[:8])
        await self._cancel_turn("dropped")

    def _remember(self, pcm: PCM) -> None:
        self._utterances = [*self._utterances, pcm][-RECENT_UTTERANCES:]

    async def _barge_in(self) -> None:
        log.info("session %s: the user spoke over the reply (realtime barge-in); stopping it",
                 self.info.session_id[:8])
        await self._cancel_turn("barge_in")
        await self.sink.abort()

    # ---- turns -------------------------------------------------------------------------
    def _busy(self) -> bool:
        """A turn is under way (a speculative one still waiting for its endpoint does not count)."""
        return self._turn is not None and not self._turn.done() and self._held is None

    def _timing(self, source: str, *, speech_end: float, speech_s: float = 0.0) -> TurnTimings:
        self.turns += 1
        return TurnTimings(self.info.session_id, self.info.device_id, self.turns, mode=str(self.mode or ""),
                           source=source, speech_end=speech_end, speech_s=speech_s)

    def _start_turn(self, timings: TurnTimings, *, pcm: PCM | None = None, text: str | None = None,
                    wake: str | None = None, out: ReplySink | None = None) -> None:
        if self._turn is not None and not self._turn.done():
            self._turn.cancel()
            if self._timings is not None:
                self._timings.outcome = "dropped" if self._held is not None and out is None else "aborted"
        if out is None:
            self._held = None
            if pcm is not None:
                self._remember(pcm)
        self.out = out or self.sink
        self._timings = timings
        self._turn = asyncio.create_task(self._run_turn(timings, pcm, text, wake),
                                         name=f"turn-{self.info.session_id[:8]}-{timings.turn}")

    async def _cancel_turn(self, outcome: str) -> None:
        task = self._turn
        if self._held is not None:
            outcome, self._held = "dropped", None
        if task is None or task.done():
            return
        if self._timings is not None:
            self._timings.outcome = outcome
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run_turn(self, t: TurnTimings, pcm: PCM | None, text: str | None, wake: str | None) -> None:
        try:
            if wake is not None:
                await self.out.stt(wake)
                await self._say_phrase(self.settings.greeting, t)
                return
            if pcm is not None:
                text = await self._transcribe(pcm, t)
            text = (text or "").strip()
            t.transcript = text
            if not text:
                t.outcome = "empty"
                return
            speaker = t.extra.get("speaker")
            log.info("session %s: stt (%s%s): %s", self.info.session_id[:8], t.extra.get("language", "text"),
                     f", {speaker}" if speaker else "", text)
            await self.out.stt(text)
            if is_goodbye(text, self.settings.goodbye_words):
                t.outcome = "goodbye"
                self._closed = True  # nothing more is heard: the farewell ends the session
                await self._say_phrase(self.settings.farewell, t)
                await self.out.close("goodbye")
                return
            answer = await self._hook_answer(text, speaker)
            if answer is not None:
                t.extra["intent"] = True
                await self._say_phrase(answer, t, cache=False)
                return
            await self._reply(text, t, speaker)
        except asyncio.CancelledError:
            if t.outcome == "ok":
                t.outcome = "aborted"
            raise
        except Exception as exc:
            t.outcome = "error"
            if isinstance(exc, EngineError):  # a model failed: its message says which and why
                log.error("session %s: turn %d failed: %s", self.info.session_id[:8], t.turn, exc)
            else:
                log.exception("session %s: turn %d failed", self.info.session_id[:8], t.turn)
            await self._apologize(t)
        finally:
            if t.outcome != "dropped":  # a speculation the user talked over is not a turn
                self._finish(t)

    def _finish(self, t: TurnTimings) -> None:
        t.first_frame, t.last_frame = self._marks(t)
        log.info("session %s: %s", self.info.session_id[:8], t.log_line())
        self.a.turn_log.add(t)
        if self.a.hooks is not None:
            self._after_hooks("turn_done", self.a.hooks.turn_done(self.info, t, t.extra.get("speaker")))

    def _after_hooks(self, what: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run a storing hook in the background, after this session's earlier ones (a session's
        end must not overtake the storing of its last turn)."""
        previous = self._last_hook

        async def in_order() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await previous
            await self._hook(what, coro)

        self._last_hook = self.a.spawn(in_order(), f"{what}-{self.info.session_id[:8]}")

    async def _transcribe(self, pcm: PCM, t: TurnTimings) -> str:
        """ASR, and speaker identification alongside it when there is a voiceprint layer."""
        started = time.perf_counter()
        asr = run_blocking(self.a.engines.asr.transcribe, pcm, UPLINK_RATE, _language(self.settings.language))
        if self.a.hooks is not None:
            transcript, speaker = await asyncio.gather(asr, self._hook("identify",
                                                                      self.a.hooks.identify(self.info, pcm)))
            if speaker:
                t.extra["speaker"] = speaker
        else:
            transcript = await asr
        t.asr_compute_s = time.perf_counter() - started
        t.asr_done = self.clock.now()
        t.extra["language"] = transcript.language
        return transcript.text

    async def _hook_answer(self, text: str, speaker: str | None) -> str | None:
        if self.a.hooks is None:
            return None
        return await self._hook("handle", self.a.hooks.handle(self.info, text, speaker, list(self._utterances)))

    async def _hook(self, what: str, coro: Coroutine[Any, Any, T]) -> T | None:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session %s: the %s hook failed; going on without it", self.info.session_id[:8], what)
            return None

    def _marks(self, t: TurnTimings) -> tuple[float | None, float | None]:
        first, last = self.sink.reply_marks()
        start = t.speech_end or 0.0
        return (first if first is not None and first >= start else None,
                last if last is not None and last >= start else None)

    async def _say_phrase(self, text: str, t: TurnTimings, *, cache: bool = True) -> None:
        """A whole reply of one fixed sentence (cached: greeting, farewell, apology)."""
        audio = await self.a.phrase(text) if cache else await run_blocking(self.a.synthesize, text)
        await self.out.emotion(*DEFAULT_EMOTION)
        await self.out.say(text, audio, self.a.engines.tts.sample_rate)
        t.reply = text
        await self.out.end_reply()
        await self.out.wait_played()

    async def _apologize(self, t: TurnTimings) -> None:
        with contextlib.suppress(Exception):
            await self.out.abort()
            await self._say_phrase(self.settings.apology, t)

    async def _reply(self, text: str, t: TurnTimings, speaker: str | None = None) -> None:
        s, llm = self.settings, self.a.engines.llm
        extra = ""
        if self.a.hooks is not None:
            try:
                extra = self.a.hooks.system_context(self.info, speaker)
            except Exception:
                log.exception("session %s: the system_context hook failed", self.info.session_id[:8])
        messages = build_messages(s.system_prompt, self.dialogue.messages, text, count_tokens=llm.count_tokens,
                                  history_budget=s.history_tokens, context_size=llm.context_size,
                                  reply_tokens=s.max_reply_tokens, extra_system=extra)
        answer = await StreamedReply(self.a, self.out, self.sink, t).run(messages)
        self.dialogue.add_user(text)
        self.dialogue.add_assistant(answer)
        await self.out.end_reply()
        await self.out.wait_played()


def _language(setting: str) -> str | None:
    return None if setting.strip().lower() in ("", "auto") else setting.strip()
