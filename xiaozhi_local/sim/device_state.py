"""The simulated device's view of a conversation, as a pure state machine (protocol.md §2.4-§2.7).

No sockets, no clocks: every method takes the time ``t`` (seconds, any monotonic epoch).
It mirrors ``Application::OnIncomingJson`` / ``SetDeviceState`` / ``OnIncomingAudio`` of
stock firmware:

* ``tts start`` → **speaking** (from idle or listening); entering speaking resets the decoder
  (drops queued packets) and, unless the mode is realtime, stops the microphone.
* ``tts stop`` while speaking → **idle** in manual mode, else **listening**. In auto mode the
  device waits for queued playback to finish, then sends a new ``listen start`` and reopens
  the microphone (:meth:`DeviceModel.playback_drained`); in realtime mode the mic never stopped.
* Downlink audio is queued **only while speaking** (§2.4 "Gating"); anything else is dropped
  and counted as a server violation: *early* (before ``tts start``) or *late* (after ``tts stop``).
* :class:`PlaybackQueue` models the 40-packet decode queue (``MAX_DECODE_PACKETS_IN_QUEUE``)
  in front of 2 decoded buffers and the packet being played, drained in real time by each
  packet's duration. A packet arriving while the decode queue is full is dropped
  (``PushPacketToDecodeQueue`` returns false) and counted as an overflow.
* ``abort`` leaves the device speaking (it waits for the server's ``tts stop``) and, as on
  stock firmware, keeps queueing audio; packets after the abort are counted so a test can
  see how quickly the server stopped.
* **Barge-in** (realtime mode only): the user speaks over the reply; the device sends no
  message (the mic was never closed), so the server must notice the speech itself (§2.7).
  :meth:`DeviceModel.barge_in` starts a new turn for that utterance while server messages
  still belong to the interrupted reply, until its ``tts stop`` (or, from a server that never
  stops it, the ``stt`` of the new utterance). The interrupted turn records when the barge-in
  started and when the reply stopped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from xiaozhi_local.protocol.types import ListenMode

__all__ = [
    "DECODE_QUEUE_PACKETS",
    "PLAYBACK_SLOTS",
    "AudioVerdict",
    "DeviceModel",
    "Phase",
    "PlaybackQueue",
    "TurnMetrics",
    "server_message_problems",
]

DECODE_QUEUE_PACKETS: Final = 40
"""``MAX_DECODE_PACKETS_IN_QUEUE`` = 2400 ms / 60 ms (``main/audio/audio_service.h``)."""
PLAYBACK_SLOTS: Final = 3
"""Packets past the decode queue: ``MAX_PLAYBACK_TASKS_IN_QUEUE`` (2) + the one playing."""


class Phase(StrEnum):
    """The device states that matter on an open channel (``kDeviceState*``)."""

    IDLE = "idle"
    LISTENING = "listening"
    SPEAKING = "speaking"


class AudioVerdict(StrEnum):
    """What happened to one downlink packet."""

    QUEUED = "queued"
    EARLY = "dropped_before_tts_start"
    LATE = "dropped_after_tts_stop"
    OVERFLOW = "dropped_queue_full"


class PlaybackQueue:
    """Packets not yet played: a decode queue of ``limit`` in front of ``slots`` more.

    Playback is back-to-back: a packet starts when it arrives or when the previous one ends,
    whichever is later, and takes its own duration.
    """

    def __init__(self, limit: int = DECODE_QUEUE_PACKETS, slots: int = PLAYBACK_SLOTS) -> None:
        self.limit = limit
        self.slots = slots
        self._ends: deque[float] = deque()

    def _advance(self, t: float) -> None:
        while self._ends and self._ends[0] <= t:
            self._ends.popleft()

    def in_flight(self, t: float) -> int:
        """Packets received and not yet finished playing at ``t``."""
        self._advance(t)
        return len(self._ends)

    def depth(self, t: float) -> int:
        """Occupancy of the decode queue proper at ``t``."""
        return max(0, self.in_flight(t) - self.slots)

    def push(self, t: float, duration_s: float) -> bool:
        """Queue one packet; False (dropped) when the decode queue is full."""
        if self.depth(t) >= self.limit:
            return False
        start = max(t, self._ends[-1]) if self._ends else t
        self._ends.append(start + duration_s)
        return True

    def drain_time(self, t: float) -> float:
        """Seconds from ``t`` until everything queued has been played."""
        self._advance(t)
        return max(0.0, self._ends[-1] - t) if self._ends else 0.0

    def clear(self) -> None:
        """``ResetDecoder``: forget every queued packet."""
        self._ends.clear()


@dataclass(slots=True)
class TurnMetrics:
    """One user turn, from its ``listen`` messages to the end of playback. Times are absolute."""

    index: int
    mode: str
    t_begin: float
    t_listen_start: float | None = None
    t_speech_end: float | None = None
    t_listen_stop: float | None = None
    t_stt: float | None = None
    t_llm: float | None = None
    t_tts_start: float | None = None
    t_first_audio: float | None = None
    t_last_audio: float | None = None
    t_tts_stop: float | None = None
    t_playback_end: float | None = None
    t_abort: float | None = None
    t_barge_in: float | None = None
    """When the user started speaking over this turn's reply (realtime barge-in)."""
    barge_in: bool = False
    """This turn's utterance is a barge-in: it interrupted the previous turn's reply."""
    speech_frames: int = 0
    speech_truncated: bool = False
    stt_texts: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    emotions: list[str] = field(default_factory=list)
    frames_received: int = 0
    frames_queued: int = 0
    dropped_early: int = 0
    dropped_late: int = 0
    dropped_overflow: int = 0
    frames_after_abort: int = 0
    frames_after_barge_in: int = 0
    """Reply packets that still arrived (before its ``tts stop``) once the user barged in."""
    max_queue_depth: int = 0
    audio_s: float = 0.0
    """Seconds of reply audio queued for playback."""
    audio_arrivals: list[tuple[float, float]] = field(default_factory=list)
    """(arrival time, duration) of every packet queued for playback: gaps in playback show here."""
    completed: bool = False

    @property
    def gating_drops(self) -> int:
        """Packets dropped because the device was not speaking (§2.4 "Gating")."""
        return self.dropped_early + self.dropped_late

    @property
    def barge_in_stopped(self) -> bool:
        """The server sent ``tts stop`` for this reply after the user barged in."""
        return self.t_barge_in is not None and self.t_tts_stop is not None and self.t_tts_stop >= self.t_barge_in

    @property
    def barge_in_stop_s(self) -> float | None:
        """Seconds from the start of the barge-in speech to this reply's ``tts stop``."""
        if not self.barge_in_stopped:
            return None
        assert self.t_tts_stop is not None and self.t_barge_in is not None
        return self.t_tts_stop - self.t_barge_in


