"""The simulated device's pure state machine (protocol.md §2.4-§2.7), driven by a FakeClock."""

from __future__ import annotations

import pytest

from xiaozhi_local.audio.clock import FakeClock
from xiaozhi_local.protocol.types import ListenMode
from xiaozhi_local.sim.device_state import (
    DECODE_QUEUE_PACKETS,
    PLAYBACK_SLOTS,
    AudioVerdict,
    DeviceModel,
    Phase,
    PlaybackQueue,
    server_message_problems,
)

F = 0.06  # one 60 ms packet


def speaking_device(mode: ListenMode = ListenMode.AUTO, t: float = 0.0) -> DeviceModel:
    dev = DeviceModel()
    dev.begin_turn(t)
    dev.start_listening(mode, t)
    dev.on_tts_start(t)
    return dev


def test_audio_before_tts_start_is_dropped_and_counted() -> None:
    dev = DeviceModel()
    dev.begin_turn(0.0)
    dev.start_listening(ListenMode.AUTO, 0.0)
    assert dev.on_audio(0.1, F) is AudioVerdict.EARLY
    assert dev.on_audio(0.2, F) is AudioVerdict.EARLY
    dev.on_tts_start(0.3)
    assert dev.phase is Phase.SPEAKING
    assert dev.on_audio(0.3, F) is AudioVerdict.QUEUED
    turn = dev.turn
    assert (turn.dropped_early, turn.dropped_late, turn.frames_queued, turn.frames_received) == (2, 0, 1, 3)
    assert turn.gating_drops == 2
    assert turn.t_first_audio == 0.3  # the first *played* packet, not the dropped ones


@pytest.mark.parametrize(
    ("mode", "phase_after", "mic_after", "relisten"),
    [
        (ListenMode.AUTO, Phase.LISTENING, False, True),  # waits for playback, then listen start
        (ListenMode.MANUAL, Phase.IDLE, False, False),  # push-to-talk: idle until the next press
        (ListenMode.REALTIME, Phase.LISTENING, True, False),  # mic never stopped, no listen start
    ],
)
def test_tts_stop_per_mode(mode: ListenMode, phase_after: Phase, mic_after: bool, relisten: bool) -> None:
    dev = speaking_device(mode)
    assert dev.mic_on is (mode is ListenMode.REALTIME)  # speaking stops the mic unless realtime
    assert dev.on_tts_stop(1.0) is True
    assert (dev.phase, dev.mic_on) == (phase_after, mic_after)
    assert dev.playback_drained(1.2) is relisten
    assert dev.playback_drained(1.3) is False  # only once
    assert dev.turn.completed and dev.turn.t_tts_stop == 1.0 and dev.turn.t_playback_end == 1.2


def test_audio_after_tts_stop_is_late_and_tts_stop_while_listening_is_ignored() -> None:
    dev = speaking_device()
    dev.on_tts_stop(1.0)
    assert dev.on_audio(1.1, F) is AudioVerdict.LATE
    assert dev.turn.dropped_late == 1
    assert dev.on_tts_stop(1.2) is False  # the firmware only acts on tts stop while speaking
    assert any("ignored" in note for note in dev.notes)


def test_manual_listen_stop_goes_idle_and_tts_start_from_idle_speaks() -> None:
    dev = DeviceModel()
    dev.begin_turn(0.0)
    dev.start_listening(ListenMode.MANUAL, 0.0)
    assert dev.stop_listening(1.0) is True
    assert (dev.phase, dev.mic_on, dev.turn.t_listen_stop) == (Phase.IDLE, False, 1.0)
    assert dev.stop_listening(1.1) is False  # not listening any more: no second listen stop
    dev.on_tts_start(1.5)
    assert dev.phase is Phase.SPEAKING


