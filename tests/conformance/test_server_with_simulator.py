"""Conformance: the real server (echo conversation) driven by the simulated stock device.

§8 items 1-10 over real loopback sockets, for binary v1/v2/v3 in auto, manual and realtime
mode. The simulator was written from protocol.md independently of the server; it models the
firmware's gating (audio outside `tts start`..`tts stop` is dropped) and its 40-packet queue.

The server runs in its default, paired mode: every simulated device goes through the firmware's
activation loop (§1.6) while an in-process owner approves it, then connects with its token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.pairing import FAST_ACTIVATION, owner_approving
from xiaozhi_local.audio.wav import write_wav
from xiaozhi_local.config import ServerSettings
from xiaozhi_local.pipeline.echo import EchoConversation
from xiaozhi_local.protocol.types import ListenMode
from xiaozhi_local.server.app import XiaozhiServer
from xiaozhi_local.server.context import ServerContext
from xiaozhi_local.sim.runner import SessionOptions, run_devices, run_session

SPEECH_S = 1.0


@pytest.fixture
async def server() -> AsyncIterator[XiaozhiServer]:
    settings = ServerSettings(host="127.0.0.1", http_port=0, ws_port=0, mdns=False)
    server = XiaozhiServer(ServerContext(settings, conversation="echo"), EchoConversation)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def ota_url(server: XiaozhiServer) -> AsyncIterator[str]:
    """The OTA URL of a server whose owner approves every device that asks."""
    async with owner_approving(server.pairing):
        yield f"http://127.0.0.1:{server.http_port}/xiaozhi/ota/"


def paired(options: SessionOptions) -> SessionOptions:
    """Like stock firmware: wait for the owner's approval, polling /activate (fast waits)."""
    return dataclasses.replace(options, wait_for_pairing=True, activation=FAST_ACTIVATION)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.3 s silence, 1 s of a voiced-like 200 Hz signal with harmonics, 0.2 s silence (44.1 kHz)."""
    rate = 44100
    t = np.arange(int(rate * SPEECH_S)) / rate
    voice = sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 6)) * 6000
    pcm = np.concatenate([np.zeros(int(0.3 * rate)), voice, np.zeros(int(0.2 * rate))]).astype(np.int16)
    path = tmp_path_factory.mktemp("wav") / "speech.wav"
    write_wav(path, pcm, rate)
    return path


@pytest.mark.parametrize("mode", [ListenMode.AUTO, ListenMode.MANUAL, ListenMode.REALTIME])
@pytest.mark.parametrize("version", [1, 2, 3])
async def test_conformant_turn(ota_url: str, speech_wav: Path, version: int, mode: ListenMode,
                               tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    options = SessionOptions(wav=speech_wav, mode=mode, protocol_version=version, mcp_padding=12,
                             reply_timeout_s=20, out=out)
    result = await run_session(ota_url, options=paired(options))
    assert result.ok, (result.error, result.notes)
    assert result.pairing_code is not None and result.ota is not None
    assert result.ota.activate_statuses[-1] == 200  # 202 until approved, then 200 (§1.6)
    assert result.protocol_version == version
    assert (result.downlink_sample_rate, result.downlink_frame_ms) == (24000, 60)
    turn = result.turns[0]
    assert turn.completed
    # The echo heard our 1 s of sound (plus pre-roll/trailing silence in auto modes).
    heard = float(turn.stt_texts[0].strip("()").split()[0])
    assert 0.9 <= heard <= 2.0, turn.stt_texts
    # §8 item 7: nothing outside tts start..stop, never more than the device can queue.
    assert turn.gating_drops == 0 and turn.dropped_overflow == 0
    assert turn.t_tts_start is not None and turn.t_first_audio is not None
    assert turn.t_tts_start <= turn.t_first_audio <= (turn.t_tts_stop or 0)
    assert turn.max_queue_depth <= 6
    assert turn.sentences[0] == "Here is what I heard."
    assert abs(turn.audio_s - (0.15 + heard)) < 0.25
    assert out.exists() and result.reply_audio_s > 1.0
    # §8 item 9: initialize, then tools/list page by page with the cursor, integer ids >= 10000.
    methods = [c.method for c in result.mcp_calls]
    assert methods[0] == "initialize"
    pages = [c for c in result.mcp_calls if c.method == "tools/list"]
    assert len(pages) >= 2 and all(c.answered and c.error is None for c in pages)
    assert all(isinstance(c.id, int) and c.id >= 10000 for c in result.mcp_calls if c.id is not None)
    assert not [n for n in result.notes if "violat" in n.lower()]


async def test_text_turn_with_query_auth_like_a_browser(ota_url: str) -> None:
    result = await run_session(ota_url, options=paired(SessionOptions(text="what time is it", query_auth=True,
                                                                      reply_timeout_s=20)))
    assert result.ok, result.error
    assert result.turns[0].stt_texts == ["what time is it"]
    assert result.turns[0].sentences == ["You said: what time is it"]


async def test_abort_mid_reply(ota_url: str, speech_wav: Path) -> None:
    options = SessionOptions(wav=speech_wav, mode=ListenMode.MANUAL, abort_after_s=0.3, reply_timeout_s=20)
    result = await run_session(ota_url, options=paired(options))
    assert result.ok, result.error
    turn = result.turns[0]
    assert turn.t_abort is not None and turn.t_tts_stop is not None
    assert turn.t_tts_stop > turn.t_abort  # the abort was answered with tts stop
    # Only frames already on the wire may follow the abort (no timing asserted: that is bench work).
    assert turn.frames_after_abort <= 6
    assert turn.audio_s < 0.15 + SPEECH_S  # the reply was cut short


async def test_four_devices_at_once(ota_url: str, speech_wav: Path) -> None:
    results = await run_devices(ota_url, 4, paired(SessionOptions(wav=speech_wav, mode=ListenMode.MANUAL,
                                                                  reply_timeout_s=30)))
    assert len({r.device_id for r in results}) == 4
    for result in results:
        assert result.ok, result.error
        turn = result.turns[0]
        assert turn.completed and turn.gating_drops == 0 and turn.dropped_overflow == 0


async def test_unpaired_device_is_told_to_pair(server: XiaozhiServer) -> None:
    """Default-deny: without the owner's approval the device gets a code and nothing else."""
    url = f"http://127.0.0.1:{server.http_port}/xiaozhi/ota/"
    result = await run_session(url, options=SessionOptions(text="hello"))
    assert not result.ok and result.error_kind == "PairingRequiredError"
    assert result.pairing_code is not None and len(result.pairing_code) == 6
    assert f"xiaozhi device pair {result.pairing_code}" in (result.error or "")
    assert [r.code for r in await server.pairing.pending()] == [result.pairing_code]
    assert result.turns == []
