"""Per-turn timestamps: where the time of a turn went.

A :class:`TurnTimings` is filled in as a turn runs (times from the injected clock, in
seconds) and logged as one line when the turn ends. The server keeps the most recent ones
in a :class:`TurnLog` for ``GET /turns`` and ``xiaozhi bench``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("endpoint", "asr", "llm_first_token", "first_clause", "tts_first_chunk", "first_frame")
"""The consecutive stages from the end of speech to the first reply frame."""


@dataclass
class TurnTimings:
    session_id: str
    device_id: str
    turn: int
    mode: str = ""
    source: str = "voice"
    """voice | text (listen detect) | wake (wake-word greeting)."""
    speech_end: float | None = None
    """End of the user's speech (last voiced audio; listen stop in manual mode)."""
    vad_endpoint: float | None = None
    """When the endpointer decided the utterance was over."""
    asr_done: float | None = None
    llm_first_token: float | None = None
    first_clause: float | None = None
    tts_first_chunk: float | None = None
    first_frame: float | None = None
    last_frame: float | None = None
    speech_s: float = 0.0
    asr_compute_s: float = 0.0
    llm_compute_s: float = 0.0
    tts_compute_s: float = 0.0
    llm_tokens: int = 0
    llm_prompt_tokens: int = 0
    transcript: str = ""
    reply: str = ""
    outcome: str = "ok"
    """ok | aborted | barge_in | empty | error | goodbye."""
    extra: dict[str, Any] = field(default_factory=dict)

    def stage_ms(self) -> dict[str, float | None]:
        """Milliseconds each stage in :data:`STAGES` added to the wait (None where a mark is missing).

        A stage counts from the latest earlier mark, so work that overlapped an earlier stage
        (a speculative turn runs ASR and the LLM during the end-of-speech silence) counts
        only for the part that was still in the way; the stages add up to :attr:`e2e_ms`.
        """
        marks = [self.speech_end, self.vad_endpoint, self.asr_done, self.llm_first_token,
                 self.first_clause, self.tts_first_chunk, self.first_frame]
        out: dict[str, float | None] = {}
        latest: float | None = marks[0]
        for name, mark in zip(STAGES, marks[1:], strict=True):
            if latest is None or mark is None:
                out[name] = None
            else:
                out[name] = round(1000 * max(0.0, mark - latest), 1)
            if mark is not None:
                latest = mark if latest is None else max(latest, mark)
        return out

    @property
    def e2e_ms(self) -> float | None:
        """End of user speech → first reply frame sent."""
        if self.speech_end is None or self.first_frame is None:
            return None
        return round(1000 * (self.first_frame - self.speech_end), 1)

    @property
    def llm_tokens_per_s(self) -> float | None:
        return self.llm_tokens / self.llm_compute_s if self.llm_compute_s > 0 and self.llm_tokens else None

    def to_dict(self, *, with_text: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_text:
            data.pop("transcript")
            data.pop("reply")
        data["stages_ms"] = self.stage_ms()
        data["e2e_ms"] = self.e2e_ms
        data["llm_tokens_per_s"] = self.llm_tokens_per_s
        return data

    def log_line(self) -> str:
        stages = " ".join(f"{k}={'-' if v is None else f'{v:.0f}'}" for k, v in self.stage_ms().items())
        e2e = "-" if self.e2e_ms is None else f"{self.e2e_ms:.0f}"
        tps = self.llm_tokens_per_s
        return (f"turn {self.turn} [{self.source}/{self.outcome}] e2e={e2e}ms {stages} "
                f"llm_tokens={self.llm_tokens} ({'-' if tps is None else f'{tps:.1f}'} tok/s) "
                f"speech={self.speech_s:.1f}s")


class TurnLog:
    """The most recent turns of every session (a bounded ring)."""

    def __init__(self, size: int = 200):
        self._turns: deque[TurnTimings] = deque(maxlen=max(1, size))
        self.total = 0

    def add(self, timings: TurnTimings) -> None:
        self._turns.append(timings)
        self.total += 1

    def recent(self, limit: int | None = None) -> list[TurnTimings]:
        turns = list(self._turns)
        return turns if limit is None else turns[-limit:]
