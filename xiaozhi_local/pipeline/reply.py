"""One streamed reply: LLM tokens → speakable pieces → synthesized audio → the device.

The LLM runs in a worker thread and feeds a :class:`SentenceSplitter`; each completed piece
is synthesized (worker thread) and queued to the sink as soon as it is ready, so the device
speaks while the LLM still writes. Two rules keep the device's playback from running dry:
a first piece too short to start with ("Sure!") is said together with the next one, and
while less than :data:`STARVING_S` of audio is left queued the splitter also cuts at commas.
Cancelling :meth:`StreamedReply.run` stops the LLM within one token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..engines.base import ChatMessage
from ..errors import EngineError, LlmError, TtsError
from .conversation import ReplySink
from .splitter import SentenceSplitter
from .timing import TurnTimings
from .workers import iterate_blocking, run_blocking

if TYPE_CHECKING:
    from .assistant import Assistant

EMOJI_EMOTIONS = {"😂": "laughing", "😆": "laughing", "😊": "happy", "🙂": "happy", "😀": "happy",
                  "😢": "sad", "😭": "crying", "😠": "angry", "😍": "loving", "😮": "surprised",
                  "🤔": "thinking", "😉": "winking", "😎": "cool", "😴": "sleepy", "😕": "confused"}
DEFAULT_EMOTION = ("happy", "🙂")
MIN_FIRST_PIECE_CHARS = 12
"""A first piece shorter than this ("Sure!") is said together with the next one, so the device
does not fall silent right after one word while the LLM writes the next clause."""
STARVING_S = 1.5
"""Below this much queued reply audio, the LLM's text is cut at the next comma too."""


class StreamedReply:
    """Speaks one LLM reply to ``out``; ``played`` is the session's sink (its frame marks)."""

    def __init__(self, assistant: Assistant, out: ReplySink, played: ReplySink, timings: TurnTimings):
        self.a = assistant
        self.out = out
        self.played = played
        self.t = timings
        self.text: list[str] = []  # what the LLM wrote
        self.spoken: list[str] = []  # the pieces queued to the device
        self._said_s = 0.0  # seconds of audio queued so far
        self._holding = False  # a too-short first piece is waiting for the next one

    async def run(self, messages: Sequence[ChatMessage]) -> str:
        """Speak the reply to ``messages``; returns the LLM's whole text (LlmError if empty)."""
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        producer = asyncio.create_task(self._generate(messages, pieces))
        try:
            held = ""
            while (piece := await pieces.get()) is not None:
                if not self.spoken and len(held) + len(piece) < MIN_FIRST_PIECE_CHARS:
                    held = f"{held} {piece}".strip()
                    self._holding = True
                    continue
                await self._speak(f"{held} {piece}".strip())
                held = ""
            if held:
                await self._speak(held)
            await producer  # re-raises an LLM failure
        finally:
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await producer
            self.t.reply = " ".join(self.spoken)
        if not self.spoken:
            raise LlmError("the language model gave an empty reply")
        return "".join(self.text).strip()

    def starving(self) -> bool:
        """The reply being played has less than :data:`STARVING_S` of audio left queued."""
        if self._holding:
            return True  # a short first piece waits for the next clause: let it come soon
        first, _ = self.played.reply_marks()
        if self._said_s <= 0 or first is None:
            return False
        return self._said_s - (self.a.clock.now() - first) < STARVING_S

    async def _speak(self, piece: str) -> None:
        """Synthesize one piece and queue it to the device."""
        t, rate = self.t, self.a.engines.tts.sample_rate
        self._holding = False
        if not self.spoken:
            t.first_clause = self.a.clock.now()
            await self.out.emotion(*emotion_of("".join(self.text)))
        started = time.perf_counter()
        try:
            audio = await run_blocking(self.a.synthesize, piece)
        except Exception as exc:
            raise TtsError(f"the voice failed on {piece[:40]!r}: {exc}") from exc
        t.tts_compute_s += time.perf_counter() - started
        if not self.spoken:
            t.tts_first_chunk = self.a.clock.now()
        self.spoken.append(piece)
        await self.out.say(piece, audio, rate)
        self._said_s += audio.size / rate

    async def _generate(self, messages: Sequence[ChatMessage], pieces: asyncio.Queue[str | None]) -> None:
        t, llm, options = self.t, self.a.engines.llm, self.a.generation_options()
        splitter = SentenceSplitter()
        started = time.perf_counter()
        try:
            async for token in iterate_blocking(lambda stop: llm.stream_chat(messages, options, stop)):
                if t.llm_first_token is None:
                    t.llm_first_token = self.a.clock.now()
                t.llm_tokens += 1
                self.text.append(token)
                splitter.eager = self.starving()
                for piece in splitter.push(token):
                    pieces.put_nowait(piece)
            for piece in splitter.flush():
                pieces.put_nowait(piece)
        except EngineError:
            raise
        except Exception as exc:
            raise LlmError(f"the language model failed: {exc}") from exc
        finally:
            t.llm_compute_s = time.perf_counter() - started
            stats = getattr(llm, "last_prompt", None)  # the local engine says what it evaluated and reused
            if stats is not None:
                t.llm_prompt_tokens = stats.prompt_tokens
                t.extra["llm_reused_tokens"] = stats.reused_tokens
            else:
                t.llm_prompt_tokens = sum(llm.count_tokens(m.content) for m in messages)
            pieces.put_nowait(None)


def emotion_of(text: str) -> tuple[str, str]:
    """The face for a reply: its first known emoji, else happy."""
    for char in text:
        if char in EMOJI_EMOTIONS:
            return EMOJI_EMOTIONS[char], char
    return DEFAULT_EMOTION
