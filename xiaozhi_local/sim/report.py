"""Results of simulated device sessions: JSON-ready dicts and a Rich summary.

:class:`SessionResult` is what one simulated device did. Times inside it are absolute clock
readings; :func:`session_to_dict` turns them into milliseconds since the session start and
adds the latencies that matter, all measured from the **end of the user's speech** (the
moment the last WAV frame was sent, or the ``listen detect`` text for a text-only turn):
``stt_ms``, ``tts_start_ms``, ``first_audio_ms`` (first reply packet queued for playback),
``tts_stop_ms`` and ``playback_end_ms``. :func:`aggregate` summarises many devices
(``--count``) with min / median / p95 / max.

Barge-in (``--barge-in-after``, realtime mode): the interrupted turn has
``interrupted_by_barge_in``, ``stopped_after_barge_in`` (a ``tts stop`` came after the user
started speaking over the reply), ``latency.barge_in_to_tts_stop_ms`` and
``audio.frames_after_barge_in``; the next turn, flagged ``barge_in``, is the answer to the
utterance spoken over it, with its latencies measured from the end of that utterance.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from xiaozhi_local.sim.channel import McpCall, MessageRecord
from xiaozhi_local.sim.device_state import TurnMetrics
from xiaozhi_local.sim.ota_client import OtaOutcome

__all__ = ["LATENCY_KEYS", "SessionResult", "aggregate", "print_aggregate", "print_summary", "session_to_dict"]

LATENCY_KEYS = ("stt_ms", "tts_start_ms", "first_audio_ms", "tts_stop_ms", "playback_end_ms")


@dataclass(slots=True)
class SessionResult:
    """Everything one simulated device saw and measured."""

    device_id: str
    client_id: str
    t0: float
    server: str = ""
    error: str | None = None
    error_kind: str | None = None
    pairing_code: str | None = None
    ota: OtaOutcome | None = None
    websocket_url: str | None = None
    protocol_version: int | None = None
    session_id: str | None = None
    downlink_sample_rate: int | None = None
    downlink_frame_ms: int | None = None
    t_connected: float | None = None
    t_hello: float | None = None
    t_closed: float | None = None
    closed_by: str | None = None
    close_code: int | None = None
    close_reason: str = ""
    frames_sent: int = 0
    turns: list[TurnMetrics] = field(default_factory=list)
    messages: list[MessageRecord] = field(default_factory=list)
    mcp_calls: list[McpCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reply_wav: str | None = None
    reply_audio_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the session ran to the end without an error."""
        return self.error is None


def _ms(t: float | None, base: float | None) -> float | None:
    return None if t is None or base is None else round((t - base) * 1000, 1)


def _turn_dict(turn: TurnMetrics, t0: float) -> dict[str, Any]:
    end = turn.t_speech_end
    times = {
        name: _ms(getattr(turn, f"t_{name}"), t0)
        for name in ("begin", "listen_start", "speech_end", "listen_stop", "stt", "llm", "tts_start",
                     "first_audio", "last_audio", "tts_stop", "playback_end", "abort", "barge_in")
    }  # fmt: skip
    latency = {
        "stt_ms": _ms(turn.t_stt, end),
        "tts_start_ms": _ms(turn.t_tts_start, end),
        "first_audio_ms": _ms(turn.t_first_audio, end),
        "tts_stop_ms": _ms(turn.t_tts_stop, end),
        "playback_end_ms": _ms(turn.t_playback_end, end),
        "abort_to_tts_stop_ms": _ms(turn.t_tts_stop, turn.t_abort),
        "barge_in_to_tts_stop_ms": None if turn.barge_in_stop_s is None else round(turn.barge_in_stop_s * 1000, 1),
    }
    interrupted = turn.t_barge_in is not None
    return {
        "index": turn.index,
        "mode": turn.mode,
        "completed": turn.completed,
        "barge_in": turn.barge_in,
        "interrupted_by_barge_in": interrupted,
        "stopped_after_barge_in": turn.barge_in_stopped if interrupted else None,
        "transcript": " ".join(turn.stt_texts),
        "stt": list(turn.stt_texts),
        "reply": "".join(turn.sentences) if _cjk(turn.sentences) else " ".join(turn.sentences),
        "sentences": list(turn.sentences),
        "emotions": list(turn.emotions),
        "latency": latency,
        "times_ms": times,
        "speech_frames": turn.speech_frames,
        "speech_truncated": turn.speech_truncated,
        "audio": {
            "frames_received": turn.frames_received,
            "frames_queued": turn.frames_queued,
            "dropped_before_tts_start": turn.dropped_early,
            "dropped_after_tts_stop": turn.dropped_late,
            "dropped_queue_full": turn.dropped_overflow,
            "frames_after_abort": turn.frames_after_abort,
            "frames_after_barge_in": turn.frames_after_barge_in,
            "max_queue_depth": turn.max_queue_depth,
            "reply_audio_s": round(turn.audio_s, 3),
        },
    }


