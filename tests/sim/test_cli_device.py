"""`xiaozhi device simulate` end to end (the sub-app on its own; the root app registers it).

The OTA and WebSocket test doubles of :mod:`tests.sim.doubles` run on 127.0.0.1 in a
background thread, because the command runs its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from tests.sim.doubles import OtaDouble, Script, ScriptedServer
from xiaozhi_local.audio.wav import write_wav
from xiaozhi_local.cli.device import EXIT_PAIRING, app

runner = CliRunner()


@contextlib.contextmanager
def serving(script: Script, **ota: Any) -> Iterator[tuple[str, ScriptedServer]]:
    """Yield the OTA URL of an OtaDouble pointing at a ScriptedServer, both in a thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        server = ScriptedServer(script)
        async with server.running(), OtaDouble(ws_url=server.url, **ota).running() as double:
            box.update(url=double.url, server=server)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield box["url"], box["server"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_simulate_json_text_turn() -> None:
    with serving(Script(trigger="detect", tone_s=0.3), version=2) as (url, server):
        result = runner.invoke(app, ["simulate", "--server", url, "--text", "hello", "--json",
                                     "--device-id", "02-00-00-00-00-07"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["device_id"] == "02:00:00:00:00:07" and data["protocol_version"] == 2
    assert data["turns"][0]["transcript"] == "what is one plus one"
    assert data["turns"][0]["reply"] == "One plus one is two."
    assert data["turns"][0]["latency"]["first_audio_ms"] is not None
    assert server.sessions[0].headers["device-id"] == "02:00:00:00:00:07"


def test_simulate_human_output_with_wav(tmp_path: Path) -> None:
    wav = tmp_path / "q.wav"
    write_wav(wav, (np.sin(np.arange(8000) / 3) * 5000).astype(np.int16), 16000)
    out = tmp_path / "reply.wav"
    with serving(Script(tone_s=0.3)) as (url, _server):
        result = runner.invoke(app, ["simulate", "--server", url, "--wav", str(wav), "--mode", "manual",
                                     "--out", str(out)], terminal_width=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "you said:  what is one plus one" in result.stdout
    assert "reply:     One plus one is two." in result.stdout
    assert "first audio" in result.stdout and out.exists()


def test_simulate_pairing_required_exit_code() -> None:
    activation = {"code": "654321", "challenge": "c", "message": "code 654321"}
    with serving(Script(), activation=activation) as (url, _server):
        result = runner.invoke(app, ["simulate", "--server", url, "--text", "hi"], terminal_width=200)
    assert result.exit_code == EXIT_PAIRING
    assert "xiaozhi device pair 654321" in result.output


def test_simulate_usage_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--text", "hi"])
    assert result.exit_code == 1 and "--server URL or --discover" in result.output
    result = runner.invoke(app, ["simulate", "--server", "http://127.0.0.1:9/xiaozhi/ota/"])
    assert result.exit_code == 1 and "--wav FILE" in result.output
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....nope")
    result = runner.invoke(app, ["simulate", "--server", "http://127.0.0.1:9/xiaozhi/ota/", "--wav", str(bad)])
    assert result.exit_code == 1 and "not a WAV file" in result.output
    result = runner.invoke(app, ["simulate", "--server", "http://127.0.0.1:9/x/ota/", "--text", "hi",
                                 "--device-id", "nope"])  # fmt: skip
    assert result.exit_code == 1 and "not a MAC address" in result.output


def test_simulate_unreachable_server() -> None:
    result = runner.invoke(app, ["simulate", "--server", "http://127.0.0.1:9/xiaozhi/ota/", "--text", "hi"],
                           terminal_width=200)  # fmt: skip
    assert result.exit_code == 1 and "cannot reach http://127.0.0.1:9/xiaozhi/ota/" in result.output


def test_simulate_many_devices_json() -> None:
    with serving(Script(trigger="detect", tone_s=0.2)) as (url, server):
        result = runner.invoke(app, ["simulate", "--server", url, "--text", "hi", "--count", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"]["devices"] == 3 and data["summary"]["ok"] == 3
    assert data["summary"]["latency_ms"]["first_audio_ms"] is not None
    assert len({d["device_id"] for d in data["devices"]}) == 3 == len(server.sessions)


def test_simulate_barge_in_json(tmp_path: Path) -> None:
    wav = tmp_path / "q.wav"
    write_wav(wav, (np.sin(np.arange(8000) / 3) * 5000).astype(np.int16), 16000)
    script = Script(trigger="frames", trigger_frames=12, tone_s=3.0, stop_on_speech=True)
    with serving(script) as (url, server):
        result = runner.invoke(app, ["simulate", "--server", url, "--wav", str(wav), "--mode", "realtime",
                                     "--barge-in-after", "0.3", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.stdout)["turns"]
    assert first["interrupted_by_barge_in"] and first["stopped_after_barge_in"] is True
    assert first["latency"]["barge_in_to_tts_stop_ms"] is not None
    assert second["barge_in"] and second["transcript"] == "and what is two plus two"
    assert second["reply"] == "Two plus two is four." and second["completed"]
    assert len(server.sessions[0].barge_in_at) == 1


def test_simulate_barge_in_usage_errors(tmp_path: Path) -> None:
    wav = tmp_path / "q.wav"
    write_wav(wav, np.zeros(1600, dtype=np.int16), 16000)
    result = runner.invoke(app, ["simulate", "--server", "http://127.0.0.1:9/xiaozhi/ota/", "--wav", str(wav),
                                 "--barge-in-after", "1"], terminal_width=200)  # fmt: skip
    assert result.exit_code == 1 and "needs --mode realtime" in result.output
    result = runner.invoke(app, ["simulate", "--server", "http://127.0.0.1:9/xiaozhi/ota/", "--text", "hi",
                                 "--mode", "realtime", "--barge-in-after", "1"], terminal_width=200)  # fmt: skip
    assert result.exit_code == 1 and "needs --wav" in result.output
