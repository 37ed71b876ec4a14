"""One full simulated-device session, or many at once (protocol.md §1, §2, §4, §7).

:func:`run_session` is a stock device's boot + one conversation: OTA check (and activation,
§1.6) → WebSocket connect + hello (§2.1, §2.2) → the requested turns (§2.7, see
:mod:`.conversation`) → close. Given a ``ws://`` URL instead of an OTA URL it skips the OTA
phase. :func:`run_conversation` starts from a known :class:`ChannelConfig` (tests use it).
:func:`run_devices` runs ``count`` devices with distinct MACs concurrently (load tests).

Session problems never raise: they end up in :attr:`SessionResult.error`, next to everything
measured up to that point. Only the caller's mistakes raise, before any network traffic: a bad
``--wav`` (``AudioError``) or options that do not fit together (``SimulatorError``, e.g. a
barge-in outside realtime mode).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from xiaozhi_local.audio.clock import Clock, MonotonicClock
from xiaozhi_local.audio.wav import write_wav
from xiaozhi_local.errors import AudioError, PairingRequiredError, SimulatorError
from xiaozhi_local.protocol.mcp_builtin import DeviceState, builtin_device_tools
from xiaozhi_local.protocol.mcp_device import McpDeviceServer
from xiaozhi_local.protocol.ota import is_loopback_url
from xiaozhi_local.protocol.types import ListenMode
from xiaozhi_local.sim.channel import DeviceChannel
from xiaozhi_local.sim.conversation import Conversation
from xiaozhi_local.sim.device_state import DeviceModel
from xiaozhi_local.sim.handshake import ChannelConfig
from xiaozhi_local.sim.identity import DeviceIdentity
from xiaozhi_local.sim.microphone import Frame, load_speech, split_frames
from xiaozhi_local.sim.ota_client import ActivationPolicy, OtaClient, require_websocket
from xiaozhi_local.sim.report import SessionResult

__all__ = ["SessionOptions", "build_mcp_server", "run_conversation", "run_devices", "run_session"]

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What the simulated user does and how patient the device is."""

    wav: Path | None = None
    """Speech to send (any WAV; resampled to 16 kHz)."""
    text: str | None = None
    """Sent as ``listen detect`` text before the first ``listen start`` (and on every turn of a
    text-only session)."""
    mode: ListenMode = ListenMode.AUTO
    turns: int = 1
    protocol_version: int | None = None
    """Binary protocol version; None → the OTA reply's ``websocket.version``, else 1."""
    query_auth: bool = False
    mcp_padding: int = 0
    """Extra ~700-byte padding tools; 12 or more push ``tools/list`` past one 8000-byte page."""
    reply_timeout_s: float = 60.0
    """Per turn: from the end of speech to ``tts stop``."""
    hello_timeout_s: float = 10.0
    abort_after_s: float | None = None
    """Send ``abort`` this long after the first reply packet of each turn."""
    abort_reason: str | None = None
    barge_in_after_s: float | None = None
    """Realtime mode only: say the speech again this long after the first reply packet of each
    turn, over the reply (the server should stop it and answer); needs speech (``wav``)."""
    out: Path | None = None
    """Write the reply audio (what the device played) here."""
    wait_for_pairing: bool = False
    activation: ActivationPolicy = field(default_factory=ActivationPolicy)

    def __post_init__(self) -> None:
        if self.barge_in_after_s is None:
            return
        if self.mode != ListenMode.REALTIME:
            raise SimulatorError(
                "--barge-in-after needs --mode realtime: only a realtime (AEC) device keeps its microphone open "
                "while it speaks; in auto and manual mode a user interrupts with abort (--abort-after) (§2.7)"
            )
        if self.barge_in_after_s < 0:
            raise SimulatorError("--barge-in-after must not be negative")

    def check_speech(self, speech: list[Frame]) -> None:
        """SimulatorError when an option needs speech audio that is missing."""
        if self.barge_in_after_s is not None and not speech:
            raise SimulatorError("--barge-in-after needs --wav: the barge-in is that speech said again")


