"""The README's way to try the server without hardware: `xiaozhi serve --echo` and
`xiaozhi device simulate`, both as real processes talking over loopback. The server is in its
default paired mode: the simulated device waits for pairing like stock firmware while
`xiaozhi device pair --yes` (a third process) approves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.server.test_lifecycle import start_serve
from xiaozhi_local.audio.wav import read_wav, write_wav


def test_simulate_against_serve(isolated_env: Path, tmp_path: Path) -> None:
    rate = 16000
    t = np.arange(int(rate * 1.2)) / rate
    speech = tmp_path / "question.wav"
    write_wav(speech, (7000 * np.sin(2 * np.pi * 330 * t)).astype(np.int16), rate)
    proc, ota_url = start_serve(isolated_env, "--no-mdns")
    device: subprocess.Popen[str] | None = None
    try:
        env = {**os.environ, "XIAOZHI_HOME": str(isolated_env)}
        out = tmp_path / "reply.wav"
        device = subprocess.Popen(
            [sys.executable, "-m", "xiaozhi_local.cli", "device", "simulate", "--server", ota_url,
             "--wav", str(speech), "--mode", "manual", "--protocol-version", "2", "--out", str(out), "--json",
             "--wait-for-pairing"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        owner = subprocess.run(
            [sys.executable, "-m", "xiaozhi_local.cli", "device", "pair", "--yes", "--timeout", "60"],
            capture_output=True, text=True, env=env, timeout=90)
        stdout, stderr = device.communicate(timeout=120)
    finally:
        if device is not None and device.poll() is None:
            device.kill()
        proc.terminate()
        proc.wait(timeout=10)
    assert owner.returncode == 0, owner.stderr
    assert "paired" in owner.stderr and "bread-compact-wifi" in owner.stderr and "127.0.0.1" in owner.stderr
    assert device.returncode == 0, stderr
    assert "xiaozhi device pair" in stderr  # the simulated device showed its code
    result = subprocess.CompletedProcess(device.args, device.returncode, stdout, stderr)
    report = json.loads(result.stdout)
    assert report["protocol_version"] == 2
    turn = report["turns"][0]
    assert turn["stt"] == ["(1.2 s of audio)"]
    assert turn["sentences"] == ["Here is what I heard.", "1.2 seconds."]
    pcm, out_rate = read_wav(out)
    assert out_rate == 24000 and 1.2 <= pcm.size / out_rate <= 1.6
