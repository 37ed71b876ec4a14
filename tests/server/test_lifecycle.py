"""`xiaozhi serve` as a real process: startup output, OTA, sessions closed on SIGTERM, exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import REPO
from tests.helpers.pairing import pair_over_http


def start_serve(home: Path, *extra: str, echo: bool = True, env: dict[str, str] | None = None,
                timeout: float = 30) -> tuple[subprocess.Popen[str], str]:
    """`xiaozhi serve` on loopback with free ports; returns the process and its OTA URL.

    After start-up its stderr keeps being read (see :func:`serve_log`) so a long run never
    blocks on a full pipe."""
    full_env = {**os.environ, "XIAOZHI_HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "serve", *(["--echo"] if echo else []), "--host", "127.0.0.1",
         "--http-port", "0", "--ws-port", "0", *extra],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=full_env, cwd=REPO,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"OTA URL for the device's Wi-Fi portal: (\S+)", line)
        if match:
            drain = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
            drain.start()
            _LOGS[proc.pid] = (lines, drain)
            return proc, match.group(1)
    proc.kill()
    raise AssertionError("serve did not start:\n" + "".join(lines))


_LOGS: dict[int, tuple[list[str], threading.Thread]] = {}


def serve_log(proc: subprocess.Popen[str]) -> str:
    """Everything a process from :func:`start_serve` wrote to stderr (complete once it exited)."""
    lines, drain = _LOGS[proc.pid]
    if proc.poll() is not None:
        drain.join(timeout=10)
    return "".join(lines)


@pytest.fixture
def served(isolated_env: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, ota_url = start_serve(isolated_env, "--no-mdns")
    yield proc, ota_url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_closes_sessions_and_exits_zero(served: tuple[subprocess.Popen[str], str],
                                                isolated_env: Path) -> None:
    proc, ota_url = served
    assert ota_url.startswith("http://127.0.0.1:")
    token, ws_url = pair_over_http(ota_url, isolated_env / "xiaozhi.db", "aa:bb:cc:00:00:01")
    headers = {"Device-Id": "aa:bb:cc:00:00:01", "Authorization": f"Bearer {token}"}

    async def session_then_term() -> tuple[int | None, str | None]:
        async with connect(ws_url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "transport": "websocket"}))
            assert json.loads(await ws.recv())["type"] == "hello"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            return ws.close_code, ws.close_reason

    code, reason = asyncio.run(session_then_term())
    assert code == 1001 and reason == "server shutting down"
    assert proc.wait(timeout=10) == 0


def test_second_signal_exits_at_once(isolated_env: Path) -> None:
    proc, _ = start_serve(isolated_env, "--no-mdns")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) in (0, 1)


def test_port_in_use_is_a_clear_error(served: tuple[subprocess.Popen[str], str], isolated_env: Path) -> None:
    _, ota_url = served
    port = ota_url.split(":")[2].split("/")[0]
    env = {**os.environ, "XIAOZHI_HOME": str(isolated_env)}
    result = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "serve", "--echo", "--host", "127.0.0.1", "--http-port", port,
         "--ws-port", "0", "--no-mdns"], capture_output=True, text=True, env=env, cwd=REPO, timeout=30)
    assert result.returncode == 1
    assert "cannot listen for HTTP" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_model_stops_serve_with_the_pull_command(isolated_env: Path) -> None:
    env = {**os.environ, "XIAOZHI_HOME": str(isolated_env)}
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "serve", "--no-mdns"], capture_output=True,
                            text=True, env=env, cwd=REPO, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'silero-vad' is not installed" in result.stderr
    assert "xiaozhi models pull silero-vad" in result.stderr


def test_a_corrupt_model_stops_serve_with_the_pull_command(isolated_env: Path, real_models_dir: Path) -> None:
    models = isolated_env / "models"
    models.mkdir(parents=True)
    for model in real_models_dir.iterdir():  # share the big files, copy the one we damage
        if model.is_dir():
            (models / model.name).symlink_to(model)
    vad = models / "silero-vad"
    vad.unlink()
    shutil.copytree(real_models_dir / "silero-vad", vad)
    data = bytearray((vad / "silero_vad.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    (vad / "silero_vad.onnx").write_bytes(bytes(data))
    env = {**os.environ, "XIAOZHI_HOME": str(isolated_env), "XIAOZHI_MODELS__LLM": "smollm2-135m-q4_1"}
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "serve", "--no-mdns"], capture_output=True,
                            text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'silero-vad' is corrupt" in result.stderr and "xiaozhi models pull silero-vad" in result.stderr