def build_mcp_server(identity: DeviceIdentity, padding: int = 0) -> McpDeviceServer:
    """The device's MCP server with the §4.5 built-ins (+ ``padding`` padding tools)."""
    state = DeviceState(board_name=identity.board_name, firmware_version=identity.firmware_version,
                        mac_address=identity.mac)  # fmt: skip
    tools = builtin_device_tools(state, padding_tools=padding)
    return McpDeviceServer(name=identity.board_name, version=identity.firmware_version, tools=tools)


def _fail(result: SessionResult, exc: SimulatorError) -> None:
    if result.error is None:
        result.error = str(exc)
        result.error_kind = type(exc).__name__


async def run_conversation(
    config: ChannelConfig,
    identity: DeviceIdentity,
    options: SessionOptions,
    *,
    speech: list[Frame] | None = None,
    clock: Clock | None = None,
    log: Log | None = None,
    result: SessionResult | None = None,
) -> SessionResult:
    """Connect with ``config`` and run ``options.turns`` turns (no OTA)."""
    clock = clock or MonotonicClock()
    if speech is None:
        speech = split_frames(load_speech(options.wav)) if options.wav is not None else []
    options.check_speech(speech)
    if result is None:
        result = SessionResult(device_id=identity.mac, client_id=identity.client_id, t0=clock.now(), server=config.url)
    result.websocket_url = config.url
    result.protocol_version = config.protocol_version
    device = DeviceModel()
    conv = Conversation(
        device,
        clock=clock,
        mode=options.mode,
        speech=speech,
        text=options.text,
        reply_timeout_s=options.reply_timeout_s,
        abort_after_s=options.abort_after_s,
        abort_reason=options.abort_reason,
        barge_in_after_s=options.barge_in_after_s,
        log=log,
    )
    channel = DeviceChannel(
        config, build_mcp_server(identity, options.mcp_padding), listener=conv, clock=clock, log=log
    )
    try:
        hello = await channel.open()
        result.session_id = hello.session_id
        result.downlink_sample_rate = hello.audio_params.sample_rate
        result.downlink_frame_ms = hello.audio_params.frame_duration
        if log is not None:
            log(f"connected: session {hello.session_id!r}, downlink {hello.audio_params.sample_rate} Hz")
        await conv.run(channel, options.turns)
    except SimulatorError as exc:
        _fail(result, exc)
    finally:
        await channel.close()
        _collect(result, channel, conv, device)
        _write_reply(result, conv, options.out)
    return result


def _collect(result: SessionResult, channel: DeviceChannel, conv: Conversation, device: DeviceModel) -> None:
    result.t_connected, result.t_hello, result.t_closed = channel.t_connected, channel.t_hello, channel.t_closed
    result.close_code, result.close_reason = channel.close_code, channel.close_reason
    if channel.closed.is_set():
        result.closed_by = "device" if channel.closed_by_device else "server"
    result.frames_sent = channel.frames_sent
    result.turns = device.turns
    result.messages = channel.messages
    result.mcp_calls = channel.mcp_calls
    for note in (*device.notes, *channel.notes, *conv.notes):
        if note not in result.notes:
            result.notes.append(note)


def _write_reply(result: SessionResult, conv: Conversation, out: Path | None) -> None:
    rate = conv.decoder.sample_rate if conv.decoder is not None else 24000
    pcm = np.concatenate(conv.pcm) if conv.pcm else np.zeros(0, dtype=np.int16)
    result.reply_audio_s = pcm.shape[0] / rate
    if out is None:
        return
    if not conv.pcm:
        result.notes.append(f"no reply audio was played, so {out} was not written")
        return
    try:
        write_wav(out, pcm, rate)
    except AudioError as exc:
        _fail(result, SimulatorError(str(exc)))
        return
    result.reply_wav = str(out)