def _cjk(texts: list[str]) -> bool:
    return any("\u3000" <= ch <= "\u9fff" for text in texts for ch in text)


def _mcp_dict(call: McpCall, t0: float) -> dict[str, Any]:
    return {"t_ms": _ms(call.t, t0)} | {k: v for k, v in asdict(call).items() if k != "t"}


def session_to_dict(result: SessionResult) -> dict[str, Any]:
    """A JSON-ready view of ``result``: times in ms since the session start."""
    t0 = result.t0
    ota = None
    if result.ota is not None:
        o = result.ota
        ota = {
            "url": o.url, "checks": o.checks, "activate_statuses": list(o.activate_statuses),
            "activation_code": o.activation_code, "elapsed_ms": round(o.elapsed_s * 1000, 1),
            "warnings": list(o.warnings), "reply": o.reply.raw,
        }  # fmt: skip
    return {
        "ok": result.ok,
        "error": result.error,
        "error_kind": result.error_kind,
        "device_id": result.device_id,
        "client_id": result.client_id,
        "server": result.server,
        "pairing_code": result.pairing_code,
        "ota": ota,
        "websocket_url": result.websocket_url,
        "protocol_version": result.protocol_version,
        "session_id": result.session_id,
        "downlink": {"sample_rate": result.downlink_sample_rate, "frame_duration": result.downlink_frame_ms},
        "connected_ms": _ms(result.t_connected, t0),
        "hello_ms": _ms(result.t_hello, t0),
        "closed_ms": _ms(result.t_closed, t0),
        "closed_by": result.closed_by,
        "close_code": result.close_code,
        "close_reason": result.close_reason,
        "frames_sent": result.frames_sent,
        "turns": [_turn_dict(turn, t0) for turn in result.turns],
        "messages": [{"t_ms": _ms(m.t, t0), "dir": m.direction, **m.summary} for m in result.messages],
        "mcp_calls": [
            {"t_ms": _ms(c.t, t0)} | {k: v for k, v in asdict(c).items() if k != "t"} for c in result.mcp_calls
        ],
        "notes": list(result.notes),
        "reply_wav": result.reply_wav,
        "reply_audio_s": round(result.reply_audio_s, 3),
    }


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"min": ordered[0], "median": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def aggregate(results: list[SessionResult]) -> dict[str, Any]:
    """Summary over many devices: success count and latency distributions over all turns."""
    turns = [_turn_dict(t, r.t0) for r in results for t in r.turns]
    latency = {key: _stats([v for t in turns if (v := t["latency"][key]) is not None]) for key in LATENCY_KEYS}
    interrupted = [t for t in turns if t["interrupted_by_barge_in"]]
    if interrupted:
        stops = [v for t in interrupted if (v := t["latency"]["barge_in_to_tts_stop_ms"]) is not None]
        latency["barge_in_to_tts_stop_ms"] = _stats(stops)
    drops = {
        key: sum(t["audio"][key] for t in turns)
        for key in ("dropped_before_tts_start", "dropped_after_tts_stop", "dropped_queue_full")
    }
    return {
        "devices": len(results),
        "ok": sum(r.ok for r in results),
        "failed": [{"device_id": r.device_id, "error": r.error} for r in results if not r.ok],
        "turns": len(turns),
        "completed_turns": sum(t["completed"] for t in turns),
        "barge_ins": len(interrupted),
        "barge_ins_stopped": sum(bool(t["stopped_after_barge_in"]) for t in interrupted),
        "latency_ms": latency,
        "drops": drops,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def print_summary(console: Console, result: SessionResult) -> None:
    """Transcript, reply text, timings and audio counters of one session, for humans."""
    data = session_to_dict(result)
    head = f"device {result.device_id}"
    if result.websocket_url:
        head += f"  →  {result.websocket_url} (binary v{result.protocol_version}, session {result.session_id!r})"
    console.print(head, highlight=False)
    for turn in data["turns"]:
        kind = f"{turn['mode']}, barge-in" if turn["barge_in"] else turn["mode"]
        console.print(f"[bold]turn {turn['index'] + 1}[/] ({kind})", highlight=False)
        console.print(f"  you said:  {turn['transcript'] or '-'}", highlight=False, markup=False)
        console.print(f"  reply:     {turn['reply'] or '-'}", highlight=False, markup=False)
        lat, audio = turn["latency"], turn["audio"]
        table = Table(show_header=True, box=None, padding=(0, 2))
        for column in ("stt", "tts start", "first audio", "tts stop", "playback end"):
            table.add_column(column, justify="right")
        table.add_row(*(_fmt(lat[k]) for k in LATENCY_KEYS))
        console.print("  after end of speech:")
        console.print(table)
        console.print(
            f"  audio: {audio['frames_received']} frames received, {audio['frames_queued']} played "
            f"({audio['reply_audio_s']:.2f} s); dropped: {audio['dropped_before_tts_start']} before tts start, "
            f"{audio['dropped_after_tts_stop']} after tts stop, {audio['dropped_queue_full']} queue full; "
            f"max queue {audio['max_queue_depth']}/40",
            highlight=False,
        )
        lost = audio["dropped_before_tts_start"] + audio["dropped_after_tts_stop"]
        if lost:
            console.print(
                f"  [yellow]server violation:[/] {lost} packet(s) outside tts start…stop were dropped, "
                "as stock firmware drops them (§2.4 gating)",
                highlight=False,
            )
        if audio["dropped_queue_full"]:
            console.print(
                f"  [yellow]server violation:[/] {audio['dropped_queue_full']} packet(s) overflowed the "
                "40-packet decode queue; pace audio in real time (§2.4)",
                highlight=False,
            )
        if turn["interrupted_by_barge_in"]:
            _print_barge_in(console, turn)
        if turn["latency"]["abort_to_tts_stop_ms"] is not None:
            console.print(
                f"  abort → tts stop: {_fmt(turn['latency']['abort_to_tts_stop_ms'])}, "
                f"{audio['frames_after_abort']} frames after the abort",
                highlight=False,
            )
    if result.mcp_calls:
        methods = ", ".join(c.method for c in result.mcp_calls)
        console.print(f"MCP calls received: {methods}", highlight=False, markup=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if result.reply_wav:
        console.print(f"reply audio written to {result.reply_wav}", highlight=False)


def _print_barge_in(console: Console, turn: dict[str, Any]) -> None:
    frames = turn["audio"]["frames_after_barge_in"]
    if turn["stopped_after_barge_in"]:
        console.print(
            f"  barge-in → tts stop: {_fmt(turn['latency']['barge_in_to_tts_stop_ms'])}, "
            f"{frames} reply frames after the barge-in started",
            highlight=False,
        )
    else:
        console.print(
            f"  [yellow]server violation:[/] the user spoke over the reply (realtime mode) and the server never "
            f"stopped it with tts stop ({frames} reply frames after the barge-in) (§2.7)",
            highlight=False,
        )


def print_aggregate(console: Console, summary: dict[str, Any]) -> None:
    """The ``--count`` summary table."""
    console.print(
        f"{summary['ok']}/{summary['devices']} devices ok, "
        f"{summary['completed_turns']}/{summary['turns']} turns completed",
        highlight=False,
    )
    if summary["barge_ins"]:
        console.print(f"barge-ins: {summary['barge_ins_stopped']}/{summary['barge_ins']} stopped by the server",
                      highlight=False)  # fmt: skip
    table = Table(title="latency after end of speech (ms)")
    for column in ("", "min", "median", "p95", "max"):
        table.add_column(column, justify="right")
    for key, stats in summary["latency_ms"].items():
        cells = ["-"] * 4 if stats is None else [f"{stats[k]:.0f}" for k in ("min", "median", "p95", "max")]
        table.add_row(key.removesuffix("_ms"), *cells)
    console.print(table)
    console.print(f"drops: {summary['drops']}", highlight=False)
    for failure in summary["failed"]:
        console.print(f"[red]{failure['device_id']}[/]: {failure['error']}", highlight=False)