def test_overflow_of_the_40_packet_decode_queue_with_fake_clock() -> None:
    clock = FakeClock()
    dev = speaking_device(t=clock.now())
    capacity = DECODE_QUEUE_PACKETS + PLAYBACK_SLOTS
    verdicts = [dev.on_audio(clock.now(), F) for _ in range(capacity + 5)]  # a burst at t=0
    assert verdicts.count(AudioVerdict.QUEUED) == capacity
    assert verdicts[capacity:] == [AudioVerdict.OVERFLOW] * 5
    assert dev.turn.dropped_overflow == 5 and dev.turn.max_queue_depth == DECODE_QUEUE_PACKETS
    clock.advance(F)  # one packet played: one slot free
    assert dev.on_audio(clock.now(), F) is AudioVerdict.QUEUED
    assert dev.on_audio(clock.now(), F) is AudioVerdict.OVERFLOW
    assert dev.playback.drain_time(clock.now()) == pytest.approx(capacity * F)


def test_real_time_pacing_with_small_lead_never_overflows() -> None:
    clock = FakeClock()
    dev = speaking_device(t=clock.now())
    for k in range(200):  # 5 packets ahead, then one per 60 ms
        if k >= 5:
            clock.set((k - 4) * F)
        assert dev.on_audio(clock.now(), F) is AudioVerdict.QUEUED
    assert dev.turn.dropped_overflow == 0
    assert dev.turn.max_queue_depth <= 5 - PLAYBACK_SLOTS + 1
    assert dev.turn.audio_s == pytest.approx(200 * F)


def test_tts_start_resets_the_queue_only_when_entering_speaking() -> None:
    dev = speaking_device()
    for _ in range(10):
        dev.on_audio(0.0, F)
    dev.on_tts_start(0.1)  # already speaking: no ResetDecoder
    assert dev.playback.in_flight(0.1) > 0
    dev.on_tts_stop(0.2)
    dev.on_tts_start(0.3)  # listening → speaking: queue cleared
    assert dev.playback.in_flight(0.3) == 0


def test_abort_only_while_speaking_and_later_audio_is_still_queued() -> None:
    dev = DeviceModel()
    dev.begin_turn(0.0)
    dev.start_listening(ListenMode.AUTO, 0.0)
    assert dev.abort(0.1) is False
    dev.on_tts_start(0.2)
    assert dev.abort(0.5) is True and dev.aborted and dev.turn.t_abort == 0.5
    assert dev.on_audio(0.6, F) is AudioVerdict.QUEUED  # stock firmware keeps playing until tts stop
    assert dev.turn.frames_after_abort == 1
    dev.on_tts_start(0.7)
    assert dev.aborted is False  # tts start clears the abort flag


def test_text_events_keep_the_first_timestamp() -> None:
    dev = speaking_device()
    dev.on_stt("hello", 1.0)
    dev.on_stt("again", 2.0)
    dev.on_llm("happy", 1.5)
    dev.on_sentence("Hi.")
    dev.on_sentence("How can I help?")
    turn = dev.turn
    assert (turn.t_stt, turn.t_llm, turn.stt_texts, turn.emotions) == (1.0, 1.5, ["hello", "again"], ["happy"])
    assert turn.sentences == ["Hi.", "How can I help?"]


def test_turns_are_measured_separately() -> None:
    dev = speaking_device()
    dev.on_audio(0.0, F)
    dev.on_tts_stop(0.5)
    second = dev.begin_turn(1.0)
    assert dev.on_audio(1.1, F) is AudioVerdict.EARLY  # new turn, no tts start yet
    assert (second.index, second.dropped_early, dev.turns[0].frames_queued) == (1, 1, 1)


def test_playback_queue_is_back_to_back() -> None:
    q = PlaybackQueue(limit=2, slots=1)
    assert q.push(0.0, 0.1) and q.push(0.0, 0.1) and q.push(0.0, 0.1)
    assert not q.push(0.0, 0.1)
    assert q.drain_time(0.05) == pytest.approx(0.25)
    assert q.in_flight(0.1) == 2 and q.depth(0.1) == 1


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ({"type": "tts"}, "null pointer"),
        ({"type": "alert", "status": "x"}, "alert"),
        ({"type": "goodbye", "session_id": "s"}, "MQTT-only"),
        ({"type": "weather"}, "unknown"),
        ({"text": "no type"}, "type"),
    ],
)
def test_server_message_problems(message: dict[str, object], fragment: str) -> None:
    problems = server_message_problems(message)
    assert len(problems) == 1 and fragment in problems[0]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "tts", "state": "start"},
        {"type": "stt", "text": "x"},
        {"type": "alert", "status": "a", "message": "b", "emotion": "sad"},
        {"type": "mcp", "payload": {}},
        {"type": "system", "command": "reboot"},
    ],
)
def test_valid_server_messages_have_no_problems(message: dict[str, object]) -> None:
    assert server_message_problems(message) == []


