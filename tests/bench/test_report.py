"""report.json / report.md / latency.png from synthetic simulator results (no server, no sockets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from xiaozhi_local.bench.chart import nice_ticks
from xiaozhi_local.bench.report import build_report, render_markdown, turn_row, write_report
from xiaozhi_local.bench.runner import BenchOptions, BenchRun, TurnRecord
from xiaozhi_local.bench.server import Sample
from xiaozhi_local.bench.utterances import ENGLISH, SpokenUtterance
from xiaozhi_local.sim.device_state import TurnMetrics
from xiaozhi_local.sim.report import SessionResult


def record(index: int, *, e2e_s: float = 0.6, late_last_s: float = 0.0, server: dict[str, Any] | None = None,
           error: str | None = None, warmup: bool = False) -> TurnRecord:  # fmt: skip
    spoken = SpokenUtterance(ENGLISH[index % len(ENGLISH)], Path(f"/tmp/q{index}.wav"), 1.2)
    result = SessionResult(device_id="02:00:00:00:00:01", client_id="c", t0=100.0, session_id=f"s{index}",
                           error=error)  # fmt: skip
    turn = TurnMetrics(index=0, mode="auto", t_begin=100.0, t_speech_end=101.2)
    if error is None:
        first = 101.2 + e2e_s
        turn.t_stt, turn.t_tts_start, turn.t_first_audio = 101.5, first - 0.01, first
        turn.frames_queued = turn.frames_received = 20
        turn.audio_s = 1.2
        turn.t_last_audio = first + 19 * 0.06 - 0.3 + late_last_s  # a 5-packet pre-buffer, then real time
        turn.t_tts_stop, turn.t_playback_end = turn.t_last_audio + 0.4, turn.t_last_audio + 0.36
        turn.completed = True
        turn.stt_texts, turn.sentences = ["what is two plus two"], ["Four."]
    result.turns = [turn]
    return TurnRecord(index, index % 2, warmup, spoken, result, server)


def timings(session: str, e2e_ms: float) -> dict[str, Any]:
    stages = {"endpoint": 500.0, "asr": 40.0, "llm_first_token": 30.0, "first_clause": 20.0,
              "tts_first_chunk": e2e_ms - 600.0, "first_frame": 10.0}  # fmt: skip
    return {"session_id": session, "device_id": "02:00:00:00:00:01", "turn": 1, "source": "voice",
            "outcome": "ok", "stages_ms": stages, "e2e_ms": e2e_ms, "asr_compute_s": 0.035, "llm_compute_s": 0.8,
            "tts_compute_s": 0.2, "llm_tokens": 20, "llm_tokens_per_s": 25.0, "transcript": "what is two plus two",
            "reply": "Four."}  # fmt: skip


def bench_run(records: list[TurnRecord]) -> BenchRun:
    samples = [Sample(10.0, 500_000_000, 5.0, 12), Sample(11.0, 520_000_000, 5.8, 14)]
    return BenchRun(records, samples, {"conversation": "pipeline", "models": {"llm": "smollm2"}}, 12.5, 3, True,
                    ready=Sample(9.0, 450_000_000, 4.0, 10))


def make_report(records: list[TurnRecord], concurrency: int = 1) -> dict[str, Any]:
    options = BenchOptions(turns=len([r for r in records if not r.warmup]), warmup=1, concurrency=concurrency)
    return build_report(bench_run(records), options, server={"url": "http://127.0.0.1:1/xiaozhi/ota/",
                        "started": True}, utterances={"voice": "v", "notes": ["Chinese questions skipped"]},
                        command=["xiaozhi", "bench"])  # fmt: skip


def test_turn_row_reads_the_device_and_server_views() -> None:
    row = turn_row(record(0, e2e_s=0.65, server=timings("s0", 640.0)))
    assert row["ok"] and row["e2e_ms"] == 650.0 and row["client_ms"]["stt"] == 300.0
    assert row["transcript"] == "what is two plus two" and row["reply"] == "Four."
    assert row["underrun"] == {"count": 0, "stall_ms": 0.0, "exact": False}
    assert row["server"]["e2e_ms"] == 640.0 and row["server"]["compute_ms"]["asr"] == 35.0


def test_a_late_last_packet_is_an_underrun() -> None:
    row = turn_row(record(1, late_last_s=0.5))
    assert row["underrun"]["count"] == 1 and row["underrun"]["stall_ms"] > 100


def test_a_failed_turn_is_reported_not_raised() -> None:
    row = turn_row(record(2, error="turn 1: no complete reply (tts stop) within 60 s"))
    assert not row["ok"] and row["e2e_ms"] is None and "no complete reply" in row["error"]


def test_report_with_server_stages(tmp_path: Path) -> None:
    records = [record(0, warmup=True, server=timings("s0", 900.0))]
    records += [record(i, e2e_s=0.6 + 0.05 * i, server=timings(f"s{i}", 590.0 + 50 * i)) for i in range(1, 5)]
    report = make_report(records)
    summary = report["summary"]
    assert summary["turns"] == 4 and summary["completed"] == 4  # the warm-up is left out
    assert summary["server"]["stages_ms"]["endpoint"]["p50"] == 500.0
    assert summary["dominant_stage"] == "endpoint"
    assert report["process"]["rss_bytes"]["peak"] == 520_000_000 and report["process"]["cpu_percent_mean"] == 80.0
    assert report["process"]["rss_bytes"]["ready"] == 450_000_000
    assert {t["target"] for t in report["targets"]} >= {"end-to-end p50", "server RSS peak"}
    assert report["server"]["conversation"] == "pipeline" and report["server"]["started"] is True
    assert report["machine"]["cores"] and report["samples"][1]["t_s"] == 1.0

    paths = write_report(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["summary"] == json.loads(json.dumps(summary))
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "## Targets" in markdown and "stage: llm_first_token" in markdown
    assert "What is the capital of France?" in markdown and "Dominant stage: **endpoint**" in markdown
    assert "RSS 450 MB before the first turn" in markdown
    with Image.open(paths["chart"]) as image:
        assert image.format == "PNG" and image.size == (1100, 620)
        colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16) or []}
    assert (158, 202, 225) in colours  # the endpoint stage is drawn


def test_report_without_server_stages_says_so(tmp_path: Path) -> None:
    report = make_report([record(0), record(1, error="refused")])
    assert report["summary"]["server"] is None and report["summary"]["failed"] == 1
    assert any("no stage timings" in note for note in report["notes"])
    markdown = render_markdown(report)
    assert "client-side figures only" in markdown and "✗ refused" in markdown
    assert "Chinese questions skipped" in markdown
    paths = write_report(report, tmp_path)
    with Image.open(paths["chart"]) as image:
        colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16) or []}
    assert (150, 150, 150) in colours  # device-measured bars


def test_nice_ticks_cover_the_range() -> None:
    assert nice_ticks(1000) == [0, 200, 400, 600, 800, 1000]
    ticks = nice_ticks(1234)
    assert ticks[0] == 0 and ticks[-1] >= 1234 and len(ticks) <= 8
    assert nice_ticks(0) == [0.0, 1.0]
