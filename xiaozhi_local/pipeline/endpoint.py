"""Utterance endpointing: a pure state machine over per-chunk speech decisions.

Feed it, chunk by chunk, whether the chunk was speech (from any detector: Silero VAD
probabilities, or a plain energy threshold) and how long the chunk is. It says when an
utterance starts, when it ends (enough trailing silence, or the maximum length reached) and
when a blip was too short to count. No audio, no clock, no I/O: it counts milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EndReason(StrEnum):
    SILENCE = "silence"
    MAX_LENGTH = "max_length"


@dataclass(frozen=True)
class EndpointConfig:
    start_ms: float = 90.0
    """Speech needed (within a run) before an utterance counts as started."""
    end_silence_ms: float = 500.0
    """Trailing silence that ends an utterance."""
    min_speech_ms: float = 250.0
    """Utterances with less speech than this are discarded (coughs, clicks, echo)."""
    max_utterance_ms: float = 30_000.0
    """An utterance is cut here, whatever the speaker is doing."""


@dataclass(frozen=True)
class SpeechStarted:
    at_ms: float
    """Position (from the last reset) where the speech run that started it began."""


@dataclass(frozen=True)
class SpeechEnded:
    at_ms: float
    """Position of the end of the last speech (before the trailing silence)."""
    speech_ms: float
    reason: EndReason


@dataclass(frozen=True)
class SpeechDiscarded:
    speech_ms: float


Event = SpeechStarted | SpeechEnded | SpeechDiscarded


class Endpointer:
    def __init__(self, config: EndpointConfig | None = None):
        self.config = config or EndpointConfig()
        self.reset()

    def reset(self) -> None:
        self.position_ms = 0.0
        self.in_utterance = False
        self._run_start: float | None = None  # start of the current speech run (before start)
        self._run_ms = 0.0
        self._utterance_start = 0.0
        self._speech_ms = 0.0
        self._silence_ms = 0.0
        self._last_speech_end = 0.0

    def feed(self, speech: bool, duration_ms: float) -> list[Event]:
        events: list[Event] = []
        start = self.position_ms
        self.position_ms += duration_ms
        if not self.in_utterance:
            if speech:
                if self._run_start is None:
                    self._run_start = start
                self._run_ms += duration_ms
                if self._run_ms >= self.config.start_ms:
                    self.in_utterance = True
                    self._utterance_start = self._run_start
                    self._speech_ms = self._run_ms
                    self._silence_ms = 0.0
                    self._last_speech_end = self.position_ms
                    events.append(SpeechStarted(self._run_start))
            else:
                self._run_start = None
                self._run_ms = 0.0
            return events
        if speech:
            self._speech_ms += duration_ms
            self._silence_ms = 0.0
            self._last_speech_end = self.position_ms
        else:
            self._silence_ms += duration_ms
        if self.position_ms - self._utterance_start >= self.config.max_utterance_ms:
            events.append(self._finish(EndReason.MAX_LENGTH))
        elif self._silence_ms >= self.config.end_silence_ms:
            events.append(self._finish(EndReason.SILENCE))
        return events

    def _finish(self, reason: EndReason) -> Event:
        speech_ms = self._speech_ms
        end = self._last_speech_end if reason is EndReason.SILENCE else self.position_ms
        self.in_utterance = False
        self._run_start = None
        self._run_ms = 0.0
        self._speech_ms = 0.0
        self._silence_ms = 0.0
        if speech_ms < self.config.min_speech_ms:
            return SpeechDiscarded(speech_ms)
        return SpeechEnded(end, speech_ms, reason)

    @property
    def silence_ms(self) -> float:
        """Trailing silence so far in the current utterance (0 outside one)."""
        return self._silence_ms if self.in_utterance else 0.0

    @property
    def speech_ms(self) -> float:
        """Speech heard so far in the current utterance (0 outside one)."""
        return self._speech_ms if self.in_utterance else 0.0

    @property
    def utterance_start_ms(self) -> float:
        return self._utterance_start
