"""``report.json``, ``report.md`` and ``latency.png`` from a :class:`~.runner.BenchRun`."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psutil

from .. import __version__
from ..pipeline.timing import STAGES
from ..sim.report import session_to_dict
from .chart import draw_latency_chart
from .runner import BenchOptions, BenchRun, TurnRecord
from .stats import CLIENT_KEYS, playback_gaps, process_summary, summarize_rows, tail_stall_ms, targets

__all__ = ["DEFINITIONS", "REPORT_VERSION", "build_report", "machine_info", "render_markdown", "turn_row",
           "write_report"]

REPORT_VERSION: Final = 1

DEFINITIONS: Final = {
    "e2e_ms": "client side: the last speech frame sent by the simulated device → the first reply packet it "
              "queued for playback (includes the server's end-of-speech silence wait)",
    "client_ms": "client side, from the end of speech: stt message, tts start, first reply packet, tts stop, "
                 "end of playback",
    "server.stages_ms": "server side (GET /turns), consecutive: speech end → VAD endpoint (endpoint) → ASR done "
                        "(asr) → LLM first token → first clause → TTS first chunk → first frame sent",
    "e2e_over_compute": "client e2e ÷ (endpoint + ASR compute + LLM first token + first clause + TTS first chunk)"
                        "; the rest is overhead: queueing, first-frame encode/send, network",
    "llm_tokens_per_s": "per turn: generated tokens ÷ LLM compute time (server side)",
    "underrun": "the device's playback queue ran empty before the reply's last packet arrived (packets play "
                "back to back from the first one; gaps under 5 ms ignored)",
    "process": "the server process, sampled during the measured turns (rss_bytes.ready: before the first "
               "turn); CPU % is of one core",
}


def _underrun(record: TurnRecord, turn: dict[str, Any]) -> dict[str, Any] | None:
    metrics = record.result.turns[0] if record.result.turns else None
    if metrics is None or not turn["audio"]["frames_queued"]:
        return None
    arrivals = getattr(metrics, "audio_arrivals", None)  # per-packet arrivals, once the simulator records them
    if arrivals:
        count, stall = playback_gaps(arrivals)
        return {"count": count, "stall_ms": stall, "exact": True}
    times = turn["times_ms"]
    stall = tail_stall_ms(times["first_audio"], times["last_audio"], turn["audio"]["reply_audio_s"],
                          turn["audio"]["frames_queued"])
    return {"count": int(stall > 5.0), "stall_ms": stall, "exact": False}


def _server_row(timings: dict[str, Any] | None) -> dict[str, Any] | None:
    if not timings:
        return None
    return {
        "session_id": timings.get("session_id"),
        "turn": timings.get("turn"),
        "outcome": timings.get("outcome"),
        "stages_ms": {name: (timings.get("stages_ms") or {}).get(name) for name in STAGES},
        "e2e_ms": timings.get("e2e_ms"),
        "compute_ms": {k: round(1000 * float(timings.get(f"{k}_compute_s") or 0.0), 1) or None
                       for k in ("asr", "llm", "tts")},
        "llm_tokens": timings.get("llm_tokens", 0),
        "llm_prompt_tokens": timings.get("llm_prompt_tokens", 0),
        "llm_tokens_per_s": timings.get("llm_tokens_per_s"),
        "transcript": timings.get("transcript"),
        "reply": timings.get("reply"),
    }


def turn_row(record: TurnRecord) -> dict[str, Any]:
    """One turn, flat enough for the summary (:func:`~.stats.summarize_rows`) and the tables."""
    data = session_to_dict(record.result)
    turn = data["turns"][0] if data["turns"] else None
    utterance = record.spoken.utterance
    row: dict[str, Any] = {
        "index": record.index,
        "device": record.device,
        "warmup": record.warmup,
        "utterance": utterance.id,
        "lang": utterance.lang,
        "text": utterance.text,
        "speech_s": record.spoken.seconds,
        "ok": record.result.ok and turn is not None and turn["completed"],
        "error": record.result.error or (None if turn is None or turn["completed"] else "no complete reply"),
        "session_id": record.result.session_id,
        "transcript": turn["transcript"] if turn else "",
        "reply": turn["reply"] if turn else "",
        "e2e_ms": turn["latency"]["first_audio_ms"] if turn else None,
        "client_ms": {k: turn["latency"][f"{k}_ms"] for k in CLIENT_KEYS} if turn else {},
        "reply_audio_s": turn["audio"]["reply_audio_s"] if turn else 0.0,
        "frames_received": turn["audio"]["frames_received"] if turn else 0,
        "frames_dropped": sum(turn["audio"][k] for k in ("dropped_before_tts_start", "dropped_after_tts_stop",
                                                         "dropped_queue_full")) if turn else 0,
        "underrun": _underrun(record, turn) if turn else None,
        "server": _server_row(record.server),
        "notes": list(record.result.notes),
    }
    return row


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (for the README's Performance section)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
    }


def build_report(run: BenchRun, options: BenchOptions, *, server: dict[str, Any],
                 utterances: dict[str, Any], command: list[str]) -> dict[str, Any]:  # fmt: skip
    """The whole report as a JSON-ready dict."""
    rows = [turn_row(r) for r in run.records]
    measured = [r for r in rows if not r["warmup"]]
    summary = summarize_rows(measured)
    process = process_summary(run.samples, os.cpu_count())
    if process is not None and run.ready is not None:
        process["rss_bytes"]["ready"] = run.ready.rss_bytes
    notes = list(run.notes)
    if server.get("started"):
        notes.append("the server and the simulated devices (Opus encoding/decoding in real time) shared this "
                     "machine's CPU cores")
    if not run.turns_endpoint:
        notes.append("the server has no GET /turns: only client-side figures are reported")
    elif summary["server"] is None:
        notes.append(f"the server gave no stage timings for these turns (conversation: "
                     f"{run.health.get('conversation') or '?'}): only client-side figures are reported")
    if process is None:
        notes.append("no memory/CPU samples of the server (its /health has no 'process' block)")
    if measured and not summary["underruns"]["exact"]:
        notes.append("underruns are a lower bound (first/last packet arrival): the simulator does not record "
                      "each packet's arrival yet")
    return {
        "version": REPORT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "xiaozhi_local": __version__,
        "command": command,
        "machine": machine_info(),
        "server": server | {"conversation": run.health.get("conversation"), "models": run.health.get("models"),
                            "version": run.health.get("version")},
        "settings": {"turns": options.turns, "warmup": options.warmup, "concurrency": options.concurrency,
                     "mode": str(options.mode), "reply_timeout_s": options.reply_timeout_s},
        "utterances": utterances,
        "wall_s": run.wall_s,
        "server_turns_logged": run.server_turns_seen,
        "summary": summary,
        "process": process,
        "targets": targets(summary, process, options.concurrency),
        "definitions": DEFINITIONS,
        "notes": notes,
        "turns": rows,
        "samples": [{"t_s": round(s.t - run.samples[0].t, 3), "rss_bytes": s.rss_bytes, "cpu_s": round(s.cpu_s, 3),
                     "threads": s.threads} for s in run.samples],
    }


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _stats_line(name: str, stats: dict[str, float] | None, fmt: str = "{:.0f}") -> str:
    if stats is None:
        return f"| {name} | – | – | – | – | – |"
    cells = " | ".join(fmt.format(stats[k]) for k in ("p50", "p95", "min", "max"))
    return f"| {name} | {stats['n']:.0f} | {cells} |"


def render_markdown(report: dict[str, Any]) -> str:
    """A human summary of ``report`` (what goes into the README's Performance section)."""
    s, m, st, srv = report["summary"], report["machine"], report["settings"], report["server"]
    mem = f"{m['memory_bytes'] / 1e9:.1f} GB RAM" if m.get("memory_bytes") else ""
    models = ", ".join(f"{k}={v}" for k, v in (srv.get("models") or {}).items()) or "–"
    lines = [
        "# xiaozhi bench",
        "",
        f"{report['created']} · xiaozhi-local {report['xiaozhi_local']} · {m['cpu'] or m['machine']}, "
        f"{m['cores']} cores, {mem} · {m['platform']}",
        "",
        f"Server: {srv.get('url')} ({'started by the bench' if srv.get('started') else 'given'}; "
        f"conversation: {srv.get('conversation') or '?'}; models: {models})",
        f"Turns: {s['completed']}/{s['turns']} completed ({st['warmup']} warm-up not counted), mode {st['mode']}, "
        f"concurrency {st['concurrency']}, {report['wall_s']:.1f} s",
        "",
        "## Targets",
        "",
        "| target | goal | measured | status |",
        "|---|---|---|---|",
    ]
    for t in report["targets"]:
        value = t["measured"]
        shown = "–" if value is None else (f"{value / 1e6:.0f} MB" if t["unit"] == "bytes" else
                                           f"{value:g} {t['unit']}".strip())
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['target']} | {t['goal']} | {shown} | {t['status']}{note} |")
    lines += ["", "## Latency (ms)", "", "| | n | p50 | p95 | min | max |", "|---|---|---|---|---|---|"]
    lines.append(_stats_line("**end-to-end** (client: end of speech → first reply audio)", s["e2e_ms"]))
    for key in ("stt", "tts_start", "tts_stop", "playback_end"):
        lines.append(_stats_line(f"client: end of speech → {key.replace('_', ' ')}", s["client_ms"][key]))
    server = s["server"]
    if server:
        lines.append(_stats_line("server e2e (speech end → first frame sent)", server["e2e_ms"]))
        for name, stats in server["stages_ms"].items():
            lines.append(_stats_line(f"stage: {name}", stats))
        for name, stats in server["compute_ms"].items():
            lines.append(_stats_line(f"compute: {name} (whole turn)", stats))
        lines.append(_stats_line("LLM tokens/s", server["llm_tokens_per_s"], "{:.1f}"))
        lines.append(_stats_line("e2e ÷ stage compute", server["e2e_over_compute"], "{:.2f}"))
        lines += ["", f"Dominant stage: **{s['dominant_stage'] or '–'}**."]
    else:
        lines += ["", "The server gave no per-stage timings: client-side figures only."]
    under = s["underruns"]
    lines += ["", f"Downlink underruns: {under['turns_with_underrun']} turn(s), {under['count']} underrun(s), "
                  f"{under['stall_ms_total']:.0f} ms of silence in total"
                  f"{'' if under['exact'] else ' (lower bound)'}."]
    proc = report["process"]
    if proc:
        rss = proc["rss_bytes"]
        cpu_mean, cpu_peak = proc["cpu_percent_mean"], proc["cpu_percent_peak"]
        ready = f"{rss['ready'] / 1e6:.0f} MB before the first turn, " if rss.get("ready") else ""
        lines += ["", f"Server process: RSS {ready}{rss['start'] / 1e6:.0f} MB when the measured turns began, "
                      f"peak {rss['peak'] / 1e6:.0f} MB; "
                      f"CPU {proc['cpu_s']:.1f} s ({'–' if cpu_mean is None else f'{cpu_mean:.0f}'} % of one core "
                      f"on average, peak {'–' if cpu_peak is None else f'{cpu_peak:.0f}'} %), "
                      f"up to {proc['threads_peak']} threads."]
    lines += ["", "## Turns", "", "| # | dev | question | e2e | stt | tts stop | server e2e | heard | reply |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["turns"]:
        if r["warmup"]:
            continue
        srv = r["server"] or {}
        status = "" if r["ok"] else f" ✗ {r['error']}"
        lines.append(
            f"| {r['index'] + 1} | {r['device'] + 1} | {_cell(r['text'])} | {_ms(r['e2e_ms'])} | "
            f"{_ms(r['client_ms'].get('stt'))} | {_ms(r['client_ms'].get('tts_stop'))} | {_ms(srv.get('e2e_ms'))} | "
            f"{_cell(r['transcript'])} | {_cell(r['reply'])}{status} |")
    if report["notes"] or report["utterances"].get("notes"):
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in [*report["utterances"].get("notes", []), *report["notes"]]]
    lines += ["", "Definitions: see `definitions` in report.json. Chart: latency.png.", ""]
    return "\n".join(lines)


def _cell(text: str | None, limit: int = 60) -> str:
    text = (text or "").replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md and latency.png into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "chart": out_dir / "latency.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    draw_latency_chart(report, paths["chart"])
    return paths