@pytest.mark.parametrize("mode", [ListenMode.AUTO, ListenMode.MANUAL])
def test_barge_in_only_in_realtime_mode_while_speaking(mode: ListenMode) -> None:
    assert speaking_device(mode).barge_in(1.0) is None  # the mic is closed while speaking: use abort
    dev = DeviceModel()
    dev.begin_turn(0.0)
    dev.start_listening(ListenMode.REALTIME, 0.0)
    assert dev.barge_in(0.5) is None  # listening, nothing to interrupt
    assert len(dev.turns) == 1 and dev.turn.t_barge_in is None


def test_barge_in_routes_messages_to_the_interrupted_reply_until_its_tts_stop() -> None:
    dev = speaking_device(ListenMode.REALTIME)
    first = dev.turn
    assert dev.on_audio(0.1, F) is AudioVerdict.QUEUED
    second = dev.barge_in(0.5)
    assert second is not None and second.barge_in and second.index == 1 and dev.turn is second
    assert first.t_barge_in == 0.5 and not first.barge_in_stopped and first.barge_in_stop_s is None
    assert dev.barge_in(0.6) is None  # already talking over this reply
    # the old reply goes on until the server stops it; the user's new utterance is the current turn
    assert dev.reply_turn is first and dev.phase is Phase.SPEAKING and dev.mic_on
    dev.on_sentence("still the old reply")
    assert dev.on_audio(0.6, F) is AudioVerdict.QUEUED
    assert dev.on_tts_stop(0.8) is True
    assert first.completed and first.barge_in_stopped and first.barge_in_stop_s == pytest.approx(0.3)
    assert (first.frames_after_barge_in, first.frames_queued, first.sentences) == (1, 2, ["still the old reply"])
    assert (dev.phase, dev.mic_on, dev.reply_turn) == (Phase.LISTENING, True, second)  # realtime: mic stays on
    assert not second.completed  # the turn now waits for the answer to the barge-in
    assert dev.on_audio(0.85, F) is AudioVerdict.LATE  # a straggler of the stopped reply
    assert first.dropped_late == 1 and second.frames_received == 0
    # the answer to the barge-in utterance
    dev.on_stt("and two plus two", 1.5)
    dev.on_tts_start(1.6)
    assert dev.on_audio(1.7, F) is AudioVerdict.QUEUED
    dev.on_sentence("Four.")
    assert dev.on_tts_stop(2.0) is True
    assert second.completed and second.stt_texts == ["and two plus two"] and second.sentences == ["Four."]
    assert (second.t_tts_start, second.t_first_audio, second.frames_queued) == (1.6, 1.7, 1)
    assert second.frames_after_barge_in == 0 and second.t_barge_in is None


def test_barge_in_answered_without_a_tts_stop() -> None:
    dev = speaking_device(ListenMode.REALTIME)
    first = dev.turn
    second = dev.barge_in(0.5)
    assert second is not None
    dev.on_stt("new question", 1.0)  # the server answers the new utterance but never stopped the old reply
    assert dev.reply_turn is second and second.stt_texts == ["new question"] and first.stt_texts == []
    assert any("without stopping its reply" in note for note in dev.notes)
    dev.on_tts_start(1.1)  # still speaking: stock firmware keeps the queue
    assert dev.on_audio(1.2, F) is AudioVerdict.QUEUED and second.frames_queued == 1
    dev.on_tts_stop(2.0)
    assert second.completed and not first.completed and not first.barge_in_stopped
