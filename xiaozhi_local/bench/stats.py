"""The bench's figures, as pure functions over plain per-turn rows (no I/O, no clocks).

A *row* is one measured turn (built by :mod:`.report` from the simulator's result and the
server's ``/turns`` entry)::

    {"ok": bool, "e2e_ms": float | None,               # client: end of speech → first reply packet
     "client_ms": {"stt": …, "tts_start": …, "first_audio": …, "tts_stop": …, "playback_end": …},
     "underrun": {"count": int, "stall_ms": float, "exact": bool} | None,
     "server": None | {"stages_ms": {stage: ms | None}, "e2e_ms": …, "compute_ms": {"asr", "llm", "tts"},
                       "llm_tokens": int, "llm_tokens_per_s": float | None}}

Percentiles interpolate linearly between the two nearest ranks (numpy's default method).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

from ..pipeline.timing import STAGES
from .server import Sample

__all__ = [
    "CLIENT_KEYS",
    "UNDERRUN_TOLERANCE_MS",
    "compute_ms",
    "dominant_stage",
    "percentile",
    "playback_gaps",
    "process_summary",
    "summarize",
    "summarize_rows",
    "tail_stall_ms",
    "targets",
]

CLIENT_KEYS: Final = ("stt", "tts_start", "first_audio", "tts_stop", "playback_end")
UNDERRUN_TOLERANCE_MS: Final = 5.0
"""A playback gap shorter than this is timing noise, not an underrun."""
RSS_TARGET_BYTES: Final = 1_200_000_000


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 ≤ q ≤ 1) of non-empty ``values``, linearly interpolated."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Iterable[float | None], digits: int = 1) -> dict[str, float] | None:
    """n / mean / min / p50 / p95 / max of the values that are not None (None if there are none)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return {
        "n": len(present),
        "mean": round(sum(present) / len(present), digits),
        "min": round(min(present), digits),
        "p50": round(percentile(present, 0.5), digits),
        "p95": round(percentile(present, 0.95), digits),
        "max": round(max(present), digits),
    }


# ---- downlink underruns --------------------------------------------------------------------


def playback_gaps(arrivals: Sequence[tuple[float, float]], tolerance_ms: float = UNDERRUN_TOLERANCE_MS
                  ) -> tuple[int, float]:  # fmt: skip
    """Underruns of a device that plays packets back to back as they arrive.

    ``arrivals`` are (arrival time s, duration s) of a reply's packets in order. A packet that
    arrives after everything before it has finished playing means the playback queue ran empty:
    one underrun, lasting until that packet arrived. Returns (underruns, total stall in ms).
    """
    count, stall = 0, 0.0
    end: float | None = None
    for t, duration in arrivals:
        if end is not None and (t - end) * 1000 > tolerance_ms:
            count += 1
            stall += (t - end) * 1000
        end = max(t, end if end is not None else t) + duration
    return count, round(stall, 1)


def tail_stall_ms(first_ms: float | None, last_ms: float | None, audio_s: float, frames: int) -> float:
    """A lower bound of the time the playback queue stood empty, from first/last arrival only.

    Playing back to back from the first packet, the last packet is due when the audio before it
    has played (``audio_s`` minus one packet); arriving later than that means the queue ran dry
    for at least the difference. Stalls that the server's pre-buffer burst after a stall hides
    (up to its lead, 300 ms by default) are not seen: :func:`playback_gaps` is exact.
    """
    if first_ms is None or last_ms is None or frames < 2:
        return 0.0
    before_last_ms = audio_s * 1000 * (frames - 1) / frames
    return round(max(0.0, (last_ms - first_ms) - before_last_ms), 1)


# ---- per-turn derived figures ---------------------------------------------------------------


def compute_ms(server: dict[str, Any]) -> float | None:
    """The stage compute on the path from the end of speech to the first reply frame.

    The endpointing wait, the ASR's own compute time (the ASR stage minus any wait for a
    worker; the stage itself when the server gave no compute time), the LLM up to the first
    token and the first clause, and the TTS of the first chunk. Not included, so counted as
    overhead by ``e2e ÷ compute``: queueing before ASR, encoding and sending the first frame,
    the network, and the client/server difference in where speech ends.
    """
    stages = server.get("stages_ms") or {}
    wanted = ("endpoint", "asr", "llm_first_token", "first_clause", "tts_first_chunk")
    if any(stages.get(name) is None for name in wanted):
        return None
    asr_compute = (server.get("compute_ms") or {}).get("asr") or stages["asr"]
    total = stages["endpoint"] + min(asr_compute, stages["asr"]) + sum(stages[n] for n in wanted[2:])
    return round(total, 1) if total > 0 else None


def _ratio(row: dict[str, Any]) -> float | None:
    server, e2e = row.get("server"), row.get("e2e_ms")
    if not server or e2e is None:
        return None
    compute = compute_ms(server)
    return round(e2e / compute, 3) if compute else None


# ---- the summary -----------------------------------------------------------------------------


