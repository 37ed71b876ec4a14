"""Real-time pacing of downlink Opus frames (protocol.md §2.4, §5.6, §8 item 7).

The device queues at most 40 decoded packets (2.4 s at 60 ms) and silently drops the rest,
so the server must send at about real time with a small lead. `Pacer` is a *pure* state
machine: it never sleeps and has no clock; the caller passes a monotonic `now` (seconds),
typically from `xiaozhi_local.audio.clock.Clock.now()`.

Model. The device starts playing a frame as soon as it arrives and plays back-to-back.
The pacer keeps a *virtual play clock*: the instant `play_end` at which the device will
have finished everything sent so far. It is kept on a drift-free grid,
``play_end = base + n * frame_s`` (``n`` frames sent since ``base``).

Rules.
* **Lead cap.** The next frame is due once sending it keeps the device's buffered audio
  at or below ``prebuffer * frame_s``, i.e. when ``lead(now) <= (prebuffer - 1) * frame_s``.
  Hence the first `prebuffer` frames of a response go out at once (the pre-buffer), then
  one frame every ``frame_s``: frame ``k >= prebuffer`` is due at
  ``start + (k - prebuffer + 1) * frame_s``.
* **Re-base.** When a frame is sent at or after ``play_end`` (the producer fell behind and
  the device ran dry, e.g. slow TTS between sentences or a tool call), the grid restarts at
  ``now``. Since the lead is zero again, up to `prebuffer` frames go at once: a fresh
  pre-buffer, never more. A producer that is merely late (lead still > 0) stays on the
  grid and tops the buffer back up to the cap, again never beyond it.
* **Honesty.** `sent` records what happened: a frame sent before `delay_for_next` reached 0
  is counted as sent, and the lead may then exceed the cap.
* **Drain.** `drain_time(now)` is how long until the last sent frame has finished
  playing, plus a margin of `drain_margin_frames` frames: wait that long before
  ``tts stop`` so the device does not cut the tail.

Compared with xinnan (which sends 5 pre-buffer packets and then starts its rate controller
at elapsed 0, i.e. 6 frames at once, and waits queue + (5+2) x 60 ms before ``tts stop``),
this keeps the lead at exactly `prebuffer` frames and, because the pre-buffer is already
inside `play_end`, needs only the 2-frame margin.
"""

from __future__ import annotations

__all__ = ["DEFAULT_DRAIN_MARGIN_FRAMES", "DEFAULT_PREBUFFER", "Pacer"]

DEFAULT_PREBUFFER = 5
"""Frames sent ahead of real time (5 x 60 ms = 300 ms, well under the device's 2.4 s)."""

DEFAULT_DRAIN_MARGIN_FRAMES = 2
"""Extra frames of waiting after the estimated end of playback before ``tts stop``."""

_EPS = 1e-6
"""Delays shorter than this (1 µs) count as due, absorbing float rounding."""


class Pacer:
    """Pure pacing state machine for one downlink audio stream.

    Typical loop (clock injected)::

        pacer.reset()                          # new turn or after abort
        for frame in frames:
            await clock.sleep(pacer.delay_for_next(clock.now()))
            await send(frame)
            pacer.sent(clock.now())
        await clock.sleep(pacer.drain_time(clock.now()))
        await send_tts_stop()
    """

    def __init__(
        self,
        frame_ms: float = 60,
        prebuffer: int = DEFAULT_PREBUFFER,
        *,
        drain_margin_frames: float = DEFAULT_DRAIN_MARGIN_FRAMES,
    ) -> None:
        """Create a pacer for frames of `frame_ms` with a lead of `prebuffer` frames."""
        if not frame_ms > 0:
            raise ValueError(f"frame_ms must be > 0, got {frame_ms}")
        if prebuffer < 1:
            raise ValueError(f"prebuffer must be >= 1, got {prebuffer}")
        if drain_margin_frames < 0:
            raise ValueError(f"drain_margin_frames must be >= 0, got {drain_margin_frames}")
        self.frame_s: float = frame_ms / 1000.0
        self.prebuffer: int = prebuffer
        self.drain_margin_s: float = drain_margin_frames * self.frame_s
        self._base: float = 0.0
        self._n: int = 0
        self._total: int = 0
        self._rebases: int = 0
        self._active: bool = False

    # ------------------------------------------------------------------ state
    @property
    def frames_sent(self) -> int:
        """Frames recorded with `sent` since the last `reset`."""
        return self._total

    @property
    def rebases(self) -> int:
        """How many times the virtual clock restarted (first frame included) since `reset`."""
        return self._rebases

    @property
    def max_lead(self) -> float:
        """The lead cap in seconds: ``prebuffer * frame_s``."""
        return self.prebuffer * self.frame_s

    def play_end(self) -> float | None:
        """Estimated instant the device finishes the audio sent so far (None if none)."""
        if not self._active:
            return None
        return self._base + self._n * self.frame_s

    # ---------------------------------------------------------------- queries
    def lead(self, now: float) -> float:
        """Seconds of audio estimated to be still queued or playing on the device."""
        end = self.play_end()
        if end is None:
            return 0.0
        return max(0.0, end - now)

    def next_due(self) -> float | None:
        """Absolute time the next frame is due, or None when it may go at once."""
        end = self.play_end()
        if end is None:
            return None
        return end - (self.prebuffer - 1) * self.frame_s

    def delay_for_next(self, now: float) -> float:
        """Seconds to wait before sending the next frame; 0.0 when it is due now."""
        due = self.next_due()
        if due is None:
            return 0.0
        delay = due - now
        return delay if delay > _EPS else 0.0

    def drain_time(self, now: float) -> float:
        """Seconds until the last sent frame has played, plus the margin (0 if none sent).

        This is when it is safe to send ``tts stop``.
        """
        end = self.play_end()
        if end is None:
            return 0.0
        return max(0.0, end + self.drain_margin_s - now)

    # -------------------------------------------------------------- mutations
    def sent(self, now: float) -> None:
        """Record that one frame was handed to the transport at `now`."""
        end = self.play_end()
        if end is None or now >= end:
            # First frame, or the device ran dry: restart the grid at `now`.
            self._base = now
            self._n = 0
            self._rebases += 1
            self._active = True
        self._n += 1
        self._total += 1

    def reset(self) -> None:
        """Forget everything (abort, or a new turn): the next frame starts a pre-buffer."""
        self._base = 0.0
        self._n = 0
        self._total = 0
        self._rebases = 0
        self._active = False
