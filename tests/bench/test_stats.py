"""The bench's pure figures: percentiles, underruns, stage compute, process samples, targets."""

from __future__ import annotations

from typing import Any

import pytest

from xiaozhi_local.bench.server import Sample
from xiaozhi_local.bench.stats import (
    compute_ms,
    dominant_stage,
    percentile,
    playback_gaps,
    process_summary,
    summarize,
    summarize_rows,
    tail_stall_ms,
    targets,
)

F = 0.06


def test_percentile_interpolates_between_ranks() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.95) == pytest.approx(4.8)
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 5.0
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_summarize_skips_missing_values() -> None:
    assert summarize([None, None]) is None
    stats = summarize([100.0, None, 300.0, 200.0])
    assert stats == {"n": 3, "mean": 200.0, "min": 100.0, "p50": 200.0, "p95": 290.0, "max": 300.0}


def test_paced_reply_has_no_underrun() -> None:
    # a 5-packet pre-buffer at once, then one packet per 60 ms: the queue never runs dry
    arrivals = [(0.0, F)] * 5 + [(0.3 + k * F, F) for k in range(10)]
    assert playback_gaps(arrivals) == (0, 0.0)


def test_a_stall_between_sentences_is_one_underrun() -> None:
    first = [(k * F, F) for k in range(5)]  # plays until 0.30
    second = [(0.5 + k * F, F) for k in range(3)]  # arrives 200 ms after the queue emptied
    count, stall = playback_gaps(first + second)
    assert count == 1 and stall == pytest.approx(200.0)


def test_a_burst_after_a_stall_does_not_hide_it() -> None:
    before = [(0.0, F)] * 5  # plays until 0.30
    burst = [(0.45, F)] * 5 + [(0.45 + 0.3 + k * F, F) for k in range(4)]
    count, stall = playback_gaps(before + burst)
    assert count == 1 and stall == pytest.approx(150.0)


def test_jitter_below_the_tolerance_is_not_an_underrun() -> None:
    arrivals = [(0.0, F), (F + 0.002, F), (2 * F + 0.004, F)]
    assert playback_gaps(arrivals)[0] == 0


def test_tail_stall_is_a_lower_bound_from_first_and_last_arrival() -> None:
    # 10 packets paced with no lead: the last one arrives when the 9 before it have played
    assert tail_stall_ms(0.0, 540.0, 0.6, 10) == 0.0
    # the same reply whose last packet came 250 ms late
    assert tail_stall_ms(0.0, 790.0, 0.6, 10) == pytest.approx(250.0)
    assert tail_stall_ms(None, 790.0, 0.6, 10) == 0.0
    assert tail_stall_ms(0.0, 0.0, 0.06, 1) == 0.0


STAGES_MS = {"endpoint": 500.0, "asr": 120.0, "llm_first_token": 80.0, "first_clause": 150.0,
             "tts_first_chunk": 90.0, "first_frame": 10.0}  # fmt: skip


def server_row(**stages: float | None) -> dict[str, Any]:
    merged = {**STAGES_MS, **stages}
    present = [v for v in merged.values() if v is not None]
    return {"stages_ms": merged, "e2e_ms": sum(present), "compute_ms": {"asr": 100.0, "llm": 600.0, "tts": 300.0},
            "llm_tokens": 40, "llm_tokens_per_s": 25.0}


def row(e2e: float | None, *, ok: bool = True, server: dict[str, Any] | None = None,
        underrun: tuple[int, float] = (0, 0.0), exact: bool = True) -> dict[str, Any]:  # fmt: skip
    return {"ok": ok, "e2e_ms": e2e, "client_ms": {"stt": 600.0, "first_audio": e2e},
            "underrun": {"count": underrun[0], "stall_ms": underrun[1], "exact": exact}, "server": server}


def test_compute_uses_the_asr_compute_time_not_its_queueing() -> None:
    # 500 + min(100, 120) + 80 + 150 + 90: the ASR waited 20 ms for a worker, first_frame is glue
    assert compute_ms(server_row()) == 920.0
    assert compute_ms(server_row() | {"compute_ms": {}}) == 940.0
    assert compute_ms(server_row(asr=None)) is None


def test_summary_with_server_timings() -> None:
    rows = [row(1000.0, server=server_row()), row(1104.0, server=server_row(), underrun=(2, 300.0)),
            row(None, ok=False)]  # fmt: skip
    summary = summarize_rows(rows)
    assert (summary["turns"], summary["completed"], summary["failed"]) == (3, 2, 1)
    assert summary["e2e_ms"]["n"] == 2 and summary["e2e_ms"]["max"] == 1104.0
    server = summary["server"]
    assert server["turns"] == 2 and server["llm_tokens"] == 80
    assert server["stages_ms"]["endpoint"]["p50"] == 500.0
    assert server["e2e_over_compute"]["min"] == pytest.approx(1000 / 920, abs=1e-3)
    assert summary["underruns"] == {"turns_with_underrun": 1, "count": 2, "stall_ms_total": 300.0, "exact": True}
    assert summary["dominant_stage"] == "endpoint"


def test_summary_without_server_timings() -> None:
    summary = summarize_rows([row(80.0), row(90.0)])
    assert summary["server"] is None and summary["dominant_stage"] is None
    assert summary["e2e_ms"]["p50"] == 85.0
    assert dominant_stage(None) is None


def test_process_summary_cpu_is_percent_of_one_core() -> None:
    samples = [Sample(0.0, 100, 1.0, 4), Sample(1.0, 300, 2.5, 9), Sample(2.0, 200, 3.0, 6)]
    proc = process_summary(samples, cores=2)
    assert proc is not None
    assert proc["rss_bytes"] == {"start": 100, "peak": 300, "end": 200, "mean": 200}
    assert proc["cpu_s"] == 2.0 and proc["cpu_percent_mean"] == 100.0 and proc["cpu_percent_peak"] == 150.0
    assert proc["threads_peak"] == 9 and proc["cores"] == 2
    assert process_summary([]) is None


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["target"]: r for r in rows}


def test_targets_pass_fail_and_unknown() -> None:
    summary = summarize_rows([row(650.0, server=server_row()), row(690.0, server=server_row())])
    proc = {"rss_bytes": {"peak": 1_300_000_000}}
    result = by_name(targets(summary, proc, concurrency=3))
    assert result["end-to-end p50"]["status"] == "pass"
    assert result["end-to-end p95"]["status"] == "pass"
    assert result["LLM first token p50 (cached system prompt)"]["measured"] == 80.0
    assert result["server RSS peak"]["status"] == "fail"
    assert result["downlink underruns with 3 concurrent conversations"]["status"] == "pass"

    client_only = by_name(targets(summarize_rows([row(1500.0)]), None, concurrency=1))
    assert client_only["end-to-end p50"]["status"] == "fail"
    first_token = client_only["LLM first token p50 (cached system prompt)"]
    assert first_token["status"] == "unknown" and "no stage timings" in first_token["note"]
    assert client_only["server RSS peak"]["status"] == "unknown"
    underrun = client_only["downlink underruns with 3 concurrent conversations"]
    assert underrun["status"] == "unknown" and "--concurrency 3" in underrun["note"]


def test_an_underrun_fails_the_target_even_when_it_is_a_lower_bound() -> None:
    summary = summarize_rows([row(600.0, underrun=(1, 120.0), exact=False)])
    underrun = by_name(targets(summary, None, concurrency=3))["downlink underruns with 3 concurrent conversations"]
    assert underrun["status"] == "fail" and underrun["measured"] == 1.0 and "lower bound" in underrun["note"]
