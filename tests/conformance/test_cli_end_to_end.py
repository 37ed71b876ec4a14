"""The README's way to try the server without hardware: `xiaozhi serve --echo` and
`xiaozhi device simulate`, both as real processes talking over loopback."""

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
    try:
        env = {**os.environ, "XIAOZHI_HOME": str(isolated_env)}
        out = tmp_path / "reply.wav"
        result = subprocess.run(
            [sys.executable, "-m", "xiaozhi_local.cli", "device", "simulate", "--server", ota_url,
             "--wav", str(speech), "--mode", "manual", "--protocol-version", "2", "--out", str(out), "--json"],
            capture_output=True, text=True, env=env, timeout=120)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["protocol_version"] == 2
    turn = report["turns"][0]
    assert turn["stt"] == ["(1.2 s of audio)"]
    assert turn["sentences"] == ["Here is what I heard.", "1.2 seconds."]
    pcm, out_rate = read_wav(out)
    assert out_rate == 24000 and 1.2 <= pcm.size / out_rate <= 1.6
