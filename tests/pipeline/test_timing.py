"""TurnTimings: stage figures add up to the end-to-end wait, also for overlapping stages."""

from __future__ import annotations

from xiaozhi_local.pipeline.timing import TurnLog, TurnTimings


def test_sequential_stages() -> None:
    t = TurnTimings("s", "d", 1, speech_end=10.0, vad_endpoint=10.5, asr_done=10.8, llm_first_token=10.9,
                    first_clause=11.1, tts_first_chunk=11.2, first_frame=11.25)
    assert t.stage_ms() == {"endpoint": 500.0, "asr": 300.0, "llm_first_token": 100.0, "first_clause": 200.0,
                            "tts_first_chunk": 100.0, "first_frame": 50.0}
    assert t.e2e_ms == 1250.0 and sum(v or 0 for v in t.stage_ms().values()) == t.e2e_ms


def test_speculative_work_counts_only_where_it_was_in_the_way() -> None:
    # ASR finished during the end-of-speech silence: it added nothing to the wait.
    t = TurnTimings("s", "d", 1, speech_end=10.0, vad_endpoint=10.5, asr_done=10.3, llm_first_token=10.6,
                    first_clause=10.7, tts_first_chunk=10.8, first_frame=10.82)
    stages = t.stage_ms()
    assert stages["asr"] == 0.0 and stages["llm_first_token"] == 100.0
    assert round(sum(v or 0 for v in stages.values()), 1) == t.e2e_ms == 820.0


def test_missing_marks_and_text_turns() -> None:
    t = TurnTimings("s", "d", 1, source="text", speech_end=5.0, llm_first_token=5.2, first_frame=5.6)
    stages = t.stage_ms()
    assert stages["endpoint"] is None and stages["asr"] is None and stages["llm_first_token"] == 200.0
    assert t.to_dict(with_text=False).keys().isdisjoint({"transcript", "reply"})
    assert "e2e=600ms" in t.log_line()


def test_the_log_keeps_only_the_most_recent_turns() -> None:
    log = TurnLog(size=3)
    for n in range(5):
        log.add(TurnTimings("s", "d", n))
    assert [t.turn for t in log.recent()] == [2, 3, 4] and log.total == 5
    assert [t.turn for t in log.recent(2)] == [3, 4]
