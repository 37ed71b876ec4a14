"""Turns of conversation over one open device channel (protocol.md §2.4-§2.7).

:class:`Conversation` plays the firmware's ``Application`` on top of a :class:`DeviceChannel`:
it feeds every server message and packet to the pure :class:`DeviceModel`, decodes the packets
the device would play (at the server hello's rate), drives the :class:`Microphone`, and runs
each turn as in §2.7:

1. ``listen detect`` with the text, when given (the wake word, or typed text);
2. ``listen start`` (turn 1; every turn in manual mode; later auto/realtime turns reuse the
   listening state the device is already in);
3. the speech at real-time pace, then silence (auto/realtime) or ``listen stop`` (manual);
4. wait for ``tts stop`` (``abort`` first, ``abort_after_s`` after the first reply packet,
   when asked); then let playback drain and, in auto mode, send the new ``listen start``
   exactly as the firmware does after every reply.

With ``barge_in_after_s`` (realtime mode), ``barge_in_after_s`` after the first reply packet
the user says the speech again over the reply. Stock firmware sends nothing for that (no
``abort``): the mic simply streams it. The server should notice, stop the reply (``tts stop``)
and answer the new utterance; the turn waits for that answer (see
:meth:`DeviceModel.barge_in`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from xiaozhi_local.audio.clock import Clock
from xiaozhi_local.audio.opus import OpusDecoder, packet_duration_ms
from xiaozhi_local.errors import AudioError, ChannelClosedError, SimulatorError
from xiaozhi_local.protocol.client_messages import Abort, Listen
from xiaozhi_local.protocol.framing import AudioFrame
from xiaozhi_local.protocol.types import ListenMode, ListenState
from xiaozhi_local.sim.channel import DeviceChannel
from xiaozhi_local.sim.device_state import AudioVerdict, DeviceModel, Phase, TurnMetrics, server_message_problems
from xiaozhi_local.sim.microphone import Frame, Microphone

__all__ = ["Conversation"]

Log = Callable[[str], None]


class Conversation:
    """One device's turns on an open channel. Create it, pass it as the channel's listener,
    open the channel, then :meth:`run`."""

    def __init__(
        self,
        device: DeviceModel,
        *,
        clock: Clock,
        mode: ListenMode,
        speech: list[Frame],
        text: str | None,
        reply_timeout_s: float,
        abort_after_s: float | None = None,
        abort_reason: str | None = None,
        barge_in_after_s: float | None = None,
        log: Log | None = None,
    ) -> None:
        self.device = device
        self.clock = clock
        self.mode = mode
        self.speech = speech
        self.text = text
        self.reply_timeout_s = reply_timeout_s
        self.abort_after_s = abort_after_s
        self.abort_reason = abort_reason
        self.barge_in_after_s = barge_in_after_s
        self._log = log or (lambda _msg: None)
        self.channel: DeviceChannel | None = None
        self.decoder: OpusDecoder | None = None
        self.frame_s = 0.06
        self.pcm: list[npt.NDArray[np.int16]] = []
        self.notes: list[str] = []
        self.stopped_by_server: str | None = None
        self._turn_done = asyncio.Event()
        self._barge_in = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.mic: Microphone | None = None

    # --- ChannelListener ---

    def on_json(self, message: dict[str, Any], t: float) -> None:
        """A server → device text message (§2.6)."""
        for problem in server_message_problems(message):
            self._note(problem)
        kind, state, text = message.get("type"), message.get("state"), message.get("text")
        dev = self.device
        if kind == "tts" and state == "start":
            was = dev.phase
            dev.on_tts_start(t)
            if was is not Phase.SPEAKING and self.decoder is not None:
                self.decoder.reset()
            self._log("← tts start")
        elif kind == "tts" and state == "stop":
            if dev.on_tts_stop(t) and dev.turn.completed:  # not when it only stopped a reply barged into
                self._turn_done.set()
            self._log("← tts stop")
        elif kind == "tts" and state == "sentence_start" and isinstance(text, str):
            dev.on_sentence(text)
            self._log(f"← reply: {text}")
        elif kind == "stt" and isinstance(text, str):
            dev.on_stt(text, t)
            self._log(f"← stt: {text}")
        elif kind == "llm" and isinstance(message.get("emotion"), str):
            dev.on_llm(message["emotion"], t)
        elif kind == "system" and message.get("command") == "reboot":
            self.stopped_by_server = "the server sent system reboot; a stock device reboots now"
            self._turn_done.set()
        elif kind == "alert":
            self._note(f"alert from the server: {message.get('status')!r} {message.get('message')!r}")

    def on_audio(self, frame: AudioFrame, t: float) -> None:
        """A downlink packet: gate it, queue it, decode what the device would play (§2.4)."""
        try:
            duration = packet_duration_ms(frame.payload) / 1000
        except AudioError:
            duration = self.frame_s
        if self.device.on_audio(t, duration) is not AudioVerdict.QUEUED:
            return
        turn = self.device.reply_turn
        if turn.frames_queued == 1 and self.abort_after_s is not None:
            self._spawn(self._abort_later(self.abort_after_s))
        if turn.frames_queued == 1 and self.barge_in_after_s is not None and not turn.barge_in:
            self._spawn(self._barge_in_later(self.barge_in_after_s, turn))
        if self.decoder is None:
            self.decoder = OpusDecoder(24000)
        try:
            self.pcm.append(self.decoder.decode(frame.payload))
        except AudioError as exc:
            self._note(f"undecodable reply packet: {exc}")

    # --- turns ---

    async def run(self, channel: DeviceChannel, turns: int) -> None:
        """Run ``turns`` turns on the open ``channel``; SimulatorError on failure."""
        self.channel = channel
        assert channel.hello is not None
        params = channel.hello.audio_params
        self.frame_s = params.frame_duration / 1000
        if self.decoder is None or self.decoder.sample_rate != params.sample_rate:
            self.decoder = OpusDecoder(params.sample_rate)
        self.mic = Microphone(
            self.device, channel.send_audio, self.clock, fill_silence=self.mode is not ListenMode.MANUAL
        )
        self._spawn(self.mic.run())
        try:
            for index in range(turns):
                await self._turn(index)
                if self.stopped_by_server is not None:
                    self._note(self.stopped_by_server)
                    return
                if channel.closed.is_set():
                    if index + 1 < turns:
                        raise channel.closed_error(f"after turn {index + 1} of {turns}")
                    return
        finally:
            for task in self._tasks:
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, SimulatorError):
                    await task

    async def _send(self, message: Listen | Abort) -> None:
        assert self.channel is not None
        await self.channel.send(message)
        self._log(f"→ {message.type} {getattr(message, 'state', '')} {getattr(message, 'mode', '') or ''}".rstrip())

    async def _turn(self, index: int) -> None:
        dev, mic, sid = self.device, self.mic, self._session_id()
        assert mic is not None
        turn = dev.begin_turn(self.clock.now())
        turn.mode = str(self.mode)
        self._turn_done.clear()
        self._barge_in.clear()
        if self.text is not None and (index == 0 or not self.speech):
            await self._send(Listen(ListenState.DETECT, text=self.text, session_id=sid))
            if not self.speech:
                turn.t_speech_end = self.clock.now()  # a typed "utterance" ends when it is sent
        if index == 0 or self.mode is ListenMode.MANUAL or dev.phase is Phase.IDLE:
            dev.start_listening(self.mode, self.clock.now())
            await self._send(Listen(ListenState.START, mode=self.mode, session_id=sid))
        mic.say(self.speech)
        await self._wait(mic.speech_done, None, f"turn {index + 1}, while sending speech")
        if mic.error is not None:
            raise mic.error
        if turn.t_speech_end is None:
            turn.t_speech_end = self.clock.now()
        if self.mode is ListenMode.MANUAL and dev.stop_listening(self.clock.now()):
            await self._send(Listen(ListenState.STOP, session_id=sid))
        if not await self._wait_reply(index):
            raise SimulatorError(self._timeout_message(index))
        if self.stopped_by_server is not None:
            return
        await self.clock.sleep(dev.playback.drain_time(self.clock.now()))
        if dev.playback_drained(self.clock.now()) and not self.channel_closed():
            # a server close racing this is checked by run(): fine after the last turn only
            with contextlib.suppress(ChannelClosedError):
                await self._send(Listen(ListenState.START, mode=self.mode, session_id=self._session_id()))
            mic.wake()

    async def _wait_reply(self, index: int) -> bool:
        """Wait for the end of the turn's reply, or of the reply to its barge-in; False on timeout."""
        what = f"turn {index + 1}, waiting for the reply"
        if not await self._wait_any((self._turn_done, self._barge_in), self.reply_timeout_s, what):
            return False
        if self._turn_done.is_set():
            if self.barge_in_after_s is not None and not self._barge_in.is_set():
                self._note(f"turn {index + 1}: the reply ended before the barge-in ({self.barge_in_after_s:g} s "
                           "after its first packet); nothing was interrupted")  # fmt: skip
            return True
        assert self.mic is not None
        await self._wait(self.mic.speech_done, None, f"turn {index + 1}, while barging in")
        if self.mic.error is not None:
            raise self.mic.error
        return await self._wait(self._turn_done, self.reply_timeout_s, f"{what} to the barge-in")

    async def _barge_in_later(self, delay_s: float, turn: TurnMetrics) -> None:
        """Speak over ``turn``'s reply ``delay_s`` after its first packet (realtime mode)."""
        await self.clock.sleep(delay_s)
        if self.device.turn is not turn:
            return
        if self.device.barge_in(self.clock.now()) is None:  # the reply is over: noted by _wait_reply
            return
        assert self.mic is not None
        self._log("→ (barge-in: speaking over the reply)")
        self.mic.say(self.speech)
        self._barge_in.set()

    async def _abort_later(self, delay_s: float) -> None:
        await self.clock.sleep(delay_s)
        if self.device.abort(self.clock.now()):
            with contextlib.suppress(SimulatorError):
                await self._send(Abort(reason=self.abort_reason, session_id=self._session_id()))

    async def _wait(self, event: asyncio.Event, timeout: float | None, what: str) -> bool:
        """Wait for ``event``; False on timeout; ChannelClosedError if the server closes first."""
        return await self._wait_any((event,), timeout, what)

    async def _wait_any(self, events: tuple[asyncio.Event, ...], timeout: float | None, what: str) -> bool:
        """Wait for any of ``events``; False on timeout; ChannelClosedError if the server closes first."""
        assert self.channel is not None
        if any(event.is_set() for event in events):
            return True
        waiters = {asyncio.ensure_future(event.wait()) for event in events}
        waiters.add(asyncio.ensure_future(self.channel.closed.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if any(event.is_set() for event in events):
            return True
        if self.channel.closed.is_set():
            raise self.channel.closed_error(f"during {what}")
        return False

    def _timeout_message(self, index: int) -> str:
        turn = self.device.turn
        seen = [name for name, t in (("stt", turn.t_stt), ("tts start", turn.t_tts_start)) if t is not None]
        got = f"got {', '.join(seen)} and {turn.frames_received} audio frames" if seen else "got nothing"
        what = "tts stop after the abort" if turn.t_abort is not None else "a complete reply (tts stop)"
        if turn.barge_in:
            what = "reply to the barge-in (tts stop)"
            interrupted = self.device.turns[turn.index - 1]
            if not interrupted.barge_in_stopped:
                got += "; the interrupted reply was not stopped either"
        return (
            f"turn {index + 1}: no {what} within {self.reply_timeout_s:g} s of the end of speech ({got}); "
            f"the device is still {self.device.phase}"
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _session_id(self) -> str:
        return self.channel.session_id if self.channel is not None else ""

    def channel_closed(self) -> bool:
        """True once the WebSocket is closed (by either side)."""
        return self.channel is not None and self.channel.closed.is_set()

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            self._log(f"note: {text}")
