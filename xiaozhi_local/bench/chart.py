"""``latency.png``: one stacked bar per measured turn, drawn with Pillow.

With server stage timings each bar stacks the stages from the end of speech to the first
frame sent (:data:`~xiaozhi_local.pipeline.timing.STAGES`) and a black tick marks what the
device measured; without them each bar is the device's end of speech → first reply audio.
Dashed lines show the end-to-end p50 and p95, a red dotted line the 700 ms p50 target
(when it is in range).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageDraw, ImageFont

from ..pipeline.timing import STAGES

__all__ = ["STAGE_COLOURS", "draw_latency_chart", "nice_ticks"]

WIDTH: Final = 1100
HEIGHT: Final = 620
LEFT, RIGHT, TOP, BOTTOM = 80, 110, 90, 110
STAGE_COLOURS: Final = {
    "endpoint": (158, 202, 225),
    "asr": (49, 130, 189),
    "llm_first_token": (253, 174, 107),
    "first_clause": (230, 85, 13),
    "tts_first_chunk": (116, 196, 118),
    "first_frame": (49, 163, 84),
}
CLIENT_COLOUR: Final = (150, 150, 150)
TARGET_MS: Final = 700


def nice_ticks(top: float, count: int = 6) -> list[float]:
    """Round tick values from 0 up to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = math.ceil(top / step)
    return [i * step for i in range(n + 1)]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _dashed(draw: ImageDraw.ImageDraw, y: float, x0: int, x1: int, colour: tuple[int, int, int],
            dash: int = 8, gap: int = 5) -> None:  # fmt: skip
    x = x0
    while x < x1:
        draw.line([(x, y), (min(x + dash, x1), y)], fill=colour, width=2)
        x += dash + gap


def draw_latency_chart(report: dict[str, Any], path: Path) -> None:
    """Draw the chart of ``report`` (see :func:`~.report.build_report`) into ``path``."""
    rows = [r for r in report["turns"] if not r["warmup"]]
    summary = report["summary"]
    with_stages = summary.get("server") is not None
    bars: list[tuple[list[tuple[float, tuple[int, int, int]]], float | None]] = []
    for r in rows:
        stages = (r.get("server") or {}).get("stages_ms") or {}
        segments = [(float(stages[n]), STAGE_COLOURS[n]) for n in STAGES if stages.get(n) is not None]
        if not segments and r["e2e_ms"] is not None:
            segments = [(float(r["e2e_ms"]), CLIENT_COLOUR)]
        bars.append((segments, r["e2e_ms"]))
    e2e = summary.get("e2e_ms") or {}
    top = max([sum(v for v, _ in seg) for seg, _ in bars] + [t or 0 for _, t in bars] + [e2e.get("p95") or 0, 1.0])
    ticks = nice_ticks(top * 1.05)
    y_max = ticks[-1]

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    title, small = _font(20), _font(13)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(ms: float) -> float:
        return TOP + plot_h - plot_h * ms / y_max

    st = report["settings"]
    draw.text((LEFT, 14), "xiaozhi bench: end of speech to first reply audio, per turn (ms)", fill="black", font=title)
    sub = (f"{summary['completed']}/{summary['turns']} turns · concurrency {st['concurrency']} · mode {st['mode']} · "
           f"p50 {e2e.get('p50', 0):.0f} ms · p95 {e2e.get('p95', 0):.0f} ms · "
           f"conversation: {report['server'].get('conversation') or '?'}")
    draw.text((LEFT, 44), sub if e2e else "no completed turns", fill=(60, 60, 60), font=small)
    for tick in ticks:
        y = y_of(tick)
        draw.line([(LEFT, y), (LEFT + plot_w, y)], fill=(230, 230, 230))
        label = f"{tick:g}"
        draw.text((LEFT - 8 - draw.textlength(label, font=small), y - 7), label, fill="black", font=small)
    draw.line([(LEFT, TOP), (LEFT, TOP + plot_h), (LEFT + plot_w, TOP + plot_h)], fill="black")

    slot = plot_w / max(1, len(bars))
    bar_w = max(1.0, slot * 0.7)
    every = max(1, math.ceil(len(bars) / 40))
    for i, (segments, client) in enumerate(bars):
        x0 = LEFT + i * slot + (slot - bar_w) / 2
        base = 0.0
        for value, colour in segments:
            draw.rectangle([x0, y_of(base + value), x0 + bar_w, y_of(base)], fill=colour)
            base += value
        if with_stages and client is not None and segments and segments[0][1] != CLIENT_COLOUR:
            y = y_of(client)
            draw.line([(x0 - 2, y), (x0 + bar_w + 2, y)], fill="black", width=3)
        if i % every == 0:
            label = str(rows[i]["index"] + 1)
            draw.text((x0 + bar_w / 2 - draw.textlength(label, font=small) / 2, TOP + plot_h + 6), label,
                      fill="black", font=small)
    draw.text((LEFT + plot_w / 2 - 15, TOP + plot_h + 24), "turn", fill="black", font=small)

    for key, colour in (("p50", (40, 40, 40)), ("p95", (120, 120, 120))):
        if e2e.get(key) is not None:
            y = y_of(e2e[key])
            _dashed(draw, y, LEFT, LEFT + plot_w, colour)
            draw.text((LEFT + plot_w + 6, y - 8), f"{key} {e2e[key]:.0f} ms", fill=colour, font=small)
    target_drawn = y_max >= TARGET_MS
    if target_drawn:
        _dashed(draw, y_of(TARGET_MS), LEFT, LEFT + plot_w, (220, 50, 50), dash=3, gap=4)

    legend: list[tuple[str, tuple[int, int, int]]]
    if with_stages:
        legend = [(name, STAGE_COLOURS[name]) for name in STAGES] + [("device-measured e2e", (0, 0, 0))]
    else:
        legend = [("device-measured e2e (the server gave no stage timings)", CLIENT_COLOUR)]
    if target_drawn:
        legend.append(("target p50 700 ms", (220, 50, 50)))
    x, y = LEFT, HEIGHT - 50
    for name, colour in legend:
        draw.rectangle([x, y, x + 14, y + 14], fill=colour)
        draw.text((x + 20, y), name, fill="black", font=small)
        x += 20 + int(draw.textlength(name, font=small)) + 24
    image.save(path, format="PNG", optimize=True)
