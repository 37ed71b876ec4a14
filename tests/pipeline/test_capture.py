"""UtteranceCapture: pre-roll, buffering and endpointing over speech decisions (pure)."""

from __future__ import annotations

import numpy as np

from xiaozhi_local.pipeline.capture import UtteranceCapture
from xiaozhi_local.pipeline.endpoint import EndpointConfig, EndReason

CHUNK = 960  # 60 ms at 16 kHz


def chunk(value: int) -> np.ndarray:
    return np.full(CHUNK, value, dtype=np.int16)


def feed(capture: UtteranceCapture, pattern: str, value_of=None):
    """'s' = a speech chunk, '.' = a silent chunk; chunk values count up so order is visible."""
    updates = []
    for i, c in enumerate(pattern):
        updates.append(capture.feed(chunk(i + 1), [c == "s"]))
    return updates


def test_an_utterance_keeps_its_preroll_and_ends_after_trailing_silence() -> None:
    capture = UtteranceCapture(EndpointConfig(start_ms=60, end_silence_ms=300, min_speech_ms=200),
                               preroll_ms=120)
    updates = feed(capture, "...." + "sssss" + ".....")
    ended = [u for u in updates if u.utterance is not None]
    assert len(ended) == 1 and updates.index(ended[0]) == 13
    assert [u.started for u in updates].index(True) == 4
    utterance = ended[0].utterance
    values = sorted(set(utterance.pcm.tolist()))
    assert values == list(range(3, 15))  # two pre-roll chunks (120 ms), speech, the 5 silent chunks
    assert utterance.speech_ms == 300 and utterance.reason is EndReason.SILENCE
    assert utterance.trailing_ms == 300
    assert not capture.in_utterance


def test_a_blip_is_discarded_and_never_becomes_an_utterance() -> None:
    capture = UtteranceCapture(EndpointConfig(start_ms=60, end_silence_ms=180, min_speech_ms=250))
    updates = feed(capture, "..ss....ss...")
    assert all(u.utterance is None for u in updates)
    assert sum(u.discarded_ms is not None for u in updates) == 2


def test_a_monologue_is_cut_at_the_maximum_length() -> None:
    capture = UtteranceCapture(EndpointConfig(start_ms=60, max_utterance_ms=1200))
    updates = feed(capture, "s" * 40)
    cut = [u.utterance for u in updates if u.utterance is not None]
    assert cut and cut[0].reason is EndReason.MAX_LENGTH and cut[0].trailing_ms == 0
    assert cut[0].pcm.size == 20 * CHUNK  # 1200 ms


def test_several_decisions_per_chunk_count_their_own_length() -> None:
    capture = UtteranceCapture(EndpointConfig(start_ms=64, end_silence_ms=320, min_speech_ms=100))
    pcm = np.ones(1024, np.int16)
    got = [capture.feed(pcm, [True, True], 32.0) for _ in range(3)]
    got += [capture.feed(pcm, [False, False], 32.0) for _ in range(5)]
    ended = [u.utterance for u in got if u.utterance is not None]
    assert len(ended) == 1 and ended[0].speech_ms == 192 and ended[0].trailing_ms == 320
    assert capture.speech_ms == 0


def test_reset_forgets_a_half_heard_utterance() -> None:
    capture = UtteranceCapture(EndpointConfig(start_ms=60, end_silence_ms=180, min_speech_ms=60))
    feed(capture, "sss")
    assert capture.in_utterance and capture.speech_ms == 180
    capture.reset()
    assert not capture.in_utterance
    assert all(u.utterance is None for u in feed(capture, "......"))
