"""The README's promise, as processes: `xiaozhi serve` runs the real assistant on the test models
and `xiaozhi device simulate` holds a spoken conversation with it over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import models_test_home
from tests.server.test_lifecycle import serve_log, start_serve
from xiaozhi_local.audio.wav import write_wav
from xiaozhi_local.engines.tts import PiperTts


def test_a_spoken_conversation_with_serve(isolated_env: Path, tmp_path: Path) -> None:
    models = models_test_home() / "models"
    voice = PiperTts(models / "piper-en-us-joe-medium" / "en_US-joe-medium.onnx")
    speech = np.concatenate(list(voice.synthesize("What is the capital of France?")))
    room = np.zeros(voice.sample_rate // 3, np.int16)
    question = tmp_path / "question.wav"
    write_wav(question, np.concatenate([room, speech, room, room, room]), voice.sample_rate)
    env = {"XIAOZHI_MODELS__DIR": str(models), "XIAOZHI_MODELS__LLM": "smollm2-135m-q4_1",
           "XIAOZHI_PIPELINE__TEMPERATURE": "0", "XIAOZHI_PIPELINE__LLM_THREADS": "1"}
    proc, ota_url = start_serve(isolated_env, "--no-mdns", "--open", echo=False, env=env, timeout=180)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "xiaozhi_local.cli", "device", "simulate", "--server", ota_url,
             "--wav", str(question), "--turns", "2", "--json"],
            capture_output=True, text=True, env={**os.environ, "XIAOZHI_HOME": str(isolated_env)}, timeout=240)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["turns"]) == 2
    for turn in report["turns"]:
        assert "capital of france" in " ".join(turn["stt"]).lower()
        assert turn["sentences"] and turn["audio"]["frames_received"] > 0
    log = serve_log(proc)
    assert proc.returncode == 0
    assert "conversation: assistant" in log and log.count("[voice/ok]") == 2