async def run_session(
    server: str,
    identity: DeviceIdentity | None = None,
    options: SessionOptions | None = None,
    *,
    speech: list[Frame] | None = None,
    clock: Clock | None = None,
    log: Log | None = None,
) -> SessionResult:
    """OTA at ``server`` (an ``http(s)://…/xiaozhi/ota/`` URL, or a ``ws(s)://`` URL to skip OTA),
    then :func:`run_conversation` with what the OTA reply said."""
    options = options or SessionOptions()
    clock = clock or MonotonicClock()
    identity = identity or DeviceIdentity.create()
    if speech is None:
        speech = split_frames(load_speech(options.wav)) if options.wav is not None else []
    options.check_speech(speech)
    result = SessionResult(device_id=identity.mac, client_id=identity.client_id, t0=clock.now(), server=server)
    if urlsplit(server).scheme in ("ws", "wss"):
        config = _channel_config(server, "", options.protocol_version or 1, identity, options)
        return await run_conversation(config, identity, options, speech=speech, clock=clock, log=log, result=result)
    try:
        client = OtaClient(server, identity, clock=clock, policy=options.activation, log=log)
        outcome = await client.run(wait_for_pairing=options.wait_for_pairing)
        result.ota = outcome
        result.pairing_code = outcome.activation_code
        result.notes.extend(outcome.warnings)
        ws = require_websocket(outcome.reply)
    except PairingRequiredError as exc:
        result.pairing_code = exc.code
        _fail(result, exc)
        return result
    except SimulatorError as exc:
        _fail(result, exc)
        return result
    if is_loopback_url(ws.url) and not is_loopback_url(server):
        result.notes.append(f"the OTA reply advertises {ws.url}, which a real device cannot reach (§1.5)")
    version = options.protocol_version or ws.version or 1
    if log is not None:
        log(f"OTA ok: {ws.url} (binary v{version}{', token' if ws.token else ''})")
    config = _channel_config(ws.url, ws.token, version, identity, options)
    return await run_conversation(config, identity, options, speech=speech, clock=clock, log=log, result=result)


def _channel_config(
    url: str, token: str, version: int, identity: DeviceIdentity, options: SessionOptions
) -> ChannelConfig:
    return ChannelConfig(
        url=url,
        device_id=identity.mac,
        client_id=identity.client_id,
        token=token,
        protocol_version=version,
        query_auth=options.query_auth,
        hello_timeout_s=options.hello_timeout_s,
    )


def _numbered(path: Path | None, index: int, count: int) -> Path | None:
    if path is None or count == 1:
        return path
    return path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


async def run_devices(
    server: str,
    count: int,
    options: SessionOptions | None = None,
    *,
    mac: str | None = None,
    clock: Clock | None = None,
    log: Log | None = None,
) -> list[SessionResult]:
    """``count`` devices with distinct MACs, each running :func:`run_session` concurrently.

    ``mac`` names the first device; ``options.out`` becomes ``<stem>-<n><suffix>`` per device
    when ``count`` > 1.
    """
    if count < 1:
        raise SimulatorError("--count must be at least 1")
    options = options or SessionOptions()
    speech = split_frames(load_speech(options.wav)) if options.wav is not None else []
    options.check_speech(speech)
    identities: list[DeviceIdentity] = []
    while len(identities) < count:
        candidate = DeviceIdentity.create(mac if not identities else None)
        if all(candidate.mac != other.mac for other in identities):
            identities.append(candidate)

    def device_log(index: int) -> Log | None:
        if log is None:
            return None
        return log if count == 1 else (lambda msg: log(f"[{index + 1}] {msg}"))

    sessions = [
        run_session(server, ident, dataclasses.replace(options, out=_numbered(options.out, i, count)),
                    speech=speech, clock=clock, log=device_log(i))
        for i, ident in enumerate(identities)
    ]  # fmt: skip
    return list(await asyncio.gather(*sessions))
