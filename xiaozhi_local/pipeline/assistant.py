"""The voice assistant's shared part: engines, settings, cached phrases, hooks, the turn log.

:class:`Assistant` is loaded once per server and shared by all sessions; called as a
:data:`~.conversation.ConversationFactory` it makes one
:class:`~.turns.AssistantConversation` per device session (the turns themselves live in
:mod:`.turns`). :class:`TurnHooks` is the seam for memory and voiceprints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..audio.clock import Clock, MonotonicClock
from ..config import PipelineSettings
from ..engines.base import Asr, ChatMessage, GenerationOptions, Llm, Tts, Vad
from .conversation import PCM, UPLINK_RATE, DeviceTools, ReplySink, SessionInfo
from .endpoint import EndpointConfig
from .prompt import build_messages
from .timing import TurnLog, TurnTimings
from .workers import iterate_blocking, run_blocking

if TYPE_CHECKING:
    from .turns import AssistantConversation


class TurnHooks(Protocol):
    """What a memory / voiceprint layer does around each turn. Every method must be quick or
    hand slow work to a worker thread; exceptions are logged and the turn goes on without it."""

    async def identify(self, info: SessionInfo, pcm: PCM) -> str | None:
        """The enrolled speaker of an utterance (16 kHz), or None. Runs alongside ASR."""
        ...

    def system_context(self, info: SessionInfo, speaker: str | None) -> str:
        """Extra system-prompt text for this turn (who is speaking, what we remember of them)."""
        ...

    async def handle(self, info: SessionInfo, text: str, speaker: str | None,
                     utterances: Sequence[PCM]) -> str | None:
        """A built-in request ("remember my voice, I am Sam", "forget what you know about me"):
        the sentence to speak instead of asking the LLM; None when ``text`` is not one.
        ``utterances`` are this session's recent utterances (16 kHz), oldest first."""
        ...

    async def turn_done(self, info: SessionInfo, timings: TurnTimings, speaker: str | None) -> None:
        """A turn ended (any outcome): store it."""
        ...

    async def session_end(self, info: SessionInfo, dialogue: Sequence[ChatMessage]) -> None:
        """The session is over (its dialogue, oldest first)."""
        ...


@dataclass
class Engines:
    vad: Vad
    asr: Asr
    llm: Llm
    tts: Tts
    model_ids: dict[str, str] = field(default_factory=dict)
    """role → catalog id (for /health and logs)."""


class Assistant:
    """What every session shares: engines, settings, cached phrases and the turn log."""

    def __init__(self, engines: Engines, settings: PipelineSettings, turn_log: TurnLog | None = None,
                 clock: Clock | None = None, hooks: TurnHooks | None = None):
        self.engines = engines
        self.settings = settings
        self.turn_log = turn_log if turn_log is not None else TurnLog(settings.turn_log_size)
        self.clock = clock or MonotonicClock()
        self.hooks = hooks
        self._background: set[asyncio.Task[Any]] = set()
        self._phrases: dict[str, PCM] = {}

    def __call__(self, info: SessionInfo, sink: ReplySink, tools: DeviceTools) -> AssistantConversation:
        from .turns import AssistantConversation  # the turns module needs this one: import late

        return AssistantConversation(self, info, sink, tools)

    @property
    def endpoint_config(self) -> EndpointConfig:
        s = self.settings
        return EndpointConfig(end_silence_ms=s.end_silence_ms, min_speech_ms=s.min_speech_ms,
                              max_utterance_ms=s.max_utterance_s * 1000)

    def generation_options(self) -> GenerationOptions:
        s = self.settings
        return GenerationOptions(max_tokens=s.max_reply_tokens, temperature=s.temperature,
                                 seed=None if s.seed < 0 else s.seed)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Background work that outlives a session (e.g. storing what it said); see :meth:`drain`."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait (bounded) for background work before the server exits, including work that the
        sessions closing right now are about to start (a session's end spawns its own)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await asyncio.sleep(0)
        while self._background and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._background), timeout=left)
            await asyncio.sleep(0)

    def synthesize(self, text: str) -> PCM:
        """Blocking: the whole of ``text`` as one array at the TTS rate."""
        chunks = list(self.engines.tts.synthesize(text))
        return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)

    async def phrase(self, text: str) -> PCM:
        """A fixed phrase (greeting, farewell, apology), synthesized once and cached."""
        cached = self._phrases.get(text)
        if cached is None:
            cached = await run_blocking(self.synthesize, text)
            self._phrases[text] = cached
        return cached

    async def warm_up(self) -> None:
        """Load what is lazily loaded and fill the caches before the first device talks."""
        s = self.settings
        for text in (s.greeting, s.farewell, s.apology):
            await self.phrase(text)
        await run_blocking(self.engines.asr.transcribe, np.zeros(UPLINK_RATE // 2, np.int16), UPLINK_RATE, None)
        stop_after_first = self.generation_options()
        messages = build_messages(s.system_prompt, [], "Hello", count_tokens=self.engines.llm.count_tokens,
                                  history_budget=s.history_tokens, context_size=self.engines.llm.context_size,
                                  reply_tokens=s.max_reply_tokens)
        async for _ in iterate_blocking(lambda stop: self.engines.llm.stream_chat(messages, stop_after_first, stop)):
            break

