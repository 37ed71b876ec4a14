from __future__ import annotations

from xiaozhi_local.pipeline.endpoint import (
    EndpointConfig,
    Endpointer,
    EndReason,
    SpeechDiscarded,
    SpeechEnded,
    SpeechStarted,
)

CFG = EndpointConfig(start_ms=90, end_silence_ms=300, min_speech_ms=200, max_utterance_ms=2000)


def run(pattern: str, chunk_ms: float = 30, config: EndpointConfig = CFG) -> list[object]:
    """'S' = a speech chunk, '.' = silence."""
    ep = Endpointer(config)
    events: list[object] = []
    for c in pattern:
        events += ep.feed(c == "S", chunk_ms)
    return events


def test_silence_only_yields_nothing() -> None:
    assert run("." * 200) == []


def test_start_needs_enough_speech_and_end_needs_enough_silence() -> None:
    assert run("..SS." + "." * 20) == []  # a 60 ms blip never starts an utterance
    events = run("..SS." + "S" * 10 + "." * 9)
    assert events == [SpeechStarted(150)]  # 270 ms of silence is not enough to end it
    events = run("..SS." + "S" * 10 + "." * 10)
    end = events[1]
    assert isinstance(end, SpeechEnded) and end.reason is EndReason.SILENCE
    assert end.at_ms == 450 and end.speech_ms == 300


def test_short_pauses_do_not_end_the_utterance() -> None:
    events = run("SSSSSS" + "....." + "SSSSSS" + "." * 10)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert isinstance(events[1], SpeechEnded) and events[1].speech_ms == 360


def test_too_short_speech_is_discarded() -> None:
    events = run("SSSS" + "." * 10)
    assert [type(e) for e in events] == [SpeechStarted, SpeechDiscarded]


def test_monologue_is_cut_at_max_length_and_a_new_one_can_start() -> None:
    events = run("S" * 100)
    assert isinstance(events[1], SpeechEnded) and events[1].reason is EndReason.MAX_LENGTH
    assert 2000 <= events[1].at_ms < 2030  # cut on the first chunk boundary past the limit
    assert isinstance(events[2], SpeechStarted)
