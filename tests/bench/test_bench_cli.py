"""`xiaozhi bench` end to end against `xiaozhi serve --echo` (both real processes, loopback only),
and its answers to bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import REPO
from tests.server.test_lifecycle import start_serve
from xiaozhi_local.bench.server import start_server
from xiaozhi_local.cli import app
from xiaozhi_local.errors import XiaozhiError

runner = CliRunner()


def test_echo_and_server_together_are_refused() -> None:
    result = runner.invoke(app, ["bench", "--echo", "--server", "http://127.0.0.1:9/xiaozhi/ota/"])
    assert result.exit_code == 1 and "leave it out with --server" in result.output


def test_a_websocket_url_is_refused_with_the_expected_form() -> None:
    result = runner.invoke(app, ["bench", "--server", "ws://127.0.0.1:8000/xiaozhi/v1/"])
    assert result.exit_code == 1 and "give the server's HTTP address" in result.output


def test_zero_turns_is_a_usage_error() -> None:
    result = runner.invoke(app, ["bench", "--turns", "0"])
    assert result.exit_code == 2


def test_a_missing_voice_names_the_pull_command(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "--echo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "xiaozhi models pull piper-en-us-joe-medium" in result.output
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_a_server_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nhttp_port = 'eighty'\n", encoding="utf-8")
    with pytest.raises(XiaozhiError) as info:
        start_server(tmp_path, echo=True, config_path=bad, timeout_s=60)
    assert "exited with code 2 before it was ready" in str(info.value) and "http_port" in str(info.value)


def run_bench(env_home: Path, models: Path, ota_url: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XIAOZHI_HOME": str(env_home), "XIAOZHI_MODELS__DIR": str(models)}
    return subprocess.run(
        [sys.executable, "-m", "xiaozhi_local.cli", "bench", "--server", ota_url, "--out", str(out), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)  # fmt: skip


@pytest.mark.models
def test_a_server_that_wants_pairing_is_a_clear_error(isolated_env: Path, tmp_path: Path,
                                                      real_models_dir: Path) -> None:  # fmt: skip
    proc, ota_url = start_serve(isolated_env, "--no-mdns")
    try:
        result = run_bench(isolated_env, real_models_dir, ota_url, tmp_path / "out", "--turns", "1", "--warmup", "0")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 1
    assert "wants the bench's simulated devices paired" in result.stderr and "--open" in result.stderr


@pytest.mark.models
def test_bench_against_the_echo_server(isolated_env: Path, tmp_path: Path, real_models_dir: Path) -> None:
    proc, ota_url = start_serve(isolated_env, "--no-mdns", "--open")
    out = tmp_path / "bench"
    try:
        result = run_bench(isolated_env, real_models_dir, ota_url, out, "--turns", "2", "--warmup", "0",
                           "--mode", "manual", "--json")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    assert (summary["turns"], summary["completed"], summary["failed"]) == (2, 2, 0)
    assert summary["e2e_ms"]["n"] == 2 and summary["e2e_ms"]["min"] > 0
    assert summary["server"] is None  # the echo server records no stage timings…
    assert any("no stage timings" in note for note in report["notes"])  # …and the report says so
    assert report["server"]["conversation"] == "echo" and not report["server"]["started"]
    assert report["process"]["samples"] >= 2 and report["process"]["rss_bytes"]["peak"] > 10_000_000
    first, second = report["turns"]
    assert first["text"] == "What is two plus two?" and second["text"] == "What is the capital of France?"
    for turn in report["turns"]:
        assert turn["ok"] and turn["frames_dropped"] == 0
        sent_s = math.ceil(round(turn["speech_s"] * 16000) / 960) * 0.06  # whole 60 ms frames
        assert turn["transcript"] == f"({sent_s:.1f} s of audio)"  # manual mode: the server heard what was sent
        assert turn["reply"].startswith("Here is what I heard.")
        assert turn["reply_audio_s"] > turn["speech_s"]
    assert report["utterances"]["languages"] == ["en"] and "Chinese" in report["utterances"]["notes"][0]
    assert len(list((out / "utterances").glob("*.wav"))) == 2
    assert "What is two plus two?" in (out / "report.md").read_text(encoding="utf-8")
    with Image.open(out / "latency.png") as image:
        assert image.format == "PNG"