def process_summary(samples: Sequence[Sample], cores: int | None = None) -> dict[str, Any] | None:
    """Memory and CPU of the server over the run (CPU % is of one core: 200 % = two cores busy)."""
    if not samples:
        return None
    first, last = samples[0], samples[-1]
    wall = last.t - first.t
    cpu = last.cpu_s - first.cpu_s
    peaks = [100 * (b.cpu_s - a.cpu_s) / (b.t - a.t) for a, b in itertools.pairwise(samples)
             if b.t - a.t >= 0.2]
    rss = [s.rss_bytes for s in samples]
    return {
        "samples": len(samples),
        "rss_bytes": {"start": first.rss_bytes, "peak": max(rss), "end": last.rss_bytes,
                      "mean": round(sum(rss) / len(rss))},
        "cpu_s": round(cpu, 2),
        "cpu_percent_mean": round(100 * cpu / wall, 1) if wall > 0 else None,
        "cpu_percent_peak": round(max(peaks), 1) if peaks else None,
        "threads_peak": max(s.threads for s in samples),
        "cores": cores,
    }


def summarize_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Client, server, underrun and throughput figures over the measured turns."""
    ok = [r for r in rows if r.get("ok")]
    served = [r["server"] for r in rows if r.get("server")]
    server: dict[str, Any] | None = None
    if served:
        server = {
            "turns": len(served),
            "e2e_ms": summarize(s.get("e2e_ms") for s in served),
            "stages_ms": {name: summarize((s.get("stages_ms") or {}).get(name) for s in served) for name in STAGES},
            "compute_ms": {k: summarize((s.get("compute_ms") or {}).get(k) for s in served)
                           for k in ("asr", "llm", "tts")},
            "llm_tokens": sum(int(s.get("llm_tokens") or 0) for s in served),
            "llm_tokens_per_s": summarize(s.get("llm_tokens_per_s") for s in served),
            "e2e_over_compute": summarize((_ratio(r) for r in rows), digits=3),
        }
    underruns = [r["underrun"] for r in rows if r.get("underrun")]
    return {
        "turns": len(rows),
        "completed": len(ok),
        "failed": len(rows) - len(ok),
        "e2e_ms": summarize(r.get("e2e_ms") for r in rows),
        "client_ms": {k: summarize((r.get("client_ms") or {}).get(k) for r in rows) for k in CLIENT_KEYS},
        "server": server,
        "underruns": {
            "turns_with_underrun": sum(1 for u in underruns if u["count"] > 0),
            "count": sum(u["count"] for u in underruns),
            "stall_ms_total": round(sum(u["stall_ms"] for u in underruns), 1),
            "exact": bool(underruns) and all(u["exact"] for u in underruns),
        },
        "dominant_stage": dominant_stage(server),
    }


def dominant_stage(server: dict[str, Any] | None) -> str | None:
    """The server stage with the largest median (where the time goes)."""
    if not server:
        return None
    medians = {name: s["p50"] for name, s in server["stages_ms"].items() if s is not None}
    return max(medians, key=lambda name: medians[name]) if medians else None


def _target(name: str, goal: str, measured: float | None, limit: float, unit: str,
            note: str = "") -> dict[str, Any]:  # fmt: skip
    status = "unknown" if measured is None else ("pass" if measured <= limit else "fail")
    return {"target": name, "goal": goal, "measured": measured, "unit": unit, "status": status, "note": note}


def targets(summary: dict[str, Any], process: dict[str, Any] | None, concurrency: int) -> list[dict[str, Any]]:
    """The issue's targets (default models, 2-core x86) against what was measured."""
    e2e = summary.get("e2e_ms") or {}
    server = summary.get("server") or {}
    first_token = (server.get("stages_ms") or {}).get("llm_first_token") or {}
    ratio = server.get("e2e_over_compute") or {}
    no_server = "" if server else "the server gave no stage timings"
    rss = process["rss_bytes"]["peak"] if process else None
    under = summary["underruns"]
    out = [
        _target("end-to-end p50", "≤ 700 ms", e2e.get("p50"), 700, "ms"),
        _target("end-to-end p95", "≤ 1200 ms", e2e.get("p95"), 1200, "ms"),
        _target("LLM first token p50 (cached system prompt)", "≤ 150 ms", first_token.get("p50"), 150, "ms",
                no_server),
        _target("e2e ÷ stage compute p50", "≤ 1.10", ratio.get("p50"), 1.10, "", no_server),
        _target("server RSS peak", "≤ 1.2 GB", rss, RSS_TARGET_BYTES, "bytes",
                "" if process else "no process samples"),
    ]
    method = "" if under["exact"] else ("lower bound from first/last packet arrival: stalls hidden by the "
                                        "server's pre-buffer are not seen")
    count = None if summary["completed"] == 0 else float(under["turns_with_underrun"])
    row = _target("downlink underruns with 3 concurrent conversations", "0 turns", count, 0, "turns", method)
    if concurrency < 3:
        if row["status"] == "pass":
            row["status"] = "unknown"
        row["note"] = "; ".join(filter(None, (f"measured with --concurrency {concurrency}; run with --concurrency 3",
                                              method)))
    out.append(row)
    return out