class DeviceModel:
    """State of one simulated device on an open WebSocket channel."""

    def __init__(self, *, queue_limit: int = DECODE_QUEUE_PACKETS, playback_slots: int = PLAYBACK_SLOTS) -> None:
        self.phase = Phase.IDLE
        self.mode: ListenMode = ListenMode.AUTO
        self.mic_on = False
        self.aborted = False
        self.playback = PlaybackQueue(queue_limit, playback_slots)
        self.turns: list[TurnMetrics] = []
        self.notes: list[str] = []
        self._interrupted: TurnMetrics | None = None  # a reply the user barged into, until it ends

    @property
    def turn(self) -> TurnMetrics:
        """The current user turn (a turn 0 is created on first use)."""
        if not self.turns:
            self.begin_turn(0.0)
        return self.turns[-1]

    @property
    def reply_turn(self) -> TurnMetrics:
        """The turn that server messages belong to: :attr:`turn`, or the reply being barged into."""
        return self._interrupted if self._interrupted is not None else self.turn

    def begin_turn(self, t: float) -> TurnMetrics:
        """Start measuring a new user turn."""
        metrics = TurnMetrics(index=len(self.turns), mode=str(self.mode), t_begin=t)
        self.turns.append(metrics)
        self._interrupted = None
        return metrics

    # --- device-initiated transitions (the caller sends the matching message) ---

    def start_listening(self, mode: ListenMode, t: float) -> None:
        """Wake word / button: ``listen start`` in ``mode``; the mic opens."""
        self.mode = mode
        self.phase = Phase.LISTENING
        self.mic_on = True
        self.turn.t_listen_start = t

    def stop_listening(self, t: float) -> bool:
        """Push-to-talk release: True when a ``listen stop`` is due (device was listening)."""
        if self.phase is not Phase.LISTENING:
            return False
        self.phase = Phase.IDLE
        self.mic_on = False
        self.turn.t_listen_stop = t
        return True

    def abort(self, t: float) -> bool:
        """Button press while speaking: True when an ``abort`` is due."""
        if self.phase is not Phase.SPEAKING:
            return False
        self.aborted = True
        self.reply_turn.t_abort = t
        return True

    def barge_in(self, t: float) -> TurnMetrics | None:
        """The user starts speaking over the reply (realtime mode, mic open): the new turn, or
        None when there is nothing to interrupt. No message is due: the mic just streams it."""
        if self.phase is not Phase.SPEAKING or self.mode is not ListenMode.REALTIME or not self.mic_on:
            return None
        if self._interrupted is not None:  # already talking over this reply
            return None
        interrupted = self.turn
        interrupted.t_barge_in = t
        metrics = self.begin_turn(t)
        metrics.barge_in = True
        self._interrupted = interrupted
        return metrics

    def playback_drained(self, t: float) -> bool:
        """After ``tts stop`` and playback: True when an auto-mode ``listen start`` is due."""
        turn = self.turn
        if turn.t_tts_stop is not None and turn.t_playback_end is None:
            turn.t_playback_end = t
        if self.phase is Phase.LISTENING and not self.mic_on:
            self.mic_on = True
            return True
        return False

    # --- server messages ---

    def on_tts_start(self, t: float) -> None:
        """``tts start`` (§2.6)."""
        self.aborted = False
        turn = self.reply_turn
        if turn.t_tts_start is None:
            turn.t_tts_start = t
        if self.phase in (Phase.IDLE, Phase.LISTENING):
            self.phase = Phase.SPEAKING
            self.playback.clear()
            if self.mode is not ListenMode.REALTIME:
                self.mic_on = False

    def on_tts_stop(self, t: float) -> bool:
        """``tts stop`` (§2.6); True when it ended the reply (the device was speaking)."""
        if self.phase is not Phase.SPEAKING:
            self.notes.append(f"tts stop while {self.phase}: ignored, as stock firmware does")
            return False
        self.phase = Phase.IDLE if self.mode is ListenMode.MANUAL else Phase.LISTENING
        if self.mode is ListenMode.AUTO:
            self.mic_on = False  # reopened by playback_drained()
        turn = self.reply_turn
        turn.t_tts_stop = t
        turn.completed = True
        self._interrupted = None  # the reply barged into is over: what follows answers the new turn
        return True

    def on_stt(self, text: str, t: float) -> None:
        """``stt`` (§2.6): the server's transcript of the user."""
        if self._interrupted is not None:
            self._interrupted = None
            self.notes.append("after a barge-in the server answered without stopping its reply first (no tts stop)")
        turn = self.turn
        if turn.t_stt is None:
            turn.t_stt = t
        turn.stt_texts.append(text)

    def on_llm(self, emotion: str, t: float) -> None:
        """``llm`` (§2.6): only ``emotion`` matters to the device."""
        turn = self.reply_turn
        if turn.t_llm is None:
            turn.t_llm = t
        turn.emotions.append(emotion)

    def on_sentence(self, text: str) -> None:
        """``tts sentence_start`` (§2.6): the assistant subtitle."""
        self.reply_turn.sentences.append(text)

    def on_audio(self, t: float, duration_s: float) -> AudioVerdict:
        """One downlink packet of ``duration_s`` arrives at ``t`` (§2.4)."""
        turn = self._late_reply_turn()
        turn.frames_received += 1
        if self.phase is not Phase.SPEAKING:
            if turn.t_tts_stop is not None:
                turn.dropped_late += 1
                return AudioVerdict.LATE
            turn.dropped_early += 1
            return AudioVerdict.EARLY
        if self.aborted:
            turn.frames_after_abort += 1
        if turn.t_barge_in is not None:
            turn.frames_after_barge_in += 1
        if not self.playback.push(t, duration_s):
            turn.dropped_overflow += 1
            return AudioVerdict.OVERFLOW
        turn.frames_queued += 1
        turn.audio_s += duration_s
        turn.audio_arrivals.append((t, duration_s))
        if turn.t_first_audio is None:
            turn.t_first_audio = t
        turn.t_last_audio = t
        turn.max_queue_depth = max(turn.max_queue_depth, self.playback.depth(t))
        return AudioVerdict.QUEUED

    def _late_reply_turn(self) -> TurnMetrics:
        """Where a packet counts: after a barge-in and the interrupted reply's ``tts stop``, packets
        before any sign of the new reply are that old reply's tail."""
        turn = self.reply_turn
        if turn.barge_in and self.phase is not Phase.SPEAKING and turn.t_stt is None and turn.t_tts_start is None:
            return self.turns[turn.index - 1]
        return turn


def server_message_problems(message: dict[str, Any]) -> list[str]:
    """Ways a server → device message would trip stock firmware (§2.2, §2.6). Empty = fine."""
    kind = message.get("type")
    if not isinstance(kind, str):
        return ["message without a string 'type': the firmware logs 'Message type is invalid' and ignores it"]
    problems: list[str] = []
    if kind == "tts" and not isinstance(message.get("state"), str):
        problems.append("tts message without a string 'state': stock firmware dereferences a null pointer")
    elif kind == "alert" and not all(isinstance(message.get(k), str) for k in ("status", "message", "emotion")):
        problems.append("alert without string status, message and emotion: ignored by the firmware (§2.6)")
    elif kind == "goodbye":
        problems.append("goodbye is MQTT-only; over WebSocket the firmware ignores it (close the socket instead)")
    elif kind not in ("stt", "llm", "tts", "mcp", "system", "alert", "custom", "hello"):
        problems.append(f"unknown message type {kind[:40]!r}: logged and ignored by the firmware")
    return problems
