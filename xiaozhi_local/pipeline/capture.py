"""Cutting the uplink into utterances: pre-roll, buffering and endpointing. Pure.

Feed it each uplink chunk with the speech decisions a detector made for it (Silero VAD
windows, or one energy decision per chunk). It keeps a short pre-roll while nobody speaks
(so the first syllable is not lost), buffers the utterance while someone does, and hands
back a finished :class:`Utterance` when the :class:`Endpointer` says it is over: after
trailing silence, or cut at the maximum length. No clock and no I/O: positions are
counted from the audio itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .conversation import PCM, UPLINK_RATE
from .endpoint import EndpointConfig, Endpointer, EndReason, SpeechDiscarded, SpeechEnded, SpeechStarted


@dataclass(frozen=True)
class Utterance:
    pcm: PCM
    """The utterance's audio: pre-roll, speech, and the trailing silence that ended it."""
    speech_ms: float
    reason: EndReason
    trailing_ms: float
    """Audio after the end of speech when the end was decided (the endpointing delay)."""


@dataclass(frozen=True)
class CaptureUpdate:
    started: bool = False
    """Speech started in this chunk."""
    utterance: Utterance | None = None
    """An utterance ended in this chunk."""
    discarded_ms: float | None = None
    """A blip too short to count ended in this chunk (its speech length)."""


class UtteranceCapture:
    def __init__(self, config: EndpointConfig | None = None, *, preroll_ms: float = 300.0,
                 sample_rate: int = UPLINK_RATE):
        self.endpointer = Endpointer(config)
        self.sample_rate = sample_rate
        self.preroll_samples = int(sample_rate * preroll_ms / 1000)
        self._preroll: deque[PCM] = deque()
        self._preroll_len = 0
        self._buffer: list[PCM] = []

    @property
    def config(self) -> EndpointConfig:
        return self.endpointer.config

    @property
    def in_utterance(self) -> bool:
        return self.endpointer.in_utterance

    @property
    def speech_ms(self) -> float:
        return self.endpointer.speech_ms

    @property
    def silence_ms(self) -> float:
        return self.endpointer.silence_ms

    def snapshot(self) -> PCM:
        """The utterance heard so far (while in one)."""
        return np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.int16)

    def reset(self) -> None:
        self.endpointer.reset()
        self._preroll.clear()
        self._preroll_len = 0
        self._buffer = []

    def feed(self, pcm: PCM, decisions: Sequence[bool], decision_ms: float | None = None) -> CaptureUpdate:
        """One chunk and the speech decisions made on it (each covering ``decision_ms``).

        With ``decision_ms`` None there must be one decision for the whole chunk.
        """
        if decision_ms is None:
            decision_ms = 1000 * pcm.size / self.sample_rate
        was_in = self.endpointer.in_utterance
        started = False
        ended: SpeechEnded | None = None
        discarded: float | None = None
        for decision in decisions:
            for event in self.endpointer.feed(bool(decision), decision_ms):
                if isinstance(event, SpeechStarted):
                    started = True
                elif isinstance(event, SpeechEnded):
                    ended = event
                elif isinstance(event, SpeechDiscarded):
                    discarded = event.speech_ms
        if started and not was_in:
            self._buffer = list(self._preroll)
            self._preroll.clear()
            self._preroll_len = 0
        if was_in or started:
            self._buffer.append(pcm)
        else:
            self._remember(pcm)
        if ended is not None:
            audio = np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.int16)
            self._buffer = []
            trailing = 0.0 if ended.reason is EndReason.MAX_LENGTH else self.endpointer.position_ms - ended.at_ms
            return CaptureUpdate(started, Utterance(audio, ended.speech_ms, ended.reason, trailing))
        if discarded is not None:
            self._buffer = []
        return CaptureUpdate(started, None, discarded)

    def _remember(self, pcm: PCM) -> None:
        self._preroll.append(pcm)
        self._preroll_len += pcm.size
        while self._preroll and self._preroll_len - self._preroll[0].size >= self.preroll_samples:
            self._preroll_len -= self._preroll.popleft().size
